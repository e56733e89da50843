"""The notification use cases against the real MongoDB, with the gateways, the publisher and the
clock faked at the edge: at most once per key, a killed process's batch finished by whoever
comes next, retries with back-off through the due index and dead letters after the cap, quiet
hours, opt-outs, the rate limit, and delivery reports that arrive before the gateway's answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common import topics
from services.common.events import DeadLetter, NotificationRequest, NotificationResult
from services.common.messaging import Outgoing, PartialFailure, PermanentError
from services.common.mongo import Client, service_database
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.notification import domain
from services.notification.domain import GatewayOutcome, GatewayReply, NotificationState
from services.notification.handlers import QUEUE_LEASE, SEND_LEASE, Notifier
from services.notification.metrics import DEAD_LETTERED, HELD, LEASES_EXPIRED, UNCERTAIN
from services.notification.policy import normalise_email
from services.notification.ratelimit import TokenBucket
from services.notification.rendering import RenderedEmail, Renderer
from services.notification.store import NotificationStore

pytestmark = pytest.mark.integration

ACCEPTED = GatewayReply(GatewayOutcome.accepted, "202 0: Accepted for delivery")
DOWN = GatewayReply(GatewayOutcome.transient, "Kannel'e ulaşılamadı")
BAD_NUMBER = GatewayReply(GatewayOutcome.rejected, "400 Number(s) has/have been denied")
NO_ANSWER = GatewayReply(GatewayOutcome.ambiguous, "Kannel yanıt vermedi: ReadTimeout")
# A Monday morning in March on Istanbul's clock (10:00): no quiet hours. The fake clock lies in
# the past, so the due loops of real services sharing this MongoDB never see these records as
# anything but long due, and the tests' collection is their own anyway.
MORNING = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


class Killed(BaseException):
    """The process died: nothing after this point of the call runs."""


class FakeSms:
    def __init__(self) -> None:
        self.replies: list[GatewayReply] = []
        self.sent: list[dict[str, Any]] = []  # what reached the phone network
        self.calls = 0
        self.die_after: int | None = None  # calls after this many never return
        self.during_send: Any = None

    async def send_sms(self, *, to, text, encoding, dlr_url) -> GatewayReply:
        self.calls += 1
        if self.die_after is not None and self.calls > self.die_after:
            raise Killed
        reply = self.replies.pop(0) if self.replies else ACCEPTED
        if reply.outcome in (GatewayOutcome.accepted, GatewayOutcome.ambiguous):
            self.sent.append({"to": to, "text": text, "encoding": encoding, "dlr_url": dlr_url})
        if self.during_send is not None:
            await self.during_send()
        return reply


class FakeEmail:
    def __init__(self) -> None:
        self.replies: list[GatewayReply] = []
        self.sent: list[tuple[str, RenderedEmail]] = []

    async def send_email(self, *, to, rendered) -> GatewayReply:
        reply = (
            self.replies.pop(0) if self.replies else GatewayReply(GatewayOutcome.accepted, "250")
        )
        if reply.outcome is GatewayOutcome.accepted:
            self.sent.append((to, rendered))
        return reply


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def send_all(self, messages: Iterable[Outgoing]) -> None:
        self.sent.extend(messages)

    async def send(self, topic: str, event: Any, key: str | None) -> None:
        self.sent.append(Outgoing.of(topic, event, key))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Harness:
    def __init__(self, settings: Settings, store: NotificationStore, clock: Clock) -> None:
        self.sms = FakeSms()
        self.email = FakeEmail()
        self.publisher = FakePublisher()
        self.sleeps: list[float] = []
        self.clock = clock

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.notifier = Notifier(
            settings=settings,
            store=store,
            renderer=Renderer(),
            sms=self.sms,
            email=self.email,
            publisher=self.publisher,  # type: ignore[arg-type]
            clock=clock,
            sleep=sleep,
        )
        self.store = store

    @property
    def results(self) -> list[NotificationResult]:
        return [
            NotificationResult.model_validate_json(m.value)
            for m in self.publisher.sent
            if m.topic == topics.NOTIFICATION_RESULTS
        ]

    @property
    def letters(self) -> list[DeadLetter]:
        return [
            DeadLetter.model_validate_json(m.value)
            for m in self.publisher.sent
            if m.topic == topics.dlq(topics.NOTIFICATION_REQUESTS)
        ]

    def statuses(self, key: str) -> list[str]:
        return [r.status for r in self.results if r.idempotency_key == key]

    async def record(self, key: str) -> domain.Message:
        message = await self.store.get(key)
        assert message is not None, key
        return message


@pytest.fixture
async def store(settings: Settings, mongo: Client) -> AsyncIterator[NotificationStore]:
    store = NotificationStore(
        service_database(mongo, settings, "notification"), PiiCipher(settings.pii_key_bytes())
    )
    # Collections of each test's own: nx-27017 keeps every database in one namespace, and
    # these records (due in the fake clock's past) must meet no other test's or service's due
    # loop.
    suffix = uuid.uuid4().hex[:8]
    store.notifications = store.notifications.database[f"notification_messages_t{suffix}"]
    store.optouts = store.optouts.database[f"notification_email_optouts_t{suffix}"]
    await store.ensure_indexes()
    yield store
    await asyncio.sleep(0.05)  # the outbox's clears in the background
    await store.notifications.drop()
    await store.optouts.drop()


@pytest.fixture
def notification_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "sms_quiet_hours": "21:00-08:30",
            "notification_retry_first_seconds": 1.0,
            "notification_retry_cap_seconds": 300.0,
            "notification_retry_max_attempts": 4,
            "notification_retry_max_seconds": 3600.0,
            "sms_rate_per_second": 0.0,
            "smtp_rate_per_second": 0.0,
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(MORNING)


@pytest.fixture
def harness(notification_settings: Settings, store: NotificationStore, clock: Clock) -> Harness:
    return Harness(notification_settings, store, clock)


def sms_request(key: str | None = None, **overrides: Any) -> NotificationRequest:
    application_id = str(uuid.uuid4())
    fields: dict[str, Any] = {
        "application_id": application_id,
        "application_number": "20-2026-0000123-4",
        "producer": "intake",
        "idempotency_key": key or f"{application_id}:received:sms",
        "channel": "sms",
        "to": "+905321234567",
        "template": "application_received",
        "params": {
            "application_number": "20-2026-0000123-4",
            "tracking_url": "http://127.0.0.1:8003/takip",
        },
    }
    fields.update(overrides)
    return NotificationRequest(**fields)


def email_request(template: str = "application_received", **overrides: Any) -> NotificationRequest:
    application_id = str(uuid.uuid4())
    params: dict[str, Any] = {
        "application_number": "20-2026-0000123-4",
        "tracking_url": "http://127.0.0.1:8003/takip",
    }
    if template == "application_answered":
        params |= {"outcome_label": "olumlu", "answer": "Talebiniz karşılandı."}
    fields: dict[str, Any] = {
        "application_id": application_id,
        "application_number": "20-2026-0000123-4",
        "producer": "intake",
        "idempotency_key": f"{application_id}:{template}:email",
        "channel": "email",
        "to": "Ayse.Yilmaz@ornek.com.tr",
        "template": template,
        "params": params,
    }
    fields.update(overrides)
    return NotificationRequest(**fields)


def again(request: NotificationRequest) -> NotificationRequest:
    """The same request produced a second time: same key, a new event."""
    return request.model_copy(update={"event_id": uuid.uuid4()})


async def handle_one(harness: Harness, request: NotificationRequest) -> None:
    """One request through the batch handler, its failure raised as itself (as the consumer
    core retries it alone)."""
    try:
        await harness.notifier.handle_requests([request])
    except PartialFailure as exc:
        raise exc.failed[0] from None


def istanbul(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=ISTANBUL).astimezone(UTC)


# --- at most once ----------------------------------------------------------------------------


async def test_sent_once_then_duplicates_send_nothing(harness: Harness):
    request = sms_request()
    key = request.idempotency_key
    await handle_one(harness, request)
    assert len(harness.sms.sent) == 1
    sent = harness.sms.sent[0]
    assert sent["to"] == "905321234567"
    assert "Başvurunuz alındı" in sent["text"]
    assert "/api/v1/sms/dlr?key=" in sent["dlr_url"] and "status=%d&answer=%A" in sent["dlr_url"]
    [result] = harness.results
    assert result.status == "sent"
    assert result.segments == domain.sms_shape(sent["text"]).segments
    assert result.application_id == request.application_id

    await handle_one(harness, again(request))  # a repeat: announced, not sent
    await handle_one(harness, request)  # a redelivery: the result again, not sent
    assert len(harness.sms.sent) == 1
    assert harness.statuses(key) == ["sent", "skipped_duplicate", "sent"]
    # A result announced again is recognisably the same event.
    firsts = [r.event_id for r in harness.results if r.status == "sent"]
    assert firsts[0] == firsts[1]
    doc = await harness.record(key)
    assert doc.state == "sent" and doc.attempts == 1
    assert doc.template_version is not None and doc.template_fingerprint
    assert doc.content_enc is None  # what went out needs no keeping
    assert [a.outcome for a in doc.attempts_in_order()] == ["accepted"]
    assert doc.recipient_masked == "+90 5** *** ** 67"
    assert "5321234567" not in str(doc.model_dump(exclude={"recipient_enc"}))
    await harness.notifier.outbox.flush()  # announced, then its outbox cleared
    raw = await harness.store.notifications.find_one({"_id": key})
    assert raw is not None and not raw.get("outbox")


async def test_killed_during_the_gateway_call_is_uncertain_and_never_resent(harness: Harness):
    request = sms_request()
    key = request.idempotency_key
    harness.sms.die_after = 0
    with pytest.raises(Killed):
        await handle_one(harness, request)
    harness.sms.die_after = None
    assert (await harness.record(key)).state == "sending"
    before = UNCERTAIN.labels("sms", "redelivered_while_sending")._value.get()

    await handle_one(harness, request)  # Kafka redelivers the uncommitted event

    assert harness.sms.calls == 1 and harness.sms.sent == []
    assert UNCERTAIN.labels("sms", "redelivered_while_sending")._value.get() == before + 1
    assert (await harness.record(key)).state == "uncertain"
    assert harness.results == []
    # Kannel did send it after all: its delivery report settles the question.
    assert await harness.notifier.handle_delivery_report(key, 1, "") == "settled"
    assert harness.statuses(key) == ["delivered"]


async def test_a_report_that_came_while_its_sender_died_settles_at_the_redelivery(
    harness: Harness,
):
    request = sms_request()
    key = request.idempotency_key
    harness.sms.die_after = 0
    with pytest.raises(Killed):
        await handle_one(harness, request)
    # Kannel got it after all and reports while the record still says "sending".
    assert await harness.notifier.handle_delivery_report(key, 1, "") == "recorded"
    harness.sms.die_after = None
    await handle_one(harness, request)
    assert (await harness.record(key)).state == "delivered"
    assert harness.statuses(key) == ["delivered"]
    assert harness.sms.calls == 1


async def test_a_process_killed_mid_batch_leaves_the_rest_for_the_next_one(harness: Harness):
    batch = [sms_request() for _ in range(20)]
    harness.sms.die_after = 4  # four calls reached Kannel, then the process died
    with pytest.raises(Killed):
        await harness.notifier.handle_requests(batch)
    states = [(await harness.record(r.idempotency_key)).state for r in batch]
    in_flight = states.count(NotificationState.sending)
    assert states.count(NotificationState.queued) == 20 - in_flight > 0
    assert in_flight <= 16  # two chunks of eight at most

    harness.sms.die_after = None
    calls_before = harness.sms.calls
    await harness.notifier.handle_requests(batch)  # the batch is redelivered

    after = {r.idempotency_key: (await harness.record(r.idempotency_key)).state for r in batch}
    assert list(after.values()).count(NotificationState.uncertain) == in_flight
    assert list(after.values()).count(NotificationState.sent) == 20 - in_flight
    # Only what was still queued was sent, each once.
    assert harness.sms.calls - calls_before == 20 - in_flight
    texts = [m["dlr_url"] for m in harness.sms.sent]
    assert len(texts) == len(set(texts)) == 4 + 20 - in_flight


async def test_a_queued_record_left_behind_is_the_due_loops_after_its_lease(
    harness: Harness, notification_settings: Settings, store: NotificationStore, clock: Clock
):
    request = sms_request()
    real_take = harness.store.take

    async def die(*args: Any, **kwargs: Any) -> Any:
        raise Killed

    harness.store.take = die  # type: ignore[method-assign]
    try:
        with pytest.raises(Killed):
            await handle_one(harness, request)
    finally:
        harness.store.take = real_take  # type: ignore[method-assign]
    assert (await harness.record(request.idempotency_key)).state == "queued"

    other = Harness(notification_settings, store, clock)  # another process
    assert await other.notifier.send_due() == 0  # not yet: its claimer may still be at it
    assert other.sms.sent == []
    clock.advance(seconds=QUEUE_LEASE.total_seconds() + 1)
    assert await other.notifier.send_due() >= 1
    assert len(other.sms.sent) == 1
    assert other.statuses(request.idempotency_key) == ["sent"]


async def test_two_processes_share_the_due_records_and_send_each_once(
    notification_settings: Settings, store: NotificationStore, clock: Clock
):
    first = Harness(notification_settings, store, clock)
    first.sms.replies = [DOWN] * 30
    batch = [sms_request() for _ in range(30)]
    await first.notifier.handle_requests(batch)
    states = [(await first.record(r.idempotency_key)).state for r in batch]
    assert states == [NotificationState.retrying] * 30

    clock.advance(seconds=5)
    second = Harness(notification_settings, store, clock)
    await asyncio.gather(first.notifier.send_due(), second.notifier.send_due())
    keys = [m["dlr_url"] for m in first.sms.sent + second.sms.sent]
    assert len(keys) == len(set(keys)) == 30


# --- retries, back-off and dead letters ---------------------------------------------------------


async def test_gateway_away_is_retried_later_without_holding_the_consumer(
    harness: Harness, clock: Clock
):
    harness.sms.replies = [DOWN, DOWN]
    request = sms_request()
    key = request.idempotency_key
    await handle_one(harness, request)
    assert harness.sleeps == []  # the consumer did not wait
    record = await harness.record(key)
    assert record.state == "retrying" and record.attempts == 1
    assert record.due_at is not None
    assert timedelta(seconds=0.8) <= record.due_at - MORNING <= timedelta(seconds=1)
    assert harness.results == []

    assert await harness.notifier.send_due() == 0  # not due yet
    clock.advance(seconds=1)
    await harness.notifier.send_due()  # second attempt: still down
    record = await harness.record(key)
    assert record.state == "retrying" and record.attempts == 2
    delay = record.due_at - clock.now if record.due_at else timedelta(0)
    assert timedelta(seconds=1.6) <= delay <= timedelta(seconds=2)  # doubled, with jitter

    clock.advance(seconds=2)
    await harness.notifier.send_due()
    record = await harness.record(key)
    assert record.state == "sent" and record.attempts == 3
    history = record.attempts_in_order()
    assert [a.outcome for a in history] == ["transient", "transient", "accepted"]
    assert history[0].next_at is not None and history[2].next_at is None
    assert harness.statuses(key) == ["sent"]
    assert len(harness.sms.sent) == 1


async def test_after_the_cap_the_message_fails_with_a_dead_letter_and_its_history(
    harness: Harness, clock: Clock
):
    harness.sms.replies = [DOWN] * 10
    request = sms_request()
    key = request.idempotency_key
    before = DEAD_LETTERED.labels("sms")._value.get()
    await handle_one(harness, request)
    for _ in range(10):
        clock.advance(seconds=400)
        await harness.notifier.send_due()
    assert harness.sms.calls == 4  # notification_retry_max_attempts
    record = await harness.record(key)
    assert record.state == "failed" and record.dead_lettered_at is not None
    assert record.content_enc is not None  # kept (sealed) for an operator's resend
    [result] = harness.results
    assert result.status == "failed" and "4 denemeden sonra" in (result.detail or "")
    [letter] = harness.letters
    assert letter.key == key and letter.error_type == "retries_exhausted"
    assert letter.attempts == 4 and len(letter.history) == 4
    assert [h["outcome"] for h in letter.history] == ["transient"] * 4
    assert "5321234567" not in letter.model_dump_json()
    assert "+90 5** *** ** 67" in letter.original
    assert DEAD_LETTERED.labels("sms")._value.get() == before + 1

    # The operator resends it once Kannel is back: due now, sent by the due loop.
    harness.sms.replies = []
    resent = await harness.notifier.resend(key)
    assert resent is not None and resent.state == "retrying"
    await harness.notifier.send_due()
    assert (await harness.record(key)).state == "sent"
    assert harness.statuses(key) == ["failed", "sent"]
    assert await harness.notifier.resend(key) is None  # sent: nothing to resend


async def test_the_time_cap_gives_up_before_the_attempts_do(
    notification_settings: Settings, store: NotificationStore, clock: Clock
):
    short = notification_settings.model_copy(
        update={"notification_retry_max_attempts": 50, "notification_retry_max_seconds": 10.0}
    )
    harness = Harness(short, store, clock)
    harness.sms.replies = [DOWN] * 50
    request = sms_request()
    await handle_one(harness, request)
    for _ in range(10):
        clock.advance(seconds=4)
        await harness.notifier.send_due()
    record = await harness.record(request.idempotency_key)
    assert record.state == "failed" and 2 <= (record.attempts or 0) < 10
    assert harness.statuses(request.idempotency_key) == ["failed"]


async def test_permanent_rejection_fails_at_once(harness: Harness):
    harness.sms.replies = [BAD_NUMBER]
    request = sms_request()
    await handle_one(harness, request)
    assert harness.sms.calls == 1 and harness.sleeps == []
    assert harness.statuses(request.idempotency_key) == ["failed"]
    assert harness.letters == []


async def test_no_answer_is_uncertain_and_not_retried(harness: Harness, clock: Clock):
    harness.sms.replies = [NO_ANSWER]
    request = sms_request()
    await handle_one(harness, request)
    clock.advance(seconds=600)
    await harness.notifier.send_due()
    assert harness.sms.calls == 1
    assert harness.results == []
    record = await harness.record(request.idempotency_key)
    assert record.state == "uncertain" and record.uncertain_reason == "no_gateway_answer"


async def test_a_lease_that_ran_out_while_sending_is_uncertain(harness: Harness, clock: Clock):
    request = sms_request()
    harness.sms.die_after = 0
    with pytest.raises(Killed):
        await handle_one(harness, request)
    before = LEASES_EXPIRED._value.get()
    clock.advance(seconds=SEND_LEASE.total_seconds() + 1)
    await harness.notifier.send_due()
    record = await harness.record(request.idempotency_key)
    assert record.state == "uncertain" and record.uncertain_reason == "lease_expired_while_sending"
    assert LEASES_EXPIRED._value.get() >= before + 1
    assert harness.sms.calls == 1


async def test_invalid_number_fails_without_calling_kannel(harness: Harness):
    request = sms_request(to="+90 53x")
    await handle_one(harness, request)
    assert harness.sms.calls == 0
    [result] = harness.results
    assert result.status == "failed" and "telefon" in (result.detail or "")


async def test_unknown_template_is_permanent_and_stores_nothing(harness: Harness):
    request = sms_request(template="no_such_template")
    with pytest.raises(PermanentError, match="Bilinmeyen şablon"):
        await handle_one(harness, request)
    missing = sms_request(params={"application_number": "20-2026-0000123-4"})
    with pytest.raises(PermanentError, match="tracking_url"):
        await handle_one(harness, missing)
    assert harness.sms.calls == 0 and harness.results == []
    assert await harness.store.get(request.idempotency_key) is None
    assert await harness.store.get(missing.idempotency_key) is None


async def test_a_batch_sends_each_key_once_and_fails_only_its_bad_request(harness: Harness):
    first, second = sms_request(), sms_request()
    bad = sms_request(template="no_such_template")
    batch = [first, again(first), second, bad, first]
    with pytest.raises(PartialFailure) as failure:
        await harness.notifier.handle_requests(batch)
    assert list(failure.value.failed) == [3]
    assert isinstance(failure.value.failed[3], PermanentError)
    assert len(harness.sms.sent) == 2
    # In one batch as across batches: the repeat is skipped, the redelivery re-announced.
    assert harness.statuses(first.idempotency_key) == ["sent", "skipped_duplicate", "sent"]
    assert harness.statuses(second.idempotency_key) == ["sent"]


# --- delivery reports ----------------------------------------------------------------------------


async def test_delivery_report_before_the_sent_write_is_applied_after_it(harness: Harness):
    request = sms_request()
    key = request.idempotency_key
    outcomes: list[str] = []

    async def kannel_reports_at_once() -> None:
        outcomes.append(await harness.notifier.handle_delivery_report(key, 1, ""))

    harness.sms.during_send = kannel_reports_at_once
    await handle_one(harness, request)
    assert outcomes == ["recorded"]
    assert harness.statuses(key) == ["sent", "delivered"]
    assert (await harness.record(key)).state == "delivered"


async def test_delivery_reports_are_idempotent_and_first_final_wins(harness: Harness):
    request = sms_request()
    key = request.idempotency_key
    await handle_one(harness, request)
    notifier = harness.notifier
    assert await notifier.handle_delivery_report(key, 8, "ACK/") == "recorded"
    assert await notifier.handle_delivery_report(key, 1, "") == "settled"
    assert await notifier.handle_delivery_report(key, 1, "") == "ignored"
    assert await notifier.handle_delivery_report(key, 2, "late failure") == "ignored"
    assert await notifier.handle_delivery_report("no-such-key", 1, "") == "unknown"
    assert harness.statuses(key) == ["sent", "delivered"]
    doc = await harness.record(key)
    assert doc.state == "delivered"
    assert set(doc.delivery_reports) == {"8", "1", "2"}
    assert doc.settled_by is not None and doc.settled_by.status == 1


async def test_failed_delivery_report(harness: Harness):
    request = sms_request()
    await handle_one(harness, request)
    key = request.idempotency_key
    assert await harness.notifier.handle_delivery_report(key, 16, "SMSC reject") == "settled"
    assert harness.statuses(key) == ["sent", "failed"]
    assert "16" in (harness.results[-1].detail or "")


# --- quiet hours -------------------------------------------------------------------------------


async def test_non_urgent_sms_in_quiet_hours_is_held_until_morning(harness: Harness, clock: Clock):
    clock.now = istanbul(22, 15)
    held_before = HELD.labels("sms")._value.get()
    receipt = sms_request()
    code = sms_request(urgent=True)  # e.g. a one-time code
    mail = email_request()
    await harness.notifier.handle_requests([receipt, code, mail])
    [urgent] = harness.sms.sent  # the code went at once, and e-mail is never held
    assert domain.dlr_key_param(code.idempotency_key) in urgent["dlr_url"]
    assert len(harness.email.sent) == 1
    record = await harness.record(receipt.idempotency_key)
    assert record.state == "held" and record.due_at == istanbul(8, 30, day=3)
    assert record.held_until == istanbul(8, 30, day=3)
    assert HELD.labels("sms")._value.get() == held_before + 1

    clock.now = istanbul(8, 29, day=3)
    await harness.notifier.send_due()
    assert len(harness.sms.sent) == 1
    clock.now = istanbul(8, 30, day=3)
    await harness.notifier.send_due()
    assert len(harness.sms.sent) == 2
    assert harness.statuses(receipt.idempotency_key) == ["sent"]


async def test_a_retry_that_falls_in_quiet_hours_waits_for_the_morning(
    harness: Harness, clock: Clock
):
    clock.now = istanbul(20, 59) + timedelta(seconds=59)
    harness.sms.replies = [DOWN]
    request = sms_request()
    await handle_one(harness, request)
    first = await harness.record(request.idempotency_key)
    assert first.state == "retrying" and first.give_up_at is not None
    clock.now = istanbul(21, 0) + timedelta(seconds=5)
    await harness.notifier.send_due()
    assert harness.sms.calls == 1  # not tried at night
    record = await harness.record(request.idempotency_key)
    assert record.state == "held" and record.due_at == istanbul(8, 30, day=3)
    # The night does not count against the time a retry may take.
    assert record.give_up_at is not None and record.give_up_at > istanbul(8, 30, day=3)
    clock.now = istanbul(8, 31, day=3)
    await harness.notifier.send_due()
    assert harness.statuses(request.idempotency_key) == ["sent"]


# --- e-mail: the receipt, opting out, the answer -------------------------------------------------


async def test_the_receipt_email_carries_a_signed_unsubscribe_link(harness: Harness):
    request = email_request()
    await handle_one(harness, request)
    [(to, rendered)] = harness.email.sent
    assert to == "Ayse.Yilmaz@ornek.com.tr"
    assert rendered.unsubscribe_url is not None and "/eposta/ayril?t=" in rendered.unsubscribe_url
    assert rendered.unsubscribe_url in rendered.text and "ornek.com" not in rendered.unsubscribe_url
    assert "20-2026-0000123-4" in rendered.subject
    answer = email_request("application_answered")
    await handle_one(harness, answer)
    assert harness.email.sent[-1][1].unsubscribe_url is None  # the answer cannot be opted out of


async def test_an_opted_out_address_gets_no_receipt_but_still_the_answer(harness: Harness):
    address = "Opt.Out@ornek.com.tr"
    index = harness.store.address_index(normalise_email(address))
    assert await harness.store.opt_out(index, "page", MORNING)
    assert not await harness.store.opt_out(index, "page", MORNING)  # once is enough
    receipt = email_request(to=" opt.out@ORNEK.com.tr ")
    answer = email_request("application_answered", to=address)
    await harness.notifier.handle_requests([receipt, answer])
    assert [to for to, _ in harness.email.sent] == [address]
    assert harness.statuses(receipt.idempotency_key) == ["skipped_optout"]
    assert harness.statuses(answer.idempotency_key) == ["sent"]
    record = await harness.record(receipt.idempotency_key)
    assert record.state == "skipped" and record.skip_reason == "optout"
    stored = await harness.store.optouts.find_one({"_id": index})
    assert stored is not None and "ornek" not in str(stored)  # never the address in clear
    await handle_one(harness, receipt)  # redelivered: the same answer again
    assert harness.statuses(receipt.idempotency_key) == ["skipped_optout", "skipped_optout"]


async def test_email_is_sent_once(harness: Harness):
    application_id = str(uuid.uuid4())
    request = NotificationRequest(
        application_id=application_id,
        idempotency_key=f"{application_id}:routed:PAMUKKALE_BLD:email",
        channel="email",
        to="yazi.isleri@pamukkale.bel.tr",
        template="institution_assignment",
        params={
            "application_number": "20-2026-0000123-4",
            "institution_name": "Pamukkale Belediyesi",
            "category_name": "Yol ve kaldırım",
            "subject": "Kaldırım çöktü",
            "district": "Pamukkale",
            "deadline_at": "2026-03-02T09:30:00Z",
        },
    )
    await handle_one(harness, request)
    await handle_one(harness, again(request))
    assert len(harness.email.sent) == 1
    to, rendered = harness.email.sent[0]
    assert to == "yazi.isleri@pamukkale.bel.tr"
    assert "02.03.2026 12:30" in rendered.text
    assert [(r.status, r.segments) for r in harness.results] == [
        ("sent", None),
        ("skipped_duplicate", None),
    ]
    doc = await harness.record(request.idempotency_key)
    assert doc.recipient_masked == "ya***@pamukkale.bel.tr"


async def test_smtp_4xx_is_retried_and_the_mail_goes_once(harness: Harness, clock: Clock):
    harness.email.replies = [GatewayReply(GatewayOutcome.transient, "451 4.3.0 try later")]
    request = email_request("application_answered")
    await handle_one(harness, request)
    assert (await harness.record(request.idempotency_key)).state == "retrying"
    clock.advance(seconds=2)
    await harness.notifier.send_due()
    assert len(harness.email.sent) == 1
    assert harness.statuses(request.idempotency_key) == ["sent"]


# --- the rate limit ----------------------------------------------------------------------------


async def test_the_rate_limit_waits_briefly_then_leaves_the_rest_to_the_due_loop(
    harness: Harness, clock: Clock
):
    ticks = [0.0]
    bucket = TokenBucket(10, clock=lambda: ticks[0])
    harness.notifier.buckets[domain.NotificationChannel.sms] = bucket
    batch = [sms_request() for _ in range(40)]
    await harness.notifier.handle_requests(batch)
    sent_now = len(harness.sms.sent)
    # A second's burst (10) plus what half a second of waiting allows (5), about.
    assert 10 <= sent_now <= 17
    assert harness.sleeps and max(harness.sleeps) <= 0.5  # never a long wait
    queued = [r for r in batch if (await harness.record(r.idempotency_key)).state == "queued"]
    assert len(queued) == 40 - sent_now
    due = [(await harness.record(r.idempotency_key)).due_at for r in queued]
    assert all(d is not None and d > clock.now for d in due)

    ticks[0] += 10  # ten seconds later the bucket is full again
    clock.advance(seconds=10)
    for _ in range(20):
        if len(harness.sms.sent) == 40:
            break
        ticks[0] += 1
        clock.advance(seconds=1)
        await harness.notifier.send_due()
    keys = [m["dlr_url"] for m in harness.sms.sent]
    assert len(keys) == len(set(keys)) == 40


class FlakyPublisher(FakePublisher):
    """Kafka away for the next `failures` sends."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def send_all(self, messages: Iterable[Outgoing]) -> None:
        batch = list(messages)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("Kafka unreachable")
        self.sent.extend(batch)


async def test_a_result_the_due_loop_could_not_announce_is_relayed_from_the_outbox(
    notification_settings: Settings, store: NotificationStore, clock: Clock
):
    harness = Harness(notification_settings, store, clock)
    harness.sms.replies = [DOWN]
    request = sms_request()
    await handle_one(harness, request)
    flaky = FlakyPublisher(failures=1)
    harness.publisher = flaky
    harness.notifier.publisher = flaky  # type: ignore[assignment]
    harness.notifier.outbox.publisher = flaky  # type: ignore[assignment]
    clock.advance(seconds=2)
    with pytest.raises(ConnectionError):
        await harness.notifier.send_due()  # sent, recorded; Kafka away for the result
    assert (await harness.record(request.idempotency_key)).state == "sent"
    assert harness.results == []
    relayed = await harness.notifier.outbox.relay_once(now=time.time() + 60)
    assert relayed == 1
    assert harness.statuses(request.idempotency_key) == ["sent"]
    assert len(harness.sms.sent) == 1
