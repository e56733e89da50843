"""Reporting's use cases: fold each event into the read model, and answer the summary question."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.events import (
    ApplicationReceived,
    DeadlineEvent,
    RoutingOutcome,
    StatusChanged,
    utcnow,
)
from services.common.messaging import PermanentError
from services.reporting.domain import (
    Patch,
    Period,
    SummaryFold,
    patch_for_deadline,
    patch_for_received,
    patch_for_routing,
    patch_for_status,
)
from services.reporting.store import ReadModel


class Reporting:
    def __init__(self, store: ReadModel) -> None:
        self.store = store

    async def _apply(self, application_id: str | None, patch: Patch) -> None:
        if not application_id:
            raise PermanentError("application_id yok: olay bir başvuruya bağlanamıyor")
        await self.store.apply(application_id, patch)

    async def application_received(self, event: ApplicationReceived) -> None:
        """A new application: where, how and when it came in (nothing about who sent it)."""
        if not 1 <= event.province_code <= 81:
            raise PermanentError(f"province_code 1..81 dışında: {event.province_code}")
        await self._apply(event.application_id, patch_for_received(event))

    async def application_routed(self, event: RoutingOutcome) -> None:
        """A routing decision (category, institution, deadline) or a wait for an officer."""
        await self._apply(event.root.application_id, patch_for_routing(event.root))

    async def status_changed(self, event: StatusChanged) -> None:
        """A status transition: the time it was reached, the outcome and answer time if any."""
        await self._apply(event.application_id, patch_for_status(event))

    async def deadline_event(self, event: DeadlineEvent) -> None:
        """A deadline warning, miss or escalation: a miss marks the application overdue."""
        await self._apply(event.application_id, patch_for_deadline(event))

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
