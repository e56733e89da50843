"""Reporting's use cases: fold each event into the read model, and answer the summary question."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.events import (
    ApplicationRated,
    ApplicationReceived,
    DeadlineEvent,
    RoutingOutcome,
    StatusChanged,
    utcnow,
)
from services.common.messaging import PermanentError
from services.reporting.domain import (
    Patch,
    SummaryFold,
    patch_for_deadline,
    patch_for_rating,
    patch_for_received,
    patch_for_routing,
    patch_for_status,
)
from services.reporting.query import Period
from services.reporting.store import ReadModel


class Reporting:
    def __init__(self, store: ReadModel) -> None:
        self.store = store

    async def _apply(self, patches: list[tuple[str | None, Patch]]) -> None:
        for application_id, _ in patches:
            if not application_id:
                raise PermanentError("application_id yok: olay bir başvuruya bağlanamıyor")
        await self.store.apply([(app_id, patch) for app_id, patch in patches if app_id])

    async def applications_received(self, events: list[ApplicationReceived]) -> None:
        """New applications: where, how and when they came in (nothing about who sent them)."""
        for event in events:
            if not 1 <= event.province_code <= 81:
                raise PermanentError(f"province_code 1..81 dışında: {event.province_code}")
        await self._apply([(e.application_id, patch_for_received(e)) for e in events])

    async def applications_routed(self, events: list[RoutingOutcome]) -> None:
        """Routing decisions (category, institution, deadline) or waits for an officer."""
        await self._apply([(e.root.application_id, patch_for_routing(e.root)) for e in events])

    async def statuses_changed(self, events: list[StatusChanged]) -> None:
        """Status transitions: the time each was reached, the outcome and answer time if any."""
        await self._apply([(e.application_id, patch_for_status(e)) for e in events])

    async def deadline_events(self, events: list[DeadlineEvent]) -> None:
        """Deadline warnings, misses or escalations: a miss marks the application overdue."""
        await self._apply([(e.application_id, patch_for_deadline(e)) for e in events])

    async def applications_rated(self, events: list[ApplicationRated]) -> None:
        """Citizens' ratings (1-5) of the answers, one per application."""
        await self._apply([(e.application_id, patch_for_rating(e)) for e in events])

    async def summary(
        self, province_code: int | None, period: Period, now: datetime | None = None
    ) -> dict[str, Any]:
        generated_at = now or utcnow()
        fold = SummaryFold(generated_at)
        async for doc in self.store.documents(province_code, period):
            fold.add(doc)
        return {
            **fold.result(),
            "period": {
                "province_code": province_code,
                "from": period.start.isoformat() if period.start else None,
                "to": period.end.isoformat() if period.end else None,
            },
            "generated_at": generated_at.isoformat(),
        }
