"""The consumer-lag measurement's own rules (services/common/lag.py): what counts as lag, which
groups a service measures, and that a broker that does not answer harms nothing. The figures
against the real broker are in tests/integration/test_consumer_lag.py."""

from __future__ import annotations

import logging
import socket

import pytest
from prometheus_client import REGISTRY

from services.common import kafka_auth, topics
from services.common.lag import Lag, LagMonitor, lag_of, subscribed_groups
from services.common.settings import Settings
from services.intake.app import build_app


def exported(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "acikkapi_consumer_lag", {"group": group, "topic": topic, "partition": str(partition)}
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("committed", "begin", "end", "lag"),
    [
        (10, 0, 15, 5),  # five behind the high watermark
        (15, 0, 15, 0),  # caught up
        (-1, 0, 7, 7),  # never committed: the group starts at the earliest message
        (-1, 4, 7, 3),  # ... which retention may have moved
        (2, 4, 7, 3),  # a committed offset retention has passed: read from the earliest
    ],
)
def test_lag_is_what_lies_between_the_groups_position_and_the_end(
    committed: int, begin: int, end: int, lag: int
) -> None:
    assert lag_of(committed, begin, end) == lag


def test_a_service_measures_the_groups_its_subscribers_join() -> None:
    broker = build_app(Settings()).state.runtime.broker
    assert subscribed_groups(broker) == {
        "acikkapi-intake": {topics.SUBMISSIONS},
        "acikkapi-intake-progress-status": {topics.STATUS},
        "acikkapi-intake-progress-responses": {topics.RESPONSES},
    }


async def test_a_broker_that_does_not_answer_is_logged_once_and_leaves_no_stale_figure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = kafka_auth.client_options(
        Settings(), "intake", bootstrap=f"127.0.0.1:{closed_port()}"
    )
    group, topic = "acikkapi-unit-lag", topics.SUBMISSIONS
    monitor = LagMonitor(options, lambda: {group: {topic}}, timeout=5)
    # A figure from a round when the broker still answered.
    monitor._export([Lag(group, topic, 0, 12), Lag(group, topic, 1, 0)])
    assert exported(group, topic, 0) == 12

    with caplog.at_level(logging.INFO, logger="acikkapi.lag"):
        assert await monitor.update() is None
        assert await monitor.update() is None

    assert exported(group, topic, 0) is None and exported(group, topic, 1) is None
    said = [r.getMessage() for r in caplog.records if r.name == "acikkapi.lag"]
    assert said == ["consumer lag not measured; retrying every round, logged once"]


async def test_a_round_exports_the_new_figures_and_drops_partitions_no_longer_read() -> None:
    group = "acikkapi-unit-lag-2"
    rounds = [
        [Lag(group, "a", 0, 3), Lag(group, "b", 0, 1)],
        [Lag(group, "a", 0, 0)],
    ]
    monitor = LagMonitor({}, lambda: {group: {"a"}})

    async def measure() -> list[Lag]:
        return rounds.pop(0)

    monitor.measure = measure  # type: ignore[method-assign]
    await monitor.update()
    assert (exported(group, "a", 0), exported(group, "b", 0)) == (3, 1)
    await monitor.update()
    assert (exported(group, "a", 0), exported(group, "b", 0)) == (0, None)
