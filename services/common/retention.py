"""Retention of personal data (KVKK): documents older than the retention period lose their
personal fields, while the facts (type, category, district, dates, status, outcome) stay for
the statistics.

One generic job serves every service: a `RetentionRule` names a collection, the time field
the period counts from, the fields to remove and the fields to replace with a placeholder
(what a reader of the document needs to find there, e.g. a ciphertext of an empty value).
An anonymised document is marked `anonymised_at`, and a document so marked is never touched
again, so the job is idempotent: it may run in every process of a service at once, be
stopped half-way and started again. It works in batches of ids (one find, one update_many),
and each run is recorded in the service's audit log ("anonymise", with the counts).

Each service wires it in its app.py (`retention_loop`) and runs it hourly; intake also has
`python -m services.intake anonymise [--dry-run]`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from services.common.mongo import Database

if TYPE_CHECKING:
    from services.common.audit import AuditLog
    from services.common.service import Service

log = logging.getLogger("acikkapi.retention")

ANONYMISED_AT = "anonymised_at"
# How often each process looks for documents past their period.
INTERVAL_SECONDS = 3600.0
BATCH = 500

ANONYMISED = Counter(
    "acikkapi_anonymised_documents_total",
    "Documents whose personal fields the retention job removed, by service and collection",
    ["service", "collection"],
)

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class RetentionRule:
    """What anonymising one collection means."""

    collection: str
    # The time the retention period counts from (a date field of the document).
    time_field: str
    # Personal fields removed (dotted paths reach into sub-documents).
    remove: tuple[str, ...] = ()
    # Personal fields replaced by these values (placeholders that keep the document readable).
    replace: Mapping[str, Any] = field(default_factory=dict)
    # Further conditions a document must meet to be anonymised (e.g. a final state).
    only: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RetentionReport:
    """What one run did (or, dry, would do), per collection."""

    cutoff: datetime
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class RetentionJob:
    def __init__(
        self,
        service: str,
        db: Database,
        rules: Sequence[RetentionRule],
        *,
        days: int,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self._db = db
        self.rules = tuple(rules)
        self.days = days
        self._audit = audit
        self._clock = clock

    def cutoff(self) -> datetime:
        return self._clock() - timedelta(days=self.days)

    def _due(self, rule: RetentionRule, cutoff: datetime) -> dict[str, Any]:
        return {
            rule.time_field: {"$lt": cutoff},
            ANONYMISED_AT: {"$exists": False},
            **rule.only,
        }

    async def run(
        self, *, dry_run: bool = False, batch: int = BATCH, progress: Progress | None = None
    ) -> RetentionReport:
        """Anonymise every document past its period (dry: only count them)."""
        cutoff = self.cutoff()
        report = RetentionReport(cutoff=cutoff, dry_run=dry_run)
        for rule in self.rules:
            report.counts[rule.collection] = await self._run_rule(
                rule, cutoff, dry_run=dry_run, batch=batch, progress=progress
            )
        if report.total and not dry_run:
            log.info(
                "personal data anonymised",
                extra={"counts": report.counts, "cutoff": cutoff.isoformat()},
            )
            if self._audit is not None:
                await self._audit.record(
                    actor=None,
                    action="anonymise",
                    detail={
                        "counts": report.counts,
                        "cutoff": cutoff,
                        "retention_days": self.days,
                    },
                )
        return report

    async def _run_rule(
        self,
        rule: RetentionRule,
        cutoff: datetime,
        *,
        dry_run: bool,
        batch: int,
        progress: Progress | None,
    ) -> int:
        collection = self._db[rule.collection]
        due = self._due(rule, cutoff)
        if dry_run:
            # Counted by a find: nx-27017 0.8.1's count ignores date conditions.
            count = len([doc async for doc in collection.find(due, {"_id": 1})])
            if progress:
                progress(rule.collection, count)
            return count
        done = 0
        update: dict[str, Any] = {"$set": {**rule.replace, ANONYMISED_AT: self._clock()}}
        if rule.remove:
            update["$unset"] = dict.fromkeys(rule.remove, "")
        while True:
            ids = [doc["_id"] async for doc in collection.find(due, {"_id": 1}, limit=batch)]
            if not ids:
                return done
            # The condition again: a document another process anonymised meanwhile is skipped.
            result = await collection.update_many(
                {"_id": {"$in": ids}, ANONYMISED_AT: {"$exists": False}}, update
            )
            done += result.modified_count
            ANONYMISED.labels(self.service, rule.collection).inc(result.modified_count)
            if progress:
                progress(rule.collection, done)
            if len(ids) < batch:
                return done

    async def loop(self, interval: float = INTERVAL_SECONDS) -> None:
        """Run now and then every `interval` seconds; a failed run is logged and tried again.
        A retention of 0 days turns the job off."""
        if self.days <= 0:
            return
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "retention run failed; trying again later",
                    extra={"error": f"{type(exc).__name__}: {exc}"},
                )
            await asyncio.sleep(interval)


def retention_job(service: Service, rules: Sequence[RetentionRule]) -> RetentionJob:
    """The retention job of a service, with `personal_data_retention_days`; its `loop` is a
    background hook of the service's app."""
    return RetentionJob(
        service.name,
        service.db,
        rules,
        days=service.settings.personal_data_retention_days,
        audit=service.audit,
    )
