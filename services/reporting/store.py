"""Reporting's own MongoDB collection: one small document per application, no personal data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo import ASCENDING, UpdateOne

from services.common.events import Status
from services.common.mongo import Database
from services.reporting.domain import Patch, status_field
from services.reporting.query import Period

# Only what the fold reads travels back from the database.
_PROJECTION: dict[str, int] = {
    name: 1
    for name in (
        "province_code",
        "district",
        "channel",
        "application_type",
        "received_ms",
        "requested_category_code",
        "routings",
        "outcome",
        "answered_ms",
        "deadline_ms",
        "overdue",
        "rating",
        *(status_field(s) for s in Status),
    )
}


class ReadModel:
    def __init__(self, db: Database) -> None:
        self.applications = db["applications"]

    async def ensure_indexes(self) -> None:
        await self.applications.create_index(
            [("province_code", ASCENDING), ("received_day", ASCENDING)], name="province_day"
        )
        await self.applications.create_index([("received_day", ASCENDING)], name="day")

    async def apply(self, patches: Sequence[tuple[str, Patch]]) -> None:
        """One bulk write of upserts for a batch, no read: the operators make the order of
        events irrelevant."""
        ops = []
        for application_id, patch in patches:
            update: dict[str, Any] = {}
            if patch.assign:
                update["$set"] = patch.assign
            if patch.at_least:
                update["$max"] = patch.at_least
            if patch.at_most:
                update["$min"] = patch.at_most
            if update:
                ops.append(UpdateOne({"_id": application_id}, update, upsert=True))
        if ops:
            await self.applications.bulk_write(ops, ordered=False)

    async def documents(
        self, province_code: int | None, period: Period
    ) -> AsyncIterator[dict[str, Any]]:
        """The applications received in the period (Istanbul days, inclusive) in one province."""
        day: dict[str, str | bool] = {"$exists": True}
        if period.start:
            day["$gte"] = period.start.isoformat()
        if period.end:
            day["$lte"] = period.end.isoformat()
        query: dict[str, Any] = {"received_day": day}
        if province_code is not None:
            query["province_code"] = province_code
        async for doc in self.applications.find(query, _PROJECTION, batch_size=1000):
            yield doc
