"""What intake reads from and writes to Kafka; the work itself is in handlers."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from services.common import messaging, topics
from services.common.events import (
    ApplicationReceived,
    ApplicationSubmitted,
    Envelope,
    NotificationRequest,
    SubmissionRejected,
)
from services.common.settings import Settings
from services.intake.handlers import Intake, Publish

SERVICE = "intake"
SUBMISSION_WORKERS = 3


def kafka_publisher(broker: KafkaBroker) -> Publish:
    async def publish(topic: str, event: Envelope, key: str) -> None:
        await messaging.publish(broker, topic, event, key)

    return publish


def wire(
    broker: KafkaBroker, intake: Intake, settings: Settings, group_id: str | None = None
) -> None:
    messaging.subscribe(
        broker,
        topics.SUBMISSIONS,
        ApplicationSubmitted,
        intake.handle_submission,
        service=SERVICE,
        settings=settings,
        group_id=group_id,
        # Partitions are handled side by side (order and commits stay per partition), so the
        # inserts of several submissions share a round trip to MongoDB.
        max_workers=SUBMISSION_WORKERS,
    )
    messaging.declare_publisher(
        broker,
        topics.RECEIVED,
        ApplicationReceived,
        "Kaydedilip numaralandırılan her başvuru (anahtar: application_id).",
    )
    messaging.declare_publisher(
        broker,
        topics.NOTIFICATION_REQUESTS,
        NotificationRequest,
        "Başvuru sahibine alındı SMS'i (anahtar: f'{application_id}:received:sms').",
    )
    messaging.declare_publisher(
        broker,
        topics.REJECTIONS,
        SubmissionRejected,
        "Kurallara uymayan gönderimler ve hatalı alanları (anahtar: submission_id).",
    )
