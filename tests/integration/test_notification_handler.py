"""The notification use cases against the real MongoDB, with the gateways and the result
publisher faked at the edge: at most once per key, retries, uncertainty after a crash, and
delivery reports that arrive before the gateway's answer is written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.common.events import NotificationRequest, NotificationResult
from services.common.messaging import PartialFailure, PermanentError
from services.common.mongo import make_client, service_database
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.notification import domain
from services.notification.domain import GatewayOutcome, GatewayReply
from services.notification.handlers import Notifier
from services.notification.metrics import UNCERTAIN
from services.notification.rendering import RenderedEmail, Renderer
from services.notification.store import NotificationStore

pytestmark = pytest.mark.integration

ACCEPTED = GatewayReply(GatewayOutcome.accepted, "202 0: Accepted for delivery")
DOWN = GatewayReply(GatewayOutcome.transient, "Kannel'e ulaşılamadı")
BAD_NUMBER = GatewayReply(GatewayOutcome.rejected, "400 Number(s) has/have been denied")
NO_ANSWER = GatewayReply(GatewayOutcome.ambiguous, "Kannel yanıt vermedi: ReadTimeout")


class FakeSms:
    def __init__(self, *replies: GatewayReply) -> None:
        self.replies = list(replies)
        self.sent: list[dict[str, Any]] = []
        self.during_send: Any = None

    async def send_sms(self, *, to, text, encoding, dlr_url) -> GatewayReply:
        self.sent.append({"to": to, "text": text, "encoding": encoding, "dlr_url": dlr_url})
        if self.during_send is not None:
            await self.during_send()
        return self.replies.pop(0) if self.replies else ACCEPTED


class FakeEmail:
    def __init__(self) -> None:
        self.sent: list[tuple[str, RenderedEmail]] = []

    async def send_email(self, *, to, rendered) -> GatewayReply:
        self.sent.append((to, rendered))
        return GatewayReply(GatewayOutcome.accepted, "250 OK")


class Harness:
    def __init__(self, settings: Settings, store: NotificationStore) -> None:
        self.sms = FakeSms()
        self.email = FakeEmail()
        self.results: list[NotificationResult] = []
        self.sleeps: list[float] = []

        async def publish(results: list[NotificationResult]) -> None:
            self.results.extend(results)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.notifier = Notifier(
            settings=settings,
            store=store,
            renderer=Renderer(),
            sms=self.sms,
            email=self.email,
            publish=publish,
            sleep=sleep,
        )
        self.store = store

    def statuses(self, key: str) -> list[str]:
        return [r.status for r in self.results if r.idempotency_key == key]


@pytest.fixture(scope="module")
async def store(settings: Settings) -> AsyncIterator[NotificationStore]:
    client = make_client(settings)
    store = NotificationStore(
        service_database(client, settings, "notification"), PiiCipher(settings.pii_key_bytes())
    )
    await store.ensure_indexes()
    yield store
    await client.close()


@pytest.fixture
def harness(settings: Settings, store: NotificationStore) -> Harness:
    return Harness(settings, store)


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


async def test_sent_once_then_duplicates_send_nothing(harness: Harness):
    request = sms_request()
    key = request.idempotency_key
    await handle_one(harness, request)
    assert len(harness.sms.sent) == 1
    sent = harness.sms.sent[0]
    assert sent["to"] == "905321234567"
    assert sent["encoding"] is domain.SmsEncoding.ucs2
    assert "Başvurunuz alındı" in sent["text"]
    assert "/api/v1/sms/dlr?key=" in sent["dlr_url"] and "status=%d&answer=%A" in sent["dlr_url"]
    [result] = harness.results
    assert (result.status, result.segments) == ("sent", 2)
    assert result.application_id == request.application_id

    await handle_one(harness, again(request))  # a repeat: announced, not sent
    await handle_one(harness, request)  # a redelivery: the result again, not sent
    assert len(harness.sms.sent) == 1
    assert harness.statuses(key) == ["sent", "skipped_duplicate", "sent"]
    doc = await harness.store.get(key)
    assert doc is not None and doc.state == "sent"
    assert doc.recipient_masked == "+90 5** *** ** 67"
    assert "5321234567" not in str(doc.model_dump(exclude={"recipient_enc"}))


async def test_redelivery_after_a_crash_is_uncertain_never_resent(harness: Harness):
    request = sms_request()
    key = request.idempotency_key

    async def die() -> None:
        raise RuntimeError("process killed while Kannel was answering")

    harness.sms.during_send = die
    with pytest.raises(RuntimeError):
        await handle_one(harness, request)
    harness.sms.during_send = None
    before = UNCERTAIN.labels("sms", "redelivered_while_sending")._value.get()

    await handle_one(harness, request)  # Kafka redelivers the uncommitted event

    assert len(harness.sms.sent) == 1
    assert UNCERTAIN.labels("sms", "redelivered_while_sending")._value.get() == before + 1
    doc = await harness.store.get(key)
    assert doc is not None and doc.state == "uncertain"
    assert harness.results == []
    # Kannel did send it after all: its delivery report settles the question.
    assert await harness.notifier.handle_delivery_report(key, 1, "") == "settled"
    assert harness.statuses(key) == ["delivered"]


async def test_unreachable_gateway_is_retried_with_backoff(harness: Harness):
    harness.sms.replies = [DOWN, DOWN, ACCEPTED]
    request = sms_request()
    await handle_one(harness, request)
    assert len(harness.sms.sent) == 3
    assert harness.sleeps == [0.5, 1.0]
    assert harness.statuses(request.idempotency_key) == ["sent"]
    doc = await harness.store.get(request.idempotency_key)
    assert doc is not None and doc.attempts == 3


async def test_gateway_down_for_good_fails_and_lets_go(harness: Harness):
    harness.sms.replies = [DOWN] * 10
    request = sms_request()
    await handle_one(harness, request)
    assert len(harness.sms.sent) == harness.notifier.send_attempts == 4
    assert harness.sleeps == [0.5, 1.0, 2.0]
    [result] = harness.results
    assert result.status == "failed" and "ulaşılamadı" in (result.detail or "")


async def test_permanent_rejection_fails_at_once(harness: Harness):
    harness.sms.replies = [BAD_NUMBER]
    request = sms_request()
    await handle_one(harness, request)
    assert len(harness.sms.sent) == 1 and harness.sleeps == []
    assert harness.statuses(request.idempotency_key) == ["failed"]


async def test_no_answer_is_uncertain_and_not_retried(harness: Harness):
    harness.sms.replies = [NO_ANSWER]
    request = sms_request()
    await handle_one(harness, request)
    assert len(harness.sms.sent) == 1
    assert harness.results == []
    doc = await harness.store.get(request.idempotency_key)
    assert doc is not None and doc.state == "uncertain"
    assert doc.uncertain_reason == "no_gateway_answer"


async def test_invalid_number_fails_without_calling_kannel(harness: Harness):
    request = sms_request(to="+90 53x")
    await handle_one(harness, request)
    assert harness.sms.sent == []
    [result] = harness.results
    assert result.status == "failed" and "telefon" in (result.detail or "")


async def test_unknown_template_is_permanent_and_stores_nothing(harness: Harness):
    request = sms_request(template="no_such_template")
    with pytest.raises(PermanentError, match="Bilinmeyen şablon"):
        await handle_one(harness, request)
    missing = sms_request(params={"application_number": "20-2026-0000123-4"})
    with pytest.raises(PermanentError, match="tracking_url"):
        await handle_one(harness, missing)
    assert harness.sms.sent == [] and harness.results == []
    assert await harness.store.get(request.idempotency_key) is None
    assert await harness.store.get(missing.idempotency_key) is None


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
    doc = await harness.store.get(key)
    assert doc is not None and doc.state == "delivered"


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
    doc = await harness.store.get(key)
    assert doc is not None and doc.state == "delivered"
    assert set(doc.delivery_reports) == {"8", "1", "2"}
    assert doc.settled_by is not None and doc.settled_by.status == 1


async def test_failed_delivery_report(harness: Harness):
    request = sms_request()
    await handle_one(harness, request)
    key = request.idempotency_key
    assert await harness.notifier.handle_delivery_report(key, 16, "SMSC reject") == "settled"
    assert harness.statuses(key) == ["sent", "failed"]
    assert "16" in (harness.results[-1].detail or "")


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
    doc = await harness.store.get(request.idempotency_key)
    assert doc is not None and doc.recipient_masked == "ya***@pamukkale.bel.tr"


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
