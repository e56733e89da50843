"""Routing's own MongoDB collection: the `RoutingFile` of every application it has seen
(lifecycle.py), one document each, and the officers' queue read from them.

The document keeps what routing needs to route the application again later (an officer's
decision, or a return by the institution): the application's own fields as they arrived, and
the applicant's contact sealed with the PII key; beside them `state`, `round`, `routing`,
`pending` (the file's `waiting`) and `returns`.

The collection name carries the service's name although the database is routing's own:
nx-27017 in single-file mode backs every logical database with the same tables. Datetimes live
in sub-documents (`pending.since`, `routing.routed_at`): nx-27017 0.8.1 stores a top-level
datetime written by `$set` as a string, which would break the queue's order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.events import ApplicantContact
from services.common.messaging import Outgoing, Publisher
from services.common.mongo import Database
from services.common.outbox import Outbox, Pending
from services.common.pii import PiiCipher
from services.routing.learned import OfficerDecision
from services.routing.lifecycle import (
    PENDING,
    ApplicationRecord,
    PendingApplication,
    RoutingFile,
)

DUPLICATE_KEY = 11000
EXCERPT_CHARS = 280


@dataclass(frozen=True)
class QueuePage:
    """One page of the officers' queue: a province (None: all), filters, size and start."""

    province_code: int | None
    limit: int = 50
    offset: int = 0
    district: str | None = None
    application_number: str | None = None


class RoutingRecords(Protocol):
    """Routing's records as the use cases see them (`RoutingStore`; a fake in unit tests)."""

    async def get(self, application_id: str) -> RoutingFile | None: ...
    async def seen(self, application_ids: Sequence[str]) -> set[str]: ...
    async def add(
        self, decided: Sequence[tuple[RoutingFile, Sequence[Outgoing]]]
    ) -> list[Pending]: ...
    async def replace(
        self, before: RoutingFile, after: RoutingFile, *, messages: Sequence[Outgoing]
    ) -> tuple[bool, Pending | None]: ...
    async def pending(self, page: QueuePage) -> tuple[list[PendingApplication], int]: ...


class RoutingStore:
    def __init__(self, db: Database, publisher: Publisher, cipher: PiiCipher) -> None:
        self._applications = db["routing_applications"]
        # What officers decided for applications that waited: the learned model's lessons.
        self._decisions = db["routing_decisions"]
        self._cipher = cipher
        self.outbox = Outbox(self._applications, publisher, cipher)

    async def ensure_indexes(self) -> None:
        await self.outbox.ensure_indexes()
        # The officers' queue: pending applications, oldest first, optionally by province.
        await self._applications.create_index(
            [("state", ASCENDING), ("province_code", ASCENDING), ("pending.since", ASCENDING)]
        )
        # Not with `_id` in it: nx-27017 0.8.1 then refuses every insert ("JSON path error").
        await self._decisions.create_index([("decided_at", ASCENDING)])

    def to_document(self, file: RoutingFile) -> dict[str, Any]:
        app = file.application
        document = app.model_dump(mode="python", exclude={"application_id", "applicant"})
        document["_id"] = app.application_id
        document["application_type"] = app.application_type.value
        document["channel"] = app.channel.value
        # Name and phone are personal data: sealed at rest like everything personal here.
        # The contact's own fields in clear inside the ciphertext (a JSON dump would seal them
        # again with the bus's key, which a key rotation could not reach).
        document["applicant"] = self._cipher.encrypt(json.dumps(app.applicant.model_dump()))
        document["priority_first"] = 1 if app.priority else 0  # the queue's order
        return document | _changing(file)

    def from_document(self, document: dict[str, Any]) -> RoutingFile:
        fields = {k: v for k, v in document.items() if k in ApplicationRecord.model_fields}
        fields["application_id"] = document["_id"]
        fields["applicant"] = ApplicantContact.model_validate_json(
            self._cipher.decrypt(document["applicant"])
        )
        return RoutingFile.model_validate(
            {
                **{k: document.get(k) for k in ("state", "round", "routing")},
                "application": fields,
                "waiting": document.get("pending"),
                "returns": document.get("returns") or [],
            }
        )

    async def get(self, application_id: str) -> RoutingFile | None:
        document = await self._applications.find_one({"_id": application_id})
        return None if document is None else self.from_document(document)

    async def seen(self, application_ids: Sequence[str]) -> set[str]:
        """Which of these applications are here already (one query for a whole batch)."""
        found = self._applications.find({"_id": {"$in": list(application_ids)}}, {"_id": 1})
        return {doc["_id"] async for doc in found}

    async def add(self, decided: Sequence[tuple[RoutingFile, Sequence[Outgoing]]]) -> list[Pending]:
        """Insert new applications with their events in one write; a redelivered one (already
        there) is skipped. Returns what is to be delivered."""
        documents, written = [], []
        for file, messages in decided:
            fields, pending = self.outbox.fields(file.application_id, messages)
            documents.append(self.to_document(file) | fields)
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

    async def replace(
        self, before: RoutingFile, after: RoutingFile, *, messages: Sequence[Outgoing]
    ) -> tuple[bool, Pending | None]:
        """Stores a step of the file's life with its events, only if nobody took a step from
        the same state and round meanwhile (two officers at once, two routing processes).

        The whole `returns` history is set: nx-27017 0.8.1 stores a `$push`ed sub-document as
        a JSON string, and the round in the filter already keeps concurrent writers apart.
        """
        update = self.outbox.push(messages)
        update["$set"] = {**update.get("$set", {}), **_changing(after)}
        doc = await self._applications.find_one_and_update(
            {"_id": before.application_id, "state": before.state, "round": before.round},
            update,
            projection={"outbox": 1, "outbox_token": 1},
            return_document=ReturnDocument.AFTER,
        )
        return doc is not None, self.outbox.pending_of(doc)

    async def pending(self, page: QueuePage) -> tuple[list[PendingApplication], int]:
        """The officers' queue, oldest first; the applicant's sealed contact is not read."""
        query: dict[str, Any] = {"state": PENDING}
        if page.province_code is not None:
            query["province_code"] = page.province_code
        if page.district is not None:
            query["district"] = page.district
        if page.application_number is not None:
            query["application_number"] = page.application_number
        cursor = (
            self._applications.find(query, {"applicant": 0, "outbox": 0})
            # Escorted applicants first, whatever their kind, then the longest waiting.
            .sort(
                [("priority_first", DESCENDING), ("pending.since", ASCENDING), ("_id", ASCENDING)]
            )
            .skip(page.offset)
            .limit(page.limit)
        )
        items = [_queue_line(d) for d in await cursor.to_list(length=page.limit)]
        total = await self._applications.count_documents(query)
        return items, total

    # --- Officers' decisions, for the learned model (services/routing/learned.py) -------------

    async def record_decision(self, decision: OfficerDecision) -> None:
        """Keep one officer's decision; the same decision recorded twice is kept once."""
        document = decision.model_dump(mode="python")
        document["_id"] = f"{decision.application_id}:{decision.round}"
        try:
            await self._decisions.insert_one(document)
        except DuplicateKeyError:
            pass

    async def decisions_marker(self) -> tuple[int, str | None]:
        """How many decisions there are and the newest one: changes when any process adds one."""
        newest = await self._decisions.find_one(
            {}, {"_id": 1}, sort=[("decided_at", DESCENDING), ("_id", DESCENDING)]
        )
        count = await self._decisions.count_documents({})
        return count, None if newest is None else str(newest["_id"])

    async def recent_decisions(self, limit: int) -> list[OfficerDecision]:
        """The newest `limit` decisions, oldest first (every process trains on the same order)."""
        cursor = (
            self._decisions.find({})
            .sort([("decided_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        documents = await cursor.to_list(length=limit)
        return [OfficerDecision.model_validate(d) for d in reversed(documents)]


def _changing(file: RoutingFile) -> dict[str, Any]:
    """What a step of an application's life changes in its document; its own fields never do."""
    dumped = file.model_dump(mode="python", include={"state", "round", "routing", "returns"})
    return dumped | {"pending": file.waiting.model_dump() if file.waiting else None}


def _queue_line(document: dict[str, Any]) -> PendingApplication:
    waiting = document["pending"]
    returns = document.get("returns") or []
    text = document.get("text", "")
    return PendingApplication.model_validate(
        {
            **{k: v for k, v in document.items() if k in PendingApplication.model_fields},
            "application_id": document["_id"],
            "excerpt": text
            if len(text) <= EXCERPT_CHARS
            else text[: EXCERPT_CHARS - 1].rstrip() + "…",
            "reason": waiting["reason"],
            "suggestions": waiting.get("suggestions", []),
            "waiting_since": waiting["since"],
            "returned_by": returns[-1]["institution_code"] if returns else None,
        }
    )
