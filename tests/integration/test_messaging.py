"""The shared consumer against the real broker: work is committed only after it is done, and
bad input goes to the dead-letter topic while the consumer carries on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import BaseModel

from services.common import messaging, topics
from services.common.settings import Settings
from tests.conftest import consume_until, create_topics, produce

pytestmark = pytest.mark.integration


class Ping(BaseModel):
    n: int


async def test_invalid_message_is_dead_lettered_and_consumer_carries_on(settings: Settings):
    topic = f"test.messaging.{uuid.uuid4().hex[:8]}"
    await create_topics(settings.kafka_bootstrap, [topic, topics.dlq(topic)])
    seen: list[int] = []
    failures = {"n": 0}

    async def handle(event: Ping) -> None:
        if event.n == 13:
            failures["n"] += 1
            raise RuntimeError("unlucky")
        seen.append(event.n)

    broker = messaging.make_broker(settings, "testsvc")
    messaging.subscribe(
        broker, topic, Ping, handle, service="testsvc", settings=settings, group_id=f"g-{topic}"
    )
    await broker.start()
    try:
        await produce(settings.kafka_bootstrap, topic, b"{not json", key="k1")
        await produce(
            settings.kafka_bootstrap, topic, {"n": "abc", "tckn": "10000000146"}, key="k2"
        )
        await produce(settings.kafka_bootstrap, topic, {"n": 13}, key="k3")
        await produce(settings.kafka_bootstrap, topic, {"n": 7}, key="k4")
        async with asyncio.timeout(20):
            while 7 not in seen:
                await asyncio.sleep(0.05)
        letters = []
        for key in ("k1", "k2", "k3"):
            letters.append(
                await consume_until(
                    settings.kafka_bootstrap, topics.dlq(topic), lambda b, k=key: b["key"] == k
                )
            )
    finally:
        await broker.stop()
    assert letters[0]["error_type"] == "invalid_message"
    assert letters[0]["original"] == "{not json"
    assert "n" in letters[1]["reason"]
    assert "10000000146" not in letters[1]["original"]  # KVKK: masked in the dead letter
    assert letters[2]["error_type"] == "handler_failed"
    assert letters[2]["attempts"] == settings.consumer_max_attempts
    assert failures["n"] == settings.consumer_max_attempts
    assert seen == [7]


async def test_offsets_are_committed_only_after_the_handler_finishes(settings: Settings):
    topic = f"test.commit.{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    await create_topics(settings.kafka_bootstrap, [topic, topics.dlq(topic)])
    started = asyncio.Event()

    async def slow(event: Ping) -> None:
        started.set()
        await asyncio.sleep(3600)  # killed mid-work

    broker = messaging.make_broker(settings, "testsvc")
    messaging.subscribe(
        broker, topic, Ping, slow, service="testsvc", settings=settings, group_id=group
    )
    await broker.start()
    await produce(settings.kafka_bootstrap, topic, {"n": 1})
    await asyncio.wait_for(started.wait(), 20)
    await broker.stop()

    done: list[int] = []

    async def quick(event: Ping) -> None:
        done.append(event.n)

    second = messaging.make_broker(settings, "testsvc")
    messaging.subscribe(
        second, topic, Ping, quick, service="testsvc", settings=settings, group_id=group
    )
    await second.start()
    try:
        async with asyncio.timeout(20):
            while not done:
                await asyncio.sleep(0.05)
    finally:
        await second.stop()
    assert done == [1]


async def test_dead_letters_are_replayed_from_the_source_topic_once_the_cause_is_fixed(
    settings: Settings,
):
    from services.common import dlq

    topic = f"test.replay.{uuid.uuid4().hex[:8]}"
    await create_topics(settings.kafka_bootstrap, [topic, topics.dlq(topic)])
    fixed = {"now": False}
    handled: list[int] = []

    async def handle(event: Ping) -> None:
        if not fixed["now"]:
            raise RuntimeError("taxonomy not deployed yet")
        handled.append(event.n)

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
