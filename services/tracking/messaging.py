"""What tracking reads from and writes to Kafka."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from services.common import messaging, topics
from services.common.events import (
    ApplicationRated,
    ApplicationReceived,
    ApplicationResponse,
    DeadlineEvent,
    NotificationRequest,
    NotificationResult,
    RoutingOutcome,
    StatusChanged,
)
from services.common.settings import Settings
from services.tracking import domain
from services.tracking.handlers import Tracking

SERVICE = "tracking"


def _citizen_messages(key: bytes | None, headers: dict[str, str]) -> bool:
    """Of all notification results only the citizen's messages matter here (the status page
    lists them; the answer SMS closes an application); the Kafka key is the idempotency key,
    so the rest (institutions' e-mails) are skipped undecoded."""
    if key is None:
        return True
    text = key.decode(errors="replace")
    return domain.citizen_message_of(text) is not None


def register(
    broker: KafkaBroker, tracking: Tracking, settings: Settings, *, group_id: str | None = None
) -> None:
    consumers: list[tuple[str, type[BaseModel], Callable[[Any], Awaitable[None]]]] = [
        (topics.RECEIVED, ApplicationReceived, tracking.on_received_batch),
        (topics.ROUTED, RoutingOutcome, tracking.on_routed_batch),
        (topics.RESPONSES, ApplicationResponse, tracking.on_responses),
        (topics.NOTIFICATION_RESULTS, NotificationResult, tracking.on_notification_results),
    ]
    for topic, model, handler in consumers:
        messaging.subscribe(
            broker,
            topic,
            model,
            handler,
            service=SERVICE,
            settings=settings,
            group_id=group_id,
            accept=_citizen_messages if topic == topics.NOTIFICATION_RESULTS else None,
        )

    messaging.declare_publisher(
        broker, topics.STATUS, StatusChanged, "Every status transition, with a snapshot."
    )
    messaging.declare_publisher(
        broker,
        topics.DEADLINES,
        DeadlineEvent,
        "Business days left (warning), missed, escalated, or a recalculated deadline (changed).",
    )
    messaging.declare_publisher(
        broker,
        topics.RESPONSES,
        ApplicationResponse,
        "Answers given on tracking's HTTP API; answers a supervisor approved (`approved_by`); "
        "a split application's overall answer.",
    )
    messaging.declare_publisher(
        broker,
        topics.NOTIFICATION_REQUESTS,
        NotificationRequest,
        "The answer SMS to the citizen (key `<application_id>:answered:sms`), and the SMS that "
        "a question waits for them (`<application_id>:information:<n>:sms`).",
    )
    messaging.declare_publisher(
        broker,
        topics.RATINGS,
        ApplicationRated,
        "A citizen's rating (1-5) of an answer, once per application, from the SMS link.",
    )
