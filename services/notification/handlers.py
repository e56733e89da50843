"""Use cases of notification: send what a NotificationRequest asks for at most once, and turn
Kannel's delivery reports into "delivered" / "failed" results."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pymongo.errors import ConnectionFailure

from services.common.events import (
    NotificationChannel,
    NotificationRequest,
    NotificationResult,
    utcnow,
)
from services.common.messaging import PartialFailure, PermanentError
from services.common.settings import Settings
from services.notification import domain
from services.notification.domain import (
    GatewayOutcome,
    GatewayReply,
    InvalidRecipient,
    Message,
    NotificationState,
    ReportEntry,
)
from services.notification.gateways import EmailGateway, SmsGateway, dlr_url
from services.notification.metrics import (
    DELIVERY_REPORTS,
    DUPLICATES,
    FAILED,
    SENT,
    SMS_SEGMENTS,
    UNCERTAIN,
)
from services.notification.rendering import (
    RenderedEmail,
    RenderedSms,
    Renderer,
    TemplateProblem,
)
from services.notification.store import NotificationStore

log = logging.getLogger("acikkapi.notification")

SERVICE = "notification"
Publish = Callable[[list[NotificationResult]], Awaitable[None]]
ResultStatus = Literal["sent", "delivered", "failed", "skipped_duplicate"]
ReportOutcome = Literal["settled", "recorded", "ignored", "unknown"]
T = TypeVar("T")

# Requests of one batch sent side by side: Kannel answers fastest with about this many
# requests in flight, over the HTTP client's pooled connections.
SEND_CONCURRENCY = 16

_WAITING_FOR_DELIVERY = (NotificationState.sent, NotificationState.uncertain)


class Notifier:
    """Sends each idempotency key at most once, and says so on `acikkapi.notifications.results`.

    The key is written first (unique `_id`, state "sending"), then the gateway is called, then
    its answer is recorded ("sent" / "failed" / "uncertain") and the result published. A key
    that is already stored is never sent again:

    - the same event redelivered while its record still says "sending" means a process died
      between calling the gateway and recording the answer. The message may or may not have
      reached the citizen's phone. We choose at-most-once: a second SMS with the same
      application number confuses citizens and costs money, while a missing one is visible
      (they can track the application on the web). So the record is marked "uncertain",
      `acikkapi_notifications_uncertain_total` counts it for operators, and nothing is resent.
      A later delivery report from Kannel still settles it as "delivered" or "failed".
    - the same event redelivered after its answer was recorded re-publishes that result (the
      process may have died before publishing it; results are idempotent for consumers).
    - a new event with a known key publishes "skipped_duplicate" and sends nothing.

    Gateways that are unreachable or answer "not now" (HTTP 5xx, SMTP 4xx) are retried here a
    few times with back-off; then the message is "failed" and the partition moves on. A
    permanent rejection (HTTP 4xx such as a bad number, SMTP 5xx) fails at once. A request
    whose answer never came back (read timeout) is "uncertain", not retried. An unknown
    template or missing parameters can never be sent: PermanentError, the request is
    dead-lettered and nothing is stored, so a corrected request with the same key can go out.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: NotificationStore,
        renderer: Renderer,
        sms: SmsGateway,
        email: EmailGateway,
        publish: Publish,
        send_attempts: int = 4,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.sms = sms
        self.email = email
        self.publish = publish
        self.send_attempts = max(1, send_attempts)
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self.dlr_secret = domain.dlr_secret(settings.jwt_secret)

    # --- a request to send ---------------------------------------------------------------------

    async def handle_requests(self, requests: list[NotificationRequest]) -> None:
        """Sends a batch of requested SMS and e-mails, each key at most once: one write claims
        every key, the gateways are called side by side, one write records their answers and
        the results are published together. A key that comes twice in one batch is taken up
        again after its first occurrence is done, as the repeat it is."""
        failed: dict[int, BaseException] = {}
        waiting = list(enumerate(requests))
        while waiting:
            firsts: dict[str, tuple[int, NotificationRequest]] = {}
            repeats: list[tuple[int, NotificationRequest]] = []
            for index, request in waiting:
                if request.idempotency_key in firsts:
                    repeats.append((index, request))
                else:
                    firsts[request.idempotency_key] = (index, request)
            await self._handle_distinct(list(firsts.values()), failed)
            waiting = repeats
        if failed:
            raise PartialFailure(failed)

    async def _handle_distinct(
        self, batch: list[tuple[int, NotificationRequest]], failed: dict[int, BaseException]
    ) -> None:
        jobs: list[_Job] = []
        for index, request in batch:
            try:
                rendered = self.renderer.render(request.template, request.channel, request.params)
            except TemplateProblem as exc:
                failed[index] = PermanentError(str(exc))
                continue
            address, problem = _recipient(request)
            shape = domain.sms_shape(rendered.text) if isinstance(rendered, RenderedSms) else None
            record = self.store.new_record(request, shape, problem)
            jobs.append(_Job(index, request, rendered, address, record))
        known = await self.store.claim_many([job.record for job in jobs])

        results: list[NotificationResult] = []
        to_send: list[_Job] = []
        for job in jobs:
            key = job.request.idempotency_key
            if key in known:
                result = await self._on_known_key(job.request, known[key])
                results.extend([result] if result else [])
            elif job.address is None:
                FAILED.labels(job.request.channel.value, "invalid_recipient").inc()
                results.append(_result(job.record, "failed", job.record.error))
            else:
                to_send.append(job)

        # SMS side by side up to Kannel's sweet spot; e-mails queue for the SMTP gateway's own
        # few connections without holding an SMS back.
        gates = {
            NotificationChannel.sms: asyncio.Semaphore(SEND_CONCURRENCY),
            NotificationChannel.email: asyncio.Semaphore(len(to_send) or 1),
        }

        async def send(job: _Job) -> tuple[GatewayReply, int] | None:
            async with gates[job.request.channel]:
                try:
                    return await self._send(job.request, job.rendered, job.address or "")
                except Exception as exc:  # a bug: this one fails, the others go on
                    failed[job.index] = exc
                    return None

        replies = await asyncio.gather(*(send(job) for job in to_send))
        answered = [
            (job, reply, attempts, domain.state_after(reply.outcome))
            for job, answer in zip(to_send, replies, strict=True)
            if answer is not None
            for reply, attempts in [answer]
        ]
        answers = []
        for job, reply, attempts, state in answered:
            fields: dict[str, Any] = {"gateway_answer": reply.detail, "attempts": attempts}
            if state is NotificationState.uncertain:
                fields["uncertain_reason"] = "no_gateway_answer"
            answers.append((job.request.idempotency_key, state, fields))
        matched = await self._persist(lambda: self.store.finish_many(answers))
        if matched < len(answers):
            log.warning(
                "notification records moved on while sending",
                extra={"records": len(answers) - matched},
            )
        for job, reply, _attempts, state in answered:
            self._count(job.request, state, reply, job.record)
            status = domain.result_status(state)
            if status is not None:
                results.append(_result(job.record, status, reply.detail))
        if results:
            await self.publish(results)
        # Delivery reports that came while the batch was sending (fakesmsc reports within
        # milliseconds), applied side by side and announced together after "sent". Only an SMS
        # that Kannel took (or may have taken) can have one: no look-up for e-mails or failures.
        keys = [
            job.request.idempotency_key
            for job, _reply, _attempts, state in answered
            if job.request.channel is NotificationChannel.sms and state in _WAITING_FOR_DELIVERY
        ]
        if keys:
            early = await self._persist(lambda: self.store.with_early_reports(keys))
            settled = await asyncio.gather(
                *(
                    self._settle(message.idempotency_key, message.early_report)
                    for message in early
                    if message.state in _WAITING_FOR_DELIVERY and message.early_report
                )
            )
            if any(settled):
                await self.publish([result for result in settled if result is not None])

    async def _send(
        self, request: NotificationRequest, rendered: RenderedSms | RenderedEmail, address: str
    ) -> tuple[GatewayReply, int]:
        attempt = 0
        while True:
            attempt += 1
            if isinstance(rendered, RenderedSms):
                reply = await self.sms.send_sms(
                    to=address,
                    text=rendered.text,
                    encoding=domain.choose_encoding(rendered.text),
                    dlr_url=dlr_url(self.settings, request.idempotency_key),
                )
            else:
                reply = await self.email.send_email(to=address, rendered=rendered)
            if reply.outcome is not GatewayOutcome.transient or attempt >= self.send_attempts:
                return reply, attempt
            log.warning(
                "gateway unavailable, retrying",
                extra={**self._log(request), "attempt": attempt, "detail": reply.detail},
            )
            await self.sleep(self.backoff_seconds * 2 ** (attempt - 1))

    async def _on_known_key(
        self, request: NotificationRequest, existing: Message
    ) -> NotificationResult | None:
        channel = request.channel.value
        state = existing.state
        redelivered = existing.request_event_id == str(request.event_id)
        DUPLICATES.labels(channel, "redelivered" if redelivered else "repeated").inc()
        if redelivered and state == NotificationState.sending:
            key = request.idempotency_key
            if await self.store.mark_uncertain(key, "redelivered_while_sending"):
                UNCERTAIN.labels(channel, "redelivered_while_sending").inc()
                log.warning(
                    "redelivered while sending: marked uncertain, not resent",
                    extra=self._log(request),
                )
            return None
        if redelivered:
            status = domain.result_status(state)
            return None if status is None else _result(existing, status, existing.detail)
        log.info("duplicate request, not sent", extra={**self._log(request), "state": state})
        return _result(existing, "skipped_duplicate", f"zaten işlendi: {state}")

    def _count(
        self,
        request: NotificationRequest,
        state: NotificationState,
        reply: GatewayReply,
        record: Message,
    ) -> None:
        channel = request.channel.value
        if state is NotificationState.sent:
            SENT.labels(channel).inc()
            if record.encoding and record.segments:
                SMS_SEGMENTS.labels(record.encoding).observe(record.segments)
        elif state is NotificationState.failed:
            reason = "rejected" if reply.outcome is GatewayOutcome.rejected else "unreachable"
            FAILED.labels(channel, reason).inc()
            log.warning("notification failed", extra={**self._log(request), "detail": reply.detail})
        else:
            UNCERTAIN.labels(channel, "no_gateway_answer").inc()
            log.warning(
                "no answer from the gateway: marked uncertain, not resent",
                extra={**self._log(request), "detail": reply.detail},
            )

    # --- a delivery report from Kannel ---------------------------------------------------------

    async def handle_delivery_report(self, key: str, code: int, answer: str) -> ReportOutcome:
        """Applies one Kannel delivery report; a repeated report changes nothing."""
        kind = domain.delivery_report(code)
        DELIVERY_REPORTS.labels(kind.name).inc()
        report = ReportEntry.of(code, answer, utcnow())
        if kind.final_state is None:
            return "unknown" if await self.store.add_report(key, report) is None else "recorded"
        # Kannel may report before our own "sent" write lands (fakesmsc does, within ms): then
        # the report is parked on the record and the sending handler settles it. The loop
        # covers the record turning "sent" between two of our writes.
        for _ in range(3):
            result = await self._settle(key, report)
            if result is not None:
                await self.publish([result])
                return "settled"
            if await self.store.park_early_report(key, report):
                return "recorded"
            message = await self.store.add_report(key, report)
            if message is None:
                return "unknown"
            if message.state not in _WAITING_FOR_DELIVERY:
                return "ignored"  # already settled (first final report wins) or failed
        return "recorded"

    async def _settle(self, key: str, report: ReportEntry) -> NotificationResult | None:
        """Applies a final report to a message waiting for one; the result to announce, or
        None when it was not waiting (exactly one caller gets the result)."""
        final_state = domain.delivery_report(report.status).final_state
        if final_state is None:
            return None
        message = await self.store.settle_delivery(key, final_state, report, utcnow())
        if message is None:
            return None
        if final_state is NotificationState.failed:
            FAILED.labels(message.channel.value, "delivery_report").inc()
        status = domain.result_status(final_state)
        return None if status is None else _result(message, status, report.detail)

    # --- shared --------------------------------------------------------------------------------

    async def _persist(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Retry a write that records what a gateway already did: giving up would leave the
        record "sending" and the redelivery would call a sent message uncertain."""
        delay = 0.5
        for attempt in range(1, 9):
            try:
                return await operation()
            except ConnectionFailure:
                if attempt == 8:
                    raise
                await self.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    @staticmethod
    def _log(request: NotificationRequest) -> dict[str, Any]:
        # Never the recipient: a phone number or e-mail address is personal data.
        return {
            "idempotency_key": request.idempotency_key,
            "channel": request.channel.value,
            "template": request.template,
        }


@dataclass(frozen=True)
class _Job:
    """A request of the batch on its way: where it sends to, and its record."""

    index: int
    request: NotificationRequest
    rendered: RenderedSms | RenderedEmail
    address: str | None  # None: the recipient is invalid (the record says why)
    record: Message


def _recipient(request: NotificationRequest) -> tuple[str | None, str | None]:
    """(the gateway's form of the recipient, None) or (None, why it cannot be sent to)."""
    try:
        if request.channel is NotificationChannel.sms:
            return domain.kannel_recipient(request.to), None
        return domain.check_email(request.to), None
    except InvalidRecipient as exc:
        return None, str(exc)


def _result(message: Message, status: ResultStatus, detail: str | None) -> NotificationResult:
    return NotificationResult(
        producer=SERVICE,
        **message.model_dump(
            include={
                "application_id",
                "application_number",
                "idempotency_key",
                "channel",
                "segments",
            }
        ),
        status=status,
        detail=detail,
    )
