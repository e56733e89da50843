"""Reporting's rules, without I/O: what each event adds to an application's read-model document,
and the facts each document holds once the fold rules are applied (cells.py adds them up).

The read model holds one document per application, written with one upsert per event and no
reads. Events arrive in any order and more than once, so every fact is written with an operator
that makes order and repetition irrelevant (a `Patch`):

- facts that never change (province, district, channel, type, time of receipt) are assigned;
- the time each status was reached is raised (`$max`, field `st_<status>`), the time of the
  answer lowered (`$min`), the deadline raised, the overdue flag raised from 0 to 1;
- every routing decision is kept under its own event id together with its time; the latest one
  wins when folding (an application an institution returns is routed again).

Times are stored as epoch milliseconds: integers compare correctly under `$max`/`$min` on every
MongoDB-wire server (nx-27017 0.8.1 compares datetimes as text there and gets them wrong).
No personal data enters the model: no names, TC Kimlik Nos, phones, subjects, texts or places
finer than the district.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.common.business_days import business_days_between
from services.common.events import (
    ApplicationAwaitingRouting,
    ApplicationRated,
    ApplicationReceived,
    ApplicationRouted,
    DeadlineEvent,
    Outcome,
    Status,
    StatusChanged,
)
from services.common.turkish_time import ISTANBUL

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# When two statuses carry the same instant, the one further along the life cycle is current.
_STATUS_RANK = {
    Status.received: 0,
    Status.awaiting_routing: 1,
    Status.returned: 2,
    Status.routed: 3,
    Status.opened: 4,
    Status.answered: 5,
    Status.closed: 6,
}
_ANSWERED = (Status.answered, Status.closed)
OUTCOMES = tuple(o.value for o in Outcome)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def istanbul_day(moment: datetime) -> date:
    return moment.astimezone(ISTANBUL).date()


def status_field(status: Status | str) -> str:
    return f"st_{Status(status).value}"


@dataclass
class Patch:
    """One event's contribution to its application's document, order- and repeat-proof.

    `assign` sets values that never change, `at_least` raises a number to at least the given
    value (MongoDB `$max`), `at_most` lowers it to at most the given value (`$min`).
    """

    assign: dict[str, Any] = field(default_factory=dict)
    at_least: dict[str, int] = field(default_factory=dict)
    at_most: dict[str, int] = field(default_factory=dict)


def _place_and_channel(
    patch: Patch,
    *,
    province_code: int | None,
    district: str | None,
    channel: str | None,
    application_type: str | None,
    received_at: datetime | None,
) -> None:
    # Immutable facts: whichever event brings them first writes them, later ones write the same.
    if province_code is not None:
        patch.assign["province_code"] = province_code
    if district:
        patch.assign["district"] = district
    if channel:
        patch.assign["channel"] = channel
    if application_type:
        patch.assign["application_type"] = application_type
    if received_at is not None:
        patch.assign["received_ms"] = to_ms(received_at)
        patch.assign["received_day"] = istanbul_day(received_at).isoformat()


def patch_for_received(event: ApplicationReceived) -> Patch:
    patch = Patch()
    _place_and_channel(
        patch,
        province_code=event.province_code,
        district=event.district,
        channel=event.channel.value,
        application_type=event.application_type.value,
        received_at=event.received_at,
    )
    patch.assign["application_number"] = event.application_number
    if event.category_code:
        # The citizen's own pick; routing's decision, when known, takes precedence.
        patch.assign["requested_category_code"] = event.category_code
    patch.at_least[status_field(Status.received)] = to_ms(event.received_at)
    return patch


def patch_for_routing(event: ApplicationRouted | ApplicationAwaitingRouting) -> Patch:
    patch = Patch()
    at = to_ms(event.occurred_at)
    if isinstance(event, ApplicationAwaitingRouting):
        patch.at_least[status_field(Status.awaiting_routing)] = at
        return patch
    patch.assign["application_number"] = event.application_number
    patch.assign[f"routings.{event.event_id.hex}"] = {
        "at_ms": at,
        "category_code": event.category_code,
        "heading_code": event.heading_code,
        "institution_code": event.institution_code,
        "institution_kind": event.institution_kind,
        "institution_name": event.institution_name,
        "category_name": event.category_name,
        "heading_name": event.heading_name,
    }
    patch.at_least[status_field(Status.routed)] = at
    patch.at_least["deadline_ms"] = to_ms(event.deadline_at)
    return patch


def patch_for_status(event: StatusChanged) -> Patch:
    patch = Patch()
    _place_and_channel(
        patch,
        province_code=event.province_code,
        district=event.district,
        channel=event.channel.value if event.channel else None,
        application_type=event.application_type.value if event.application_type else None,
        received_at=event.received_at,
    )
    patch.at_least[status_field(event.status)] = to_ms(event.at)
    if event.outcome is not None:
        patch.assign["outcome"] = event.outcome.value
    answered_at = event.answered_at
    if answered_at is None and event.status is Status.answered:
        answered_at = event.at
    if answered_at is not None:
        patch.at_most["answered_ms"] = to_ms(answered_at)
    if event.deadline_at is not None:
        patch.at_least["deadline_ms"] = to_ms(event.deadline_at)
    if event.overdue:
        patch.at_least["overdue"] = 1
    return patch


def patch_for_rating(event: ApplicationRated) -> Patch:
    """The citizen's rating of the answer: given once per application (tracking holds it to
    that), so a repeat of the event assigns the same values."""
    return Patch(assign={"rating": event.rating, "rated_ms": to_ms(event.rated_at)})


def patch_for_deadline(event: DeadlineEvent) -> Patch:
    patch = Patch()
    patch.at_least["deadline_ms"] = to_ms(event.deadline_at)
    if event.kind in ("missed", "escalated"):
        patch.at_least["overdue"] = 1
    return patch


@dataclass(frozen=True)
class ApplicationFacts:
    """What the read model knows about one application, with the fold rules applied."""

    province_code: int | None
    district: str | None
    channel: str | None
    application_type: str | None
    received_ms: int | None
    category_code: str | None
    heading_code: str | None
    category_name: str | None
    heading_name: str | None
    institution_code: str | None
    institution_kind: str | None
    institution_name: str | None
    status: str
    outcome: str | None
    answered_ms: int | None
    deadline_ms: int | None
    overdue_flag: bool
    rating: int | None = None

    @property
    def answered(self) -> bool:
        return self.status in _ANSWERED or self.outcome is not None

    def answered_on_time(self) -> bool | None:
        """None when it cannot be judged (not answered, or deadline or answer time unknown)."""
        if not self.answered or self.deadline_ms is None or self.answered_ms is None:
            return None
        return self.answered_ms <= self.deadline_ms

    def response_business_days(self) -> int | None:
        if not self.answered or self.received_ms is None or self.answered_ms is None:
            return None
        return business_days_between(from_ms(self.received_ms), from_ms(self.answered_ms))


def facts_from_document(doc: Mapping[str, Any]) -> ApplicationFacts:
    routings = doc.get("routings") or {}
    latest: Mapping[str, Any] = {}
    if routings:
        latest = max(routings.values(), key=lambda r: (int(r.get("at_ms") or 0), str(r)))
    reached = {
        status: int(doc[status_field(status)])
        for status in Status
        if doc.get(status_field(status)) is not None
    }
    if reached:
        current = max(reached, key=lambda s: (reached[s], _STATUS_RANK[s])).value
    else:
        current = Status.received.value
    outcome = doc.get("outcome")
    if outcome is not None and current not in _ANSWERED:
        current = Status.answered.value  # an answer is never undone
    answered_ms = doc.get("answered_ms")
    if answered_ms is None and current in _ANSWERED:
        answered_ms = reached.get(Status.answered)
    deadline_ms = doc.get("deadline_ms")
    return ApplicationFacts(
        province_code=doc.get("province_code"),
        district=doc.get("district"),
        channel=doc.get("channel"),
        application_type=doc.get("application_type"),
        received_ms=doc.get("received_ms"),
        category_code=latest.get("category_code") or doc.get("requested_category_code"),
        heading_code=latest.get("heading_code"),
        # A name belongs to the routing's category; the citizen's pick alone has only a code.
        category_name=latest.get("category_name"),
        heading_name=latest.get("heading_name"),
        institution_code=latest.get("institution_code"),
        institution_kind=latest.get("institution_kind"),
        institution_name=latest.get("institution_name"),
        status=current,
        outcome=outcome,
        answered_ms=int(answered_ms) if answered_ms is not None else None,
        deadline_ms=int(deadline_ms) if deadline_ms is not None else None,
        overdue_flag=bool(doc.get("overdue")),
        rating=int(doc["rating"]) if doc.get("rating") is not None else None,
    )


RATINGS = tuple(range(1, 6))
