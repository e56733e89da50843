"""What intake reads from and writes to Kafka; the work itself is in handlers."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from services.common import messaging, topics
from services.common.events import (
    ApplicationReceived,
    ApplicationSubmitted,
    NotificationRequest,
    SubmissionRejected,
)
from services.common.settings import Settings
from services.intake.handlers import Intake

SERVICE = "intake"


def wire(
    broker: KafkaBroker, intake: Intake, settings: Settings, group_id: str | None = None
) -> None:
    messaging.subscribe(
        broker,
        topics.SUBMISSIONS,
        ApplicationSubmitted,
        intake.handle_submissions,
        service=SERVICE,
        settings=settings,
        group_id=group_id,
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
