"""Consumer lag on the real broker (services/common/lag.py): messages nobody consumed count, a
commit brings the figure down, every service measures its own groups as its own Kafka user (its
ACLs allow it), and a running service exports the figure at /metrics."""

from __future__ import annotations

import asyncio
import importlib
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from deploy.local import kafka_acl
from services.common import kafka_auth, topics
from services.common.lag import LagMonitor, subscribed_groups
from services.common.settings import SERVICE_PORTS, Settings
from services.reporting.app import build_app
from tests.conftest import create_topics, fresh_consumer_group, kafka

pytestmark = pytest.mark.integration


async def measured(monitor: LagMonitor) -> dict[int, int]:
    """partition → lag, from the next round that succeeds (a topic just created may have no
    leader for a moment)."""
    async with asyncio.timeout(30):
        while (lags := await monitor.update()) is None:
            await asyncio.sleep(0.5)
    return {lag.partition: lag.messages for lag in lags}


def exported(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "acikkapi_consumer_lag", {"group": group, "topic": topic, "partition": str(partition)}
    )


async def commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(**kafka(settings.kafka_bootstrap), group_id=group)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def test_messages_nobody_consumed_are_lag_and_a_commit_brings_it_down(
    settings: Settings,
) -> None:
    topic = f"test.lag.{uuid.uuid4().hex[:8]}"
    group = f"test-lag-{uuid.uuid4().hex[:8]}"
    await create_topics(settings.kafka_bootstrap, [topic], partitions=3)
    monitor = LagMonitor(kafka(settings.kafka_bootstrap), lambda: {group: {topic}})
    try:
        assert await measured(monitor) == {0: 0, 1: 0, 2: 0}

        # Seven messages on partition 0 and three on 2, and the group has read none of them.
        parts = [(0, 7), (2, 3)]
        values = [(f"k{p}-{i}", b"{}", p) for p, n in parts for i in range(n)]
        await produce_to_partitions(settings, topic, values)
        assert await measured(monitor) == {0: 7, 1: 0, 2: 3}
        assert exported(group, topic, 0) == 7
        assert exported(group, topic, 2) == 3

        # The group reads five of partition 0 and all of partition 2.
        await commit(settings, group, {TopicPartition(topic, 0): 5, TopicPartition(topic, 2): 3})
        assert await measured(monitor) == {0: 2, 1: 0, 2: 0}
        assert exported(group, topic, 0) == 2

        # A consumer of the group reads to the end and commits: no lag left.
        consumer = AIOKafkaConsumer(
            topic,
            **kafka(settings.kafka_bootstrap),
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            async with asyncio.timeout(20):
                read = 0
                while read < 2:
                    batches = await consumer.getmany(timeout_ms=500)
                    read += sum(len(records) for records in batches.values())
            await consumer.commit()
        finally:
            await consumer.stop()
        assert await measured(monitor) == {0: 0, 1: 0, 2: 0}
    finally:
        await monitor.close()


async def produce_to_partitions(
    settings: Settings, topic: str, values: list[tuple[str, bytes, int]]
) -> None:
    producer = AIOKafkaProducer(**kafka(settings.kafka_bootstrap), acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key.encode(), partition=partition)
            for key, value, partition in values
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
async def test_each_service_measures_its_own_groups_as_its_own_kafka_user(service: str) -> None:
    """The ACLs of kafka_acl's table let each service describe its groups and topics: every
    partition of every topic each group reads has a figure."""
    env = Settings()  # the test stack's broker, as the service processes are configured
    app = importlib.import_module(f"services.{service}.app").build_app(env)
    groups = subscribed_groups(app.state.runtime.broker)
    assert groups and all(g.startswith(kafka_acl.service_group(service)) for g in groups)
    monitor = LagMonitor(kafka_auth.client_options(env, service), lambda: groups)
    try:
        lags = await monitor.update()
    finally:
        await monitor.close()
    assert lags is not None, f"{service} could not measure its lag (ACLs?)"
    counted = {(lag.group, lag.topic) for lag in lags}
    assert counted == {(g, t) for g, names in groups.items() for t in names}
    for group, names in groups.items():
        for name in names:
            mine = [lag for lag in lags if lag.group == group and lag.topic == name]
            assert len(mine) == topics.PARTITIONS[name], (group, name)
            assert all(lag.messages >= 0 for lag in mine)


async def test_a_running_service_exports_its_groups_lag_at_metrics(settings: Settings) -> None:
    reads = list(kafka_acl.SERVICES["reporting"].consumes)
    group = await fresh_consumer_group(settings.kafka_bootstrap, "reporting", reads)
    app = build_app(settings, consumer_group=group)
    wanted = {f'acikkapi_consumer_lag{{group="{group}",partition="0",topic="{t}"}}' for t in reads}
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://reporting") as http:
            async with asyncio.timeout(20):
                while True:
                    text = (await http.get("/metrics")).text
                    lines = {line.rsplit(" ", 1)[0] for line in text.splitlines()}
                    if wanted <= lines:
                        break
                    await asyncio.sleep(0.2)
