"""Routing's use cases with fakes at the edges: an in-memory store and a recording publisher."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common import topics
from services.common.auth import Principal, Role
from services.common.business_days import answer_deadline
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationType,
    Channel,
    InstitutionContact,
    Status,
    StatusChanged,
)
from services.common.messaging import Outgoing, PermanentError
from services.common.outbox import Pending as Written
from services.routing.domain import UnknownCategory
from services.routing.handlers import (
    NotFound,
    OutsideProvince,
    Routing,
    email_key,
    event_id,
)
from services.routing.lifecycle import (
    PENDING,
    ROUTED,
    AlreadyRouted,
    PendingApplication,
    RoutingFile,
)
from services.routing.store import QueuePage
from services.routing.taxonomy import default_registry

PHONE = "+905321234567"


class FakeStore:
    """The RoutingStore contract, in memory; each write keeps its events in an outbox."""

    def __init__(self) -> None:
        self.files: dict[str, RoutingFile] = {}
        self.outboxes: dict[str, list[Outgoing]] = {}
        self.fail_next_add = False

    async def get(self, application_id: str) -> RoutingFile | None:
        file = self.files.get(application_id)
        return file.model_copy(deep=True) if file else None

    async def seen(self, application_ids: Sequence[str]) -> set[str]:
        return {a for a in application_ids if a in self.files}

    def _stamp(self, application_id: str, messages: Sequence[Outgoing]) -> Written | None:
        outbox = self.outboxes.setdefault(application_id, [])
        outbox.extend(messages)
        return Written(application_id, "t", tuple(outbox)) if outbox else None

    async def add(self, decided: Sequence[tuple[RoutingFile, Sequence[Outgoing]]]) -> list[Written]:
        if self.fail_next_add:
            self.fail_next_add = False
            raise ConnectionError("database went away")
        written = []
        for file, messages in decided:
            if file.application_id in self.files:
                continue
            self.files[file.application_id] = file.model_copy(deep=True)
            written.append(self._stamp(file.application_id, messages))
        return [w for w in written if w is not None]

    async def replace(
        self, before: RoutingFile, after: RoutingFile, *, messages: Sequence[Outgoing]
    ) -> tuple[bool, Written | None]:
        now = self.files.get(before.application_id)
        if not now or (now.state, now.round) != (before.state, before.round):
            return False, None
        self.files[before.application_id] = after.model_copy(deep=True)
        return True, self._stamp(before.application_id, messages)

    async def pending(self, page: QueuePage) -> tuple[list[PendingApplication], int]:
        files = [
            f
            for f in self.files.values()
            if f.state == PENDING
            and page.province_code in (None, f.application.province_code)
            and page.district in (None, f.application.district)
            and page.application_number in (None, f.application.application_number)
        ]
        files.sort(key=lambda f: f.waiting.since if f.waiting else f.application.received_at)
        end = page.offset + page.limit
        return [queue_line(f) for f in files[page.offset : end]], len(files)


def queue_line(file: RoutingFile) -> PendingApplication:
    app, waiting = file.application, file.waiting
    assert waiting is not None
    return PendingApplication(
        **app.model_dump(include=set(PendingApplication.model_fields)),
        excerpt=app.text,
        reason=waiting.reason,
        suggestions=waiting.suggestions,
        waiting_since=waiting.since,
        returned_by=file.returns[-1].institution_code if file.returns else None,
    )


class Bus:
    """Delivers outboxes: records what is published and clears what it published."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.sent: list[tuple[str, Any, str | None]] = []
        self.written: list[Written] = []
        self.fail = False

    async def __call__(self, written: Iterable[Written | None]) -> None:
        batch = [w for w in written if w is not None]
        if self.fail:
            raise ConnectionError("broker went away")
        for w in batch:
            self.sent.extend((m.topic, m.event, m.key) for m in w.messages)
            self.written.append(w)
            self.store.outboxes[w.document_id] = []

    def on(self, topic: str) -> list[Any]:  # the events, each of its own model
        return [e for t, e, _ in self.sent if t == topic]


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def bus(store: FakeStore) -> Bus:
    return Bus(store)


@pytest.fixture
def routing(store: FakeStore, bus: Bus) -> Routing:
    return Routing(store, bus, default_registry())


def received(category: str | None = "ALT-001", district: str = "Merkezefendi", **extra):
    return ApplicationReceived(
        application_id=extra.pop("application_id", str(uuid.uuid4())),
        application_number="20-2026-0000123-4",
        channel=Channel.web,
        application_type=extra.pop("application_type", ApplicationType.sikayet),
        category_code=category,
        province_code=extra.pop("province_code", 20),
        district=district,
        subject="Su kesintisi",
        text="Mahallemizde iki gündür sular akmıyor.",
        applicant=ApplicantContact(
            tckn_masked="12*******90", first_name="Ayşe", last_name="Yıldırım", phone=PHONE
        ),
        received_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        **extra,
    )


officer = Principal(subject="memur.ali", role=Role.officer, province=20)


class TestArrival:
    async def test_known_category_is_announced_three_ways_and_stored(
        self, routing: Routing, store: FakeStore, bus: Bus
    ):
        event = received()
        await routing.applications_received([event])

        app_id = event.application_id
        assert [(t, k) for t, _, k in bus.sent] == [
            (topics.ROUTED, app_id),
            ("acikkapi.institution.DESKI", app_id),
            (topics.NOTIFICATION_REQUESTS, f"{app_id}:routed:DESKI:email"),
        ]
        routed, assignment, email = (e for _, e, _ in bus.sent)
        deadline = answer_deadline(event.received_at)
        shown = {"institution_code", "routed_by", "deadline_at", "category_name", "heading_name"}
        assert routed.model_dump(include=shown) == {
            "institution_code": "DESKI",
            "routed_by": "auto",
            "deadline_at": deadline,
            "category_name": "İçme suyu kesintisi",
            "heading_name": "Altyapı ve Su",
        }
        # A şikayet without the applicant's consent: the institution does not see who sent it.
        assert assignment.applicant is None and assignment.identity_shielded
        assert assignment.deadline_at == deadline and assignment.category_code == "ALT-001"
        assert email.to == "deski@acikkapi.local"
        assert email.template == "institution_assignment"
        assert email.params == {
            "application_number": event.application_number,
            "institution_name": "Denizli Su ve Kanalizasyon İdaresi (DESKİ)",
            "category_name": "İçme suyu kesintisi",
            "subject": "Su kesintisi",
            "deadline_at": deadline.isoformat(),
            "district": "Merkezefendi",
        }
        file = store.files[app_id]
        assert file.state == ROUTED and file.routing and file.routing.institution_code == "DESKI"

    async def test_redelivery_announces_nothing_new(self, routing: Routing, bus: Bus):
        event = received()
        await routing.applications_received([event])
        await routing.applications_received([event])
        assert len(bus.on(f"{topics.INSTITUTION_PREFIX}DESKI")) == 1

    async def test_a_failed_write_announces_nothing_and_the_retry_announces_once(
        self, routing: Routing, store: FakeStore, bus: Bus
    ):
        event = received()
        store.fail_next_add = True
        with pytest.raises(ConnectionError):
            await routing.applications_received([event])
        assert bus.sent == []
        await routing.applications_received([event])
        (assignment,) = bus.on(f"{topics.INSTITUTION_PREFIX}DESKI")
        assert assignment.event_id == event_id(event.application_id, 0, "assignment")
        assert store.files[event.application_id].state == ROUTED

    async def test_a_batch_is_decided_once_per_application(
        self, routing: Routing, store: FakeStore, bus: Bus
    ):
        first, second = received(), received(category=None)
        await routing.applications_received([first, second, first])
        assert len(bus.on(f"{topics.INSTITUTION_PREFIX}DESKI")) == 1
        assert len(bus.on(topics.ROUTED)) == 2
        assert store.files[second.application_id].state == PENDING

    async def test_events_stay_in_the_outbox_when_kafka_is_away(
        self, routing: Routing, store: FakeStore, bus: Bus
    ):
        event = received()
        bus.fail = True
        with pytest.raises(ConnectionError):
            await routing.applications_received([event])
        assert store.files[event.application_id].state == ROUTED
        assert len(store.outboxes[event.application_id]) == 3  # for the relay

    async def test_without_category_it_waits_for_an_officer(
        self, routing: Routing, store: FakeStore, bus: Bus
    ):
        event = received(category=None)
        await routing.applications_received([event])
        (waiting,) = bus.on(topics.ROUTED)
        assert waiting.event_type == "application.awaiting_routing"
        assert "kategori belirtilmemiş" in waiting.reason
        assert not bus.on(f"{topics.INSTITUTION_PREFIX}DESKI")
        items, total = await routing.pending(officer, 50, 0)
        assert total == 1
        assert items[0].suggestions[0].category_code == "ALT-001"
        assert items[0].excerpt == event.text

    async def test_naive_receipt_time_can_never_be_handled(self, routing: Routing):
        event = received()
        event.received_at = event.received_at.replace(tzinfo=None)
        with pytest.raises(PermanentError):
            await routing.applications_received([event])


class TestComplainantShield:
    """What the institution's topic says of the applicant, by type and consent."""

    @pytest.mark.parametrize(
        ("kind", "consent", "shown"),
        [
            (ApplicationType.sikayet, False, False),
            (ApplicationType.ihbar, False, False),
            (ApplicationType.sikayet, True, True),
            (ApplicationType.ihbar, True, True),
            (ApplicationType.istek, False, True),
            (ApplicationType.bilgi_edinme, False, True),
        ],
    )
    async def test_the_applicant_reaches_the_institution_only_when_allowed(
        self, routing: Routing, bus: Bus, kind: ApplicationType, consent: bool, shown: bool
    ):
        event = received(application_type=kind, identity_consent=consent)
        await routing.applications_received([event])
        (assignment,) = bus.on(f"{topics.INSTITUTION_PREFIX}DESKI")
        assert assignment.identity_shielded is not shown
        if shown:
            assert assignment.applicant == InstitutionContact(
                tckn_masked="12*******90", first_name="Ayşe", last_name="Yıldırım", phone=PHONE
            )
        else:
            assert assignment.applicant is None

    async def test_the_institution_reads_the_applicant_in_clear_without_the_key(
        self, routing: Routing, bus: Bus
    ):
        event = received(identity_consent=True)
        await routing.applications_received([event])
        (message,) = [m for m in _outgoing(bus) if m.topic.startswith(topics.INSTITUTION_PREFIX)]
        body = json.loads(message.value)
        assert body["applicant"]["first_name"] == "Ayşe" and body["applicant"]["phone"] == PHONE

    async def test_a_shielded_assignment_carries_no_trace_of_the_applicant(
        self, routing: Routing, bus: Bus
    ):
        await routing.applications_received([received()])
        (message,) = [m for m in _outgoing(bus) if m.topic.startswith(topics.INSTITUTION_PREFIX)]
        for trace in (b"Ay\\u015fe", "Ayşe".encode(), b"Y\\u0131ld", b"5321234567", b"12*"):
            assert trace not in message.value
        assert json.loads(message.value)["identity_shielded"] is True

    async def test_the_consent_is_kept_for_a_later_routing(
        self, routing: Routing, store: FakeStore, bus: Bus
    ):
        event = received(category=None, identity_consent=True)
        await routing.applications_received([event])
        assert store.files[event.application_id].application.identity_consent
        await routing.route_by_officer(event.application_id, "ALT-001", officer)
        (assignment,) = bus.on(f"{topics.INSTITUTION_PREFIX}DESKI")
        assert assignment.applicant is not None and not assignment.identity_shielded


def _outgoing(bus: Bus) -> list[Outgoing]:
    return [m for outbox in bus.written for m in outbox.messages]


class TestOfficer:
    async def test_routes_a_waiting_application_like_the_automatic_path(
        self, routing: Routing, bus: Bus
    ):
        event = received(category=None, district="Pamukkale", identity_consent=True)
        await routing.applications_received([event])
        record = await routing.route_by_officer(event.application_id, "NUF-012", officer)
        assert record.institution_code == "PAMUKKALE-KYM"
        assert (record.routed_by, record.officer) == ("officer", "memur.ali")
        (assignment,) = bus.on(f"{topics.INSTITUTION_PREFIX}PAMUKKALE-KYM")
        assert assignment.category_name == "Muhtarlık işleri"
        assert assignment.applicant.phone == PHONE  # restored from the sealed copy
        routed = [e for e in bus.on(topics.ROUTED) if e.event_type == "application.routed"]
        assert routed[0].officer == "memur.ali"
        assert (await routing.pending(officer, 50, 0))[1] == 0

    async def test_refusals(self, routing: Routing):
        event = received(category=None)
        await routing.applications_received([event])
        with pytest.raises(NotFound):
            await routing.route_by_officer("nope", "ALT-001", officer)
        with pytest.raises(UnknownCategory):
            await routing.route_by_officer(event.application_id, "XYZ-001", officer)
        elsewhere = Principal(subject="izmir", role=Role.officer, province=35)
        with pytest.raises(OutsideProvince):
            await routing.route_by_officer(event.application_id, "ALT-001", elsewhere)
        await routing.route_by_officer(event.application_id, "ALT-001", officer)
        with pytest.raises(AlreadyRouted):
            await routing.route_by_officer(event.application_id, "ALT-002", officer)

    async def test_a_decision_kafka_could_not_take_is_kept_for_the_relay(
        self, routing: Routing, store: FakeStore, bus: Bus
    ):
        event = received(category=None)
        await routing.applications_received([event])
        bus.fail = True
        record = await routing.route_by_officer(event.application_id, "ALT-001", officer)
        assert record.institution_code == "DESKI"
        assert store.files[event.application_id].state == ROUTED
        assert len(store.outboxes[event.application_id]) == 3
        with pytest.raises(AlreadyRouted):  # stored: no second decision, no 409 loop
            await routing.route_by_officer(event.application_id, "ALT-002", officer)

    async def test_queue_is_limited_to_the_officers_province(self, routing: Routing):
        await routing.applications_received([received(category=None)])
        await routing.applications_received(
            [received(category=None, province_code=35, district="Bornova")]
        )
        assert (await routing.pending(officer, 50, 0))[1] == 1
        everywhere = Principal(subject="admin", role=Role.admin, province=20)
        assert (await routing.pending(everywhere, 50, 0))[1] == 2
        assert (await routing.pending(everywhere, 50, 0, district="Bornova"))[1] == 1


def returned(event: ApplicationReceived, at: datetime, institution: str = "DESKI") -> StatusChanged:
    return StatusChanged(
        application_id=event.application_id,
        application_number=event.application_number,
        status=Status.returned,
        previous_status=Status.opened,
        at=at,
        institution_code=institution,
        reason="Konu belediyenin görev alanında.",
    )


class TestReturn:
    async def test_a_return_puts_it_back_in_the_queue_once(
        self, routing: Routing, store: FakeStore, bus: Bus
    ):
        event = received()
        await routing.applications_received([event])
        back = returned(event, datetime.now(UTC) + timedelta(seconds=1))
        await routing.statuses_changed([back])
        await routing.statuses_changed([back])  # a redelivery

        file = store.files[event.application_id]
        assert (file.state, file.round) == (PENDING, 1)
        waiting = [e for e in bus.on(topics.ROUTED) if e.event_type != "application.routed"]
        assert len(waiting) == 1 and "iade etti" in waiting[0].reason
        assert "Gerekçe: Konu belediyenin görev alanında." in waiting[0].reason
        (item,), _ = await routing.pending(officer, 50, 0)
        assert item.returned_by == "DESKI"
        assert "ALT-001" not in [s.category_code for s in item.suggestions]

        record = await routing.route_by_officer(event.application_id, "ALT-002", officer)
        assert record.institution_code == "DESKI"
        emails = [k for t, _, k in bus.sent if t == topics.NOTIFICATION_REQUESTS]
        assert emails == [
            email_key(event.application_id, "DESKI", 0),
            f"{event.application_id}:routed:DESKI:email:1",
        ]

    async def test_stale_or_foreign_returns_are_ignored(self, routing: Routing, store: FakeStore):
        event = received()
        await routing.applications_received([event])
        await routing.statuses_changed([returned(event, datetime(2020, 1, 1, tzinfo=UTC))])
        later = datetime.now(UTC) + timedelta(seconds=1)
        await routing.statuses_changed([returned(event, later, institution="DENIZLI-BB")])
        await routing.statuses_changed(
            [returned(event, later).model_copy(update={"status": Status.opened})]
        )
        assert store.files[event.application_id].state == ROUTED
        await routing.statuses_changed([returned(received(), later)])  # never seen here
