"""The report a governorship reads, put together from merged cells: the headline figure, each
breakdown, the trends, the institutions ranked by answers on time, and the overdue list. Pure:
the cells and the overdue lines come in, the dict that the API, the pages and the exports share
goes out (its shape: docs/reports.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from services.reporting.cells import (
    ALL,
    ANY,
    JUDGED,
    ON_TIME,
    UNKNOWN,
    Cell,
    OverdueEntry,
    Scope,
    figures,
)
from services.reporting.domain import OUTCOMES, from_ms
from services.reporting.query import Period

# A dimension's key, as the report names it.
_KEY_NAMES = {
    "institution": "institution_code",
    "heading": "heading_code",
    "category": "category_code",
    "channel": "channel",
    "type": "application_type",
    "district": "district",
}
_SERIES_RECEIVED, _SERIES_ANSWERED, _SERIES_OVERDUE, _SERIES_ON_TIME, _SERIES_JUDGED = range(5)


def _rows(cell: Cell, dimension: str) -> list[dict[str, Any]]:
    names = cell.names
    rows = []
    for key, vector in cell.rows.get(dimension, {}).items():
        code = key or None
        row: dict[str, Any] = {_KEY_NAMES[dimension]: code}
        if dimension == "institution":
            name, kind = (names.get("institution", {}).get(key) or [None, None])[:2]
            row |= {"institution_name": name, "kind": kind}
        elif dimension == "category":
            name, heading, heading_name = (names.get("category", {}).get(key) or [None] * 3)[:3]
            row |= {"category_name": name, "heading_code": heading, "heading_name": heading_name}
        elif dimension == "heading":
            row["heading_name"] = (names.get("heading", {}).get(key) or [None])[0]
        figs = figures(vector)
        figs.pop("judged")
        figs.pop("open_overdue")
        rows.append(row | figs)
    # Largest first; "not known yet" last; ties by key for a stable page.
    key_name = _KEY_NAMES[dimension]
    rows.sort(key=lambda r: (r[key_name] is None, -r["total"], str(r[key_name])))
    return rows


def _trend(series: Mapping[str, Sequence[int]], monthly: bool) -> list[dict[str, Any]]:
    buckets: dict[date, list[int]] = {}
    for day_text, entry in series.items():
        day = date.fromisoformat(day_text)
        start = day.replace(day=1) if monthly else day - timedelta(days=day.weekday())
        bucket = buckets.setdefault(start, [0] * 5)
        for i, value in enumerate(entry):
            bucket[i] += value
    trend = []
    for start in sorted(buckets):
        b = buckets[start]
        if monthly:
            period = start.strftime("%Y-%m")
        else:
            year, week, _ = start.isocalendar()
            period = f"{year}-W{week:02d}"
        trend.append(
            {
                "period": period,
                "start": start.isoformat(),
                "received": b[_SERIES_RECEIVED],
                "answered": b[_SERIES_ANSWERED],
                "overdue": b[_SERIES_OVERDUE],
                "on_time_ratio": round(b[_SERIES_ON_TIME] / b[_SERIES_JUDGED], 4)
                if b[_SERIES_JUDGED]
                else None,
            }
        )
    return trend


def _ranking(cell: Cell) -> list[dict[str, Any]]:
    names = cell.names.get("institution", {})
    judged = [
        (key, vector)
        for key, vector in cell.rows.get("institution", {}).items()
        if key and len(vector) > JUDGED and vector[JUDGED]
    ]
    judged.sort(key=lambda kv: (-kv[1][ON_TIME] / kv[1][JUDGED], -kv[1][JUDGED], kv[0]))
    ranking = []
    for rank, (key, vector) in enumerate(judged, start=1):
        name, kind = (names.get(key) or [None, None])[:2]
        ranking.append(
            {
                "rank": rank,
                "institution_code": key,
                "institution_name": name,
                "kind": kind,
                "total": vector[0],
                "judged": vector[JUDGED],
                "on_time_ratio": round(vector[ON_TIME] / vector[JUDGED], 4),
            }
        )
    return ranking


def _iso(ms: int | None) -> str | None:
    return from_ms(ms).isoformat() if ms is not None else None


def overdue_line(entry: OverdueEntry) -> dict[str, Any]:
    return {
        "application_number": entry.application_number,
        "institution_code": entry.institution_code,
        "institution_name": entry.institution_name,
        "category_name": entry.category_name,
        "district": entry.district,
        "received_at": _iso(entry.received_ms),
        "deadline_at": _iso(entry.deadline_ms),
    }


def assemble(
    cell: Cell,
    *,
    scope: Scope,
    period: Period,
    generated_at: datetime,
    as_of: datetime | None,
    overdue: Sequence[OverdueEntry] = (),
    overdue_total: int = 0,
    province_name: str | None = None,
) -> dict[str, Any]:
    """The report of one scope and period from the sum of its cells."""
    headline = figures(cell.rows.get(ALL, {}).get(UNKNOWN, []))
    institution = None if scope.institution == ANY else scope.institution
    institution_name = None
    if institution:
        institution_name = (cell.names.get("institution", {}).get(institution) or [None])[0]
    return {
        "scope": {
            "province_code": scope.province_code,
            "province_name": province_name,
            "district": None if scope.district == ANY else scope.district,
            "institution_code": institution,
            "institution_name": institution_name,
            "from": period.start.isoformat() if period.start else None,
            "to": period.end.isoformat() if period.end else None,
        },
        # The contract's period object (v1), kept for clients that read it.
        "period": {
            "province_code": scope.province_code,
            "from": period.start.isoformat() if period.start else None,
            "to": period.end.isoformat() if period.end else None,
        },
        "generated_at": generated_at.isoformat(),
        "as_of": as_of.isoformat() if as_of else None,
        "total": headline["total"],
        "answered": headline["answered"],
        "open": headline["open"],
        "outcomes": {o: headline[o] for o in OUTCOMES},
        "overdue": headline["overdue"],
        "on_time_ratio": headline["on_time_ratio"],
        "mean_response_business_days": headline["mean_response_business_days"],
        "median_response_business_days": headline["median_response_business_days"],
        "ratings": headline["ratings"],
        "by_institution": _rows(cell, "institution"),
        "by_heading": _rows(cell, "heading"),
        "by_category": _rows(cell, "category"),
        "by_channel": _rows(cell, "channel"),
        "by_type": _rows(cell, "type"),
        "by_district": _rows(cell, "district"),
        "by_status": sorted(
            (
                {"status": key, "total": vector[0]}
                for key, vector in cell.rows.get("status", {}).items()
            ),
            key=lambda r: (-r["total"], r["status"]),
        ),
        "trends": {
            "weekly": _trend(cell.series, monthly=False),
            "monthly": _trend(cell.series, monthly=True),
        },
        "institution_ranking": _ranking(cell),
        "overdue_list": [overdue_line(e) for e in overdue],
        "overdue_list_total": overdue_total,
    }
