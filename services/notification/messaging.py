"""Notification on the bus: it consumes `acikkapi.notifications.requests` and publishes
NotificationResult on `acikkapi.notifications.results`, keyed by the idempotency key (and a
message given up after its retries on the requests' dead-letter topic)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from services.common import topics
from services.common.events import NotificationRequest, NotificationResult
from services.common.messaging import declare_publisher, subscribe
from services.common.settings import Settings
from services.notification.handlers import SERVICE, Notifier


def register(
    broker: KafkaBroker, notifier: Notifier, settings: Settings, *, group_id: str | None = None
) -> None:
    subscribe(
        broker,
        topics.NOTIFICATION_REQUESTS,
        NotificationRequest,
        notifier.handle_requests,
        service=SERVICE,
        settings=settings,
        group_id=group_id or settings.notification_consumer_group or None,
    )
    declare_publisher(
        broker,
        topics.NOTIFICATION_RESULTS,
        NotificationResult,
        "sent / delivered / failed / skipped_duplicate / skipped_optout for each idempotency key",
    )
