"""Reporting's rules, without I/O: what each event adds to an application's read-model document,
and how those documents fold into the summary the governorship reads.

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

    def is_overdue(self, now_ms: int) -> bool:
        """Deadline missed: tracking said so, or the answer came late, or it is open and late."""
        if self.overdue_flag:
            return True
        if self.deadline_ms is None:
            return False
        if self.answered:
            return self.answered_ms is not None and self.answered_ms > self.deadline_ms
        return now_ms > self.deadline_ms

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


@dataclass
class RatingTally:
    """Citizens' ratings of the answers (1-5): how many, their mean, and how many of each."""

    counts: dict[int, int] = field(default_factory=lambda: dict.fromkeys(RATINGS, 0))

    def add(self, rating: int | None) -> None:
        if rating in self.counts:
            self.counts[rating] += 1

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    @property
    def average(self) -> float | None:
        total = self.count
        return round(sum(r * n for r, n in self.counts.items()) / total, 2) if total else None

    def flat(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "average": self.average,
            "distribution": {str(r): n for r, n in self.counts.items()},
        }


@dataclass
class Tally:
    """The figures every summary row carries."""

    total: int = 0
    answered: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    overdue: int = 0
    on_time: int = 0
    judged: int = 0
    days_sum: int = 0
    days_count: int = 0
    ratings: RatingTally = field(default_factory=RatingTally)

    def add(self, facts: ApplicationFacts, now_ms: int) -> None:
        self.total += 1
        if facts.is_overdue(now_ms):
            self.overdue += 1
        self.ratings.add(facts.rating)
        if not facts.answered:
            return
        self.answered += 1
        if facts.outcome in self.outcomes:
            self.outcomes[facts.outcome] += 1
        on_time = facts.answered_on_time()
        if on_time is not None:
            self.judged += 1
            self.on_time += int(on_time)
        days = facts.response_business_days()
        if days is not None:
            self.days_sum += days
            self.days_count += 1

    @property
    def on_time_ratio(self) -> float | None:
        return round(self.on_time / self.judged, 4) if self.judged else None

    @property
    def mean_response_business_days(self) -> float | None:
        return round(self.days_sum / self.days_count, 2) if self.days_count else None

    def flat(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "answered": self.answered,
            **self.outcomes,
            "open": self.total - self.answered,
            "overdue": self.overdue,
            "on_time_ratio": self.on_time_ratio,
            "mean_response_business_days": self.mean_response_business_days,
            "ratings": self.ratings.flat(),
        }


def _ordered(groups: Mapping[Any, Tally]) -> list[tuple[Any, Tally]]:
    # Largest first; the "not known yet" group (None) last; ties by name for a stable page.
    return sorted(
        groups.items(),
        key=lambda kv: (kv[0] is None or kv[0] == (None, None), -kv[1].total, str(kv[0])),
    )


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


class SummaryFold:
    """Folds read-model documents, one at a time, into the summary (fine at a province's volume:
    a few hundred thousand small documents a year stream through in seconds)."""

    def __init__(self, now: datetime) -> None:
        self.now_ms = to_ms(now)
        self.all = Tally()
        self.institutions: dict[str | None, Tally] = {}
        self.institution_meta: dict[str | None, tuple[str | None, str | None]] = {}
        self.categories: dict[tuple[str | None, str | None], Tally] = {}
        self.category_names: dict[tuple[str | None, str | None], tuple[str, str | None]] = {}
        self.districts: dict[str | None, Tally] = {}
        self.channels: dict[str | None, int] = {}
        self.types: dict[str | None, int] = {}
        self.statuses: dict[str, int] = {}
        self.weeks_received: dict[date, int] = {}
        self.weeks_answered: dict[date, int] = {}

    def add(self, doc: Mapping[str, Any]) -> None:
        facts = facts_from_document(doc)
        self.all.add(facts, self.now_ms)
        self.institutions.setdefault(facts.institution_code, Tally()).add(facts, self.now_ms)
        if facts.institution_code is not None:
            self.institution_meta[facts.institution_code] = (
                facts.institution_name,
                facts.institution_kind,
            )
        category = (facts.category_code, facts.heading_code)
        self.categories.setdefault(category, Tally()).add(facts, self.now_ms)
        if facts.category_name:
            self.category_names[category] = (facts.category_name, facts.heading_name)
        self.districts.setdefault(facts.district, Tally()).add(facts, self.now_ms)
        self.channels[facts.channel] = self.channels.get(facts.channel, 0) + 1
        self.types[facts.application_type] = self.types.get(facts.application_type, 0) + 1
        self.statuses[facts.status] = self.statuses.get(facts.status, 0) + 1
        if facts.received_ms is not None:
            week = _week_start(istanbul_day(from_ms(facts.received_ms)))
            self.weeks_received[week] = self.weeks_received.get(week, 0) + 1
        if facts.answered and facts.answered_ms is not None:
            week = _week_start(istanbul_day(from_ms(facts.answered_ms)))
            self.weeks_answered[week] = self.weeks_answered.get(week, 0) + 1

    def result(self) -> dict[str, Any]:
        everything = self.all.flat()
        return {
            "total": everything["total"],
            "answered": everything["answered"],
            "outcomes": {o: everything[o] for o in OUTCOMES},
            "open": everything["open"],
            "overdue": everything["overdue"],
            "on_time_ratio": everything["on_time_ratio"],
            "mean_response_business_days": everything["mean_response_business_days"],
            "ratings": everything["ratings"],
            "by_institution": [
                {
                    "institution_code": code,
                    "institution_name": self.institution_meta.get(code, (None, None))[0],
                    "kind": self.institution_meta.get(code, (None, None))[1],
                    **tally.flat(),
                }
                for code, tally in _ordered(self.institutions)
            ],
            "by_category": [
                {
                    "category_code": key[0],
                    "heading_code": key[1],
                    "category_name": self.category_names.get(key, (None, None))[0],
                    "heading_name": self.category_names.get(key, (None, None))[1],
                    **tally.flat(),
                }
                for key, tally in _ordered(self.categories)
            ],
            "by_channel": _counts(self.channels, "channel"),
            "by_type": _counts(self.types, "application_type"),
            "by_district": [
                {"district": name, **tally.flat()} for name, tally in _ordered(self.districts)
            ],
            "by_status": _counts(self.statuses, "status"),
            "by_week": [
                {
                    "week_start": week.isoformat(),
                    "received": self.weeks_received.get(week, 0),
                    "answered": self.weeks_answered.get(week, 0),
                }
                for week in sorted(set(self.weeks_received) | set(self.weeks_answered))
            ],
        }


def _counts(counts: Mapping[Any, int], name: str) -> list[dict[str, Any]]:
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] is None, -kv[1], str(kv[0])))
    return [{name: key, "total": total} for key, total in ordered]
