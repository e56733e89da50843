"""What intake reads from and writes to Kafka; the work itself is in handlers."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from services.common import kafka_auth, messaging, topics
from services.common.compacted import CompactedView
from services.common.events import (
    ApplicationReceived,
    ApplicationResponse,
    ApplicationSubmitted,
    NotificationRequest,
    StatusChanged,
    SubmissionRejected,
    TaxonomyPublished,
)
from services.common.settings import Settings
from services.intake.domain import DistrictDirectory
from services.intake.handlers import Intake
from services.intake.progress import ProgressStore

SERVICE = "intake"


class ServedProvinces:
    """The provinces routing serves, as `acikkapi.taxonomy` says; every intake process reads
    the topic whole and follows it, so a province added there is served within a second."""

    def __init__(self, settings: Settings) -> None:
        self.view = CompactedView(
            kafka_auth.client_options(settings, SERVICE),
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

    def taxonomy(self, province_code: int) -> TaxonomyPublished | None:
        """What routing announced for that province (headings, categories, districts)."""
        return self.view.latest.get(str(province_code))

    def served(self) -> list[TaxonomyPublished]:
        """Every province served, by plate code."""
        return sorted(self.view.latest.values(), key=lambda t: t.province_code)

    def is_known(self) -> bool:
        """Ready to judge: the topic has been read to the end it had at start, and routing has
        announced at least one province (before that no application could be routed)."""
        return self.view.populated.is_set()

    async def known(self) -> None:
        await self.view.populated.wait()


def progress_groups(group_id: str | None = None) -> tuple[str, str]:
    """The consumer groups that follow the status and the responses topics."""
    base = group_id or f"acikkapi-{SERVICE}"
    return f"{base}-progress-status", f"{base}-progress-responses"


def wire(
    broker: KafkaBroker,
    intake: Intake,
    settings: Settings,
    group_id: str | None = None,
    *,
    progress: ProgressStore | None = None,
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
    if progress is not None:
        # Each in a group of its own (progress_groups): a consumer joining one group makes
        # every member of that group stop and rebalance, so these never pause the
        # submissions' consumer, nor each other.
        status_group, responses_group = progress_groups(group_id)
        messaging.subscribe(
            broker,
            topics.STATUS,
            StatusChanged,
            progress.handle_status,
            service=SERVICE,
            settings=settings,
            group_id=status_group,
        )
        messaging.subscribe(
            broker,
            topics.RESPONSES,
            ApplicationResponse,
            progress.handle_responses,
            service=SERVICE,
            settings=settings,
            group_id=responses_group,
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
