"""Fixtures shared by every test ring. Integration and e2e tests use the real stack that
`make test` starts on its own ports (see deploy/local/stack.sh); `AK_*` variables point at it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    # A database prefix of its own per run, so tests never see each other's data.
    return Settings(db_prefix=f"t{uuid.uuid4().hex[:8]}")


async def create_topics(bootstrap: str, names: list[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, value: bytes | dict, key: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        await producer.send_and_wait(topic, body, key=key.encode() if key else None)
    finally:
        await producer.stop()


async def consume_until(
    bootstrap: str,
    topic: str,
    predicate: Callable[[dict], bool],
    timeout: float = 20.0,
    from_beginning: bool = True,
) -> dict:
    """Read `topic` with a plain Kafka client until a JSON message satisfies `predicate`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            async for record in consumer:
                try:
                    body = json.loads(record.value)
                except ValueError:
                    continue
                if predicate(body):
                    return body
    finally:
        await consumer.stop()
    raise AssertionError(f"no matching message on {topic} within {timeout}s")
