"""What operators watch about notification: sent, failed, duplicate and uncertain messages,
SMS segments (they are what the operator bills) and gateway latency."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SENT = Counter("acikkapi_notifications_sent_total", "Messages a gateway accepted", ["channel"])
FAILED = Counter(
    "acikkapi_notifications_failed_total",
    "Messages that failed (reason: rejected, unreachable, invalid_recipient, delivery_report)",
    ["channel", "reason"],
)
DUPLICATES = Counter(
    "acikkapi_notifications_duplicate_total",
    "Requests whose idempotency key was already known, so nothing was sent "
    "(kind: redelivered = same event again, repeated = a new event with the same key)",
    ["channel", "kind"],
)
UNCERTAIN = Counter(
    "acikkapi_notifications_uncertain_total",
    "Messages that may or may not have gone out and are not resent: check them by hand "
    "(reason: redelivered_while_sending, no_gateway_answer)",
    ["channel", "reason"],
)
DELIVERY_REPORTS = Counter(
    "acikkapi_sms_delivery_reports_total", "Kannel delivery reports received", ["status"]
)
SMS_SEGMENTS = Histogram(
    "acikkapi_sms_segments",
    "SMS segments per message sent (GSM-7 160/153, UCS-2 70/67 characters)",
    ["encoding"],
    buckets=(1, 2, 3, 4, 5, 6, 8, 10),
)
GATEWAY_SECONDS = Histogram(
    "acikkapi_notification_gateway_seconds",
    "Time for one call to Kannel or the SMTP server",
    ["channel", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
