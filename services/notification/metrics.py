"""What operators watch about notification: sent, failed, duplicate and uncertain messages,
SMS segments (they are what the operator bills), gateway latency, and the messages that wait:
held for quiet hours, retried after a gateway outage, dead-lettered, slowed by a rate limit."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENT = Counter("acikkapi_notifications_sent_total", "Messages a gateway accepted", ["channel"])
FAILED = Counter(
    "acikkapi_notifications_failed_total",
    "Messages that failed (reason: rejected, retries_exhausted, invalid_recipient, "
    "delivery_report)",
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
    "SMS segments per message sent, by encoding (gsm7: 160/153 septets, gsm7_tr_locking: "
    "155/149 beside the Turkish table's header, ucs2: 70/67 characters)",
    ["encoding"],
    buckets=(1, 2, 3, 4, 5, 6, 8, 10),
)
GATEWAY_SECONDS = Histogram(
    "acikkapi_notification_gateway_seconds",
    "Time for one call to Kannel or the SMTP server",
    ["channel", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HELD = Counter(
    "acikkapi_notifications_held_total",
    "Non-urgent SMS held for quiet hours, to go when they end",
    ["channel"],
)
RETRIES = Counter(
    "acikkapi_notifications_retries_scheduled_total",
    "Gateway calls that failed for now (Kannel away, SMTP 4xx, refused) and were scheduled again",
    ["channel"],
)
RETRY_ATTEMPTS = Counter(
    "acikkapi_notifications_retry_attempts_total",
    "Second and later attempts of a message, by the state they led to",
    ["channel", "state"],
)
DEAD_LETTERED = Counter(
    "acikkapi_notifications_dead_lettered_total",
    "Messages given up after the retry cap: a failed result and a dead letter with the history",
    ["channel"],
)
RATE_LIMITED = Counter(
    "acikkapi_notifications_rate_limited_total",
    "Sends the provider's rate limit slowed (action: waited = waited briefly, postponed = left "
    "queued for the due loop)",
    ["channel", "action"],
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "acikkapi_notifications_rate_limit_wait_seconds",
    "How long a chunk of sends waited for the provider's rate limit",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SKIPPED_OPTOUT = Counter(
    "acikkapi_notifications_skipped_optout_total",
    "Informational e-mails not sent because the address opted out",
    ["template"],
)
OPTOUTS = Counter(
    "acikkapi_email_optouts_total",
    "Addresses that opted out of informational e-mail (via: page = the link's page, "
    "one_click = the mail client's RFC 8058 unsubscribe)",
    ["via"],
)
LEASES_EXPIRED = Counter(
    "acikkapi_notifications_lease_expired_total",
    "Messages still sending when their lease ran out (their process died mid-call): uncertain",
)
WAITING = Gauge(
    "acikkapi_notifications_waiting",
    "Messages waiting in the due index, by state (queued, held, retrying)",
    ["state"],
    # Every worker counts the same shared collection: the latest count is the truest.
    multiprocess_mode="livemostrecent",
)
