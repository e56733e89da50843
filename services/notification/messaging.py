"""Notification on the bus: it consumes `acikkapi.notifications.requests` and publishes
NotificationResult on `acikkapi.notifications.results`, keyed by the idempotency key."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from services.common import topics
from services.common.events import NotificationRequest, NotificationResult
from services.common.messaging import Outgoing, Publisher, declare_publisher, subscribe
from services.common.settings import Settings
from services.notification.handlers import SERVICE, Notifier, Publish


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
        group_id=group_id,
    )
    declare_publisher(
        broker,
        topics.NOTIFICATION_RESULTS,
        NotificationResult,
        "sent / delivered / failed / skipped_duplicate for each idempotency key",
    )


def result_publisher(publisher: Publisher) -> Publish:
    async def publish_results(results: list[NotificationResult]) -> None:
        await publisher.send_all(
            Outgoing.of(topics.NOTIFICATION_RESULTS, result, result.idempotency_key)
            for result in results
        )

    return publish_results
