"""Routing's own MongoDB collection: one document per application it has seen, routed or pending.

The document keeps what routing needs to route the application again later (an officer's
decision, or a return by the institution): the application's own fields as they arrived, and
the applicant's contact sealed with the PII key. `state` is "routed" or "pending"; `round`
counts routings (0 first, +1 each time the application comes back to the pending queue).

The collection name carries the service's name although the database is routing's own:
nx-27017 in single-file mode backs every logical database with the same tables. Datetimes live
in sub-documents (`pending.since`, `routing.routed_at`): nx-27017 0.8.1 stores a top-level
datetime written by `$set` as a string, which would break the queue's order.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

ROUTED = "routed"
PENDING = "pending"


class RoutingStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._applications = db["routing_applications"]

    async def ensure_indexes(self) -> None:
        # The officers' queue: pending applications, oldest first, optionally by province.
        await self._applications.create_index(
            [("state", ASCENDING), ("province_code", ASCENDING), ("pending.since", ASCENDING)]
        )

    async def get(self, application_id: str) -> dict[str, Any] | None:
        return await self._applications.find_one({"_id": application_id})

    async def seen(self, application_id: str) -> bool:
        return await self._applications.find_one({"_id": application_id}, {"_id": 1}) is not None

    async def add(self, document: dict[str, Any]) -> bool:
        """Insert a new application; False when it is already there (a redelivery)."""
        try:
            await self._applications.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def claim(self, application_id: str, round_: int, routing: dict[str, Any]) -> bool:
        """Pending → routed, only if nobody routed this round meanwhile (two officers at once)."""
        result = await self._applications.update_one(
            {"_id": application_id, "state": PENDING, "round": round_},
            {"$set": {"state": ROUTED, "routing": routing}},
        )
        return result.modified_count == 1

    async def unclaim(self, application_id: str, round_: int) -> None:
        """Undo `claim` when the decision could not be published."""
        await self._applications.update_one(
            {"_id": application_id, "state": ROUTED, "round": round_},
            {"$set": {"state": PENDING, "routing": None}},
        )

    async def back_to_pending(
        self,
        application_id: str,
        round_: int,
        *,
        pending: dict[str, Any],
        returns: list[dict[str, Any]],
    ) -> bool:
        """Routed → pending for the next round (the institution gave it back).

        `returns` is the whole history: nx-27017 0.8.1 stores a `$push`ed sub-document as a
        JSON string, and the round in the filter already keeps concurrent writers apart.
        """
        result = await self._applications.update_one(
            {"_id": application_id, "state": ROUTED, "round": round_},
            {
                "$set": {
                    "state": PENDING,
                    "round": round_ + 1,
                    "pending": pending,
                    "returns": returns,
                },
            },
        )
        return result.modified_count == 1

    async def pending(
        self,
        province_code: int | None,
        limit: int,
        offset: int,
        *,
        district: str | None = None,
        application_number: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {"state": PENDING}
        if province_code is not None:
            query["province_code"] = province_code
        if district is not None:
            query["district"] = district
        if application_number is not None:
            query["application_number"] = application_number
        cursor = (
            self._applications.find(query, {"applicant": 0})
            .sort([("pending.since", ASCENDING), ("_id", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        items = await cursor.to_list(length=limit)
        total = await self._applications.count_documents(query)
        return items, total
