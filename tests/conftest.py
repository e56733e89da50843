"""Fixtures shared by every test ring. Integration and e2e tests use the real stack that
`make test` starts on its own ports (see deploy/local/stack.py); `AK_*` variables point at it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI

from services.common import kafka_auth, messaging, topics
from services.common.auth import Role
from services.common.mongo import Client, make_client
from services.common.settings import Settings
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy import default_registry
from tests.support import bearer

CHECKS_OFF: dict[str, Any] = {
    "identity_verifier": "off",
    "phone_verification": False,
    "daily_limit_per_tckn": 0,
    "daily_limit_per_phone": 0,
    "client_posts_per_minute": 0,
    # SMS go at any hour of a test run (quiet hours have tests of their own).
    "sms_quiet_hours": "",
}


def checks_off_env() -> dict[str, str]:
    """CHECKS_OFF as the environment of a service process (the pipeline tests' senders are not
    people of the demo registry, and they send more than a person may in a day)."""
    return {
        f"AK_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in CHECKS_OFF.items()
    }


@pytest.fixture(scope="session")
def settings() -> Settings:
    # A database prefix of its own per run, so tests never see each other's data. The citizen
    # checks (identity, phone code, limits) are off here: each has tests of its own
    # (tests/integration/test_intake_citizen_checks.py) that turn it on. Services run in this
    # process use test groups and topics, so they connect as the broker's admin; the e2e
    # ring's service processes, and tests/integration/test_kafka_acl.py, use their own users.
    return Settings(
        db_prefix=f"t{uuid.uuid4().hex[:8]}", kafka_username=kafka_auth.ADMIN, **CHECKS_OFF
    )


@pytest.fixture(scope="module")
async def mongo(settings: Settings) -> AsyncIterator[Client]:
    """A client of the test stack's MongoDB, one per test module."""
    client = make_client(settings)
    yield client
    await client.close()


def kafka(bootstrap: str) -> dict[str, Any]:
    """aiokafka's connection options for the test helpers: the stack's broker at `bootstrap`,
    as its admin (they read, write and create any topic and group)."""
    return kafka_auth.client_options(Settings(), kafka_auth.ADMIN, bootstrap=bootstrap)


async def create_topics(bootstrap: str, names: list[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(**kafka(bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def produce(
    bootstrap: str, topic: str, value: bytes | dict[str, Any], key: str | None = None
) -> None:
    producer = AIOKafkaProducer(**kafka(bootstrap), acks="all")
    await producer.start()
    try:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        await producer.send_and_wait(topic, body, key=key.encode() if key else None)
    finally:
        await producer.stop()


async def intake_serves_denizli(app: FastAPI, settings: Settings, timeout: float = 60) -> None:
    """Routing's announcement of Denizli, as every routing start makes it, and the wait until
    the intake `app` has read it: intake registers nothing for a province it has not heard of."""
    event = taxonomy_published(default_registry().for_province(20))
    await produce(settings.kafka_bootstrap, topics.TAXONOMY, event.to_bytes(), "20")
    await intake_takes(app, [20], timeout)


@asynccontextmanager
async def running_intake(
    settings: Settings, consumer_group: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An intake app running in this process, serving Denizli, and a client for its API."""
    from services.intake.app import build_app

    app = build_app(settings, consumer_group=consumer_group)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        await intake_serves_denizli(app, settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            yield app, http


async def intake_takes(app: FastAPI, provinces: Sequence[int], timeout: float = 60) -> None:
    """Wait until the intake `app` serves these provinces and admits applications."""
    async with asyncio.timeout(timeout):
        while not all(p in app.state.served for p in provinces) or app.state.admission.down:
            await asyncio.sleep(0.1)


async def consume_until(
    bootstrap: str,
    topic: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
    from_beginning: bool = True,
) -> dict[str, Any]:
    """Read `topic` with a plain Kafka client until a JSON message satisfies `predicate`."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka(bootstrap),
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
                if isinstance(body, dict) and predicate(body):
                    return body
    finally:
        await consumer.stop()
    raise AssertionError(f"no matching message on {topic} within {timeout}s")


async def topic_partitions(bootstrap: str, names: list[str]) -> list[TopicPartition]:
    """Every partition of the topics, each of which must exist."""
    partitions = await messaging.topic_partitions(kafka(bootstrap), names)
    missing = set(names) - {tp.topic for tp in partitions}
    assert not missing, f"no such topics on the broker: {sorted(missing)}"
    return partitions


async def start_group_at_end(bootstrap: str, group: str, names: list[str]) -> None:
    """Commit a fresh consumer group's offsets at the topics' current end, so the service under
    test handles only what the test produces, not everything earlier runs left on them."""
    partitions = await topic_partitions(bootstrap, names)
    consumer = AIOKafkaConsumer(**kafka(bootstrap), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def fresh_consumer_group(
    bootstrap: str, service: str, consumes: list[str], produces: Sequence[str] = ()
) -> str:
    """A consumer group of its own for a service under test, starting at the end of the topics
    it consumes. The topics (and the dead-letter topics of those it consumes) are made sure of
    first, with the partition counts the stack gives them."""
    for name in [*consumes, *produces]:
        await create_topics(bootstrap, [name], partitions=topics.PARTITIONS[name])
    await create_topics(bootstrap, [topics.dlq(t) for t in consumes], topics.DLQ_PARTITIONS)
    group = f"test-{service}-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, consumes)
    return group


class Tap:
    """Reads topics from where they ended when the tap started into memory, so a test can wait
    for what it caused without replaying what other runs produced. Use it with `async with`, or
    call `start()` and `stop()`."""

    def __init__(self, bootstrap: str, names: list[str]) -> None:
        self._bootstrap = bootstrap
        self._names = names
        self._consumer = AIOKafkaConsumer(
            **kafka(bootstrap), group_id=None, enable_auto_commit=False
        )
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self.seen: list[tuple[str, str | None, dict[str, Any]]] = []

    async def start(self) -> None:
        self._partitions = await topic_partitions(self._bootstrap, self._names)
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_end(*self._partitions)
        for tp in self._partitions:
            await self._consumer.position(tp)  # fix the start now, before the test produces
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()

    async def __aenter__(self) -> Tap:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        async for record in self._consumer:
            try:
                value = json.loads(record.value or b"")
            except ValueError:
                continue
            if isinstance(value, dict):
                key = record.key.decode() if record.key else None
                self.seen.append((record.topic, key, value))

    async def wait_for(
        self, topic: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> tuple[str | None, dict[str, Any]]:
        """The key and body of the first message on `topic` that satisfies `predicate`."""
        async with asyncio.timeout(timeout):
            while True:
                for seen_topic, key, value in self.seen:
                    if seen_topic == topic and predicate(value):
                        return key, value
                await asyncio.sleep(0.05)

    def count(self, topic: str, predicate: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for t, _, v in self.seen if t == topic and predicate(v))

    async def caught_up(self, timeout: float = 20) -> None:
        """Wait until the tap has read everything that is on its topics now."""
        ends = await self._consumer.end_offsets(self._partitions)
        async with asyncio.timeout(timeout):
            while [tp for tp, end in ends.items() if await self._consumer.position(tp) < end]:
                await asyncio.sleep(0.05)


@dataclass
class ServiceUnderTest:
    """A service running in the test process: a client for its HTTP API and its settings."""

    http: httpx.AsyncClient
    settings: Settings

    def token(self, role: Role, institution: str | None = None) -> dict[str, str]:
        return bearer(self.settings, role, institution=institution)
