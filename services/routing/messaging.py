"""What routing reads from and writes to Kafka, and the institution topics it makes sure exist."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

from services.common import kafka_auth, messaging, topics
from services.common.events import (
    ApplicationReceived,
    CategoryBrief,
    HeadingBrief,
    InstitutionAssignment,
    InstitutionEntry,
    NotificationRequest,
    RoutingOutcome,
    StatusChanged,
    TaxonomyPublished,
)
from services.common.settings import Settings
from services.routing.domain import Taxonomy
from services.routing.handlers import Routing

SERVICE = "routing"
# Kafka's "topic already exists" error code: another routing process was first, which is fine.
TOPIC_ALREADY_EXISTS = 36

# Namespace of the taxonomy events' ids (uuid5 of province and version).
_TAXONOMY_IDS = uuid.UUID("0b4e6a52-95c1-5d3e-a7f2-6c1d2e8f4a90")

log = logging.getLogger("acikkapi.routing.messaging")


def taxonomy_published(taxonomy: Taxonomy, version: int | None = None) -> TaxonomyPublished:
    """The announcement of one province's taxonomy: `version` is its number in routing's store
    (taxonomy_store.py), else a hash of the content. The event id comes from the version and
    the content, so the same version announced again is recognisably the same event."""
    content = hashlib.sha256(taxonomy.model_dump_json().encode()).hexdigest()[:16]
    label = content if version is None else str(version)
    return TaxonomyPublished(
        event_id=uuid.uuid5(_TAXONOMY_IDS, f"{taxonomy.province_code}:{label}:{content}"),
        producer=SERVICE,
        province_code=taxonomy.province_code,
        province=taxonomy.province,
        version=label,
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
        # Who may receive a forward or a part of a split (tracking checks against this list).
        institutions=[
            InstitutionEntry(
                code=i.code, name=i.name, kind=str(i.kind), district=i.district, email=i.email
            )
            for i in taxonomy.institutions
        ],
    )


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
        "Yönlendirmenin hizmet verdiği her il ve tablosunun sürümü: her yönetici değişikliği "
        "yeni bir sürümdür; konu bir ilin en yeni sürümünü göstermiyorsa yeniden duyurulur. "
        "Konu sıkıştırılmıştır (anahtar: il plaka kodu).",
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
            await _create_missing(kafka_auth.client_options(settings, SERVICE), wanted)
    except Exception as exc:
        log.warning(
            "could not ensure institution topics",
            extra={"error": f"{type(exc).__name__}: {exc}", "topics": len(wanted)},
        )


async def _create_missing(kafka: dict[str, Any], wanted: set[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka, client_id="acikkapi-routing-admin")
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
            log.info("institution topics created", extra={"topics_created": len(missing)})
    finally:
        await admin.close()
