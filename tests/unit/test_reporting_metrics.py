"""The institution gauges reporting exports (services/reporting/metrics.py): set from the rows
given, and the institutions no longer among them removed rather than left stale."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.reporting.metrics import publish_institution_gauges


def figures(province: str, institution: str) -> tuple[float | None, float | None]:
    labels = {"province": province, "institution": institution}
    return (
        REGISTRY.get_sample_value("acikkapi_applications_open", labels),
        REGISTRY.get_sample_value("acikkapi_applications_overdue", labels),
    )


def test_the_gauges_show_each_institutions_open_and_overdue_applications() -> None:
    publish_institution_gauges(
        [(20, "DESKI", 14, 3), (20, "PAMUKKALE-BLD", 5, 0), (35, "IZSU", 2, 2)]
    )

    assert figures("20", "DESKI") == (14, 3)
    assert figures("20", "PAMUKKALE-BLD") == (5, 0)
    assert figures("35", "IZSU") == (2, 2)


def test_an_institution_no_longer_reported_leaves_no_stale_figure() -> None:
    publish_institution_gauges([(20, "DESKI", 14, 3), (20, "MEB", 1, 0)])
    publish_institution_gauges([(20, "DESKI", 12, 4)])

    assert figures("20", "DESKI") == (12, 4)
    assert figures("20", "MEB") == (None, None)

    publish_institution_gauges(())  # a process that stopped reporting exports nothing
    assert figures("20", "DESKI") == (None, None)


def test_every_topic_reporting_folds_from_keeps_its_whole_history():
    """The rebuild command replays these topics from their first offset: none may drop events
    by age or size (deploy/local/create_topics.py creates and aligns them so)."""
    from unittest.mock import MagicMock

    from services.common import topics
    from services.reporting.messaging import subscriptions

    for topic, _, _ in subscriptions(MagicMock()):
        assert topics.CONFIGS[topic] == topics.KEEP_FOREVER, topic
