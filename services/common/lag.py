"""Consumer lag: how many messages each of a service's consumer groups is behind the end of
each partition it reads, measured from the broker and exported as `acikkapi_consumer_lag`.

Every process of a service measures its own groups every 15 s, as the service's own Kafka user
(its ACLs: Read on its groups and its topics, which imply the Describe that offset fetches and
offset lists need). The lag is a fact of the group, not of the process, so any process's answer
is the group's; dashboards and alerts take the maximum over processes.

The measurement never harms the service: a broker that is away or a refused request is logged
once per outage, the lag series are removed (absent, not a stale number that looks fine), and
the next round tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from services.common.observability import CONSUMER_LAG, withdraw

log = logging.getLogger("acikkapi.lag")

INTERVAL_SECONDS = 15.0
# One round (metadata, end offsets, every group's committed offsets) must end within this:
# aiokafka waits for ever for the offsets of a partition whose leader is unknown.
ROUND_TIMEOUT_SECONDS = 10.0

Groups = Callable[[], Mapping[str, Iterable[str]]]


def subscribed_groups(broker: KafkaBroker) -> dict[str, set[str]]:
    """The consumer groups of a service's subscribers and the topics each reads."""
    groups: dict[str, set[str]] = {}
    for subscriber in broker.subscribers:
        group = getattr(subscriber, "group_id", None)
        if group:
            names = (t.name for t in getattr(subscriber, "topics", ()))
            groups.setdefault(group, set()).update(names)
    return groups


@dataclass(frozen=True, order=True)
class Lag:
    group: str
    topic: str
    partition: int
    messages: int


def lag_of(committed: int, begin: int, end: int) -> int:
    """Messages between a group's position and the partition's high watermark. A group that
    never committed starts at the earliest message (the services' `auto_offset_reset`); a
    committed offset the retention has passed is read from the earliest message too."""
    position = committed if committed >= begin else begin
    return max(0, end - position)


class LagMonitor:
    """Measures the lag of `groups()` with the clients `kafka` describes (aiokafka options of
    the service's own user) and keeps `acikkapi_consumer_lag` equal to the last measurement."""

    def __init__(
        self,
        kafka: Mapping[str, Any],
        groups: Groups,
        *,
        interval: float = INTERVAL_SECONDS,
        timeout: float = ROUND_TIMEOUT_SECONDS,
    ) -> None:
        self._kafka = dict(kafka)
        self._groups = groups
        self.interval = interval
        self.timeout = timeout
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._exported: set[tuple[str, str, str]] = set()
        self._failing = False

    async def run(self) -> None:
        """The background loop of a service process."""
        try:
            while True:
                await self.update()
                await asyncio.sleep(self.interval)
        finally:
            await self.close()

    async def update(self) -> list[Lag] | None:
        """One round: measure and export. None (and no lag series) when it failed."""
        try:
            lags = await asyncio.wait_for(self.measure(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "consumer lag not measured; retrying every round, logged once",
                    extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
                )
            self._failing = True
            self._export([])
            await self.close()  # fresh connections next round
            return None
        if self._failing:
            log.info("consumer lag measured again")
            self._failing = False
        self._export(lags)
        return lags

    async def measure(self) -> list[Lag]:
        """The lag of every partition of every topic of every group."""
        wanted = {group: set(names) for group, names in self._groups().items() if names}
        if not wanted:
            return []
        admin, consumer = await self._clients()
        described = await admin.describe_topics(sorted(set().union(*wanted.values())))
        partitions: dict[str, list[TopicPartition]] = {}
        for topic in described:
            if topic.get("error_code", 0) == 0:
                partitions[topic["topic"]] = [
                    TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]
                ]
        every = [tp for tps in partitions.values() for tp in tps]
        if not every:
            return []
        ends, begins = await asyncio.gather(
            consumer.end_offsets(every), consumer.beginning_offsets(every)
        )

        async def committed(group: str) -> tuple[str, dict[TopicPartition, int]]:
            mine = [tp for topic in sorted(wanted[group]) for tp in partitions.get(topic, [])]
            if not mine:
                return group, {}
            offsets = await admin.list_consumer_group_offsets(group, partitions=mine)
            return group, {tp: offsets[tp].offset if tp in offsets else -1 for tp in mine}

        found = await asyncio.gather(*(committed(group) for group in sorted(wanted)))
        return sorted(
            Lag(group, tp.topic, tp.partition, lag_of(offset, begins[tp], ends[tp]))
            for group, offsets in found
            for tp, offset in offsets.items()
        )

    def _export(self, lags: list[Lag]) -> None:
        now = set()
        for lag in lags:
            labels = (lag.group, lag.topic, str(lag.partition))
            CONSUMER_LAG.labels(*labels).set(lag.messages)
            now.add(labels)
        for gone in self._exported - now:
            withdraw(CONSUMER_LAG, *gone)
        self._exported = now

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            await self.close()
            admin = AIOKafkaAdminClient(**self._kafka, client_id="acikkapi-lag")
            consumer = AIOKafkaConsumer(
                **self._kafka, group_id=None, enable_auto_commit=False, client_id="acikkapi-lag"
            )
            self._admin, self._consumer = admin, consumer
            await admin.start()
            await consumer.start()
        return self._admin, self._consumer

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
