"""Kafka topic names of the public contract, in one place."""

from __future__ import annotations

import re

SUBMISSIONS = "acikkapi.intake.submissions"
REJECTIONS = "acikkapi.intake.rejections"
RECEIVED = "acikkapi.applications.received"
ROUTED = "acikkapi.applications.routed"
RESPONSES = "acikkapi.applications.responses"
STATUS = "acikkapi.applications.status"
DEADLINES = "acikkapi.deadlines"
NOTIFICATION_REQUESTS = "acikkapi.notifications.requests"
NOTIFICATION_RESULTS = "acikkapi.notifications.results"
INSTITUTION_PREFIX = "acikkapi.institution."
# Which provinces routing serves, one message per province (key: its plate code), compacted.
TAXONOMY = "acikkapi.taxonomy"
# The administrators' leave days (idari izin), the whole calendar per version (key "TR"),
# compacted: tracking makes it, every tracking and routing process reads it whole.
CALENDAR = "acikkapi.calendar"
# A citizen's rating (1-5) of an answer, once per application (tracking → reporting).
RATINGS = "acikkapi.ratings"

# Partition counts for the local stack and the default for production topic creation.
# Keyed topics need enough partitions for the consumer groups to scale out.
PARTITIONS: dict[str, int] = {
    SUBMISSIONS: 6,
    REJECTIONS: 3,
    RECEIVED: 6,
    ROUTED: 6,
    RESPONSES: 6,
    STATUS: 6,
    DEADLINES: 3,
    NOTIFICATION_REQUESTS: 6,
    NOTIFICATION_RESULTS: 3,
    TAXONOMY: 1,
    CALENDAR: 1,
    RATINGS: 3,
}
# Topics that keep only the newest message per key: every reader reads them whole on start.
# The topics reporting's read model is folded from keep every event, so
# `python -m services.reporting rebuild` can replay the whole history (docs/runbook.md,
# "Replay"): no deletion by age or size.
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
CONFIGS: dict[str, dict[str, str]] = {
    TAXONOMY: {"cleanup.policy": "compact"},
    CALENDAR: {"cleanup.policy": "compact"},
    RECEIVED: KEEP_FOREVER,
    ROUTED: KEEP_FOREVER,
    STATUS: KEEP_FOREVER,
    DEADLINES: KEEP_FOREVER,
    RATINGS: KEEP_FOREVER,
}
INSTITUTION_PARTITIONS = 2
DLQ_PARTITIONS = 1

INSTITUTION_CODE_RE = re.compile(r"^[A-Z0-9_-]{2,64}$")


def institution_topic(code: str) -> str:
    """The routed queue of one institution; the code names the topic, so it is checked here."""
    if not INSTITUTION_CODE_RE.fullmatch(code):
        raise ValueError(f"invalid institution code: {code!r}")
    return f"{INSTITUTION_PREFIX}{code}"


def dlq(topic: str) -> str:
    return f"{topic}.dlq"
