"""Reporting's subscriptions: the five topics its read model is folded from (it publishes none)."""

from __future__ import annotations

import functools

from faststream.kafka import KafkaBroker

from services.common import topics
from services.common.events import (
    ApplicationRated,
    ApplicationReceived,
    DeadlineEvent,
    RoutingOutcome,
    StatusChanged,
)
from services.common.messaging import subscribe
from services.common.settings import Settings
from services.reporting.handlers import Reporting


def register(
    broker: KafkaBroker, settings: Settings, reporting: Reporting, group_id: str | None = None
) -> None:
    each_topic = functools.partial(
        subscribe, broker, service="reporting", settings=settings, group_id=group_id
    )
    each_topic(topics.RECEIVED, ApplicationReceived, reporting.applications_received)
    each_topic(topics.ROUTED, RoutingOutcome, reporting.applications_routed)
    each_topic(topics.STATUS, StatusChanged, reporting.statuses_changed)
    each_topic(topics.DEADLINES, DeadlineEvent, reporting.deadline_events)
    each_topic(topics.RATINGS, ApplicationRated, reporting.applications_rated)
