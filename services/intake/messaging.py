"""What intake reads from and writes to Kafka; the work itself is in handlers."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from services.common import messaging, topics
from services.common.compacted import CompactedView
from services.common.events import (
    ApplicationReceived,
    ApplicationSubmitted,
    NotificationRequest,
    SubmissionRejected,
    TaxonomyPublished,
)
from services.common.settings import Settings
from services.intake.domain import DistrictDirectory
from services.intake.handlers import Intake

SERVICE = "intake"


class ServedProvinces:
    """The provinces routing serves, as `acikkapi.taxonomy` says; every intake process reads
    the topic whole and follows it, so a province added there is served within a second."""

    def __init__(self, settings: Settings) -> None:
        self.view = CompactedView(
            settings.kafka_bootstrap,
            topics.TAXONOMY,
            TaxonomyPublished,
            client_id=f"acikkapi-{SERVICE}-taxonomy",
        )
        self._directory: tuple[tuple[tuple[int, str], ...], DistrictDirectory] | None = None

    def __contains__(self, province_code: object) -> bool:
        return any(t.province_code == province_code for t in self.view.latest.values())

    def districts(self, base: DistrictDirectory) -> DistrictDirectory:
        """`base` with every served province's district list (built again only when a
        taxonomy version changes)."""
        served = self.view.latest.values()
        versions = tuple(sorted((t.province_code, t.version) for t in served))
        if self._directory is None or self._directory[0] != versions:
            lists = {t.province_code: (t.province, t.districts) for t in served}
            self._directory = (versions, base.with_provinces(lists))
        return self._directory[1]

    def is_known(self) -> bool:
        """Ready to judge: the topic has been read to the end it had at start, and routing has
        announced at least one province (before that no application could be routed)."""
        return self.view.populated.is_set()

    async def known(self) -> None:
        await self.view.populated.wait()


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
