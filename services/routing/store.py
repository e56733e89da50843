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

from collections.abc import Sequence
from typing import Any, Protocol

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import BulkWriteError

from services.common.messaging import Outgoing, Publisher
from services.common.mongo import Database
from services.common.outbox import Outbox, Pending
from services.common.pii import PiiCipher

DUPLICATE_KEY = 11000

ROUTED = "routed"
PENDING = "pending"


class RoutingRecords(Protocol):
    """Routing's records as the use cases see them (`RoutingStore`; a fake in unit tests)."""

    async def get(self, application_id: str) -> dict[str, Any] | None: ...
    async def seen(self, application_ids: Sequence[str]) -> set[str]: ...
    async def add(
        self, decided: Sequence[tuple[dict[str, Any], Sequence[Outgoing]]]
    ) -> list[Pending]: ...
    async def claim(
        self,
        application_id: str,
        round_: int,
        routing: dict[str, Any],
        *,
        messages: Sequence[Outgoing],
    ) -> tuple[bool, Pending | None]: ...
    async def back_to_pending(
        self,
        application_id: str,
        round_: int,
        *,
        pending: dict[str, Any],
        returns: list[dict[str, Any]],
        messages: Sequence[Outgoing],
    ) -> Pending | None: ...
    async def pending(
        self,
        province_code: int | None,
        limit: int,
        offset: int,
        *,
        district: str | None = None,
        application_number: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]: ...


class RoutingStore:
    def __init__(self, db: Database, publisher: Publisher, cipher: PiiCipher) -> None:
        self._applications = db["routing_applications"]
        self.outbox = Outbox(self._applications, publisher, cipher)

    async def ensure_indexes(self) -> None:
        await self.outbox.ensure_indexes()
        # The officers' queue: pending applications, oldest first, optionally by province.
        await self._applications.create_index(
            [("state", ASCENDING), ("province_code", ASCENDING), ("pending.since", ASCENDING)]
        )

    async def get(self, application_id: str) -> dict[str, Any] | None:
        return await self._applications.find_one({"_id": application_id})

    async def seen(self, application_ids: Sequence[str]) -> set[str]:
        """Which of these applications are here already (one query for a whole batch)."""
        found = self._applications.find({"_id": {"$in": list(application_ids)}}, {"_id": 1})
        return {doc["_id"] async for doc in found}

    async def add(
        self, decided: Sequence[tuple[dict[str, Any], Sequence[Outgoing]]]
    ) -> list[Pending]:
        """Insert new applications with their events in one write; a redelivered one (already
        there) is skipped. Returns what is to be delivered."""
        documents, written = [], []
        for document, messages in decided:
            fields, pending = self.outbox.fields(document["_id"], messages)
            documents.append(document | fields)
            if pending is not None:
                written.append(pending)
        try:
            await self._applications.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            # Inserted meanwhile by another process of routing, which announces them itself.
            taken = {documents[e["index"]]["_id"] for e in errors}
            written = [p for p in written if p.document_id not in taken]
        return written

    async def claim(
        self,
        application_id: str,
        round_: int,
        routing: dict[str, Any],
        *,
        messages: Sequence[Outgoing],
    ) -> tuple[bool, Pending | None]:
        """Pending → routed with its events, only if nobody routed this round meanwhile (two
        officers at once)."""
        update = self.outbox.push(messages)
        update["$set"] = {**update.get("$set", {}), "state": ROUTED, "routing": routing}
        doc = await self._applications.find_one_and_update(
            {"_id": application_id, "state": PENDING, "round": round_},
            update,
            projection={"outbox": 1, "outbox_token": 1},
            return_document=ReturnDocument.AFTER,
        )
        return doc is not None, self.outbox.pending_of(doc)

    async def back_to_pending(
        self,
        application_id: str,
        round_: int,
        *,
        pending: dict[str, Any],
        returns: list[dict[str, Any]],
        messages: Sequence[Outgoing],
    ) -> Pending | None:
        """Routed → pending for the next round (the institution gave it back), with its events.

        `returns` is the whole history: nx-27017 0.8.1 stores a `$push`ed sub-document as a
        JSON string, and the round in the filter already keeps concurrent writers apart.
        """
        update = self.outbox.push(messages)
        update["$set"] = {
            **update.get("$set", {}),
            "state": PENDING,
            "round": round_ + 1,
            "pending": pending,
            "returns": returns,
        }
        doc = await self._applications.find_one_and_update(
            {"_id": application_id, "state": ROUTED, "round": round_},
            update,
            projection={"outbox": 1, "outbox_token": 1},
            return_document=ReturnDocument.AFTER,
        )
        return self.outbox.pending_of(doc)

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
