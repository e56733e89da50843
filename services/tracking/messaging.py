"""What tracking reads from and writes to Kafka."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from services.common import messaging, topics
from services.common.events import (
    ApplicationReceived,
    ApplicationResponse,
    DeadlineEvent,
    Envelope,
    NotificationRequest,
    NotificationResult,
    RoutingOutcome,
    StatusChanged,
)
from services.common.settings import Settings
from services.tracking.domain import ANSWER_SMS_SUFFIX
from services.tracking.handlers import Publish, Tracking

SERVICE = "tracking"
# Every application passes through these two topics: partitions are worked on side by side
# (each partition still in order, so one application's events keep theirs).
BUSY_TOPIC_WORKERS = 3


def publisher(broker: KafkaBroker) -> Publish:
    async def publish(topic: str, event: Envelope, key: str | None) -> None:
        await messaging.publish(broker, topic, event, key)

    return publish


def _answer_sms_only(key: bytes | None, headers: dict[str, str]) -> bool:
    """Of all notification results only the answer SMS's close an application; the Kafka key
    is the idempotency key, so the rest are skipped undecoded."""
    return key is None or key.endswith(ANSWER_SMS_SUFFIX.encode())


def register(
    broker: KafkaBroker, tracking: Tracking, settings: Settings, *, group_id: str | None = None
) -> None:
    consumers: list[tuple[str, type[BaseModel], Callable[[Any], Awaitable[None]], int]] = [
        (topics.RECEIVED, ApplicationReceived, tracking.on_received, BUSY_TOPIC_WORKERS),
        (topics.ROUTED, RoutingOutcome, tracking.on_routed, BUSY_TOPIC_WORKERS),
        (topics.RESPONSES, ApplicationResponse, tracking.on_response, 1),
        (topics.NOTIFICATION_RESULTS, NotificationResult, tracking.on_notification_result, 1),
    ]
    for topic, model, handler, workers in consumers:
        messaging.subscribe(
            broker,
            topic,
            model,
            handler,
            service=SERVICE,
            settings=settings,
            group_id=group_id,
            max_workers=workers,
            accept=_answer_sms_only if topic == topics.NOTIFICATION_RESULTS else None,
        )

    messaging.declare_publisher(
        broker, topics.STATUS, StatusChanged, "Every status transition, with a snapshot."
    )
    messaging.declare_publisher(
        broker, topics.DEADLINES, DeadlineEvent, "One business day left (warning), or missed."
    )
    messaging.declare_publisher(
        broker, topics.RESPONSES, ApplicationResponse, "Answers given on tracking's HTTP API."
    )
    messaging.declare_publisher(
        broker,
        topics.NOTIFICATION_REQUESTS,
        NotificationRequest,
        "The answer SMS to the citizen (key `<application_id>:answered:sms`).",
    )
