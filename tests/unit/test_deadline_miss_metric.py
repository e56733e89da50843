"""`acikkapi_deadline_misses_total` counts a missed deadline once, where tracking stores the
miss: not again on the watcher's next round, nor when its events are delivered again."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from services.common import topics
from services.common.events import RoutingOutcome
from tests.unit.test_tracking_handlers import cipher, received, routed, world

__all__ = ["cipher", "world"]  # the fixtures of the tracking handler tests, reused


def misses(province: str, institution: str) -> float:
    value = REGISTRY.get_sample_value(
        "acikkapi_deadline_misses_total", {"province": province, "institution": institution}
    )
    return value or 0.0


async def routed_with_deadline(tracking, store) -> datetime:
    """One application received and routed to PAMUKKALE-BLD in Denizli; its deadline."""
    await tracking.on_received_batch([received()])
    await tracking.on_routed_batch([RoutingOutcome(routed())])
    deadline = store.apps[routed().application_id].deadline_at
    assert deadline is not None
    return deadline


async def test_a_missed_deadline_is_counted_once_per_province_and_institution(world):
    tracking, store, bus = world
    before = misses("20", "PAMUKKALE-BLD")
    deadline = await routed_with_deadline(tracking, store)

    assert await tracking.check_deadlines(deadline - timedelta(minutes=1)) >= 0
    assert misses("20", "PAMUKKALE-BLD") == before  # not yet due (a warning at most)

    assert await tracking.check_deadlines(deadline + timedelta(minutes=1)) == 1
    assert misses("20", "PAMUKKALE-BLD") == before + 1
    assert [e.kind for e in bus.on(topics.DEADLINES)][-2:] == ["missed", "escalated"]

    # The next round finds nothing due.
    assert await tracking.check_deadlines(deadline + timedelta(minutes=2)) == 0
    assert misses("20", "PAMUKKALE-BLD") == before + 1


async def test_a_miss_stored_while_kafka_is_away_is_counted_once_not_again_when_published(
    world,
):
    tracking, store, bus = world
    before = misses("20", "PAMUKKALE-BLD")
    deadline = await routed_with_deadline(tracking, store)

    bus.fail_next = 1  # the miss is stored with its events, their publish fails
    with pytest.raises(KafkaConnectionError):
        await tracking.check_deadlines(deadline + timedelta(minutes=1))
    assert store.apps[routed().application_id].overdue
    assert misses("20", "PAMUKKALE-BLD") == before + 1

    # The outbox relay publishes them later; the watcher has nothing more to record.
    assert await tracking.check_deadlines(deadline + timedelta(minutes=2)) == 0
    assert misses("20", "PAMUKKALE-BLD") == before + 1
