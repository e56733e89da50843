"""What routing reads from and writes to Kafka, and the institution topics it makes sure exist."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

from services.common import messaging, topics
from services.common.events import (
    ApplicationReceived,
    InstitutionAssignment,
    NotificationRequest,
    RoutingOutcome,
    StatusChanged,
)
from services.common.settings import Settings
from services.routing.handlers import Routing

SERVICE = "routing"
# Kafka's "topic already exists" error code: another routing process was first, which is fine.
TOPIC_ALREADY_EXISTS = 36

log = logging.getLogger("acikkapi.routing.messaging")


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
