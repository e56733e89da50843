"""What the governorship watches on its dashboard about institutions: how many applications each
holds open, and how many of those are past their deadline, per province."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Gauge

from services.common.observability import withdraw

# Several workers on one port: only the lease holder exports these, and during a handover the
# old holder's figures may linger one round; the maximum never counts an institution twice.
APPLICATIONS_OPEN = Gauge(
    "acikkapi_applications_open",
    "Applications an institution has not answered yet (province: plate code)",
    ["province", "institution"],
    multiprocess_mode="livemax",
)
APPLICATIONS_OVERDUE = Gauge(
    "acikkapi_applications_overdue",
    "Open applications past their deadline (province: plate code)",
    ["province", "institution"],
    multiprocess_mode="livemax",
)

_published: set[tuple[str, str]] = set()


def publish_institution_gauges(rows: Iterable[tuple[int, str, int, int]]) -> None:
    """Set both gauges to `rows` (province code, institution code, open, overdue), and remove
    the institutions not among them, so an institution that no longer holds anything, or that
    this process no longer reports on, leaves no stale figure behind. No rows: no series."""
    global _published
    now: set[tuple[str, str]] = set()
    for province, institution, open_count, overdue_count in rows:
        labels = (str(province), institution)
        APPLICATIONS_OPEN.labels(*labels).set(open_count)
        APPLICATIONS_OVERDUE.labels(*labels).set(overdue_count)
        now.add(labels)
    for gone in _published - now:
        for gauge in (APPLICATIONS_OPEN, APPLICATIONS_OVERDUE):
            withdraw(gauge, *gone)
    _published = now
