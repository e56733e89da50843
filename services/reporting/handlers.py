"""Reporting's use cases: fold each event into the read model, and answer a report question."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.common.events import (
    ApplicationRated,
    ApplicationReceived,
    ApplicationRouted,
    DeadlineEvent,
    RoutingOutcome,
    StatusChanged,
    utcnow,
)
from services.common.messaging import PermanentError
from services.reporting.cells import ALL, ANY, UNKNOWN, Scope, clamp, figures, merged, plan
from services.reporting.chronic_runner import problem_view
from services.reporting.chronic_store import ChronicProblems, ChronicTexts
from services.reporting.domain import (
    Patch,
    istanbul_day,
    patch_for_deadline,
    patch_for_rating,
    patch_for_received,
    patch_for_routing,
    patch_for_status,
)
from services.reporting.page import province_name
from services.reporting.query import Period
from services.reporting.report import assemble
from services.reporting.store import ReadModel

OVERDUE_LIST_LIMIT = 100


class Reporting:
    def __init__(
        self,
        store: ReadModel,
        texts: ChronicTexts,
        problems: ChronicProblems,
        pii_key: bytes,
    ) -> None:
        self.store = store
        self.texts = texts
        self.problems = problems
        self.pii_key = pii_key

    async def _apply(
        self,
        patches: list[tuple[str | None, Patch]],
        known_days: Iterable[tuple[str | None, int, datetime]] = (),
    ) -> None:
        """Write the patches, then mark the days of receipt they change. An event that does not
        say where and when the application came in costs one read for the whole batch; one that
        comes before its application's receipt marks nothing (the receipt will)."""
        for application_id, _ in patches:
            if not application_id:
                raise PermanentError("application_id yok: olay bir başvuruya bağlanamıyor")
        await self.store.apply([(app_id, patch) for app_id, patch in patches if app_id])
        days = {
            (province, istanbul_day(received_at).isoformat())
            for _, province, received_at in known_days
        }
        known = {app_id for app_id, _, _ in known_days}
        unknown = [app_id for app_id, _ in patches if app_id and app_id not in known]
        days |= set((await self.store.receipt_days(unknown)).values())
        await self.store.mark_days(days)

    async def applications_received(self, events: list[ApplicationReceived]) -> None:
        """New applications: where, how and when they came in (nothing about who sent them)."""
        for event in events:
            if not 1 <= event.province_code <= 81:
                raise PermanentError(f"province_code 1..81 dışında: {event.province_code}")
        await self._apply(
            [(e.application_id, patch_for_received(e)) for e in events],
            [(e.application_id, e.province_code, e.received_at) for e in events],
        )
        # The text, masked, for the chronic-problem detection (kept for its window only).
        await self.texts.record_received(events, self.pii_key)

    async def applications_routed(self, events: list[RoutingOutcome]) -> None:
        """Routing decisions (category, institution, deadline) or waits for an officer."""
        await self._apply([(e.root.application_id, patch_for_routing(e.root)) for e in events])
        await self.texts.record_routed(
            [e.root for e in events if isinstance(e.root, ApplicationRouted)]
        )

    async def statuses_changed(self, events: list[StatusChanged]) -> None:
        """Status transitions: the time each was reached, the outcome and answer time if any."""
        await self._apply(
            [(e.application_id, patch_for_status(e)) for e in events],
            [
                (e.application_id, e.province_code, e.received_at)
                for e in events
                if e.province_code is not None and e.received_at is not None
            ],
        )

    async def deadline_events(self, events: list[DeadlineEvent]) -> None:
        """Deadline warnings, misses or escalations: a miss marks the application overdue."""
        await self._apply([(e.application_id, patch_for_deadline(e)) for e in events])

    async def applications_rated(self, events: list[ApplicationRated]) -> None:
        """Citizens' ratings (1-5) of the answers, one per application."""
        await self._apply([(e.application_id, patch_for_rating(e)) for e in events])

    async def report(
        self, scope: Scope, period: Period, now: datetime | None = None
    ) -> dict[str, Any]:
        """The report of a scope and period, from a few dozen folded cells whatever the volume."""
        generated_at = now or utcnow()
        cells = []
        span = await self.store.span()
        if span is not None:
            for grain, first, last in clamp(plan(period.start, period.end), *span):
                cells += await self.store.cells_between(scope, grain, first, last)
        overdue = await self.store.overdue_lines(
            scope,
            period.start.isoformat() if period.start else None,
            period.end.isoformat() if period.end else None,
            OVERDUE_LIST_LIMIT,
        )
        total = merged(cells)
        return assemble(
            total,
            scope=scope,
            period=period,
            generated_at=generated_at,
            as_of=await self.store.folded_at(),
            overdue=overdue,
            overdue_total=figures(total.rows.get(ALL, {}).get(UNKNOWN, []))["open_overdue"],
            province_name=province_name(scope.province_code),
        )

    async def chronic(self, scope: Scope) -> list[dict[str, Any]]:
        """The province's chronic problems of the last detection run, narrowed to the scope.
        A problem may gather applications sent to several institutions: one institution sees
        every problem it has an application in, but only its own applications' numbers, and the
        examples only when all the applications are its own."""
        problems = await self.problems.problems(
            scope.province_code,
            district=None if scope.district == ANY else scope.district,
        )
        if scope.institution == ANY:
            return [problem_view(p) for p in problems]
        views = []
        for problem in problems:
            members = problem.member_institutions or (problem.institution_code,) * problem.count
            if scope.institution not in members:
                continue
            view = problem_view(problem)
            view["application_numbers"] = [
                number
                for number, owner in zip(problem.application_numbers, members, strict=False)
                if owner == scope.institution
            ]
            view["other_institutions_applications"] = sum(m != scope.institution for m in members)
            if view["other_institutions_applications"]:
                view["examples"] = []
            views.append(view)
        return views
