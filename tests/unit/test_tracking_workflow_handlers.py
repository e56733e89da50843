"""The institution workflow's use cases with fakes at the edges (store, bus, directory): what is
written, in which order, and what is published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common import topics
from services.common.events import (
    ApplicationResponse,
    CategoryBrief,
    HeadingBrief,
    InstitutionEntry,
    NotificationRequest,
    Outcome,
    RoutingOutcome,
    Status,
    StatusChanged,
    TaxonomyPublished,
)
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.tracking import domain
from services.tracking.handlers import DirectoryUnavailable, InvalidTarget, Tracking
from services.tracking.store import InstitutionPage
from services.tracking.workflow import Stage
from tests.unit.test_tracking_handlers import APP, Bus, FakeStore, received, routed

T0 = datetime(2026, 3, 16, 7, 0, tzinfo=UTC)
HOLDER = "PAMUKKALE-BLD"


class FakeDirectory:
    def __init__(self, *taxonomies: TaxonomyPublished) -> None:
        self.taxonomies = {t.province_code: t for t in taxonomies}

    def province(self, province_code: int) -> TaxonomyPublished | None:
        return self.taxonomies.get(province_code)

    def provinces(self) -> list[TaxonomyPublished]:
        return list(self.taxonomies.values())


DENIZLI = TaxonomyPublished(
    province_code=20,
    province="Denizli",
    version="1",
    districts=["Pamukkale", "Merkezefendi"],
    category_codes=["ALT-001"],
    headings=[
        HeadingBrief(
            code="ALT", name="Altyapı", categories=[CategoryBrief(code="ALT-001", name="Su")]
        )
    ],
    institutions=[
        InstitutionEntry(code=HOLDER, name="Pamukkale Belediyesi", kind="BELEDIYE"),
        InstitutionEntry(code="DESKI", name="DESKİ", kind="SU_IDARESI"),
    ],
)


def world(
    *, directory: FakeDirectory | None = None, approval_types: str = ""
) -> tuple[Tracking, FakeStore, Bus]:
    store = FakeStore()
    bus = store.outbox = Bus(store)
    settings = Settings(
        public_tracking_url="https://takip.example/takip", answer_approval_types=approval_types
    )
    tracking = Tracking(
        store,
        bus,
        PiiCipher(b"k" * 32),
        settings,
        response_grace_seconds=0.2,
        directory=directory or FakeDirectory(DENIZLI),
    )
    return tracking, store, bus


def routed_to(application_id: str, code: str, at: datetime) -> RoutingOutcome:
    return RoutingOutcome(
        routed(code).model_copy(update={"application_id": application_id, "occurred_at": at})
    )


async def a_routed_application(tracking: Tracking) -> None:
    await tracking.on_received_batch([received()])
    await tracking.on_routed_batch([routed_to(APP, HOLDER, T0 - timedelta(hours=1))])


async def test_reading_the_list_writes_nothing():
    tracking, store, bus = world()
    await a_routed_application(tracking)
    writes, sent = store.writes, len(bus.sent)
    apps, total = await tracking.institution_applications(InstitutionPage(HOLDER))
    await tracking.institution_application(HOLDER, APP)
    assert [a.status for a in apps] == [Status.routed] and total == 1
    assert (store.writes, len(bus.sent)) == (writes, sent)


async def test_an_answer_under_approval_is_published_only_when_a_supervisor_approves():
    tracking, store, bus = world(approval_types="istek")
    await a_routed_application(tracking)
    reached = await tracking.submit_response(
        HOLDER, APP, outcome=Outcome.olumlu, text="Banklar yenilendi.", responded_by="ali"
    )
    assert reached is Stage.awaiting_approval
    assert bus.on(topics.RESPONSES) == []
    assert store.apps[APP].pending_draft is not None
    queue, total = await tracking.approval_queue(InstitutionPage(None, province_code=20))
    assert [a.application_id for a in queue] == [APP] and total == 1
    with pytest.raises(domain.WrongStage):
        await tracking.submit_response(
            HOLDER, APP, outcome=Outcome.olumsuz, text="Başka bir cevap.", responded_by="ali"
        )

    await tracking.approve(APP, by="denetci", province=20, now=T0 + timedelta(days=1))
    (published,) = bus.on(topics.RESPONSES)
    assert isinstance(published, ApplicationResponse) and published.approved_by == "denetci"
    sms = [e for e in bus.on(topics.NOTIFICATION_REQUESTS) if isinstance(e, NotificationRequest)]
    assert [s.template for s in sms] == ["application_answered"]
    assert store.apps[APP].status is Status.answered
    # The published answer coming back on the responses topic changes nothing.
    writes = store.writes
    await tracking.on_response(published)
    assert store.writes == writes


async def test_approval_in_another_province_is_not_found():
    tracking, _, _ = world(approval_types="istek")
    await a_routed_application(tracking)
    await tracking.submit_response(
        HOLDER, APP, outcome=Outcome.olumlu, text="Banklar yenilendi.", responded_by="ali"
    )
    with pytest.raises(Exception, match=APP):
        await tracking.approve(APP, by="denetci", province=35, now=T0)


async def test_a_forward_is_checked_against_the_provinces_institutions():
    tracking, store, bus = world()
    await a_routed_application(tracking)
    with pytest.raises(InvalidTarget) as unknown:
        await tracking.forward(HOLDER, APP, target="YOK", reason="Deneme.", by="ali", now=T0)
    assert unknown.value.field == "institution_code"
    with pytest.raises(InvalidTarget):
        await tracking.forward(HOLDER, APP, target=HOLDER, reason="Deneme.", by="ali", now=T0)
    moved = await tracking.forward(HOLDER, APP, target="deski", reason="Su.", by="ali", now=T0)
    assert moved.stage is Stage.forwarded
    returned = [e for e in bus.on(topics.STATUS) if isinstance(e, StatusChanged)][-1]
    assert (returned.status, returned.forward_to) == (Status.returned, "DESKI")
    assert store.apps[APP].timeline[-1].detail == "DESKİ"


async def test_nothing_is_forwarded_while_the_directory_has_not_arrived():
    tracking, _, _ = world(directory=FakeDirectory())
    await a_routed_application(tracking)
    with pytest.raises(DirectoryUnavailable):
        await tracking.forward(HOLDER, APP, target="DESKI", reason="Su.", by="ali", now=T0)


async def test_a_split_stores_its_parts_before_the_parent_announces_them():
    tracking, store, bus = world()
    await a_routed_application(tracking)
    parts = [
        domain.SplitPart("Banklar", institution_code=HOLDER),
        domain.SplitPart("Su", category_code="ALT-001"),
    ]
    with pytest.raises(InvalidTarget) as too_few:
        await tracking.split(HOLDER, APP, parts=parts[:1], reason=None, by="ali", now=T0)
    assert too_few.value.field == "parts"
    bad = [parts[0], domain.SplitPart("Yol", category_code="YOK-001")]
    with pytest.raises(InvalidTarget) as unknown:
        await tracking.split(HOLDER, APP, parts=bad, reason=None, by="ali", now=T0)
    assert unknown.value.field == "parts.1.category_code"
    assert set(store.apps) == {APP}  # a refused split leaves no parts behind

    split = await tracking.split(HOLDER, APP, parts=parts, reason=None, by="ali", now=T0)
    assert split.stage is Stage.split_up
    assert {f"{APP}.1", f"{APP}.2"} <= set(store.apps)
    announced = [e for e in bus.on(topics.STATUS) if isinstance(e, StatusChanged)][-1]
    assert announced.parts is not None and len(announced.parts) == 2
    # Retried: the parts are there, the parent is split already: nothing new.
    sent = len(bus.sent)
    await tracking.split(HOLDER, APP, parts=parts, reason=None, by="ali", now=T0)
    assert len(bus.sent) == sent


async def test_an_answered_part_settles_its_parent_which_then_answers_the_citizen():
    tracking, store, bus = world()
    await a_routed_application(tracking)
    parts = [
        domain.SplitPart("Banklar", institution_code=HOLDER),
        domain.SplitPart("Su", institution_code="DESKI"),
    ]
    await tracking.split(HOLDER, APP, parts=parts, reason=None, by="ali", now=T0)
    for n, (code, outcome) in enumerate(
        [(HOLDER, Outcome.olumlu), ("DESKI", Outcome.olumlu)], start=1
    ):
        part_id = f"{APP}.{n}"
        await tracking.on_routed_batch([routed_to(part_id, code, T0 + timedelta(minutes=n))])
        await tracking.on_response(
            ApplicationResponse(
                application_id=part_id, institution_code=code, outcome=outcome, text="Yapıldı."
            )
        )
    parent = store.apps[APP]
    assert (parent.status, parent.outcome) == (Status.answered, Outcome.olumlu)
    sms = [e for e in bus.on(topics.NOTIFICATION_REQUESTS) if isinstance(e, NotificationRequest)]
    assert [s.idempotency_key for s in sms] == [f"{APP}:answered:sms"]
