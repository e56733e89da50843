"""The event core against the real broker and the real MongoDB-wire server: batches are
committed only after their work is done, a poison message is dead-lettered alone while the rest
of its batch goes on, a dead letter that cannot be published holds the commit back, and the
outbox publishes what a crashed writer left behind."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from services.common import messaging, topics
from services.common.events import StatusChanged
from services.common.outbox import Outbox
from services.common.pii import PiiCipher
from services.common.settings import Settings
from tests.conftest import consume_until, create_topics, kafka, produce

pytestmark = pytest.mark.integration


class Ping(BaseModel):
    n: int


async def produce_many(bootstrap: str, topic: str, values: list[tuple[str, bytes]]) -> None:
    """Produce several messages in one go, so the consumer fetches them as one batch."""
    producer = AIOKafkaProducer(**kafka(bootstrap), acks="all", linger_ms=50)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def new_topic(settings: Settings, name: str) -> str:
    topic = f"test.{name}.{uuid.uuid4().hex[:8]}"
    await create_topics(settings.kafka_bootstrap, [topic, topics.dlq(topic)])
    return topic


async def test_a_poison_message_is_dead_lettered_alone_and_its_batch_goes_on(settings: Settings):
    topic = await new_topic(settings, "poison")
    batches: list[list[int]] = []
    handled: list[int] = []
    calls_with_13 = {"n": 0}

    async def handle(events: list[Ping]) -> None:
        batches.append([e.n for e in events])
        if any(e.n == 13 for e in events):
            calls_with_13["n"] += 1
            raise RuntimeError("unlucky")
        handled.extend(e.n for e in events)

    values = [
        ("k1", b"{not json"),
        ("k2", json.dumps({"n": "abc", "tckn": "10000000146"}).encode()),
        *[(f"n{i}", json.dumps({"n": i}).encode()) for i in (1, 2, 13, 4, 5)],
    ]
    broker = messaging.make_broker(settings, "testsvc")
    messaging.subscribe(
        broker, topic, Ping, handle, service="testsvc", settings=settings, group_id=f"g-{topic}"
    )
    await produce_many(settings.kafka_bootstrap, topic, values)
    await broker.start()
    try:
        async with asyncio.timeout(20):
            while sorted(handled) != [1, 2, 4, 5]:
                await asyncio.sleep(0.05)
        letters = [
            await consume_until(
                settings.kafka_bootstrap, topics.dlq(topic), lambda b, k=key: b["key"] == k
            )
            for key in ("k1", "k2", "n13")
        ]
    finally:
        await broker.stop()
    assert max(len(b) for b in batches) == 5  # the valid ones came as one batch
    assert handled == [1, 2, 4, 5]  # in their order, each once
    assert letters[0]["error_type"] == "invalid_message"
    assert letters[0]["original"] == "{not json"
    assert (letters[0]["partition"], letters[0]["offset"]) == (0, 0)
    assert "n" in letters[1]["reason"]
    assert "10000000146" not in letters[1]["original"]  # KVKK: masked in the dead letter
    assert letters[2]["error_type"] == "handler_failed"
    assert (letters[2]["offset"], letters[2]["attempts"]) == (4, settings.consumer_max_attempts)


async def test_a_batch_is_committed_only_after_its_handler_finishes(settings: Settings):
    topic = await new_topic(settings, "commit")
    group = f"g-{topic}"
    started = asyncio.Event()

    async def slow(events: list[Ping]) -> None:
        started.set()
        await asyncio.sleep(3600)  # killed mid-work

    broker = messaging.make_broker(settings, "testsvc")
    messaging.subscribe(
        broker, topic, Ping, slow, service="testsvc", settings=settings, group_id=group
    )
    await broker.start()
    await produce_many(settings.kafka_bootstrap, topic, [("a", b'{"n": 1}'), ("b", b'{"n": 2}')])
    await asyncio.wait_for(started.wait(), 20)
    await broker.stop()

    done: list[int] = []

    async def quick(events: list[Ping]) -> None:
        done.extend(e.n for e in events)

    second = messaging.make_broker(settings, "testsvc")
    messaging.subscribe(
        second, topic, Ping, quick, service="testsvc", settings=settings, group_id=group
    )
    await second.start()
    try:
        async with asyncio.timeout(20):
            while len(done) < 2:
                await asyncio.sleep(0.05)
    finally:
        await second.stop()
    assert done == [1, 2]


async def test_an_outage_is_retried_without_dead_letters(settings: Settings):
    topic = await new_topic(settings, "outage")
    attempts = {"n": 0}
    done: list[int] = []

    async def flaky(events: list[Ping]) -> None:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise KafkaConnectionError("broker away")
        done.extend(e.n for e in events)

    broker = messaging.make_broker(settings, "testsvc")
    core = messaging.subscribe(
        broker, topic, Ping, flaky, service="testsvc", settings=settings, group_id=f"g-{topic}"
    )

    async def no_wait(_: float) -> None:
        return None

    core.sleep = no_wait
    await broker.start()
    try:
        await produce(settings.kafka_bootstrap, topic, {"n": 9}, key="k")
        async with asyncio.timeout(20):
            while not done:
                await asyncio.sleep(0.05)
    finally:
        await broker.stop()
    assert done == [9] and attempts["n"] == 3


async def test_a_dead_letter_that_cannot_be_published_holds_back_the_commit(settings: Settings):
    # The dead-letter topic does not exist and the broker does not create topics on demand
    # in this test: publishing the letter fails, so the poison message must stay uncommitted.
    topic = f"test.nodlq.{uuid.uuid4().hex[:8]}"
    await create_topics(settings.kafka_bootstrap, [topic])
    group = f"g-{topic}"
    broker = messaging.make_broker(settings, "testsvc")
    core = messaging.subscribe(
        broker,
        topic,
        Ping,
        lambda events: asyncio.sleep(0),
        service="testsvc",
        settings=settings,
        group_id=group,
    )
    tries = {"n": 0}
    real_publish = broker.publish

    async def failing_publish(*args, **kwargs):
        if kwargs.get("topic", "").endswith(".dlq"):
            tries["n"] += 1
            raise KafkaConnectionError("dead-letter topic unavailable")
        return await real_publish(*args, **kwargs)

    broker.publish = failing_publish  # type: ignore[method-assign]

    async def no_wait(_: float) -> None:
        await asyncio.sleep(0.01)

    core.sleep = no_wait
    await broker.start()
    try:
        await produce(settings.kafka_bootstrap, topic, b"{poison", key="p")
        async with asyncio.timeout(20):
            while tries["n"] < 3:
                await asyncio.sleep(0.05)
    finally:
        await broker.stop()
    committed = await _committed(settings, group, topic)
    assert committed in (None, 0)  # not past the poison message


async def _committed(settings: Settings, group: str, topic: str) -> int | None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka(settings.kafka_bootstrap), group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


# A writer process that stores a document with its event in the outbox and is SIGKILLed before
# it can publish: argv = mongo uri, database, topic.
_DIES_AFTER_STORE = """
import asyncio, os, signal, sys
from pymongo import AsyncMongoClient
from services.common.events import StatusChanged
from services.common.messaging import Outgoing
from services.common.outbox import Outbox
from services.common.pii import PiiCipher
from services.common.pii import PiiCipher
from services.common.settings import Settings

async def main():
    uri, database, topic = sys.argv[1:4]
    client = AsyncMongoClient(uri)
    collection = client[database]["docs"]
    outbox = Outbox(collection, None, PiiCipher(Settings().pii_key_bytes()))
    event = StatusChanged(
        application_id="a1", application_number="20-2026-0000001-3", status="routed",
        at="2026-03-02T09:00:00+03:00",
    )
    fields, _ = outbox.fields("a1", [Outgoing.of(topic, event, "a1")])
    await collection.insert_one({"_id": "a1", "state": "routed", **fields})
    print(event.event_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # between the store and the publish

asyncio.run(main())
"""


async def test_the_outbox_relay_publishes_what_a_killed_writer_left(settings: Settings):
    topic = await new_topic(settings, "outbox")
    database = f"{settings.db_prefix}_outbox"
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _DIES_AFTER_STORE,
        settings.mongo_uri,
        database,
        topic,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await writer.communicate()
    assert writer.returncode == -signal.SIGKILL
    event_id = out.decode().strip()

    client: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri)
    broker = messaging.make_broker(settings, "testsvc")
    await broker.start()
    try:
        collection = client[database]["docs"]
        outbox = Outbox(
            collection, messaging.Publisher(broker), PiiCipher(settings.pii_key_bytes())
        )
        await outbox.ensure_indexes()
        stored = await collection.find_one({"_id": "a1"})
        assert stored is not None and len(stored["outbox"]) == 1
        assert "20-2026-0000001-3" not in stored["outbox"][0]  # sealed at rest
        due = stored["outbox_due"]
        assert await outbox.relay_once() == 0  # still within the writer's grace period
        assert await outbox.relay_once(now=due + 1) == 1
        got = await consume_until(settings.kafka_bootstrap, topic, lambda b: True)
        assert got["event_id"] == event_id
        assert (await collection.find_one({"_id": "a1"}))["outbox"] == []
        assert await outbox.relay_once(now=due + 100) == 0  # published once
        event = StatusChanged.model_validate(got)
        # A later write that replaces the document carries what is still unpublished.
        again, _ = outbox.fields("a1", [messaging.Outgoing.of(topic, event, "a1")])
        _, pending = outbox.fields("a1", [], carried=again["outbox"])
        assert pending is not None and len(pending.messages) == 1
        # A delivery whose clear waits for others: published at once, cleared in the background.
        await collection.replace_one({"_id": "a1"}, {"state": "routed", **again})
        pending = outbox.pending_of(await collection.find_one({"_id": "a1"}))
        await outbox.deliver([pending], clear_later=True)
        await outbox.flush()
        assert (await collection.find_one({"_id": "a1"}))["outbox"] == []
    finally:
        await broker.stop()
        await client.close()


async def test_dead_letters_are_replayed_from_the_source_topic_once_the_cause_is_fixed(
    settings: Settings,
):
    from services.common import dlq

    topic = await new_topic(settings, "replay")
    fixed = {"now": False}
    handled: list[int] = []

    async def handle(events: list[Ping]) -> None:
        if not fixed["now"]:
            raise RuntimeError("taxonomy not deployed yet")
        handled.extend(e.n for e in events)

    broker = messaging.make_broker(settings, "testsvc")
    messaging.subscribe(
        broker, topic, Ping, handle, service="testsvc", settings=settings, group_id=f"g-{topic}"
    )
    await broker.start()
    try:
        await produce(settings.kafka_bootstrap, topic, {"n": 5, "tckn": "10000000146"}, key="k")
        await consume_until(settings.kafka_bootstrap, topics.dlq(topic), lambda b: True)
        letters = [letter async for letter in dlq.read_letters(settings, topic)]
        assert [(letter.key, letter.error_type) for letter in letters] == [("k", "handler_failed")]
        assert "10000000146" not in letters[0].original

        fixed["now"] = True
        replayed, missing = await dlq.replay(settings, topic, limit=None)
        assert (replayed, missing) == (1, 0)
        async with asyncio.timeout(20):
            while handled != [5]:
                await asyncio.sleep(0.05)
    finally:
        await broker.stop()
