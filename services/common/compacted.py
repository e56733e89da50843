"""A compacted topic that every process reads whole: the newest event per key, kept in memory.

Consumer groups share a topic's partitions between processes. A table that each process needs
entirely, such as which provinces routing serves, is read without a group instead. Each process
starts at the beginning, counts as caught up once it reaches the end it saw on arrival, and then
follows what comes next. A message that does not decode is logged and counted, and skipped.
Every process reads it, so a dead letter from each would only repeat itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from services.common.events import Envelope
from services.common.observability import EVENTS_CONSUMED

E = TypeVar("E", bound=Envelope)

log = logging.getLogger("acikkapi.compacted")


class CompactedView(Generic[E]):
    """The newest `model` per key of `topic`; `follow` is the service's background loop."""

    def __init__(
        self, kafka: Mapping[str, Any], topic: str, model: type[E], *, client_id: str
    ) -> None:
        self.kafka = kafka  # kafka_auth.client_options(...) of the reading service
        self.topic = topic
        self.model = model
        self.client_id = client_id
        self.latest: dict[str, E] = {}
        self.caught_up = asyncio.Event()
        # Caught up and holding at least one key: there is something to go by.
        self.populated = asyncio.Event()

    async def follow(self) -> None:
        """Reads the topic from the beginning and keeps following it; a broker that goes away
        is waited for, and the topic read again from the start when it is back."""
        delay = 0.5
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away, or partitions added: read again
                log.warning(
                    "compacted topic unreadable, retrying",
                    extra={"topic": self.topic, "error": f"{type(exc).__name__}: {exc}"},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _read(self) -> None:
        # No group: every partition is this process's, read from the beginning; a topic that
        # does not exist yet is waited for.
        consumer = AIOKafkaConsumer(
            self.topic,
            **self.kafka,
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            latest: dict[str, E] = {}  # a fresh read replaces what an earlier one built
            end: dict[TopicPartition, int] = {}
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                for records in batches.values():
                    for record in records:
                        self._apply(latest, record.key, record.value)
                if self.caught_up.is_set() and self.latest is latest:
                    if latest:
                        self.populated.set()
                    continue
                assigned = sorted(consumer.assignment())
                if not assigned:
                    continue
                end = end or await consumer.end_offsets(assigned)
                if all([await consumer.position(tp) >= end[tp] for tp in assigned]):
                    self.latest = latest  # from now on updated in place
                    self.caught_up.set()
                    if latest:
                        self.populated.set()
        finally:
            await consumer.stop()

    def _apply(self, latest: dict[str, E], key: bytes | None, value: bytes | None) -> None:
        name = (key or b"").decode(errors="replace")
        if value is None:
            latest.pop(name, None)  # a tombstone: the key is withdrawn
            return
        try:
            latest[name] = self.model.model_validate_json(value)
        except ValidationError as exc:
            EVENTS_CONSUMED.labels(self.topic, "invalid").inc()
            log.warning(
                "undecodable message on a compacted topic skipped",
                extra={"topic": self.topic, "key": name, "errors": exc.error_count()},
            )
            return
        EVENTS_CONSUMED.labels(self.topic, "ok").inc()
