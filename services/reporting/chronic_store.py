"""Reporting's chronic-problem collections: each application's masked text and where and under
what it stands (one document per application), and the problems the last detection run found.

An application's document is made of two halves that may come in either order: intake's
`received` (district, neighbourhood, masked text, the citizen's pseudonym, time) and routing's
`routed` (heading, institution). Each half is written by upsert, so a replay changes nothing;
of several routings of one application the latest (by `occurred_at`) wins. Times are stored as
epoch milliseconds: nx-27017 0.8.1 turns a datetime given to `$set` into a string.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, DeleteMany, InsertOne, UpdateOne

from services.common.events import ApplicationReceived, ApplicationRouted
from services.common.mongo import Database, Document
from services.reporting.chronic import (
    ChronicInput,
    ChronicProblem,
    WeekCount,
    citizen_key,
    mask_text,
    parse_neighbourhood,
)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def received_half(event: ApplicationReceived, pii_key: bytes) -> Document:
    """What the detection needs of a received application, with no personal data: the text
    (subject and body) masked, the phone only as a keyed pseudonym."""
    applicant = event.applicant
    text = f"{event.subject.strip()}. {event.text.strip()}" if event.subject.strip() else event.text
    masked = mask_text(text, names=[applicant.first_name, applicant.last_name])
    address = event.location.address if event.location else None
    place = parse_neighbourhood(address) or parse_neighbourhood(masked)
    return {
        "application_number": event.application_number,
        "province_code": event.province_code,
        "district": event.district,
        "neighbourhood": place.key if place else None,
        "neighbourhood_name": place.name if place else None,
        "citizen_key": citizen_key(applicant.phone, pii_key),
        "received_ms": _ms(event.received_at),
        "text": masked,
    }


def routed_half(event: ApplicationRouted) -> Document:
    return {
        "heading_code": event.heading_code,
        "heading_name": event.heading_name or event.heading_code,
        "institution_code": event.institution_code,
        "institution_name": event.institution_name,
        "routed_ms": _ms(event.occurred_at),
    }


class ChronicTexts:
    """One document per application in `reporting_chronic_texts`, keyed by application id."""

    def __init__(self, db: Database) -> None:
        self.texts = db["reporting_chronic_texts"]

    async def ensure_indexes(self) -> None:
        await self.texts.create_index(
            [("province_code", ASCENDING), ("received_ms", ASCENDING)], name="province_received"
        )

    async def record_received(self, events: list[ApplicationReceived], pii_key: bytes) -> None:
        """The received halves of a batch, in one bulk write."""
        ops = [
            UpdateOne({"_id": e.application_id}, {"$set": received_half(e, pii_key)}, upsert=True)
            for e in events
        ]
        if ops:
            await self.texts.bulk_write(ops, ordered=False)

    async def record_routed(self, events: list[ApplicationRouted]) -> None:
        """The routed halves of a batch, each kept under its own event id, so the order and
        any repetition of the events change nothing; the latest routing wins when loaded.
        (No conditional update: nx-27017 applies an `_id` filter joined with `$or` to
        whichever document matches the `$or`.)"""
        ops = [
            UpdateOne(
                {"_id": e.application_id},
                {"$set": {f"routings.{e.event_id.hex}": routed_half(e)}},
                upsert=True,
            )
            for e in events
        ]
        if ops:
            await self.texts.bulk_write(ops, ordered=False)

    async def provinces(self) -> list[int]:
        """The provinces that have any text to look at."""
        return sorted(int(p) for p in await self.texts.distinct("province_code") if p is not None)

    async def forget_before(self, before: datetime) -> int:
        """Drop the texts received before `before` (the detection's window never reads them
        again: keep no citizen's text longer than it serves). Returns how many went."""
        result = await self.texts.delete_many({"received_ms": {"$lt": _ms(before)}})
        return result.deleted_count

    async def load_window(self, province_code: int, since: datetime) -> list[ChronicInput]:
        """The province's applications received since `since` whose both halves are known."""
        query = {"province_code": province_code, "received_ms": {"$gte": _ms(since)}}
        records = []
        async for doc in self.texts.find(query, batch_size=2000):
            routings = list((doc.get("routings") or {}).values())
            if not routings or doc.get("text") is None:
                continue  # not routed yet (or only routed: the received half is on its way)
            doc |= max(routings, key=lambda r: (r["routed_ms"], r["institution_code"]))
            records.append(
                ChronicInput(
                    application_id=doc["_id"],
                    application_number=doc["application_number"],
                    province_code=doc["province_code"],
                    district=doc["district"],
                    neighbourhood=doc.get("neighbourhood"),
                    neighbourhood_name=doc.get("neighbourhood_name"),
                    heading_code=doc["heading_code"],
                    heading_name=doc["heading_name"],
                    institution_code=doc["institution_code"],
                    institution_name=doc["institution_name"],
                    citizen_key=doc["citizen_key"],
                    received_at=_from_ms(doc["received_ms"]),
                    text=doc["text"],
                )
            )
        return records


@dataclass(frozen=True)
class ChronicRun:
    province_code: int
    run_at: datetime
    problems: int
    applications: int
    duration_seconds: float


def problem_fields(problem: ChronicProblem) -> Document:
    """What a problem's stored document and its view (chronic_runner.problem_view) say alike, as
    plain values; each writes the id and the times its own way."""
    return {
        "province_code": problem.province_code,
        "district": problem.district,
        "neighbourhood": problem.neighbourhood,
        "heading_code": problem.heading_code,
        "heading_name": problem.heading_name,
        "institution_code": problem.institution_code,
        "institution_name": problem.institution_name,
        "count": problem.count,
        "citizens": problem.citizens,
        "weeks": problem.weeks,
        "weekly": [
            {"week_start": w.week_start.isoformat(), "count": w.count} for w in problem.weekly
        ],
        "trend": problem.trend,
        "examples": list(problem.examples),
        "keywords": list(problem.keywords),
        "application_numbers": list(problem.application_numbers),
    }


def problem_document(problem: ChronicProblem, run_at: datetime) -> Document:
    return {
        "_id": f"{problem.province_code}:{problem.id}",
        "problem_id": problem.id,
        **problem_fields(problem),
        "first_ms": _ms(problem.first_at),
        "last_ms": _ms(problem.last_at),
        "application_ids": list(problem.application_ids),
        "member_institutions": list(problem.member_institutions),
        "run_ms": _ms(run_at),
    }


def problem_from(doc: Document) -> ChronicProblem:
    return ChronicProblem(
        id=doc["problem_id"],
        province_code=doc["province_code"],
        district=doc["district"],
        neighbourhood=doc.get("neighbourhood"),
        heading_code=doc["heading_code"],
        heading_name=doc["heading_name"],
        institution_code=doc["institution_code"],
        institution_name=doc["institution_name"],
        count=doc["count"],
        citizens=doc["citizens"],
        weeks=doc["weeks"],
        first_at=_from_ms(doc["first_ms"]),
        last_at=_from_ms(doc["last_ms"]),
        weekly=tuple(
            WeekCount(date.fromisoformat(w["week_start"]), int(w["count"])) for w in doc["weekly"]
        ),
        trend=doc["trend"],
        examples=tuple(doc["examples"]),
        keywords=tuple(doc["keywords"]),
        application_numbers=tuple(doc["application_numbers"]),
        application_ids=tuple(doc.get("application_ids") or ()),
        member_institutions=tuple(doc.get("member_institutions") or ()),
    )


class ChronicProblems:
    """The last run's problems per province (`reporting_chronic_problems`) and a record of each
    run (`reporting_chronic_runs`)."""

    def __init__(self, db: Database) -> None:
        self.problems_collection = db["reporting_chronic_problems"]
        self.runs = db["reporting_chronic_runs"]

    async def ensure_indexes(self) -> None:
        await self.problems_collection.create_index(
            [("province_code", ASCENDING), ("count", DESCENDING)], name="province_count"
        )
        await self.runs.create_index(
            [("province_code", ASCENDING), ("run_ms", DESCENDING)], name="province_run"
        )

    async def save_problems(
        self,
        province_code: int,
        problems: Sequence[ChronicProblem],
        run_at: datetime,
        *,
        applications: int = 0,
        duration_seconds: float | None = None,
    ) -> None:
        """Replace the province's list with this run's, and record the run. One bulk write: the
        old list's removal and the new one's insertion (readers between two runs' writes may
        briefly see an empty or a partial list; a run is hourly, the page reads the last run)."""
        started = time.perf_counter()
        ops: list[DeleteMany | InsertOne[Document]] = [DeleteMany({"province_code": province_code})]
        ops += [InsertOne(problem_document(p, run_at)) for p in problems]
        await self.problems_collection.bulk_write(ops, ordered=True)
        took = duration_seconds if duration_seconds is not None else time.perf_counter() - started
        await self.runs.insert_one(
            {
                "province_code": province_code,
                "run_ms": _ms(run_at),
                "problems": len(problems),
                "applications": applications,
                "duration_seconds": round(took, 3),
            }
        )

    async def problems(
        self, province_code: int, district: str | None = None, institution: str | None = None
    ) -> list[ChronicProblem]:
        """The province's problems of the last run, most applications first."""
        query: dict[str, Any] = {"province_code": province_code}
        if district:
            query["district"] = district
        if institution:
            query["institution_code"] = institution
        cursor = self.problems_collection.find(query).sort(
            [("count", DESCENDING), ("last_ms", DESCENDING), ("_id", ASCENDING)]
        )
        return [problem_from(doc) async for doc in cursor]

    async def last_run(self, province_code: int) -> ChronicRun | None:
        doc = await self.runs.find_one(
            {"province_code": province_code}, sort=[("run_ms", DESCENDING)]
        )
        if doc is None:
            return None
        return ChronicRun(
            province_code=doc["province_code"],
            run_at=_from_ms(doc["run_ms"]),
            problems=doc["problems"],
            applications=doc["applications"],
            duration_seconds=doc["duration_seconds"],
        )
