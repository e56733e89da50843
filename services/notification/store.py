"""Notification's own collection: one document per idempotency key (its `_id`), holding the
message's state so that a key is sent at most once, whichever process sees it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.events import utcnow
from services.notification.domain import NotificationState

# The gateway may still be answering when a delivery report comes in, hence "sending" too.
_AWAITING_GATEWAY = [NotificationState.sending.value, NotificationState.uncertain.value]
_AWAITING_DELIVERY = [NotificationState.sent.value, NotificationState.uncertain.value]


def _report_field(report: dict[str, Any]) -> str:
    # One entry per report status, so a repeated report overwrites itself. A map rather than an
    # array: nx-27017 0.8.1 ignores $addToSet and stores $push-ed documents as JSON strings.
    return f"delivery_reports.{int(report['status'])}"


class NotificationStore:
    def __init__(self, db: AsyncDatabase) -> None:
        # Service-prefixed name: nx-27017 0.8.1 ignores the database name, so on the local
        # stack every service's collections share one namespace.
        self.notifications = db["notification_messages"]

    async def ensure_indexes(self) -> None:
        # Operators look for what is stuck: uncertain or still "sending" long after.
        await self.notifications.create_index(
            [("state", ASCENDING), ("created_at", ASCENDING)], name="notification_state_created"
        )

    async def claim(self, record: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Insert the record under its key; (False, existing record) when the key is known."""
        try:
            await self.notifications.insert_one(record)
            return True, record
        except DuplicateKeyError:
            existing = await self.notifications.find_one({"_id": record["_id"]})
            if existing is None:  # removed in between: treat as known, never send blind
                return False, record
            return False, existing

    async def get(self, key: str) -> dict[str, Any] | None:
        return await self.notifications.find_one({"_id": key})

    async def finish_sending(
        self, key: str, state: NotificationState, fields: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Record the gateway's answer; None when the record has moved on without us."""
        now = utcnow()
        update = {"state": state.value, "updated_at": now, **fields}
        if state is NotificationState.sent:
            update["sent_at"] = now
        return await self.notifications.find_one_and_update(
            {"_id": key, "state": {"$in": _AWAITING_GATEWAY}},
            {"$set": update},
            return_document=ReturnDocument.AFTER,
        )

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
        self, key: str, state: NotificationState, report: dict[str, Any], at: datetime
    ) -> dict[str, Any] | None:
        """Move a sent (or uncertain) message to its final delivery state; None if it is not
        waiting for one. Exactly one caller wins this, so the result is announced once."""
        return await self.notifications.find_one_and_update(
            {"_id": key, "state": {"$in": _AWAITING_DELIVERY}},
            {
                "$set": {
                    "state": state.value,
                    "updated_at": at,
                    "settled_at": at,
                    "settled_by": report,
                    _report_field(report): report,
                },
            },
            return_document=ReturnDocument.AFTER,
        )

    async def park_early_report(self, key: str, report: dict[str, Any]) -> bool:
        """A final report that arrived before the gateway's answer was written: the sending
        handler applies it right after. False when the record is not `sending` any more."""
        result = await self.notifications.update_one(
            {"_id": key, "state": NotificationState.sending.value},
            {"$set": {"early_report": report, _report_field(report): report}},
        )
        return result.modified_count == 1

    async def add_report(self, key: str, report: dict[str, Any]) -> dict[str, Any] | None:
        """Keep an intermediate (or late) report in the history; None for an unknown key."""
        return await self.notifications.find_one_and_update(
            {"_id": key},
            {"$set": {_report_field(report): report}},
            return_document=ReturnDocument.AFTER,
        )
