"""Routing's side of the institution workflow as pure decisions: an institution that gave an
application back is not suggested for it again; a forward routes it to the institution named;
a split routes each part on its own and marks the parent once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.events import PartSpec, Status, StatusChanged
from services.routing import lifecycle
from services.routing.domain import Suggestion
from services.routing.lifecycle import PENDING, ROUTED, ApplicationRecord
from services.routing.taxonomy import default_registry
from tests.unit.test_routing_handlers import received

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DENIZLI = default_registry().for_province(20)
WATER = DENIZLI.decide("ALT-001", "Merkezefendi")  # DESKİ
TOWN = "MERKEZEFENDI-BLD"


def suggestion(category_code: str, institution_code: str) -> Suggestion:
    return Suggestion(
        category_code=category_code,
        category_name=category_code,
        heading_code="H",
        institution_code=institution_code,
        institution_kind="K",
        institution_name=institution_code,
        score=1.0,
    )


def routed_file() -> lifecycle.RoutingFile:
    return lifecycle.arrive(ApplicationRecord.from_event(received()), WATER, NOW)


def given_back(
    file: lifecycle.RoutingFile, minutes: int, institution: str, **fields: Any
) -> StatusChanged:
    return StatusChanged(
        application_id=file.application_id,
        application_number=file.application.application_number,
        status=Status.returned,
        previous_status=Status.opened,
        at=NOW + timedelta(minutes=minutes),
        institution_code=institution,
        reason="Görev alanımız dışında.",
        **fields,
    )


def test_every_institution_that_gave_it_back_is_left_out_of_the_suggestions():
    file = routed_file()
    candidates = [
        suggestion("ALT-002", "DESKI"),
        suggestion("ALT-016", TOWN),
        suggestion("ENR-001", "ADM-ELEKTRIK"),
    ]
    first = lifecycle.give_back(file, given_back(file, 5, "DESKI"), candidates)
    assert first is not None and first.waiting is not None
    assert [s.institution_code for s in first.waiting.suggestions] == [TOWN, "ADM-ELEKTRIK"]

    again = lifecycle.route(first, DENIZLI.decide("ALT-016", "Merkezefendi"), "memur", NOW)
    second = lifecycle.give_back(again, given_back(again, 10, TOWN), candidates)
    assert second is not None and second.waiting is not None
    assert second.excluded_institutions == {"DESKI", TOWN}
    assert [s.institution_code for s in second.waiting.suggestions] == ["ADM-ELEKTRIK"]


def test_a_forward_routes_it_to_the_institution_named_with_its_category():
    file = routed_file()
    target = lifecycle.instructed_decision(DENIZLI, "ALT-001", TOWN)
    assert target is not None and target.institution_code == TOWN
    event = given_back(file, 5, "DESKI", forward_to=TOWN)

    moved = lifecycle.hand_over(file, event, target, NOW + timedelta(minutes=5, seconds=1))
    assert moved is not None and (moved.state, moved.round) == (ROUTED, 1)
    assert moved.routing is not None and moved.routing.institution_code == TOWN
    assert (moved.routing.routed_by, moved.routing.category_code) == ("institution", "ALT-001")
    assert moved.routing.deadline_at == file.routing.deadline_at  # type: ignore[union-attr]
    assert moved.excluded_institutions == {"DESKI"} and moved.returns[-1].forwarded_to == TOWN
    assert lifecycle.hand_over(moved, event, target, NOW) is None  # redelivered
    assert lifecycle.instructed_decision(DENIZLI, "ALT-001", "YOK") is None


def test_a_split_marks_the_parent_once_and_each_part_is_an_application_of_its_own():
    file = routed_file()
    specs = [
        PartSpec(
            part_no=1,
            application_id=f"{file.application_id}.1",
            application_number=f"{file.application.application_number}/1",
            institution_code="DESKI",
            note="Su kesintisi",
        ),
        PartSpec(
            part_no=2,
            application_id=f"{file.application_id}.2",
            application_number=f"{file.application.application_number}/2",
            category_code="ULS-006",
            note="Çöken yol",
        ),
    ]
    event = given_back(file, 5, "DESKI", parts=specs)
    parent = lifecycle.split_off(file, event)
    assert parent is not None and parent.state == ROUTED and parent.routing == file.routing
    assert parent.returns[-1].parts == [s.application_id for s in specs]
    assert lifecycle.split_off(parent, event) is None  # redelivered

    part = lifecycle.part_of(file.application, specs[1])
    assert (part.application_id, part.application_number) == (
        specs[1].application_id,
        specs[1].application_number,
    )
    assert part.text.startswith("Bu bölümün konusu: Çöken yol") and part.category_code == "ULS-006"
    assert part.received_at == file.application.received_at  # the parent's legal clock
    routed = lifecycle.route_part(part, DENIZLI.decide("ULS-006", part.district), NOW)
    assert routed.routing is not None and routed.routing.routed_by == "institution"
    assert routed.routing.institution_code == TOWN


def test_a_plain_return_still_waits_for_an_officer():
    file = routed_file()
    back = lifecycle.give_back(file, given_back(file, 5, "DESKI"), [])
    assert back is not None and back.state == PENDING
