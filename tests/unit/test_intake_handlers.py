"""Intake's use cases with fakes at the edges: registering, repeated keys, the outbox relay, and
submissions from Kafka."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from services.common import topics
from services.common.events import (
    ApplicationReceived,
    ApplicationSubmitted,
    AttachmentRef,
    Envelope,
    NotificationRequest,
    SubmissionRejected,
)
from services.common.messaging import Outgoing
from services.common.outbox import Pending
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.intake.attachments import UnknownAttachments
from services.intake.channels import ChannelGate
from services.intake.domain import DistrictDirectory, RegisteredApplication, SequenceAllocator
from services.intake.handlers import (
    IdempotencyConflict,
    Intake,
    InvalidApplication,
    bundled_districts,
    received_events,
)
from services.intake.identity import AcceptAll
from services.intake.limits import DailyLimits
from tests.unit.test_intake_channels import Ledger
from tests.unit.test_intake_numbering import FakeCounters
from tests.unit.test_intake_rules import VALID_TCKN, body

TRACKING_URL = "https://acikkapi.example/takip"


class FakeBus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Envelope, str]] = []
        self.down = False

    async def publish(self, topic: str, event: Envelope, key: str) -> None:
        if self.down:
            raise ConnectionError("Kafka unreachable")
        await asyncio.sleep(0)
        self.sent.append((topic, event, key))

    def on(self, topic: str) -> list[Envelope]:
        return [event for t, event, _ in self.sent if t == topic]


class FakeOutbox:
    """Delivers what an insert put in an application's outbox, over the fake bus."""

    def __init__(self, store: FakeStore, bus: FakeBus) -> None:
        self.store = store
        self.bus = bus

    async def deliver(
        self, pending: Iterable[Pending | None], *, clear_later: bool = False
    ) -> None:
        for item in pending:
            if item is None:
                continue
            for message in item.messages:
                assert message.event is not None and message.key is not None
                await self.bus.publish(message.topic, message.event, message.key)
            app = self.store.apps[item.document_id]
            self.store.apps[item.document_id] = app.model_copy(update={"published": True})
            del self.store.outboxes[item.document_id]

    async def flush(self) -> None:
        pass


class FakeStore:
    """The applications collection, with its unique keys and each application's outbox."""

    def __init__(self, bus: FakeBus) -> None:
        self.apps: dict[str, RegisteredApplication] = {}
        self.sealed: dict[str, str] = {}
        self.outboxes: dict[str, Pending] = {}
        self.outbox = FakeOutbox(self, bus)

    async def insert(
        self,
        application: RegisteredApplication,
        *,
        tckn: str,
        mother_maiden_initials: str,
        messages: Sequence[Outgoing],
    ) -> Pending:
        app = application
        for other in self.apps.values():
            for unique in ("idempotency_key", "submission_id", "application_number"):
                if getattr(app, unique) is not None and getattr(app, unique) == getattr(
                    other, unique
                ):
                    raise DuplicateKeyError(f"E11000 {unique}", 11000)
        self.apps[app.application_id] = app
        self.sealed[app.application_id] = tckn
        self.outboxes[app.application_id] = Pending(app.application_id, "t", tuple(messages))
        return self.outboxes[app.application_id]

    async def pending(self, application_id: str) -> Pending | None:
        return self.outboxes.get(application_id)

    async def get(self, application_id: str) -> RegisteredApplication | None:
        return self.apps.get(application_id)

    async def find_by_idempotency_key(self, key: str) -> RegisteredApplication | None:
        return next((a for a in self.apps.values() if a.idempotency_key == key), None)

    async def find_by_submission_id(self, submission_id: str) -> RegisteredApplication | None:
        return next((a for a in self.apps.values() if a.submission_id == submission_id), None)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
def store(bus: FakeBus) -> FakeStore:
    return FakeStore(bus)


@pytest.fixture
def clock() -> Clock:
    return Clock()


class DayCounts:
    """Daily counters in memory (limits.Counters)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    async def take(self, keys: list[str], expires_at: datetime) -> list[int]:
        for key in keys:
            self.counts[key] = self.counts.get(key, 0) + 1
        return [self.counts[key] for key in keys]


class Uploads:
    """Uploaded files in memory (handlers.Attachments): id → its ref, and who claimed it."""

    def __init__(self, *ids: str) -> None:
        self.refs = {
            i: AttachmentRef(
                attachment_id=i, sha256=i * 4, content_type="application/pdf", size=9, name=i
            )
            for i in ids
        }
        self.claimed_by: dict[str, set[str]] = {i: set() for i in ids}

    async def claim(self, ids: Sequence[str], application_id: str) -> list[AttachmentRef]:
        if unknown := [i for i in ids if i not in self.refs]:
            raise UnknownAttachments(unknown)
        for i in ids:
            self.claimed_by[i].add(application_id)
        return [self.refs[i] for i in ids]

    async def release(self, ids: Sequence[str], application_id: str) -> None:
        for i in ids:
            self.claimed_by[i].discard(application_id)


@pytest.fixture
def uploads() -> Uploads:
    return Uploads("dilekce", "foto")


class Served(frozenset[int]):
    """Provinces known from the start (the Provinces protocol)."""

    def districts(self, base: DistrictDirectory) -> DistrictDirectory:
        return base

    def is_known(self) -> bool:
        return True

    async def known(self) -> None:
        return None


@pytest.fixture
def intake(store: FakeStore, bus: FakeBus, clock: Clock, uploads: Uploads) -> Intake:
    return Intake(
        store=store,
        allocator=SequenceAllocator(FakeCounters(), block_size=50),
        publish=bus.publish,
        cipher=PiiCipher(b"k" * 32),
        districts=bundled_districts(),
        served=Served({20}),
        gate=ChannelGate(Settings(phone_verification=False), Ledger(), PiiCipher(b"k" * 32)),
        identities=AcceptAll(),
        limits=DailyLimits(DayCounts(), Settings(daily_limit_per_tckn=0, daily_limit_per_phone=0)),
        attachments=uploads,
        tracking_url=TRACKING_URL,
        clock=clock,
    )


async def submit(intake: Intake, raw: dict[str, Any], **keys: Any) -> Any:
    return await intake.register(intake.validate(raw), body=raw, **keys)


async def test_a_registered_application_is_numbered_stored_and_announced(
    intake: Intake, store: FakeStore, bus: FakeBus
) -> None:
    registration = await submit(intake, body(district="merkezefendi"))
    app = registration.application
    assert registration.answer() == {
        "application_id": app.application_id,
        "application_number": "20-2026-0000001-" + app.application_number[-1],
        "status": "received",
        "received_at": "2026-03-02T09:00:00.000+00:00",
    }
    assert store.apps[app.application_id].district == "Merkezefendi"
    assert store.sealed[app.application_id] == VALID_TCKN  # the store seals it

    [received] = bus.on(topics.RECEIVED)
    assert isinstance(received, ApplicationReceived)
    assert received.applicant.tckn_masked == "10*******46"
    assert received.applicant.phone == "+905321234567"
    assert received.producer == "intake"
    [sms] = bus.on(topics.NOTIFICATION_REQUESTS)
    assert isinstance(sms, NotificationRequest)
    assert sms.idempotency_key == f"{app.application_id}:received:sms"
    assert sms.template == "application_received"
    assert sms.to == "+905321234567"
    assert sms.params == {
        "application_number": app.application_number,
        "tracking_url": TRACKING_URL,
    }
    keys = {topic: key for topic, _, key in bus.sent}
    assert keys == {
        topics.RECEIVED: app.application_id,
        topics.NOTIFICATION_REQUESTS: sms.idempotency_key,
    }
    assert all(VALID_TCKN not in event.model_dump_json() for _, event, _ in bus.sent)


async def test_the_events_leave_the_outbox_once_published(intake: Intake, store: FakeStore) -> None:
    apps = [(await submit(intake, body())).application for _ in range(3)]
    assert all(store.apps[a.application_id].published for a in apps)
    assert store.outboxes == {}


async def test_a_repeated_key_returns_the_first_answer_and_stores_nothing_new(
    intake: Intake, store: FakeStore, bus: FakeBus
) -> None:
    first = await submit(intake, body(), idempotency_key="k-1")
    again = await submit(intake, body(), idempotency_key="k-1")
    assert again.replayed and not first.replayed
    assert again.answer() == first.answer()
    assert len(store.apps) == 1
    assert len(bus.on(topics.RECEIVED)) == 1  # already published: not again
    # The number the repeat had reserved is not lost.
    third = await submit(intake, body())
    assert third.application.application_number.startswith("20-2026-0000002-")


async def test_the_named_files_are_claimed_and_travel_with_the_application(
    intake: Intake, store: FakeStore, bus: FakeBus, uploads: Uploads
) -> None:
    raw = body(attachments=["dilekce", "foto"])
    first = await submit(intake, raw, idempotency_key="k-files")
    app_id = first.application.application_id
    assert [a.attachment_id for a in first.application.attachments] == ["dilekce", "foto"]
    (received,) = bus.on(topics.RECEIVED)
    assert isinstance(received, ApplicationReceived)
    assert received.attachments == first.application.attachments
    assert uploads.claimed_by == {"dilekce": {app_id}, "foto": {app_id}}
    # A keyed retry claims nothing for an application that was never registered.
    await submit(intake, raw, idempotency_key="k-files")
    assert uploads.claimed_by == {"dilekce": {app_id}, "foto": {app_id}}


async def test_an_unknown_file_refuses_the_application_before_it_is_numbered(
    intake: Intake, store: FakeStore
) -> None:
    with pytest.raises(InvalidApplication) as refused:
        await submit(intake, body(attachments=["dilekce", "baska-birinin"]))
    assert [e["code"] for e in refused.value.errors] == ["unknown_attachments"]
    assert store.apps == {}
    numbered = await submit(intake, body())
    assert numbered.application.application_number.startswith("20-2026-0000001-")


async def test_the_same_key_with_another_body_is_a_conflict(
    intake: Intake, store: FakeStore
) -> None:
    await submit(intake, body(), idempotency_key="k-2")
    with pytest.raises(IdempotencyConflict):
        await submit(intake, body(subject="Başka bir konu"), idempotency_key="k-2")
    assert len(store.apps) == 1


async def test_a_repeat_of_an_unpublished_application_publishes_it(
    intake: Intake, store: FakeStore, bus: FakeBus
) -> None:
    bus.down = True
    first = await submit(intake, body(), idempotency_key="k-3")  # stored, not announced
    assert bus.sent == []
    bus.down = False
    again = await submit(intake, body(), idempotency_key="k-3")
    assert again.application.application_id == first.application.application_id
    assert [e.application_id for e in bus.on(topics.RECEIVED)] == [first.application.application_id]


async def test_events_kafka_did_not_take_wait_in_the_outbox_for_the_relay(
    intake: Intake, store: FakeStore, bus: FakeBus
) -> None:
    bus.down = True
    registration = await submit(intake, body())
    app = registration.application
    assert app.application_id in store.apps  # the answer is still 201
    assert not registration.announced
    pending = await store.pending(app.application_id)
    assert pending is not None
    # Same event ids as the first attempt had: consumers can recognise a repeat.
    received, sms = received_events(app, TRACKING_URL)
    assert [m.event.event_id for m in pending.messages if m.event] == [
        received.event_id,
        sms.event_id,
    ]


async def test_a_submission_from_kafka_is_registered_once(
    intake: Intake, store: FakeStore, bus: FakeBus
) -> None:
    event = ApplicationSubmitted.model_validate({**body(), "submission_id": "s-1"})
    await intake.handle_submission(event)
    await intake.handle_submission(event)  # redelivered
    assert len(store.apps) == 1
    [app] = store.apps.values()
    assert app.submission_id == "s-1"
    assert len(bus.on(topics.RECEIVED)) == 1
    assert bus.on(topics.REJECTIONS) == []


async def test_a_bad_submission_is_answered_with_a_rejection(
    intake: Intake, store: FakeStore, bus: FakeBus
) -> None:
    raw = json.dumps({**body(applicant_phone="123", district="Kadıköy"), "submission_id": "s-2"})
    await intake.handle_submission(ApplicationSubmitted.model_validate_json(raw))
    assert store.apps == {}
    [(topic, rejection, key)] = bus.sent
    assert topic == topics.REJECTIONS and key == "s-2"
    assert isinstance(rejection, SubmissionRejected)
    assert {e.field for e in rejection.errors} == {"applicant.phone", "district"}
    assert all(e.message for e in rejection.errors)


async def test_a_reused_submission_id_with_another_body_is_rejected(
    intake: Intake, store: FakeStore, bus: FakeBus
) -> None:
    await intake.handle_submission(
        ApplicationSubmitted.model_validate({**body(), "submission_id": "s-3"})
    )
    await intake.handle_submission(
        ApplicationSubmitted.model_validate(
            {**body(subject="Başka bir konu"), "submission_id": "s-3"}
        )
    )
    assert len(store.apps) == 1
    [rejection] = bus.on(topics.REJECTIONS)
    assert isinstance(rejection, SubmissionRejected)
    assert rejection.errors[0].code == "conflict"
