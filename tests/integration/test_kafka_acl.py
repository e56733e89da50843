"""Kafka-level isolation on the real broker: SASL/SCRAM users and the ACLs of
deploy/local/kafka_acl.py, seen with plain aiokafka clients, as an institution or a channel
adapter connects (docs/institutions.md), no project code in between."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from deploy.local import kafka_acl
from services.common import kafka_auth, topics
from services.common.kafka_auth import Credentials
from services.common.settings import Settings
from tests.conftest import kafka

pytestmark = pytest.mark.integration

OWN, OTHER = "DESKI", "PAMUKKALE-BLD"


@pytest.fixture(scope="module")
async def logins() -> dict[str, Credentials]:
    """Both institutions given their users, as an operator does with `add-institution`."""
    own, other = await asyncio.gather(
        kafka_acl.add_institution(OWN), kafka_acl.add_institution(OTHER)
    )
    return {OWN: own, OTHER: other}


def as_user(login: Credentials, settings: Settings) -> dict[str, Any]:
    """What docs/institutions.md tells a client to set: the bootstrap, SASL_PLAINTEXT,
    SCRAM-SHA-512, its user name and password."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": login.username,
        "sasl_plain_password": login.password,
    }


def service(name: str) -> dict[str, Any]:
    """A service's or the adapter's own connection, as the processes make it."""
    return kafka_auth.client_options(Settings(), name)


@asynccontextmanager
async def producer(options: dict[str, Any]) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def put(options: dict[str, Any], topic: str) -> str:
    """One JSON message with a marker of its own on `topic`; the marker."""
    marker = uuid.uuid4().hex
    async with producer(options) as client:
        await client.send_and_wait(topic, json.dumps({"marker": marker}).encode(), key=b"k")
    return marker


def marker_of(value: bytes | None) -> str | None:
    """The marker a record carries. Other tests put deliberately broken records on the same
    topics (`<xml/>`, a JSON list): those carry none."""
    try:
        body = json.loads(value or b"{}")
    except ValueError:
        return None
    return body.get("marker") if isinstance(body, dict) else None


async def read_in_group(options: dict[str, Any], topic: str, group: str, marker: str) -> None:
    """Read `topic` from its start in consumer group `group` until the marker comes by."""
    consumer = AIOKafkaConsumer(
        topic, **options, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        await consumer.start()
        async with asyncio.timeout(30):
            async for record in consumer:
                if marker_of(record.value) == marker:
                    await consumer.commit()  # the group's own offsets: Read on the group
                    return
    finally:
        await consumer.stop()


async def read_without_group(options: dict[str, Any], topic: str, seconds: float = 3) -> int:
    """How many messages a group-less reader gets from `topic`'s partitions in `seconds`."""
    consumer = AIOKafkaConsumer(
        **options, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    count = 0
    try:
        await consumer.start()
        consumer.assign([TopicPartition(topic, p) for p in range(topics.INSTITUTION_PARTITIONS)])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    batches = await consumer.getmany(timeout_ms=200)
                    count += sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()
    return count


async def test_an_institution_reads_its_own_queue_in_its_own_group(
    logins: dict[str, Credentials], settings: Settings
) -> None:
    marker = await put(service("routing"), topics.institution_topic(OWN))
    own = as_user(logins[OWN], settings)
    group = f"inst-{OWN}-test-{uuid.uuid4().hex[:8]}"
    await read_in_group(own, topics.institution_topic(OWN), group, marker)
    assert await read_without_group(own, topics.institution_topic(OWN)) > 0


async def test_an_institution_cannot_read_another_institutions_queue(
    logins: dict[str, Credentials], settings: Settings
) -> None:
    other_topic = topics.institution_topic(OTHER)
    marker = await put(service("routing"), other_topic)
    own = as_user(logins[OWN], settings)
    with pytest.raises(TopicAuthorizationFailedError):
        await read_in_group(own, other_topic, f"inst-{OWN}-peek-{uuid.uuid4().hex[:8]}", marker)
    # Assigned partitions without a group: the broker hands over nothing, although the
    # queue holds the message just written (its own institution reads it).
    assert await read_without_group(own, other_topic) == 0
    await read_in_group(
        as_user(logins[OTHER], settings), other_topic, f"inst-{OTHER}-{uuid.uuid4().hex}", marker
    )


async def test_an_institution_consumes_only_in_groups_named_after_it(
    logins: dict[str, Credentials], settings: Settings
) -> None:
    marker = await put(service("routing"), topics.institution_topic(OWN))
    own = as_user(logins[OWN], settings)
    with pytest.raises(GroupAuthorizationFailedError):
        await read_in_group(own, topics.institution_topic(OWN), f"inst-{OTHER}-x", marker)


async def test_an_institution_answers_on_the_responses_topic_and_cannot_submit(
    logins: dict[str, Credentials], settings: Settings
) -> None:
    own = as_user(logins[OWN], settings)
    marker = await put(own, topics.RESPONSES)
    # tracking, the responses topic's reader, sees the answer.
    await read_in_group(
        service("tracking"), topics.RESPONSES, f"acikkapi-tracking-t{marker}", marker
    )
    async with producer(own) as client:
        with pytest.raises(TopicAuthorizationFailedError):
            await client.send_and_wait(topics.SUBMISSIONS, b"{}", key=b"k")
        with pytest.raises(TopicAuthorizationFailedError):
            await client.send_and_wait(topics.institution_topic(OTHER), b"{}", key=b"k")


async def test_a_channel_adapter_submits_and_reads_no_institution_queue() -> None:
    adapter = service(kafka_auth.ADAPTER)
    marker = await put(adapter, topics.SUBMISSIONS)
    await read_in_group(service("intake"), topics.SUBMISSIONS, f"acikkapi-intake-t{marker}", marker)
    with pytest.raises(TopicAuthorizationFailedError):
        await read_in_group(adapter, topics.institution_topic(OWN), "adapter-peek", marker)
    assert await read_without_group(adapter, topics.institution_topic(OWN)) == 0
    async with producer(adapter) as client:
        with pytest.raises(TopicAuthorizationFailedError):
            await client.send_and_wait(topics.RESPONSES, b"{}", key=b"k")


async def test_a_service_reads_and_writes_only_its_own_topics() -> None:
    reporting = service("reporting")
    with pytest.raises(TopicAuthorizationFailedError):
        await read_in_group(reporting, topics.SUBMISSIONS, "acikkapi-reporting-peek", "none")
    async with producer(service("notification")) as client:
        with pytest.raises(TopicAuthorizationFailedError):
            await client.send_and_wait(topics.STATUS, b"{}", key=b"k")


async def test_a_wrong_password_and_no_password_are_refused(
    logins: dict[str, Credentials], settings: Settings
) -> None:
    host, port = settings.kafka_bootstrap.rsplit(":", 1)
    login = logins[OWN]
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512"}
    conn = await create_conn(
        host,
        int(port),
        **sasl,
        sasl_plain_username=login.username,
        sasl_plain_password=login.password,
    )
    conn.close()
    with pytest.raises(SaslAuthenticationFailed):
        await create_conn(
            host,
            int(port),
            **sasl,
            sasl_plain_username=login.username,
            sasl_plain_password="x" + login.password,
        )
    with pytest.raises(SaslAuthenticationFailed):  # another institution's password
        await create_conn(
            host,
            int(port),
            **sasl,
            sasl_plain_username=login.username,
            sasl_plain_password=logins[OTHER].password,
        )
    wrong = as_user(Credentials(login.username, login.password[::-1]), settings)
    unauthenticated = {"bootstrap_servers": settings.kafka_bootstrap, "request_timeout_ms": 5000}
    for options in (wrong, unauthenticated):
        consumer = AIOKafkaConsumer(**options, group_id=None)
        try:
            with pytest.raises(KafkaConnectionError):
                await consumer.start()
        finally:
            await consumer.stop()


async def visible_topics(options: dict[str, Any]) -> set[str]:
    consumer = AIOKafkaConsumer(**options, group_id=None)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


async def test_an_institution_does_not_even_see_the_other_topics_names(
    logins: dict[str, Credentials], settings: Settings
) -> None:
    seen = await visible_topics(as_user(logins[OWN], settings))
    assert seen == {topics.institution_topic(OWN), topics.RESPONSES}
    # The test helpers connect as the broker's super user (tests/conftest.py), who sees all.
    everything = await visible_topics(kafka(settings.kafka_bootstrap))
    assert {topics.institution_topic(OTHER), topics.SUBMISSIONS} <= everything
