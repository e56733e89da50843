"""Reporting's subscriptions: the four topics its read model is folded from (it publishes none)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from services.common import topics
from services.common.events import ApplicationReceived, DeadlineEvent, RoutingOutcome, StatusChanged
from services.common.messaging import subscribe
from services.common.settings import Settings
from services.reporting.handlers import Reporting

# Consumers per topic in this process, each owning some partitions (order within a partition is
# kept, offsets are committed per partition). Each event is one upsert that waits on MongoDB, so
# a few partitions in parallel keep the read model close behind: status carries ~5 events per
# application.
WORKERS = {topics.RECEIVED: 2, topics.ROUTED: 2, topics.STATUS: 4, topics.DEADLINES: 1}


def register(
    broker: KafkaBroker, settings: Settings, reporting: Reporting, group_id: str | None = None
) -> None:
    for topic, model, handler in (
        (topics.RECEIVED, ApplicationReceived, reporting.application_received),
        (topics.ROUTED, RoutingOutcome, reporting.application_routed),
        (topics.STATUS, StatusChanged, reporting.status_changed),
        (topics.DEADLINES, DeadlineEvent, reporting.deadline_event),
    ):
        subscribe(
            broker,
            topic,
            model,
            handler,
            service="reporting",
            settings=settings,
            group_id=group_id,
            max_workers=WORKERS[topic],
        )
