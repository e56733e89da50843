"""Logs and metrics: JSON logs that never carry a TC Kimlik No, and the Prometheus metrics."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

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
)
ADMISSION_REFUSED = Counter(
    "acikkapi_admission_refused_total",
    "Requests answered 503 at once: a dependency down (dependency_down) or too many in flight",
    ["service", "reason"],
)
READY = Gauge("acikkapi_ready", "1 when Kafka and MongoDB answered the last readiness check")
CONSUMER_LAG = Gauge(
    "acikkapi_consumer_lag",
    "Messages a consumer group of this service is behind the partition's end (high watermark), "
    "measured every 15 s (services/common/lag.py); absent while Kafka cannot be asked",
    ["group", "topic", "partition"],
)
