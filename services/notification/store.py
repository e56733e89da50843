"""Notification's own collections: one document per idempotency key (its `_id`), holding the
message's state so that a key is sent at most once, whichever process sees it; and the blind
indexes of the e-mail addresses that opted out of informational e-mail.

Waiting messages (queued, held, retrying) carry `due_at`, indexed: the due loop of every
process asks for what is due by that index, never by scanning. A process takes a message by
moving it to `sending` with a lease token of its own, in one conditional write; a message
whose lease ran out while `sending` (its process died mid-call) becomes `uncertain`, never
sent again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.events import NotificationRequest, utcnow
from services.common.messaging import Outgoing
from services.common.mongo import Database
from services.common.outbox import TOKEN as OUTBOX_TOKEN
from services.common.outbox import Outbox, Pending
from services.common.pii import PiiCipher
from services.notification.domain import (
    NOT_YET_SENT,
    Attempt,
    Message,
    NotificationState,
    ReportEntry,
    SmsShape,
    mask_recipient,
)
from services.notification.registry import TemplateEntry

# The gateway may still be answering when a delivery report comes in, hence "sending" too.
_AWAITING_GATEWAY = [NotificationState.sending.value, NotificationState.uncertain.value]
_AWAITING_DELIVERY = [NotificationState.sent.value, NotificationState.uncertain.value]
_NOT_YET_SENT = [state.value for state in NOT_YET_SENT]


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


def _epoch(moment: datetime) -> float:
    """Due times are stored as epoch seconds: nx-27017 0.8.1 writes a date set by `$set` as
    text, which would not compare with the dates of an insert (as the outbox's `outbox_due`)."""
    return moment.timestamp()


def _document(message: Message) -> dict[str, Any]:
    # Absent rather than null, as the records were always written.
    fields = message.model_dump(exclude={"idempotency_key"}, exclude_none=True)
    if message.due_at is not None:
        fields["due_at"] = _epoch(message.due_at)
    if not fields.get("history"):
        fields.pop("history", None)
    if not fields.get("delivery_reports"):
        fields.pop("delivery_reports", None)
    return {"_id": message.idempotency_key, **fields}


@dataclass(frozen=True)
class Claim:
    """A new record, and the events its insert announces (a result decided at once)."""

    record: Message
    announce: tuple[Outgoing, ...] = ()


@dataclass
class Finish:
    """What one gateway call changed on a record that `lease` holds."""

    key: str
    lease: str
    fields: dict[str, Any]
    unset: tuple[str, ...] = ()
    attempt: Attempt | None = None
    announce: list[Outgoing] = field(default_factory=list)


class NotificationStore:
    def __init__(self, db: Database, cipher: PiiCipher) -> None:
        self.cipher = cipher
        # Service-prefixed names: nx-27017 0.8.1 ignores the database name, so on the local
        # stack every service's collections share one namespace.
        self.notifications = db["notification_messages"]
        self.optouts = db["notification_email_optouts"]

    # --- records -------------------------------------------------------------------------------

    def new_record(
        self,
        request: NotificationRequest,
        *,
        state: NotificationState,
        entry: TemplateEntry | None,
        shape: SmsShape | None = None,
        content: dict[str, str] | None = None,
        due_at: datetime | None = None,
        urgent: bool = False,
        error: str | None = None,
        skip_reason: str | None = None,
        now: datetime | None = None,
    ) -> Message:
        """The record a request is claimed with; the recipient masked, and sealed for the
        sending (and for investigations); what was rendered sealed while it may still go."""
        now = now or utcnow()
        return Message(
            idempotency_key=request.idempotency_key,
            state=state,
            channel=request.channel,
            template=request.template,
            template_version=entry.version if entry else None,
            template_fingerprint=entry.fingerprint if entry else None,
            application_id=request.application_id,
            application_number=request.application_number,
            request_event_id=str(request.event_id),
            recipient_masked=mask_recipient(request.channel.value, request.to),
            recipient_enc=self.cipher.encrypt(request.to),
            created_at=now,
            updated_at=now,
            encoding=shape.encoding.value if shape else None,
            segments=shape.segments if shape else None,
            error=error,
            skip_reason=skip_reason,
            urgent=urgent,
            due_at=due_at,
            held_until=due_at if state is NotificationState.held else None,
            content_enc=self.seal(content) if content is not None else None,
        )

    def seal(self, content: dict[str, str]) -> str:
        return self.cipher.encrypt(json.dumps(content, ensure_ascii=False))

    def content_of(self, message: Message) -> dict[str, str] | None:
        """What was rendered for a waiting message (None if the record has none)."""
        if not message.content_enc:
            return None
        opened: dict[str, str] = json.loads(self.cipher.decrypt(message.content_enc))
        return opened

    def recipient_of(self, message: Message) -> str:
        return self.cipher.decrypt(message.recipient_enc)

    async def ensure_indexes(self) -> None:
        # Operators look for what is stuck: uncertain or still "sending" long after.
        await self.notifications.create_index(
            [("state", ASCENDING), ("created_at", ASCENDING)], name="notification_state_created"
        )
        # What the due loop asks for: waiting messages whose time has come, and leases run out.
        await self.notifications.create_index(
            [("due_at", ASCENDING)], name="notification_due", sparse=True
        )

    async def claim_many(
        self, claims: Sequence[Claim], outbox: Outbox
    ) -> tuple[dict[str, Message], list[Pending]]:
        """Insert records under their keys (distinct) in one write, each with the events it
        announces in its outbox. Returns the keys that were already known, with their existing
        records (a known key whose record cannot be read is reported as its new record, so it is
        never sent blind), and what the inserted records' outboxes hold, to deliver."""
        if not claims:
            return {}, []
        documents: list[dict[str, Any]] = []
        pendings: list[Pending | None] = []
        for claim in claims:
            document = _document(claim.record)
            fields, pending = outbox.fields(document["_id"], claim.announce)
            documents.append(document | (fields if pending else {}))
            pendings.append(pending)
        known_indexes: set[int] = set()
        try:
            await self.notifications.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != 11000 for error in errors):
                raise
            known_indexes = {error["index"] for error in errors}
        inserted = [p for i, p in enumerate(pendings) if i not in known_indexes and p is not None]
        if not known_indexes:
            return {}, inserted
        known_keys = sorted(claims[i].record.idempotency_key for i in known_indexes)
        existing = {
            doc["_id"]: _message(doc)
            async for doc in self.notifications.find({"_id": {"$in": known_keys}})
        }
        by_key = {claim.record.idempotency_key: claim.record for claim in claims}
        return {key: existing.get(key) or by_key[key] for key in known_keys}, inserted

    async def take(
        self,
        keys: Sequence[str],
        *,
        lease_until: datetime,
        states: Sequence[NotificationState] = NOT_YET_SENT,
        due_by: datetime | None = None,
        now: datetime | None = None,
    ) -> tuple[str, set[str]]:
        """Move the records among `keys` that are in one of `states` (nobody has sent them yet)
        and, with `due_by`, due by then, to `sending` under a new lease. Returns the lease token
        and the keys this call took: a record another process took first is not among them."""
        token = uuid.uuid4().hex
        if not keys:
            return token, set()
        selector: dict[str, Any] = {
            "_id": {"$in": list(keys)},
            "state": {"$in": [state.value for state in states]},
        }
        if due_by is not None:
            selector["due_at"] = {"$lte": _epoch(due_by)}
        result = await self.notifications.update_many(
            selector,
            {
                "$set": {
                    "state": NotificationState.sending.value,
                    "lease": token,
                    "due_at": _epoch(lease_until),
                    "updated_at": now or utcnow(),
                }
            },
        )
        if result.modified_count == len(keys):
            return token, set(keys)
        if result.modified_count == 0:
            return token, set()
        taken = self.notifications.find({"_id": {"$in": list(keys)}, "lease": token}, {"_id": 1})
        return token, {doc["_id"] async for doc in taken}

    async def finish_many(
        self, finishes: Sequence[Finish], outbox: Outbox
    ) -> tuple[int, list[Pending]]:
        """Record what the gateways answered in one write, with the events each announces in
        its outbox. Only a record still under the writer's lease takes it (a redelivery may have
        called it uncertain meanwhile; that still counts). Returns how many records took it and
        what their outboxes hold, to deliver."""
        if not finishes:
            return 0, []
        writes = []
        pendings: list[Pending] = []
        for finish in finishes:
            update: dict[str, Any] = {"$set": dict(finish.fields)}
            if isinstance(due := finish.fields.get("due_at"), datetime):
                update["$set"]["due_at"] = _epoch(due)
            if finish.attempt is not None:
                update["$set"][f"history.{finish.attempt.number}"] = finish.attempt.model_dump()
            if finish.unset:
                update["$unset"] = dict.fromkeys(finish.unset, "")
            if finish.announce:
                pushed = outbox.push(finish.announce)
                update["$push"] = pushed["$push"]
                update["$set"].update(pushed["$set"])
                # The record announced nothing since its claim that is not delivered yet (its
                # claim announces only final states), so these are all its outbox holds.
                pendings.append(
                    Pending(finish.key, pushed["$set"][OUTBOX_TOKEN], tuple(finish.announce))
                )
            writes.append(
                UpdateOne(
                    {"_id": finish.key, "lease": finish.lease, "state": {"$in": _AWAITING_GATEWAY}},
                    update,
                )
            )
        result = await self.notifications.bulk_write(writes, ordered=False)
        return result.matched_count, pendings

    async def postpone(self, due: Iterable[tuple[str, datetime]]) -> None:
        """Queued records that wait for the rate limit: due later, still queued."""
        writes = [
            UpdateOne(
                {"_id": key, "state": NotificationState.queued.value},
                {"$set": {"due_at": _epoch(at)}},
            )
            for key, at in due
        ]
        if writes:
            await self.notifications.bulk_write(writes, ordered=False)

    async def due(self, now: datetime, limit: int) -> list[Message]:
        """Waiting messages whose time has come, the longest waiting first."""
        cursor = (
            self.notifications.find(
                {"state": {"$in": _NOT_YET_SENT}, "due_at": {"$lte": _epoch(now)}}
            )
            .sort("due_at", ASCENDING)
            .limit(limit)
        )
        return [message async for doc in cursor if (message := _message(doc)) is not None]

    async def hold(self, holds: Iterable[tuple[Message, datetime]], now: datetime) -> None:
        """Waiting SMS that fell due in quiet hours: held until they end. The time a retry may
        take (`give_up_at`) moves on by the night, which is nobody's failure."""
        writes = []
        for message, until in holds:
            fields: dict[str, Any] = {
                "state": NotificationState.held.value,
                "due_at": _epoch(until),
                "held_until": until,
                "updated_at": now,
            }
            if message.give_up_at is not None:
                fields["give_up_at"] = message.give_up_at + (until - now)
            writes.append(
                UpdateOne(
                    {
                        "_id": message.idempotency_key,
                        "state": {"$in": _NOT_YET_SENT},
                        "due_at": {"$lte": _epoch(now)},
                    },
                    {"$set": fields},
                )
            )
        if writes:
            await self.notifications.bulk_write(writes, ordered=False)

    async def expire_leases(self, now: datetime) -> int:
        """Records still `sending` after their lease: the process that took them died during
        the gateway call. Uncertain, never resent (the lease stays, so a late answer of a
        process that was only slow still lands)."""
        result = await self.notifications.update_many(
            {"state": NotificationState.sending.value, "due_at": {"$lte": _epoch(now)}},
            {
                "$set": {
                    "state": NotificationState.uncertain.value,
                    "uncertain_reason": "lease_expired_while_sending",
                    "updated_at": now,
                },
                "$unset": {"due_at": ""},
            },
        )
        return result.modified_count

    async def waiting(self) -> dict[str, int]:
        """How many messages wait, by state (for the gauge)."""
        counts = dict.fromkeys(_NOT_YET_SENT, 0)
        cursor = await self.notifications.aggregate(
            [
                {"$match": {"state": {"$in": _NOT_YET_SENT}}},
                {"$group": {"_id": "$state", "count": {"$sum": 1}}},
            ]
        )
        async for row in cursor:
            counts[str(row["_id"])] = int(row["count"])
        return counts

    async def resend(self, key: str, now: datetime) -> Message | None:
        """A failed or uncertain message an operator sends again (after checking with the
        citizen that it did not arrive): retrying, due now, its history kept. None when the
        record is in no such state or holds nothing to send."""
        current = await self.get(key)
        if current is None:
            return None
        document = await self.notifications.find_one_and_update(
            {
                "_id": key,
                "state": {
                    "$in": [NotificationState.failed.value, NotificationState.uncertain.value]
                },
                "content_enc": {"$exists": True},
            },
            {
                "$set": {
                    "state": NotificationState.retrying.value,
                    "due_at": _epoch(now),
                    "updated_at": now,
                    "retry_base": current.attempts or 0,
                },
                "$unset": {"give_up_at": "", "dead_lettered_at": "", "uncertain_reason": ""},
            },
            return_document=ReturnDocument.AFTER,
        )
        return _message(document)

    async def with_early_reports(self, keys: list[str]) -> list[Message]:
        """The records among `keys` on which a delivery report waits to be applied."""
        cursor = self.notifications.find({"_id": {"$in": keys}, "early_report": {"$exists": True}})
        return [message async for doc in cursor if (message := _message(doc)) is not None]

    async def get(self, key: str) -> Message | None:
        return _message(await self.notifications.find_one({"_id": key}))

    async def mark_uncertain(self, key: str, reason: str) -> Message | None:
        """A record still `sending` whose sender is gone: uncertain. The record after, or None
        when it was not `sending` any more."""
        document = await self.notifications.find_one_and_update(
            {"_id": key, "state": NotificationState.sending.value},
            {
                "$set": {
                    "state": NotificationState.uncertain.value,
                    "uncertain_reason": reason,
                    "updated_at": utcnow(),
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        return _message(document)

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
                # A message that went out needs its text no more.
                "$unset": {"content_enc": "", "due_at": ""},
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

    # --- opting out of informational e-mail ---------------------------------------------------

    def address_index(self, address: str) -> str:
        """The keyed blind index an address is known by when it opts out; never the address."""
        return self.cipher.blind_index("email-optout:" + address)

    async def opted_out(self, indexes: Iterable[str]) -> set[str]:
        wanted = sorted(set(indexes))
        if not wanted:
            return set()
        cursor = self.optouts.find({"_id": {"$in": wanted}}, {"_id": 1})
        return {doc["_id"] async for doc in cursor}

    async def opt_out(self, index: str, via: str, at: datetime) -> bool:
        """Record an opt-out; False when the address had already opted out."""
        try:
            await self.optouts.insert_one({"_id": index, "at": at, "via": via})
        except DuplicateKeyError:
            return False
        return True
