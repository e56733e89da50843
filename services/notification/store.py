"""Notification's own collection: one document per idempotency key (its `_id`), holding the
message's state so that a key is sent at most once, whichever process sees it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError

from services.common.events import NotificationRequest, utcnow
from services.common.mongo import Database
from services.common.pii import PiiCipher
from services.notification.domain import (
    Message,
    NotificationState,
    ReportEntry,
    SmsShape,
    mask_recipient,
)

# The gateway may still be answering when a delivery report comes in, hence "sending" too.
_AWAITING_GATEWAY = [NotificationState.sending.value, NotificationState.uncertain.value]
_AWAITING_DELIVERY = [NotificationState.sent.value, NotificationState.uncertain.value]


def _report_fields(report: ReportEntry) -> dict[str, Any]:
    # One entry per report status, so a repeated report overwrites itself. A map rather than an
    # array: nx-27017 0.8.1 ignores $addToSet and stores $push-ed documents as JSON strings.
    return {f"delivery_reports.{report.status}": report.model_dump()}


def _message(document: dict[str, Any] | None) -> Message | None:
    return (
        None
        if document is None
        else Message.model_validate(document | {"idempotency_key": document["_id"]})
    )


def _document(message: Message) -> dict[str, Any]:
    # Absent rather than null, as the records were always written.
    fields = message.model_dump(exclude={"idempotency_key"}, exclude_none=True)
    return {"_id": message.idempotency_key, **fields}


class NotificationStore:
    def __init__(self, db: Database, cipher: PiiCipher) -> None:
        self.cipher = cipher
        # Service-prefixed name: nx-27017 0.8.1 ignores the database name, so on the local
        # stack every service's collections share one namespace.
        self.notifications = db["notification_messages"]

    def new_record(
        self, request: NotificationRequest, shape: SmsShape | None, problem: str | None
    ) -> Message:
        """The record a request is claimed with: "sending", or "failed" with the reason why it
        cannot be sent (`problem`); the recipient masked, and sealed for investigations."""
        now = utcnow()
        return Message(
            idempotency_key=request.idempotency_key,
            state=NotificationState.failed if problem else NotificationState.sending,
            channel=request.channel,
            template=request.template,
            application_id=request.application_id,
            application_number=request.application_number,
            request_event_id=str(request.event_id),
            recipient_masked=mask_recipient(request.channel.value, request.to),
            recipient_enc=self.cipher.encrypt(request.to),
            created_at=now,
            updated_at=now,
            encoding=shape.encoding.value if shape else None,
            segments=shape.segments if shape else None,
            error=problem or None,
        )

    async def ensure_indexes(self) -> None:
        # Operators look for what is stuck: uncertain or still "sending" long after.
        await self.notifications.create_index(
            [("state", ASCENDING), ("created_at", ASCENDING)], name="notification_state_created"
        )

    async def claim_many(self, records: list[Message]) -> dict[str, Message]:
        """Insert records under their keys (distinct) in one write; the keys that were already
        known, with their existing records. A known key whose record cannot be read is still
        reported known (as its new record), so it is never sent blind."""
        if not records:
            return {}
        keys = [record.idempotency_key for record in records]
        try:
            await self.notifications.insert_many([_document(r) for r in records], ordered=False)
            return {}
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != 11000 for error in errors):
                raise
            known_keys = {keys[error["index"]] for error in errors}
        existing = {
            doc["_id"]: _message(doc)
            async for doc in self.notifications.find({"_id": {"$in": sorted(known_keys)}})
        }
        by_key = {record.idempotency_key: record for record in records}
        return {key: existing.get(key) or by_key[key] for key in known_keys}

    async def finish_many(
        self, answers: list[tuple[str, NotificationState, dict[str, Any]]]
    ) -> int:
        """Record the gateway's answers in one write; the number of records that took it (a
        record that moved on without us does not)."""
        if not answers:
            return 0
        now = utcnow()
        writes = []
        for key, state, fields in answers:
            update = {"state": state.value, "updated_at": now, **fields}
            if state is NotificationState.sent:
                update["sent_at"] = now
            writes.append(
                UpdateOne({"_id": key, "state": {"$in": _AWAITING_GATEWAY}}, {"$set": update})
            )
        result = await self.notifications.bulk_write(writes, ordered=False)
        return result.matched_count

    async def with_early_reports(self, keys: list[str]) -> list[Message]:
        """The records among `keys` on which a delivery report waits to be applied."""
        cursor = self.notifications.find({"_id": {"$in": keys}, "early_report": {"$exists": True}})
        return [message async for doc in cursor if (message := _message(doc)) is not None]

    async def get(self, key: str) -> Message | None:
        return _message(await self.notifications.find_one({"_id": key}))

    async def mark_uncertain(self, key: str, reason: str) -> bool:
        result = await self.notifications.update_one(
            {"_id": key, "state": NotificationState.sending.value},
            {
                "$set": {
                    "state": NotificationState.uncertain.value,
                    "uncertain_reason": reason,
                    "updated_at": utcnow(),
                }
            },
        )
        return result.modified_count == 1

    async def settle_delivery(
        self, key: str, state: NotificationState, report: ReportEntry, at: datetime
    ) -> Message | None:
        """Move a sent (or uncertain) message to its final delivery state; None if it is not
        waiting for one. Exactly one caller wins this, so the result is announced once."""
        document = await self.notifications.find_one_and_update(
            {"_id": key, "state": {"$in": _AWAITING_DELIVERY}},
            {
                "$set": {
                    "state": state.value,
                    "updated_at": at,
                    "settled_at": at,
                    "settled_by": report.model_dump(),
                    **_report_fields(report),
                },
            },
            return_document=ReturnDocument.AFTER,
        )
        return _message(document)

    async def park_early_report(self, key: str, report: ReportEntry) -> bool:
        """A final report that arrived before the gateway's answer was written: the sending
        handler applies it right after. False when the record is not `sending` any more."""
        result = await self.notifications.update_one(
            {"_id": key, "state": NotificationState.sending.value},
            {"$set": {"early_report": report.model_dump(), **_report_fields(report)}},
        )
        return result.modified_count == 1

    async def add_report(self, key: str, report: ReportEntry) -> Message | None:
        """Keep an intermediate (or late) report in the history; None for an unknown key."""
        document = await self.notifications.find_one_and_update(
            {"_id": key},
            {"$set": _report_fields(report)},
            return_document=ReturnDocument.AFTER,
        )
        return _message(document)
