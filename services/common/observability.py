"""Logs and metrics: JSON logs that never carry a TC Kimlik No, and the Prometheus metrics."""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

# Eleven digits in a row look like a TC Kimlik No: they never reach a log line.
_TCKN_RE = re.compile(r"(?<!\d)[1-9]\d{10}(?!\d)")
_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


# A signed token (an officer's, an e-Devlet assertion): usable by whoever reads it, and an
# assertion's payload holds a TC Kimlik No. Header, payload and signature are base64url.
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    """A text fit for a log or a dead letter: TC Kimlik Nos masked, tokens removed."""
    return _TCKN_RE.sub("***********", _JWT_RE.sub("[jeton silindi]", text))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, ensure_ascii=False, default=str))


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs whole URLs at INFO: Kannel's password and phone numbers would leak.
    for noisy in ("aiokafka", "kafka", "pymongo", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


EVENTS_PUBLISHED = Counter(
    "acikkapi_events_published_total", "Events published to Kafka", ["topic", "event_type"]
)
EVENTS_CONSUMED = Counter(
    "acikkapi_events_consumed_total", "Events consumed, by outcome", ["topic", "outcome"]
)
DEAD_LETTERS = Counter(
    "acikkapi_dead_letters_total", "Messages set aside on a dead-letter topic", ["topic", "reason"]
)
BATCH_SIZE = Histogram(
    "acikkapi_consumed_batch_size",
    "Events handed to a handler in one batch",
    ["topic"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
HANDLER_SECONDS = Histogram(
    "acikkapi_handler_seconds",
    "Time spent handling one consumed batch",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HTTP_REQUESTS = Counter(
    "acikkapi_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "acikkapi_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ASSIGNED_PARTITIONS = Gauge(
    "acikkapi_assigned_partitions",
    "Partitions of a topic this process consumes now (0: its group's other members have them)",
    ["topic"],
    # Several workers on one port: the partitions all of them consume.
    multiprocess_mode="livesum",
)
ADMISSION_REFUSED = Counter(
    "acikkapi_admission_refused_total",
    "Requests answered 503 at once: a dependency down (dependency_down) or too many in flight",
    ["service", "reason"],
)
# Several workers on one port: 0 as soon as one of them is not ready.
READY = Gauge(
    "acikkapi_ready",
    "1 when Kafka and MongoDB answered the last readiness check",
    multiprocess_mode="livemin",
)
CONSUMER_LAG = Gauge(
    "acikkapi_consumer_lag",
    "Messages a consumer group of this service is behind the partition's end (high watermark), "
    "measured every 15 s (services/common/lag.py); absent while Kafka cannot be asked",
    ["group", "topic", "partition"],
    # Every worker measures the same groups: the highest of their last measurements.
    multiprocess_mode="livemax",
)

# Set by the supervisor of a service run as several workers on one port (services/common/
# service.py) before a worker starts, so before prometheus_client is imported there.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder the workers of this service write their metrics to; None: one process."""
    return os.environ.get(MULTIPROC_ENV) or None


class _WorkersCollector:
    """prometheus_client's `MultiProcessCollector` (its own read and merge of the workers'
    files), leaving out the gauge series a worker withdrew: a file cannot forget a series, so
    `withdraw` leaves NaN there."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(self.path, "*.db"))
        metrics = MultiProcessCollector._read_metrics(files)  # type: ignore[no-untyped-call]
        for metric in metrics.values():
            if metric.type == "gauge":
                metric.samples = [s for s in metric.samples if not math.isnan(s.value)]
        merged: Iterable[Metric] = MultiProcessCollector._accumulate_metrics(  # type: ignore[no-untyped-call]
            metrics, True
        )
        return merged


def metrics_registry() -> CollectorRegistry:
    """What `/metrics` exposes: this process's metrics, or, when the service runs as several
    workers on one port, every worker's merged (counters summed, each gauge by its
    `multiprocess_mode`), whichever worker the scrape reaches."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(_WorkersCollector(path))
    return registry


def withdraw(gauge: Gauge, *labels: str) -> None:
    """Remove one series of a gauge, so it is absent rather than stale. A worker's metric file
    cannot remove a series (prometheus_client only warns): there the series is set to NaN,
    which `metrics_registry` leaves out, and a later `set` brings it back."""
    if multiprocess_dir() is not None:
        gauge.labels(*labels).set(math.nan)
        return
    gauge.remove(*labels)
