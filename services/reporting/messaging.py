"""Reporting's subscriptions: the five topics its read model is folded from (it publishes none).
The same list drives the live consumers and the rebuild command's replay."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import BaseModel

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

Subscription = tuple[str, type[BaseModel], Callable[[list[Any]], Awaitable[None]]]


def subscriptions(reporting: Reporting) -> list[Subscription]:
    return [
        (topics.RECEIVED, ApplicationReceived, reporting.applications_received),
        (topics.ROUTED, RoutingOutcome, reporting.applications_routed),
        (topics.STATUS, StatusChanged, reporting.statuses_changed),
        (topics.DEADLINES, DeadlineEvent, reporting.deadline_events),
        (topics.RATINGS, ApplicationRated, reporting.applications_rated),
    ]


def register(
    broker: KafkaBroker, settings: Settings, reporting: Reporting, group_id: str | None = None
) -> None:
    each_topic = functools.partial(
        subscribe, broker, service="reporting", settings=settings, group_id=group_id
    )
    for topic, model, handler in subscriptions(reporting):
        each_topic(topic, model, handler)
