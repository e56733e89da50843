"""Folding: turns the days of receipt that events changed into cells, a batch at a time, so no
question ever reads the applications themselves.

Consumers only write application documents and mark their day dirty. One process at a time (the
holder of a lease in `reporting_meta`) folds: each dirty day of a province is read once (one
indexed query, a day's applications), its cells for every scope are written where they changed,
and the months of the scopes that changed are marked; then each marked month cell is the sum of
its day cells. A day that changed again while it was folded keeps its mark (generation counter),
and a month is marked before its day cells change, so a fold that dies half-way leaves only work
for the next one, never a wrong figure. Every reporting process runs the loop; if the holder
dies, another takes the lease when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.reporting import metrics
from services.reporting.cells import (
    ANSWERED,
    ANY,
    OPEN_OVERDUE,
    TOTAL,
    DayFold,
    Scope,
    merged,
    month_days,
    month_of,
)
from services.reporting.domain import facts_from_document
from services.reporting.store import ReadModel

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# From this many marked scopes of one month on, its day cells are read in one query.
MANY_SCOPES = 40


class LeaseLost(Exception):
    """Another process took the fold lease (this one was too slow to renew it)."""


@dataclass
class FoldResult:
    days: int = 0
    months: int = 0
    applications: int = 0


class Aggregator:
    def __init__(
        self,
        store: ReadModel,
        *,
        interval: float = 1.0,
        lease_seconds: float = 30.0,
        day_batch: int = 20,
        month_batch: int = 2000,
    ) -> None:
        self.store = store
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.day_batch = day_batch
        self.month_batch = month_batch
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.holding = False

    async def fold_day(self, marker: dict[str, Any]) -> int:
        province, day = int(marker["province_code"]), str(marker["day"])
        fold = DayFold()
        async for doc in self.store.day_documents(province, day):
            facts = facts_from_document(doc)
            fold.add(province, day, facts, doc["_id"], doc.get("application_number"))
        existing = await self.store.day_cells(province, day)
        changed = self.store.changed_scopes("day", day, province, fold.cells, existing)
        # Months first: a fold that stops after writing the day still leaves them to sum.
        await self.store.mark_months((scope, month_of(day)) for scope in changed)
        await self.store.write_cells("day", day, province, fold.cells, changed)
        await self.store.replace_overdue(province, day, fold.overdue)
        await self.store.clear_day(marker)
        return sum(cell.total for scope, cell in fold.cells.items() if scope == Scope(province))

    async def fold_month(self, marker: dict[str, Any]) -> None:
        scope = Scope(int(marker["province_code"]), marker["district"], marker["institution"])
        first, last = month_days(marker["month"])
        days = await self.store.cells_between(scope, "day", first.isoformat(), last.isoformat())
        await self.store.replace_month(scope, marker["month"], merged(days))

    async def fold_once(self) -> FoldResult:
        """One batch of dirty days, then the months they touched."""
        result = FoldResult()
        for marker in await self.store.dirty_day_batch(self.day_batch):
            await self._keep_lease()
            result.applications += await self.fold_day(marker)
            result.days += 1
        months = await self.store.dirty_month_batch(self.month_batch)
        by_month: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for marker in months:
            by_month.setdefault((int(marker["province_code"]), marker["month"]), []).append(marker)
        for (province, month), markers in by_month.items():
            await self._keep_lease()
            if len(markers) < MANY_SCOPES:
                for marker in markers:
                    await self.fold_month(marker)
                continue
            # Many scopes of one month (a rebuild, a busy day): read its day cells once.
            days = await self.store.day_cells_of_month(province, month)
            for marker in markers:
                scope = Scope(province, marker["district"], marker["institution"])
                await self.store.replace_month(scope, month, merged(days.get(scope, [])))
        await self.store.clear_months([m["_id"] for m in months])
        result.months = len(months)
        if result.days or result.months:
            await self.store.set_folded(datetime.now(UTC))
        return result

    async def _keep_lease(self) -> None:
        """Renew the lease before each piece of work; a fold that lost it stops at once, so
        two processes never fold at the same time."""
        if not await self.store.hold_lease(self.owner, time.time(), self.lease_seconds):
            self.holding = False
            raise LeaseLost

    async def fold_all(self, progress: Progress | None = None) -> FoldResult:
        """Fold until nothing is left (the rebuild command). Where a running service holds the
        lease, its own loop folds and this waits for the backlog to empty: one folder at a
        time either way."""
        total = FoldResult()
        goal, _ = await self.store.backlog()
        try:
            while True:
                step = FoldResult()
                try:
                    await self._keep_lease()
                    self.holding = True
                    step = await self.fold_once()
                except LeaseLost:
                    await asyncio.sleep(1.0)
                total.days += step.days
                total.months += step.months
                total.applications += step.applications
                days_left, months_left = await self.store.backlog()
                if progress is not None:
                    progress(max(0, goal - days_left), goal)
                if not days_left and not months_left:
                    return total
        finally:
            await self.stop()

    async def publish_gauges(self) -> None:
        """Open and overdue applications per institution, for Prometheus (the lease holder's
        figures; the other processes export none, so a sum over processes stays right)."""
        rows: dict[tuple[int, str], list[int]] = {}
        for doc in await self.store.scope_cells("month"):
            if doc.get("institution") in (None, ANY):
                continue
            vector = list(doc.get("all") or [])
            padded = vector + [0] * (OPEN_OVERDUE + 1 - len(vector))
            key = (int(doc["province_code"]), str(doc["institution"]))
            figures = rows.setdefault(key, [0, 0])
            figures[0] += padded[TOTAL] - padded[ANSWERED]
            figures[1] += padded[OPEN_OVERDUE]
        metrics.publish_institution_gauges(
            (province, code, open_, overdue) for (province, code), (open_, overdue) in rows.items()
        )

    async def run(self) -> None:
        """The service's background loop: fold while holding the lease, wait otherwise."""
        gauges_due = 0.0
        while True:
            try:
                holding = await self.store.hold_lease(self.owner, time.time(), self.lease_seconds)
                if holding != self.holding:
                    log.info("reporting fold lease %s", "taken" if holding else "lost")
                    self.holding = holding
                    if not holding:
                        metrics.publish_institution_gauges(())
                if holding:
                    step = await self.fold_once()
                    if time.monotonic() >= gauges_due:
                        await self.publish_gauges()
                        gauges_due = time.monotonic() + 30
                    if step.days == self.day_batch:
                        continue  # more is waiting: no pause
            except LeaseLost:
                log.info("reporting fold lease lost mid-fold; another process folds now")
                metrics.publish_institution_gauges(())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reporting fold failed; trying again on the next round")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self.holding:
            await self.store.release_lease(self.owner)
            self.holding = False
