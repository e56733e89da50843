"""The one way a service stores a change and announces it: a transactional outbox on the very
document that changed.

A write that changes state also appends the events it causes to the document's `outbox` (one
write, so there is no window between "stored" and "announced"). After the write, `deliver`
publishes those events, awaits the broker's acknowledgements, and clears the outbox, but only
if no later write added to it meanwhile (`outbox_token`). If the process dies in between, or
Kafka is away, the events stay in the document: the relay, running in every process, takes
such documents with a lease once `outbox_due` has passed and publishes them. A rare second
publication is harmless: events carry deterministic ids and every consumer drops repeats.

Entries are strings, sealed with the service's PII key (AES-GCM): an event may carry a phone
number (an SMS request) and personal data is encrypted at rest, in an outbox too. (Strings also
suit nx-27017 0.8.1, which stores a `$push`ed sub-document as JSON text.) A write that replaces
a whole document must carry the entries it read (`carried`); a `$set`/`$push` write appends
with `push`.

Clearing can wait: `deliver(..., clear_later=True)` returns once the broker has the events and
clears the outboxes of many deliveries in one write, in the background (an HTTP request then
costs one write, not two). A crash before that clear only makes the relay publish the events a
second time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter
from pymongo import ASCENDING, ReturnDocument, UpdateOne

from services.common.messaging import Outgoing, Publisher
from services.common.mongo import Collection
from services.common.pii import PiiCipher

log = logging.getLogger("acikkapi.outbox")

FIELD = "outbox"
TOKEN = "outbox_token"
DUE = "outbox_due"  # epoch seconds after which the relay may publish what is still there

RELAYED = Counter(
    "acikkapi_outbox_relayed_total",
    "Outbox events published by the relay (their first publisher died or Kafka was away)",
    ["collection"],
)


def encode(message: Outgoing) -> str:
    return json.dumps(
        {
            "topic": message.topic,
            "key": message.key,
            "value": message.value.decode(),
            "headers": message.headers,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode(entry: str) -> Outgoing:
    data = json.loads(entry)
    return Outgoing(data["topic"], data["key"], data["value"].encode(), data.get("headers") or {})


@dataclass(frozen=True)
class Pending:
    """Events written into one document's outbox, and the token of that write."""

    document_id: Any
    token: str
    messages: tuple[Outgoing, ...]


class Delivery(Protocol):
    """What a writer needs of an outbox after its write (`Outbox`; unit tests pass a fake)."""

    async def deliver(
        self, pending: Iterable[Pending | None], *, clear_later: bool = False
    ) -> None: ...


class Outbox:
    """The outbox of one collection: stamp writes, deliver after them, relay what was left."""

    GRACE_SECONDS = 5.0  # a writer normally delivers within this; then the relay may
    LEASE_SECONDS = 30.0
    RELAY_INTERVAL = 5.0
    RELAY_BATCH = 200

    CLEAR_BATCH = 500

    def __init__(self, collection: Collection, publisher: Publisher, cipher: PiiCipher) -> None:
        self.collection = collection
        self.publisher = publisher
        self.cipher = cipher
        self._to_clear: list[Pending] = []
        self._clearer: asyncio.Task[None] | None = None

    def seal(self, message: Outgoing) -> str:
        return self.cipher.encrypt(encode(message))

    def open(self, entry: str) -> Outgoing:
        if entry.startswith("{"):  # written before entries were sealed
            return decode(entry)
        return decode(self.cipher.decrypt(entry))

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([(DUE, ASCENDING)])

    # --- writing -------------------------------------------------------------------------------

    def fields(
        self, document_id: Any, messages: Sequence[Outgoing], carried: Iterable[str] = ()
    ) -> tuple[dict[str, Any], Pending | None]:
        """The outbox fields of a whole-document write (insert or replace).

        `carried` are the entries the replaced document still held: they are not lost.
        """
        kept = list(carried)
        entries = [*kept, *(self.seal(m) for m in messages)]
        if not entries:
            return {FIELD: []}, None
        token = uuid.uuid4().hex
        pending = Pending(document_id, token, (*(self.open(e) for e in kept), *messages))
        return {FIELD: entries, TOKEN: token, DUE: time.time() + self.GRACE_SECONDS}, pending

    def push(self, messages: Sequence[Outgoing]) -> dict[str, Any]:
        """The update operators that append `messages` in a `$set`/`$push` write.

        Merge them into the update, write with `find_one_and_update` (returning the document
        after), and give that document to `pending_of`: it may hold entries of an earlier
        write too, and they are published with these.
        """
        if not messages:
            return {}
        return {
            "$push": {FIELD: {"$each": [self.seal(m) for m in messages]}},
            "$set": {TOKEN: uuid.uuid4().hex, DUE: time.time() + self.GRACE_SECONDS},
        }

    def pending_of(self, document: Mapping[str, Any] | None) -> Pending | None:
        """What a document's outbox holds after a write, to deliver."""
        entries = carried(document)
        if not document or not entries:
            return None
        return Pending(
            document["_id"], document.get(TOKEN) or "", tuple(self.open(e) for e in entries)
        )

    # --- after the write -----------------------------------------------------------------------

    async def deliver(
        self, pending: Iterable[Pending | None], *, clear_later: bool = False
    ) -> None:
        """Publish what the writes put in their outboxes, then clear those outboxes (now, or
        with other deliveries' in one background write)."""
        batch = [p for p in pending if p is not None]
        if not batch:
            return
        await self.publisher.send_all(m for p in batch for m in p.messages)
        if not clear_later:
            await self._clear(batch)
            return
        self._to_clear.extend(batch)
        if self._clearer is None or self._clearer.done():
            self._clearer = asyncio.create_task(self._clear_queued(), name="outbox-clear")

    async def _clear_queued(self) -> None:
        # What queues while one clear is written goes into the next: one write per round trip.
        while self._to_clear:
            batch = self._to_clear[: self.CLEAR_BATCH]
            del self._to_clear[: self.CLEAR_BATCH]
            try:
                await self._clear(batch)
            except Exception as exc:  # the relay publishes these again later: harmless
                log.warning("outbox clear failed", extra={"error": type(exc).__name__})

    async def flush(self) -> None:
        """Wait for the background clears (at shutdown)."""
        if self._clearer is not None:
            await self._clearer

    async def _clear(self, batch: Sequence[Pending]) -> None:
        # A later write changed the token: its writer (or the relay) publishes everything then.
        await self.collection.bulk_write(
            [
                UpdateOne(
                    {"_id": p.document_id, TOKEN: p.token},
                    {"$set": {FIELD: []}, "$unset": {TOKEN: "", DUE: ""}},
                )
                for p in batch
            ],
            ordered=False,
        )

    # --- the relay -----------------------------------------------------------------------------

    async def relay_once(self, now: float | None = None) -> int:
        """Publish what writers left behind; returns how many documents were relayed."""
        relayed = 0
        for _ in range(self.RELAY_BATCH):
            stamp = time.time() if now is None else now
            doc = await self.collection.find_one_and_update(
                {DUE: {"$lte": stamp}},
                {"$set": {DUE: stamp + self.LEASE_SECONDS}},
                projection={FIELD: 1, TOKEN: 1},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                break
            pending = self.pending_of(doc)
            if pending is not None:
                await self.publisher.send_all(pending.messages)
                await self._clear([pending])
            else:
                await self.collection.update_one({"_id": doc["_id"]}, {"$unset": {DUE: ""}})
            RELAYED.labels(self.collection.name).inc()
            relayed += 1
        if relayed:
            log.info("outbox relay published", extra={"documents": relayed})
        return relayed

    async def run_relay(self) -> None:
        while True:
            try:
                await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.RELAY_INTERVAL)


def carried(document: Mapping[str, Any] | None) -> list[str]:
    """The outbox entries a document still holds (for a write that replaces it whole)."""
    return list(document.get(FIELD) or []) if document else []
