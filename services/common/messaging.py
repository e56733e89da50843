"""Kafka plumbing shared by every service: the broker, typed publishing, and consumers that never
die on input.

A consumer registered with `subscribe` decodes the message into its pydantic model, runs the
handler, and only then commits the offset (AckPolicy.ACK), so a killed process loses nothing.
Undecodable messages go straight to `<topic>.dlq` with the reason; a handler that keeps failing on
the same message is retried `max_attempts` times and then dead-lettered too. Infrastructure
outages (MongoDB or Kafka unreachable) are not the message's fault: those are retried with
back-off until the dependency returns, and nothing is dead-lettered or committed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ValidationError
from pymongo.errors import AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError

from services.common import topics
from services.common.events import DeadLetter, Envelope
from services.common.observability import (
    DEAD_LETTERS,
    EVENTS_CONSUMED,
    EVENTS_PUBLISHED,
    HANDLER_SECONDS,
    redact,
)
from services.common.settings import Settings

log = logging.getLogger("acikkapi.messaging")

E = TypeVar("E", bound=BaseModel)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    AutoReconnect,
    ServerSelectionTimeoutError,
    KafkaError,
    OSError,
)
MAX_BACKOFF_SECONDS = 30.0


class PermanentError(Exception):
    """The message can never be handled (a business rule says no): dead-letter it at once."""


def make_broker(settings: Settings, service: str) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"acikkapi-{service}",
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        request_timeout_ms=15_000,
        graceful_timeout=10.0,
        logger=logging.getLogger(f"acikkapi.{service}.broker"),
        # FastStream logs every message received and processed: two lines a message at INFO
        # would cost more than the work itself.
        log_level=logging.DEBUG,
    )


async def publish(broker: KafkaBroker, topic: str, event: Envelope, key: str | None) -> None:
    """Publish one event and wait for the broker's acknowledgement (acks=all)."""
    await broker.publish(
        event.to_bytes(),
        topic=topic,
        key=key.encode() if key else None,
        headers=event.kafka_headers(),
    )
    EVENTS_PUBLISHED.labels(topic=_metric_topic(topic), event_type=event.event_type).inc()


def _metric_topic(topic: str) -> str:
    # One time series per institution topic would explode cardinality.
    return "acikkapi.institution.*" if topic.startswith(topics.INSTITUTION_PREFIX) else topic


async def dead_letter(
    broker: KafkaBroker,
    *,
    source_topic: str,
    message: Any,
    reason: str,
    error_type: str,
    attempts: int,
    consumer: str,
) -> None:
    raw = message.body if isinstance(message.body, bytes) else bytes(message.body or b"")
    raw_message = getattr(message, "raw_message", None)
    key = getattr(raw_message, "key", None)
    letter = DeadLetter(
        source_topic=source_topic,
        partition=getattr(raw_message, "partition", None),
        offset=getattr(raw_message, "offset", None),
        key=key.decode(errors="replace") if isinstance(key, bytes) else key,
        reason=reason[:2000],
        error_type=error_type,
        attempts=attempts,
        consumer=consumer,
        # KVKK: a dead letter may be read by operators; a TC Kimlik No in it is masked. The
        # source topic still holds the message itself, found by partition and offset.
        original=redact(raw.decode(errors="replace")),
    )
    await broker.publish(
        letter.model_dump_json().encode(),
        topic=topics.dlq(source_topic),
        key=key if isinstance(key, bytes) else None,
        headers={"event_type": "dead_letter", "source_topic": source_topic},
    )
    DEAD_LETTERS.labels(topic=_metric_topic(source_topic), reason=error_type).inc()
    log.warning(
        "dead-lettered a message",
        extra={"topic": source_topic, "reason": error_type, "consumer": consumer},
    )


def subscribe(
    broker: KafkaBroker,
    topic: str,
    model: type[E],
    handler: Callable[[E], Awaitable[None]],
    *,
    service: str,
    settings: Settings,
    group_id: str | None = None,
    max_workers: int = 1,
    accept: Callable[[bytes | None, dict[str, str]], bool] | None = None,
) -> None:
    """Register a consumer of `topic` in the service's consumer group (one group per service).

    `accept(key, headers)`, when given, sees each message before it is decoded; a message it
    refuses is committed and skipped at almost no cost (a consumer that needs one status out of
    five should not parse the other four).
    """
    group = group_id or f"acikkapi-{service}"
    max_attempts = max(1, settings.consumer_max_attempts)
    name = getattr(handler, "__name__", "handler")

    async def consume(msg: KafkaMessage) -> None:
        mtopic = _metric_topic(topic)
        if accept is not None:
            raw = getattr(msg, "raw_message", None)
            if not accept(getattr(raw, "key", None), dict(msg.headers or {})):
                EVENTS_CONSUMED.labels(topic=mtopic, outcome="skipped").inc()
                return
        try:
            event = model.model_validate_json(msg.body)
        except ValidationError as exc:
            EVENTS_CONSUMED.labels(topic=mtopic, outcome="invalid").inc()
            await dead_letter(
                broker,
                source_topic=topic,
                message=msg,
                reason=_validation_reason(exc),
                error_type="invalid_message",
                attempts=1,
                consumer=f"{service}.{name}",
            )
            return
        attempt = 0
        backoff = 0.5
        while True:
            attempt += 1
            try:
                with HANDLER_SECONDS.labels(topic=mtopic).time():
                    await handler(event)
                EVENTS_CONSUMED.labels(topic=mtopic, outcome="ok").inc()
                return
            except TRANSIENT_ERRORS as exc:
                # Not the message's fault: wait for the dependency and try again, uncommitted.
                log.warning(
                    "dependency unavailable, retrying",
                    extra={"topic": topic, "error": type(exc).__name__, "attempt": attempt},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                attempt -= 1
            except PermanentError as exc:
                EVENTS_CONSUMED.labels(topic=mtopic, outcome="dead_lettered").inc()
                await dead_letter(
                    broker,
                    source_topic=topic,
                    message=msg,
                    reason=str(exc),
                    error_type="unprocessable",
                    attempts=attempt,
                    consumer=f"{service}.{name}",
                )
                return
            except Exception as exc:
                log.exception("handler failed", extra={"topic": topic, "attempt": attempt})
                if attempt >= max_attempts:
                    EVENTS_CONSUMED.labels(topic=mtopic, outcome="dead_lettered").inc()
                    await dead_letter(
                        broker,
                        source_topic=topic,
                        message=msg,
                        reason=f"{type(exc).__name__}: {exc}",
                        error_type="handler_failed",
                        attempts=attempt,
                        consumer=f"{service}.{name}",
                    )
                    return
                await asyncio.sleep(0.2 * attempt)

    consume.__name__ = f"consume_{name}"
    consume.__doc__ = handler.__doc__
    broker.subscriber(
        topic,
        group_id=group,
        ack_policy=AckPolicy.ACK,
        auto_offset_reset="earliest",
        max_workers=max_workers,
        title=f"{service}:{topic}",
        description=handler.__doc__,
    )(consume)


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(gövde)"
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


async def topic_partitions(bootstrap: str, names: Iterable[str]) -> list[TopicPartition]:
    """The partitions of existing topics among `names`, from the cluster's metadata.

    A consumer knows the partitions of the topics it follows only, hence the admin client.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t.get("error_code", 0) == 0
        for p in t.get("partitions", [])
    ]


def declare_publisher(broker: KafkaBroker, topic: str, model: type[BaseModel], description: str):
    """Make a publication visible in the AsyncAPI document (the publish itself uses `publish`)."""
    return broker.publisher(topic, title=f"{topic}:publish", schema=model, description=description)
