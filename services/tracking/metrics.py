"""What operators and the governorship watch about tracking: deadlines institutions missed."""

from __future__ import annotations

from prometheus_client import Counter

DEADLINE_MISSES = Counter(
    "acikkapi_deadline_misses_total",
    "Deadlines an institution missed, counted once when tracking records the miss (province: "
    "plate code; institution: the holder's code, empty when none held it)",
    ["province", "institution"],
)


def count_miss(province_code: int | None, institution_code: str | None) -> None:
    DEADLINE_MISSES.labels(str(province_code or ""), institution_code or "").inc()
