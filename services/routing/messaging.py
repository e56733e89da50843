"""What routing reads from and writes to Kafka, and the institution topics it makes sure exist."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

from services.common import messaging, topics
from services.common.events import (
    ApplicationReceived,
    CategoryBrief,
    HeadingBrief,
    InstitutionAssignment,
    NotificationRequest,
    RoutingOutcome,
    StatusChanged,
    TaxonomyPublished,
)
from services.common.messaging import EventPublisher, Outgoing
from services.common.settings import Settings
from services.routing.domain import Taxonomy, TaxonomyRegistry
from services.routing.handlers import Routing

SERVICE = "routing"
# Kafka's "topic already exists" error code: another routing process was first, which is fine.
TOPIC_ALREADY_EXISTS = 36

# Namespace of the taxonomy events' ids (uuid5 of province and version).
_TAXONOMY_IDS = uuid.UUID("0b4e6a52-95c1-5d3e-a7f2-6c1d2e8f4a90")

log = logging.getLogger("acikkapi.routing.messaging")


def taxonomy_published(taxonomy: Taxonomy) -> TaxonomyPublished:
    """The announcement of one province's taxonomy; its version is a hash of the content, so
    an unchanged file announces the same event again (and compaction keeps one)."""
    version = hashlib.sha256(taxonomy.model_dump_json().encode()).hexdigest()[:16]
    return TaxonomyPublished(
        event_id=uuid.uuid5(_TAXONOMY_IDS, f"{taxonomy.province_code}:{version}"),
        producer=SERVICE,
        province_code=taxonomy.province_code,
        province=taxonomy.province,
        version=version,
        districts=taxonomy.districts,
        category_codes=[c.code for h in taxonomy.headings for c in h.categories],
        headings=[
            HeadingBrief(
                code=h.code,
                name=h.name,
                categories=[CategoryBrief(code=c.code, name=c.name) for c in h.categories],
            )
            for h in taxonomy.headings
        ],
    )


async def announce_taxonomies(
    publisher: EventPublisher, registry: TaxonomyRegistry, *, sleep: float = 0.5
) -> None:
    """Says on `acikkapi.taxonomy` which provinces this routing serves, once per start (the
    topic is compacted: a reader finds each province's newest version). Tried until Kafka
    takes it: intake registers nothing for a province it has not heard of."""
    events = [taxonomy_published(registry.for_province(p)) for p in registry.provinces()]
    messages = [Outgoing.of(topics.TAXONOMY, e, str(e.province_code)) for e in events]
    while True:
        try:
            await publisher.send_all(messages)
            log.info("taxonomies announced", extra={"provinces": [e.province_code for e in events]})
            return
        except Exception as exc:
            log.warning("taxonomies not announced yet", extra={"error": type(exc).__name__})
            await asyncio.sleep(sleep)
            sleep = min(sleep * 2, 10.0)


def register(
    broker: KafkaBroker, routing: Routing, settings: Settings, *, group_id: str | None = None
) -> None:
    messaging.subscribe(
        broker,
        topics.RECEIVED,
        ApplicationReceived,
        routing.applications_received,
        service=SERVICE,
        settings=settings,
        group_id=group_id,
    )
    messaging.subscribe(
        broker,
        topics.STATUS,
        StatusChanged,
        routing.statuses_changed,
        service=SERVICE,
        settings=settings,
        group_id=group_id,
        # Only a return concerns routing; without the header, decode and let the handler judge.
        accept=lambda _key, headers: headers.get("status", "returned") == "returned",
    )
    messaging.declare_publisher(
        broker,
        topics.ROUTED,
        RoutingOutcome,
        "Kategori ve sorumlu kurum kararı (ApplicationRouted) ya da görevli yönlendirmesi "
        "bekleyen başvuru (ApplicationAwaitingRouting); anahtar: application_id.",
    )
    messaging.declare_publisher(
        broker,
        topics.TAXONOMY,
        TaxonomyPublished,
        "Yönlendirmenin hizmet verdiği her il ve tablosunun sürümü; her açılışta yeniden "
        "duyurulur, konu sıkıştırılmıştır (anahtar: il plaka kodu).",
    )
    messaging.declare_publisher(
        broker,
        f"{topics.INSTITUTION_PREFIX}{{CODE}}",
        InstitutionAssignment,
        "Her kurumun kendi kuyruğu: kuruma yönlendirilen başvuru, TC Kimlik No maskeli "
        "(anahtar: application_id).",
    )
    messaging.declare_publisher(
        broker,
        topics.NOTIFICATION_REQUESTS,
        NotificationRequest,
        "Kuruma yeni başvuru e-postası, şablon institution_assignment "
        "(anahtar: '<application_id>:routed:<CODE>:email').",
    )


async def ensure_institution_topics(
    settings: Settings, codes: Iterable[str], within: float = 10.0
) -> None:
    """Create the institutions' topics that are missing, with INSTITUTION_PARTITIONS each.

    Best effort within `within` seconds: where operators provision topics (or the broker
    creates them on first use) routing must still come up, so failures are logged, not raised.
    """
    wanted = {topics.institution_topic(code) for code in codes}
    try:
        async with asyncio.timeout(within):
            await _create_missing(settings.kafka_bootstrap, wanted)
    except Exception as exc:
        log.warning(
            "could not ensure institution topics",
            extra={"error": f"{type(exc).__name__}: {exc}", "topics": len(wanted)},
        )


async def _create_missing(bootstrap: str, wanted: set[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="acikkapi-routing-admin")
    await admin.start()
    try:
        missing = sorted(wanted - set(await admin.list_topics()))
        if not missing:
            return
        response = await admin.create_topics(
            [NewTopic(name, topics.INSTITUTION_PARTITIONS, 1) for name in missing]
        )
        failed = [
            (name, code)
            for name, code, *_ in response.topic_errors
            if code not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            log.warning("some institution topics were not created", extra={"failed": failed})
        else:
            log.info("institution topics created", extra={"created": len(missing)})
    finally:
        await admin.close()
