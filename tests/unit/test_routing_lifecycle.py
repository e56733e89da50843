"""Routing's lifecycle as pure decisions: arrival, an officer's routing, an institution's return."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common import business_days
from services.common.business_days import answer_deadline
from services.common.events import Status
from services.routing import lifecycle
from services.routing.domain import Pending, Suggestion
from services.routing.lifecycle import PENDING, ROUTED, AlreadyRouted, ApplicationRecord
from services.routing.taxonomy import default_registry
from tests.unit.test_routing_handlers import received, returned

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DESKI_WATER = default_registry().for_province(20).decide("ALT-001", "Merkezefendi")


def suggestion(category_code: str) -> Suggestion:
    return Suggestion(
        category_code=category_code,
        category_name=category_code,
        heading_code="H",
        institution_code="I",
        institution_kind="K",
        institution_name="N",
        score=1.0,
    )


def routed_file() -> lifecycle.RoutingFile:
    return lifecycle.arrive(ApplicationRecord.from_event(received()), DESKI_WATER, NOW)


def test_an_arrival_is_routed_when_the_taxonomy_decided_and_waits_otherwise() -> None:
    app = ApplicationRecord.from_event(received())

    routed = lifecycle.arrive(app, DESKI_WATER, NOW)
    waiting = lifecycle.arrive(app, Pending("Kategori yok.", [suggestion("ALT-002")]), NOW)

    assert routed.state == ROUTED and routed.routing is not None
    assert (routed.routing.routed_by, routed.routing.officer) == ("auto", None)
    assert routed.routing.deadline_at == answer_deadline(app.received_at)  # from receipt
    assert waiting.state == PENDING and waiting.routing is None and waiting.waiting is not None
    assert (waiting.waiting.reason, waiting.waiting.since) == ("Kategori yok.", NOW)


def test_an_officer_routes_only_a_waiting_application() -> None:
    app = ApplicationRecord.from_event(received(category=None))
    waiting = lifecycle.arrive(app, Pending("Kategori yok."), NOW)

    routed = lifecycle.route(waiting, DESKI_WATER, "memur.ali", NOW + timedelta(hours=1))

    assert routed.state == ROUTED and routed.round == waiting.round
    assert routed.routing is not None and routed.routing.officer == "memur.ali"
    assert routed.routing.routed_by == "officer"
    with pytest.raises(AlreadyRouted):
        lifecycle.route(routed, DESKI_WATER, "memur.veli", NOW)


def test_a_return_starts_the_next_round_without_the_category_it_had() -> None:
    file = routed_file()
    back = returned(received(), NOW + timedelta(minutes=5))
    candidates = [suggestion(c) for c in ("ALT-001", "ALT-002", "ALT-003")]

    after = lifecycle.give_back(file, back, candidates)

    assert after is not None and (after.state, after.round) == (PENDING, 1)
    assert after.waiting is not None and after.waiting.since == back.at
    assert [s.category_code for s in after.waiting.suggestions] == ["ALT-002", "ALT-003"]
    assert "Gerekçe: Konu belediyenin görev alanında." in after.waiting.reason
    assert [(r.institution_code, r.category_code) for r in after.returns] == [("DESKI", "ALT-001")]


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("not a return", {"status": Status.opened}),
        ("older than the decision", {"at": NOW - timedelta(minutes=1)}),
        ("from an institution that does not hold it", {"institution_code": "PAU"}),
    ],
)
def test_a_return_that_changes_nothing_is_no_step(why: str, change: dict[str, object]) -> None:
    file = routed_file()
    back = returned(received(), NOW + timedelta(minutes=5)).model_copy(update=change)

    assert lifecycle.give_back(file, back, []) is None, why


def test_a_redelivered_return_finds_the_application_waiting_and_is_no_step() -> None:
    file = routed_file()
    back = returned(received(), NOW + timedelta(minutes=5))
    after = lifecycle.give_back(file, back, [])
    assert after is not None

    assert lifecycle.give_back(after, back, []) is None


def test_the_queue_deadline_follows_the_service_level_and_the_leave_days(monkeypatch) -> None:
    app = ApplicationRecord.from_event(received()).model_copy(
        update={"application_type": "bilgi_edinme"}
    )
    routed = lifecycle.arrive(app, DESKI_WATER, NOW)
    assert routed.routing.deadline_at == answer_deadline(app.received_at, 15)  # Law 4982
    leave = business_days.Calendar(frozenset({business_days.add_business_days(NOW.date(), 2)}))
    rules = business_days.DeadlineRules(calendar=leave, by_category={"ALT-001": 3})
    monkeypatch.setattr(lifecycle, "deadline_rules", lambda: rules)
    sikayet = ApplicationRecord.from_event(received())
    routed = lifecycle.arrive(sikayet, DESKI_WATER, NOW)
    # ALT-001's own level (3 days) wins over the type's, and the leave day counts.
    assert routed.routing.deadline_at == leave.answer_deadline(sikayet.received_at, 3)
    assert routed.routing.deadline_at > answer_deadline(sikayet.received_at, 3)
