"""Tracking's use cases with fakes at the edges: the store and the bus."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.errors import KafkaConnectionError

from services.common import topics
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationResponse,
    ApplicationRouted,
    ApplicationType,
    Channel,
    Envelope,
    Outcome,
    RoutingOutcome,
    Status,
    StatusChanged,
)
from services.common.messaging import Outgoing, PermanentError
from services.common.outbox import Pending as Written
from services.common.outbox import decode, encode
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.tracking import domain
from services.tracking.handlers import MAX_MISSES, NotFound, TooManyAttempts, Tracking
from services.tracking.store import MISS_WINDOW, DueField, Guess, InstitutionPage, Saved, Write

APP = "app-42"
NUMBER = "20-2026-0000042-7"
NUMBER_KEY = "20202600000427"
PHONE = "+905551234567"
T0 = datetime(2026, 3, 16, 7, 0, tzinfo=UTC)


class FakeStore:
    """Same contract as ApplicationStore: conditional writes by version."""

    outbox: Bus  # set by the `world` fixture: the bus delivers what the outbox holds

    def __init__(self) -> None:
        self.apps: dict[str, domain.Application] = {}
        # Per number: its guess window's start and the places taken in it.
        self.guesses: dict[str, Guess] = {}
        self.writes = 0

    async def get(self, application_id: str) -> domain.Application | None:
        return self.apps.get(application_id)

    async def by_number(self, number_key: str) -> domain.Application | None:
        for app in self.apps.values():
            if app.application_number.replace("-", "") == number_key:
                return app
        return None

    async def get_many(self, ids: Sequence[str]) -> dict[str, domain.Application]:
        return {i: self.apps[i] for i in ids if i in self.apps}

    async def save(self, write: Write) -> tuple[bool, Written | None]:
        state = write.state
        current = self.apps.get(state.application_id)
        if (current.version if current else 0) != write.expected_version:
            return False, None
        self.writes += 1
        outbox = (*state.outbox, *(encode(m) for m in write.messages))
        self.apps[state.application_id] = replace(
            state, version=write.expected_version + 1, outbox=outbox
        )
        messages = (*(decode(e) for e in state.outbox), *write.messages)
        pending = Written(state.application_id, "t", messages)
        return True, pending if outbox else None

    async def save_many(self, writes: Sequence[Write]) -> Saved:
        pending, conflicts = [], set()
        for write in writes:
            saved, written = await self.save(write)
            if not saved:
                conflicts.add(write.state.application_id)
            elif written:
                pending.append(written)
        return Saved(pending, conflicts)

    async def claim_due(
        self, due: DueField, now: datetime, lease_seconds: float
    ) -> domain.Application | None:
        for app in self.apps.values():
            when = getattr(app, due)
            if when is not None and when <= now:
                return app
        return None

    def _matching(self, page: InstitutionPage) -> list[domain.Application]:
        return [
            app
            for app in self.apps.values()
            if page.institution_code in (None, app.institution_code)
            and page.status in (None, app.status)
            and page.overdue in (None, app.overdue)
            and (not page.stages or app.stage in page.stages)
            and page.province_code in (None, app.province_code)
        ]

    async def list_for_institution(self, page: InstitutionPage) -> list[domain.Application]:
        found = self._matching(page)
        return sorted(found, key=lambda app: app.application_number)[: page.limit]

    async def count_for_institution(self, page: InstitutionPage) -> int:
        return len(self._matching(page))

    async def reserve_guess(self, number_key: str, now: datetime) -> Guess:
        window = self.guesses.get(number_key)
        stamp = now.timestamp()
        if window is None or window.window <= stamp - MISS_WINDOW.total_seconds():
            window = Guess(0, stamp)
        self.guesses[number_key] = Guess(window.count + 1, window.window)
        return self.guesses[number_key]

    async def release_guess(self, number_key: str, guess: Guess) -> None:
        window = self.guesses.get(number_key)
        if window is not None and window.window == guess.window and window.count > 0:
            self.guesses[number_key] = Guess(window.count - 1, window.window)


class Bus:
    """The publisher and the outbox's delivery: records what is published."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.sent: list[tuple[str, Envelope, str | None]] = []
        self.fail_next = 0

    async def send(self, topic: str, event: Envelope, key: str | None) -> None:
        await self.send_all([Outgoing.of(topic, event, key)])

    async def send_all(self, messages: Iterable[Outgoing]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise KafkaConnectionError("broker went away")
        for m in messages:
            event = m.event or StatusChanged.model_validate_json(m.value)
            self.sent.append((m.topic, event, m.key))

    async def deliver(
        self, written: Iterable[Written | None], *, clear_later: bool = False
    ) -> None:
        for w in [w for w in written if w is not None]:
            await self.send_all(w.messages)
            self.store.apps[w.document_id] = replace(self.store.apps[w.document_id], outbox=())

    def on(self, topic: str) -> list[Envelope]:
        return [event for t, event, _ in self.sent if t == topic]


@pytest.fixture
def cipher() -> PiiCipher:
    return PiiCipher(b"k" * 32)


@pytest.fixture
def world(cipher: PiiCipher) -> tuple[Tracking, FakeStore, Bus]:
    store = FakeStore()
    bus = store.outbox = Bus(store)
    tracking = Tracking(
        store,
        bus,
        cipher,
        Settings(public_tracking_url="https://takip.example/takip"),
        response_grace_seconds=0.2,
    )
    return tracking, store, bus


def received() -> ApplicationReceived:
    return ApplicationReceived(
        application_id=APP,
        application_number=NUMBER,
        channel=Channel.mobile,
        application_type=ApplicationType.istek,
        province_code=20,
        district="Pamukkale",
        subject="Park bakımı",
        text="Parktaki banklar kırık.",
        applicant=ApplicantContact(
            tckn_masked="12*******90", first_name="Mehmet", last_name="Demir", phone=PHONE
        ),
        received_at=T0,
    )


def routed(institution: str = "PAMUKKALE-BLD") -> ApplicationRouted:
    return ApplicationRouted(
        application_id=APP,
        application_number=NUMBER,
        category_code="PARK",
        heading_code="CEVRE",
        institution_code=institution,
        institution_kind="BELEDIYE",
        institution_name="Pamukkale Belediyesi",
        routed_by="auto",
        deadline_at=datetime(2026, 3, 26, 20, 59, 59, tzinfo=UTC),
    )


def response(institution: str = "PAMUKKALE-BLD") -> ApplicationResponse:
    return ApplicationResponse(
        application_id=APP, institution_code=institution, outcome=Outcome.olumlu, text="Onarıldı."
    )


async def test_the_phone_is_kept_sealed_and_only_a_salted_index_of_its_last_digits(world, cipher):
    tracking, store, _ = world
    await tracking.on_received_batch([received()])
    app = store.apps[APP]
    assert app.phone_enc is not None and PHONE not in app.phone_enc
    assert cipher.decrypt(app.phone_enc) == PHONE
    assert app.phone_index not in (None, "4567") and "4567" not in app.phone_index
    assert app.phone_index == tracking.phone_index(APP, "4567")
    assert tracking.phone_index("other-app", "4567") != app.phone_index


async def test_one_write_per_event(world):
    tracking, store, _ = world
    await tracking.on_received_batch([received()])
    await tracking.on_routed_batch([RoutingOutcome(routed())])
    assert store.writes == 2


async def test_a_crash_between_write_and_publish_leaves_the_events_in_the_outbox(world):
    tracking, store, bus = world
    await tracking.on_received_batch([received()])
    event = RoutingOutcome(routed())
    bus.fail_next = 1
    with pytest.raises(KafkaConnectionError):
        await tracking.on_routed_batch([event])
    assert store.apps[APP].status is Status.routed  # written with its events, not announced
    assert bus.on(topics.STATUS)[-1].status is Status.received
    await tracking.on_routed_batch([event])  # Kafka delivers it again: nothing new is decided
    assert bus.on(topics.STATUS)[-1].status is Status.received
    (entry,) = store.apps[APP].outbox
    await bus.deliver([Written(APP, "t", (decode(entry),))])  # what the relay does
    announced = bus.on(topics.STATUS)[-1]
    assert announced.status is Status.routed
    assert announced.event_id == domain.transition_event_id(APP, Status.routed, 0)


async def test_a_batch_is_folded_per_application_and_written_once(world):
    tracking, store, bus = world
    await tracking.on_received_batch([received()])
    await tracking.on_routed_batch([RoutingOutcome(routed()), RoutingOutcome(routed())])
    assert store.writes == 2
    assert [e.status for e in bus.on(topics.STATUS)] == [Status.received, Status.routed]


async def test_the_answer_goes_to_the_applicants_phone(world):
    tracking, _, bus = world
    await tracking.on_received_batch([received()])
    await tracking.on_routed_batch([RoutingOutcome(routed())])
    await tracking.on_response(response())
    (sms,) = bus.on(topics.NOTIFICATION_REQUESTS)
    assert sms.to == PHONE and sms.idempotency_key == f"{APP}:answered:sms"
    assert sms.params["outcome_label"] == "olumlu"
    assert sms.params["tracking_url"] == "https://takip.example/takip"


async def test_a_response_from_another_institution_is_dead_lettered(world):
    tracking, store, _ = world
    await tracking.on_received_batch([received()])
    await tracking.on_routed_batch([RoutingOutcome(routed())])
    with pytest.raises(PermanentError, match="assigned to PAMUKKALE-BLD, not to MEB"):
        await tracking.on_response(response("MEB"))
    assert store.apps[APP].status is Status.routed


async def test_a_response_for_an_unrouted_application_waits_then_gives_up(world):
    tracking, _, _ = world
    await tracking.on_received_batch([received()])
    with pytest.raises(PermanentError, match="not been routed"):
        await tracking.on_response(response())


async def test_the_look_up_needs_the_right_digits_and_locks_after_repeated_misses(world):
    tracking, _, _ = world
    await tracking.on_received_batch([received()])
    assert (await tracking.track(NUMBER_KEY, "4567", T0)).application_id == APP
    with pytest.raises(NotFound):
        await tracking.track(NUMBER_KEY, "0000", T0)
    for _ in range(MAX_MISSES - 1):
        with pytest.raises(NotFound):
            await tracking.track(NUMBER_KEY, "1111", T0)
    with pytest.raises(TooManyAttempts):
        await tracking.track(NUMBER_KEY, "4567", T0)
    # The lock wears off.
    later = T0 + MISS_WINDOW + timedelta(seconds=1)
    assert (await tracking.track(NUMBER_KEY, "4567", later)).application_id == APP


async def test_right_guesses_give_their_place_back_so_a_citizen_never_locks_their_own(world):
    tracking, _, _ = world
    await tracking.on_received_batch([received()])
    for _ in range(3 * MAX_MISSES):
        assert (await tracking.track(NUMBER_KEY, "4567", T0)).application_id == APP
    for _ in range(MAX_MISSES):
        with pytest.raises(NotFound):
            await tracking.track(NUMBER_KEY, "0000", T0)
    with pytest.raises(TooManyAttempts):
        await tracking.track(NUMBER_KEY, "4567", T0)


async def test_the_applicants_identity_is_kept_sealed_with_the_consent(world):
    tracking, store, _ = world
    consented = received().model_copy(
        update={"application_type": ApplicationType.sikayet, "identity_consent": True}
    )
    await tracking.on_received_batch([consented])
    app = store.apps[APP]
    assert app.identity_consent is True and app.identity_enc is not None
    assert "Mehmet" not in app.identity_enc and "Demir" not in app.identity_enc
    identity = tracking.identity_of(app)
    assert identity is not None
    assert (identity.first_name, identity.last_name) == ("Mehmet", "Demir")
    assert (identity.tckn_masked, identity.phone, identity.email) == ("12*******90", PHONE, None)
    assert tracking.identity_of(replace(app, identity_enc=None)) is None


async def test_unknown_numbers_lock_the_same_way_so_nothing_tells_them_apart(world):
    tracking, _, _ = world
    unknown = "20202600009999"
    for _ in range(MAX_MISSES):
        with pytest.raises(NotFound):
            await tracking.track(unknown, "4567", T0)
    with pytest.raises(TooManyAttempts):
        await tracking.track(unknown, "4567", T0)


async def test_the_watcher_flags_a_missed_deadline_and_publishes_it(world):
    tracking, store, bus = world
    await tracking.on_received_batch([received()])
    await tracking.on_routed_batch([RoutingOutcome(routed())])
    deadline = store.apps[APP].deadline_at
    assert deadline is not None
    assert await tracking.check_deadlines(deadline + timedelta(minutes=1)) == 1
    assert store.apps[APP].overdue
    missed, escalated = bus.on(topics.DEADLINES)
    assert missed.kind == "missed" and missed.institution_code == "PAMUKKALE-BLD"
    assert escalated.kind == "escalated"
    assert bus.on(topics.STATUS)[-1].overdue
    assert await tracking.check_deadlines(deadline + timedelta(minutes=2)) == 0


async def test_returning_refuses_another_institution(world):
    tracking, _, _ = world
    await tracking.on_received_batch([received()])
    await tracking.on_routed_batch([RoutingOutcome(routed())])
    with pytest.raises(NotFound):
        await tracking.return_application("MEB", APP, reason="bizim değil", now=T0)
    back = await tracking.return_application("PAMUKKALE-BLD", APP, reason="bizim değil", now=T0)
    assert back.status is Status.returned
