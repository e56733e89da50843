"""Report cells: the figures of one day or one month of receipt, for one scope, folded ahead of
any question, so a report adds up a few dozen cells instead of reading every application.

A scope is a province with, optionally, one district and/or one institution: every application
counts in its province's cell, its district's, its institution's and its district-and-
institution's cell of its day of receipt. A month cell is the sum of the month's day cells of the
same scope. A report over a period reads the month cells of the months it covers whole and the
day cells of the days at its ends (`CellPlan`).

Inside a cell every breakdown row (an institution, a category, a channel...) is one vector of
counts with a fixed layout (below), stored with its trailing zeros cut, so adding cells is adding
vectors. The median response time comes from a histogram of response days in the same vector.
Pure rules, no I/O: the store reads and writes cells, the aggregator decides when.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from services.reporting.domain import OUTCOMES, RATINGS, ApplicationFacts

# The layout of a row vector.
TOTAL, ANSWERED, OLUMLU, OLUMSUZ, KISMEN, OVERDUE, OPEN_OVERDUE, ON_TIME, JUDGED = range(9)
DAYS_SUM, DAYS_COUNT = 9, 10
RATING_FIRST = 11  # ratings 1..5 at 11..15
HISTOGRAM_FIRST = 16  # answers given after 0, 1, ... business days; the last bucket is "or more"
HISTOGRAM_BUCKETS = 31
WIDTH = HISTOGRAM_FIRST + HISTOGRAM_BUCKETS
_OUTCOME_SLOT = {"olumlu": OLUMLU, "olumsuz": OLUMSUZ, "kismen_olumlu": KISMEN}

# The breakdowns a cell keeps, and the report list each becomes.
DIMENSIONS = ("institution", "heading", "category", "channel", "type", "district", "status")
ALL = "all"  # the cell's own total, one row with the key ""
UNKNOWN = ""  # "not known yet" (not routed, say) is the empty key
ANY = "*"  # a scope that does not narrow by district or institution

# The receipt-day series behind the trends: received, answered, overdue, on time, judged.
SERIES_WIDTH = 5

Vector = list[int]
Rows = dict[str, dict[str, Vector]]


def escape_key(key: str) -> str:
    """A value fit to be a MongoDB field name (no dots, no leading dollar), reversibly."""
    return key.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def unescape_key(key: str) -> str:
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def add_into(target: Vector, source: Sequence[int]) -> None:
    """target += source, element by element; the shorter is padded with zeros."""
    if len(target) < len(source):
        target.extend([0] * (len(source) - len(target)))
    for i, value in enumerate(source):
        if value:
            target[i] += value


def trimmed(vector: Sequence[int]) -> Vector:
    end = len(vector)
    while end and not vector[end - 1]:
        end -= 1
    return list(vector[:end])


def application_vector(facts: ApplicationFacts) -> Vector:
    """What one application adds to every row it belongs to."""
    vector = [0] * WIDTH
    vector[TOTAL] = 1
    answered = facts.answered
    late_answer = answered and facts.answered_on_time() is False
    overdue = facts.overdue_flag or late_answer
    if overdue:
        vector[OVERDUE] = 1
        if not answered:
            vector[OPEN_OVERDUE] = 1
    if facts.rating in RATINGS:
        vector[RATING_FIRST + facts.rating - 1] = 1
    if answered:
        vector[ANSWERED] = 1
        if facts.outcome in _OUTCOME_SLOT:
            vector[_OUTCOME_SLOT[facts.outcome]] = 1
        on_time = facts.answered_on_time()
        if on_time is not None:
            vector[JUDGED] = 1
            vector[ON_TIME] = int(on_time)
        days = facts.response_business_days()
        if days is not None:
            vector[DAYS_SUM] = days
            vector[DAYS_COUNT] = 1
            vector[HISTOGRAM_FIRST + min(days, HISTOGRAM_BUCKETS - 1)] = 1
    return trimmed(vector)


def series_entry(vector: Sequence[int]) -> Vector:
    padded = list(vector) + [0] * (WIDTH - len(vector))
    return [padded[TOTAL], padded[ANSWERED], padded[OVERDUE], padded[ON_TIME], padded[JUDGED]]


@dataclass(frozen=True)
class Scope:
    """Which applications a cell or a report counts: a province, maybe narrowed."""

    province_code: int
    district: str = ANY
    institution: str = ANY

    def prefix(self) -> str:
        return (
            f"{self.province_code:02d}|{escape_key(self.district)}|{escape_key(self.institution)}"
        )

    def cell_id(self, grain: str, period: str) -> str:
        return f"{self.prefix()}|{grain}|{period}"


@dataclass
class Cell:
    """The figures of one scope over some days: rows per breakdown, names, the day series."""

    rows: Rows = field(default_factory=dict)
    names: dict[str, dict[str, list[str | None]]] = field(default_factory=dict)
    series: dict[str, Vector] = field(default_factory=dict)

    def add_application(
        self, facts: ApplicationFacts, vector: Vector, day: str, keys: Mapping[str, str]
    ) -> None:
        add_into(self.rows.setdefault(ALL, {}).setdefault(UNKNOWN, []), vector)
        for dimension, key in keys.items():
            add_into(self.rows.setdefault(dimension, {}).setdefault(key, []), vector)
        add_into(self.series.setdefault(day, []), series_entry(vector))
        if facts.institution_code:
            self.names.setdefault("institution", {})[facts.institution_code] = [
                facts.institution_name,
                facts.institution_kind,
            ]
        if facts.category_code:
            _name(
                self.names,
                "category",
                facts.category_code,
                [
                    facts.category_name,
                    facts.heading_code,
                    facts.heading_name,
                ],
            )
        if facts.heading_code and facts.heading_name:
            self.names.setdefault("heading", {})[facts.heading_code] = [facts.heading_name]

    def merge(self, other: Cell) -> None:
        for dimension, rows in other.rows.items():
            mine = self.rows.setdefault(dimension, {})
            for key, vector in rows.items():
                add_into(mine.setdefault(key, []), vector)
        for kind, names in other.names.items():
            for key, entry in names.items():
                _name(self.names, kind, key, entry)
        for day, counts in other.series.items():
            add_into(self.series.setdefault(day, []), counts)

    @property
    def total(self) -> int:
        row = self.rows.get(ALL, {}).get(UNKNOWN)
        return row[TOTAL] if row else 0

    def to_document(self) -> dict[str, Any]:
        return {
            "rows": {
                dimension: {escape_key(k): trimmed(v) for k, v in rows.items()}
                for dimension, rows in self.rows.items()
            },
            "names": {
                kind: {escape_key(k): v for k, v in names.items()}
                for kind, names in self.names.items()
            },
            "series": dict(self.series),
            # The cell's own total row again, on its own: what the gauges and the rebuild's
            # count read (nx-27017 projects no dotted path).
            "all": trimmed(self.rows.get(ALL, {}).get(UNKNOWN, [])),
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Cell:
        return cls(
            rows={
                dimension: {unescape_key(k): list(v) for k, v in rows.items()}
                for dimension, rows in (doc.get("rows") or {}).items()
            },
            names={
                kind: {unescape_key(k): list(v) for k, v in names.items()}
                for kind, names in (doc.get("names") or {}).items()
            },
            series={day: list(v) for day, v in (doc.get("series") or {}).items()},
        )


def _name(
    names: dict[str, dict[str, list[str | None]]], kind: str, key: str, entry: list[str | None]
) -> None:
    """Keep a display name; an entry without one (the citizen's own pick of a category, say)
    never hides a name already known."""
    known = names.setdefault(kind, {})
    if entry[0] is not None or key not in known:
        known[key] = entry


def dimension_keys(facts: ApplicationFacts) -> dict[str, str]:
    return {
        "institution": facts.institution_code or UNKNOWN,
        "heading": facts.heading_code or UNKNOWN,
        "category": facts.category_code or UNKNOWN,
        "channel": facts.channel or UNKNOWN,
        "type": facts.application_type or UNKNOWN,
        "district": facts.district or UNKNOWN,
        "status": facts.status,
    }


def scopes_of(province_code: int, facts: ApplicationFacts) -> list[Scope]:
    scopes = [Scope(province_code)]
    if facts.district:
        scopes.append(Scope(province_code, district=facts.district))
    if facts.institution_code:
        scopes.append(Scope(province_code, institution=facts.institution_code))
        if facts.district:
            scopes.append(Scope(province_code, facts.district, facts.institution_code))
    return scopes


@dataclass(frozen=True)
class OverdueEntry:
    """An application still unanswered after its deadline: a line of the overdue list."""

    application_id: str
    application_number: str | None
    district: str | None
    institution_code: str | None
    institution_name: str | None
    category_name: str | None
    received_ms: int | None
    deadline_ms: int | None


@dataclass
class DayFold:
    """One day of receipt of one province folded: a cell per scope, and its overdue list."""

    cells: dict[Scope, Cell] = field(default_factory=dict)
    overdue: list[OverdueEntry] = field(default_factory=list)

    def add(
        self, province_code: int, day: str, facts: ApplicationFacts, doc_id: str, number: str | None
    ) -> None:
        vector = application_vector(facts)
        keys = dimension_keys(facts)
        for scope in scopes_of(province_code, facts):
            self.cells.setdefault(scope, Cell()).add_application(facts, vector, day, keys)
        if vector[OPEN_OVERDUE : OPEN_OVERDUE + 1] == [1]:
            self.overdue.append(
                OverdueEntry(
                    application_id=doc_id,
                    application_number=number,
                    district=facts.district,
                    institution_code=facts.institution_code,
                    institution_name=facts.institution_name,
                    category_name=facts.category_name,
                    received_ms=facts.received_ms,
                    deadline_ms=facts.deadline_ms,
                )
            )


def month_of(day: str) -> str:
    return day[:7]


def month_days(month: str) -> tuple[date, date]:
    first = date.fromisoformat(f"{month}-01")
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following - timedelta(days=1)


@dataclass(frozen=True)
class CellPlan:
    """Which cells answer a period: whole months from month cells, the ends from day cells.
    Each item is (grain, first period, last period), inclusive, for an id range read."""

    ranges: tuple[tuple[str, str, str], ...]


def plan(start: date | None, end: date | None) -> CellPlan:
    """An open start reaches back to the first cell; an open end forward to the last."""
    if start is None and end is None:
        return CellPlan((("month", "0000-00", "9999-99"),))
    ranges: list[tuple[str, str, str]] = []
    if start is not None and start.day != 1:
        _, start_month_last = month_days(month_of(start.isoformat()))
        edge_end = start_month_last if end is None or end > start_month_last else end
        ranges.append(("day", start.isoformat(), edge_end.isoformat()))
        if end is not None and end <= start_month_last:
            return CellPlan(tuple(ranges))
        start = start_month_last + timedelta(days=1)
    first_month = month_of(start.isoformat()) if start is not None else "0000-00"
    if end is None:
        ranges.append(("month", first_month, "9999-99"))
        return CellPlan(tuple(ranges))
    end_first, end_last = month_days(month_of(end.isoformat()))
    if end == end_last:
        ranges.append(("month", first_month, month_of(end.isoformat())))
    else:
        before = end_first - timedelta(days=1)
        if start is None or start <= before:
            ranges.append(("month", first_month, month_of(before.isoformat())))
        day_start = max(end_first, start) if start is not None else end_first
        ranges.append(("day", day_start.isoformat(), end.isoformat()))
    return CellPlan(tuple(r for r in ranges if r[1] <= r[2]))


def periods_between(grain: str, first: str, last: str) -> list[str]:
    """Every day ("YYYY-MM-DD") or month ("YYYY-MM") from first to last, inclusive: a report
    and a month fold read cells by their ids (nx-27017 answers an `_id` list from its primary
    key, far faster than any range)."""
    periods: list[str] = []
    if grain == "day":
        day, end = date.fromisoformat(first), date.fromisoformat(last)
        while day <= end:
            periods.append(day.isoformat())
            day += timedelta(days=1)
        return periods
    year, month = int(first[:4]), int(first[5:7])
    while f"{year:04d}-{month:02d}" <= last:
        periods.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return periods


def clamp(ranges: CellPlan, first_day: str, last_day: str) -> list[tuple[str, str, str]]:
    """A plan's ranges cut to the days that hold any application (an open end is unbounded)."""
    bounded = []
    for grain, first, last in ranges.ranges:
        low, high = (first_day, last_day) if grain == "day" else (first_day[:7], last_day[:7])
        first, last = max(first, low), min(last, high)
        if first <= last:
            bounded.append((grain, first, last))
    return bounded


# What a report shows of one row vector.
def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def median_days(vector: Sequence[int]) -> int | None:
    """The lower median of the response days (the last bucket reads "that many or more")."""
    padded = list(vector) + [0] * (WIDTH - len(vector))
    count = padded[DAYS_COUNT]
    if not count:
        return None
    middle = (count + 1) // 2
    seen = 0
    for days in range(HISTOGRAM_BUCKETS):
        seen += padded[HISTOGRAM_FIRST + days]
        if seen >= middle:
            return days
    return HISTOGRAM_BUCKETS - 1  # pragma: no cover - the histogram holds every counted answer


def figures(vector: Sequence[int]) -> dict[str, Any]:
    v = list(vector) + [0] * (WIDTH - len(vector))
    ratings = {str(r): v[RATING_FIRST + r - 1] for r in RATINGS}
    rated = sum(ratings.values())
    return {
        "total": v[TOTAL],
        "answered": v[ANSWERED],
        "open": v[TOTAL] - v[ANSWERED],
        **{outcome: v[_OUTCOME_SLOT[outcome]] for outcome in OUTCOMES},
        "overdue": v[OVERDUE],
        "open_overdue": v[OPEN_OVERDUE],
        "on_time_ratio": _ratio(v[ON_TIME], v[JUDGED]),
        "mean_response_business_days": round(v[DAYS_SUM] / v[DAYS_COUNT], 2)
        if v[DAYS_COUNT]
        else None,
        "median_response_business_days": median_days(v),
        "ratings": {
            "count": rated,
            "average": round(sum(int(r) * n for r, n in ratings.items()) / rated, 2)
            if rated
            else None,
            "distribution": ratings,
        },
        "judged": v[JUDGED],
    }


def merged(cells: Iterable[Cell]) -> Cell:
    total = Cell()
    for cell in cells:
        total.merge(cell)
    return total
