"""Use cases of notification: send what a NotificationRequest asks for at most once, try again
later when a gateway is away, hold non-urgent SMS through quiet hours, skip informational
e-mail to addresses that opted out, and turn Kannel's delivery reports into results.

How a message travels (states in domain.NotificationState):

    request ──claim──▶ queued ─┬─take──▶ sending ──▶ sent ──DLR──▶ delivered / failed
                       held ───┤                 ├─▶ failed (refused for good)
                       retrying┘◀── transient ───┤   (or, after the cap: failed + dead letter)
                                                 └─▶ uncertain (no answer: never resent)

- The consumer claims a batch's keys in one insert (`queued`, or `held` in quiet hours, or a
  final `failed` / `skipped` decided at once) and sends the queued ones straight away.
- Each record moves to `sending` under a lease, alone, in one conditional write right before
  its own gateway call. So a process killed mid-batch leaves the rest `queued`, and whoever
  sees them next (the redelivered request, or any process's due loop once their short lease
  ends) sends them; only the calls in flight (at most CHUNK × CHUNKS_IN_FLIGHT) become
  `uncertain`.
- A gateway that is away (Kannel down, SMTP 4xx, connection refused) does not hold the
  consumer: the record becomes `retrying` with a due time (exponential back-off with jitter
  and a cap), and the consumer moves on. Every process runs the due loop (`run_due`): it asks
  the `due_at` index for what is due, takes it with the same conditional write, and sends it.
  After the attempts or the time allowed, the message is `failed`: a `failed` result and a
  dead letter with its history go out through the record's outbox (a crash cannot lose them).
- Each provider has a token bucket per process. A consumer batch waits for it briefly; beyond
  `MAX_INLINE_WAIT` the rest of the batch is left queued, due when the bucket will have room,
  for the due loop, so a slow provider never holds up the other channel's messages.

At most once: a key is claimed before anything is sent; a record is sent only by the writer
whose conditional write moved it from queued / held / retrying to `sending`. A redelivered
request whose record says `sending` means a process died during the gateway call: the message
may or may not have reached the phone, and a second SMS with the same application number
confuses citizens and costs money, while a missing one is visible (they can track the
application on the web). So it is marked `uncertain`, counted for operators
(`acikkapi_notifications_uncertain_total`) and never resent; a later delivery report still
settles it. An unknown template or missing parameters can never be sent: PermanentError, the
request is dead-lettered and nothing is stored, so a corrected request with the same key can go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pymongo.errors import ConnectionFailure

from services.common import topics
from services.common.events import (
    DeadLetter,
    NotificationChannel,
    NotificationRequest,
    NotificationResult,
    utcnow,
)
from services.common.messaging import Outgoing, PartialFailure, PermanentError, Publisher
from services.common.outbox import Outbox
from services.common.settings import Settings
from services.notification import domain
from services.notification.domain import (
    Attempt,
    GatewayOutcome,
    GatewayReply,
    InvalidRecipient,
    Message,
    NotificationState,
    ReportEntry,
)
from services.notification.gateways import EmailGateway, SmsGateway, dlr_url
from services.notification.metrics import (
    DEAD_LETTERED,
    DELIVERY_REPORTS,
    DUPLICATES,
    FAILED,
    HELD,
    LEASES_EXPIRED,
    RATE_LIMIT_WAIT_SECONDS,
    RATE_LIMITED,
    RETRIES,
    RETRY_ATTEMPTS,
    SENT,
    SKIPPED_OPTOUT,
    SMS_SEGMENTS,
    UNCERTAIN,
    WAITING,
)
from services.notification.policy import (
    QuietHours,
    RetryPolicy,
    normalise_email,
    optout_secret,
    optout_token,
)
from services.notification.ratelimit import TokenBucket
from services.notification.registry import TemplateEntry
from services.notification.rendering import (
    Rendered,
    RenderedEmail,
    RenderedSms,
    Renderer,
    TemplateProblem,
    content_of,
    rendered_from,
)
from services.notification.store import Claim, Finish, NotificationStore

log = logging.getLogger("acikkapi.notification")

SERVICE = "notification"
ResultStatus = Literal["sent", "delivered", "failed", "skipped_duplicate", "skipped_optout"]
ReportOutcome = Literal["settled", "recorded", "ignored", "unknown"]
T = TypeVar("T")

# Records sent side by side and then recorded in one write; CHUNKS_IN_FLIGHT chunks per channel
# at once: 16 requests in flight, where Kannel answers fastest.
CHUNK = 8
CHUNKS_IN_FLIGHT = 2
# A queued record whose claimer vanished is the due loop's after this (a redelivered request
# takes it over sooner).
QUEUE_LEASE = timedelta(seconds=60)
# Longer than any gateway call can take (Kannel: 3 s connect + 10 s read; SMTP: 15 s): a record
# still `sending` after it belonged to a process that died during the call.
SEND_LEASE = timedelta(seconds=120)
# How long a consumer batch waits for a provider's rate limit before it leaves the rest queued.
MAX_INLINE_WAIT = 0.5
# The due loop: how many due records it reads at a time, and how often it looks when idle.
DUE_BATCH = 200
DUE_INTERVAL = 1.0
GAUGE_INTERVAL = 15.0

_WAITING_FOR_DELIVERY = (NotificationState.sent, NotificationState.uncertain)
_RESULT_IDS = uuid.UUID("1b0f7a4e-5a44-4c1e-9d4b-6f1c2f0b7e21")


@dataclass(frozen=True)
class _Send:
    """A message this process may send: its record, the gateway's form of the recipient and
    what was rendered for it."""

    record: Message
    address: str
    rendered: Rendered

    @property
    def key(self) -> str:
        return self.record.idempotency_key


@dataclass(frozen=True)
class _Prepared:
    index: int
    request: NotificationRequest
    entry: TemplateEntry | None
    rendered: Rendered
    address: str | None  # None: the recipient is invalid (`problem` says why)
    problem: str | None


class Notifier:
    """Sends each idempotency key at most once, and says so on `acikkapi.notifications.results`
    (see the module's docstring for the way a message travels)."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: NotificationStore,
        renderer: Renderer,
        sms: SmsGateway,
        email: EmailGateway,
        publisher: Publisher,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.sms = sms
        self.email = email
        self.publisher = publisher
        self.outbox = Outbox(store.notifications, publisher, store.cipher)
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.retry = RetryPolicy.from_settings(settings)
        self.quiet_hours = QuietHours.parse(settings.sms_quiet_hours)
        self.buckets = {
            NotificationChannel.sms: TokenBucket(settings.sms_rate_per_second),
            NotificationChannel.email: TokenBucket(settings.smtp_rate_per_second),
        }
        self.dlr_secret = domain.dlr_secret(settings.sms_dlr_secret or settings.jwt_secret)
        self.optout_secret = optout_secret(settings.jwt_secret)
        self._gauge_at = 0.0

    # --- a batch of requests -------------------------------------------------------------------

    async def handle_requests(self, requests: list[NotificationRequest]) -> None:
        """Claims a batch's keys in one write and sends what may go now; a key that comes twice
        in one batch is taken up again after its first occurrence is done, as the repeat it is."""
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
        now = self.clock()
        prepared: list[_Prepared] = []
        for index, request in batch:
            try:
                prepared.append(self._prepare(index, request))
            except TemplateProblem as exc:
                failed[index] = PermanentError(str(exc))
        opted_out = await self.store.opted_out(
            self.store.address_index(normalise_email(p.request.to))
            for p in prepared
            if p.entry is not None and p.entry.opt_out_allowed
        )
        claims = [self._claim(p, opted_out, now) for p in prepared]
        known, announced = await self.store.claim_many(claims, self.outbox)

        results: list[NotificationResult] = []
        to_send: list[_Send] = []
        for item, claim in zip(prepared, claims, strict=True):
            record = claim.record
            if item.request.idempotency_key in known:
                result, takeover = await self._on_known_key(
                    item.request, known[item.request.idempotency_key]
                )
                results.extend([result] if result else [])
                to_send.extend([takeover] if takeover else [])
            elif record.state is NotificationState.queued and item.address is not None:
                to_send.append(_Send(record, item.address, item.rendered))
            else:
                self._count_claimed(record)
        await self.outbox.deliver(announced, clear_later=True)
        if results:
            await self._publish(results)
        await self._send_all(to_send, due_by=None, may_postpone=True)

    def _prepare(self, index: int, request: NotificationRequest) -> _Prepared:
        entry = self.renderer.entry(request.template, request.channel)
        unsubscribe = (
            self.unsubscribe_url(request.to)
            if entry is not None and entry.opt_out_allowed
            else None
        )
        rendered = self.renderer.render(
            request.template, request.channel, request.params, unsubscribe_url=unsubscribe
        )
        address, problem = _recipient(request)
        return _Prepared(index, request, entry, rendered, address, problem)

    def _claim(self, item: _Prepared, opted_out: set[str], now: datetime) -> Claim:
        """The record a request is stored with, and what it announces at once."""
        request, entry = item.request, item.entry
        shape = (
            domain.sms_shape(item.rendered.text) if isinstance(item.rendered, RenderedSms) else None
        )
        urgent = request.urgent or (entry is not None and entry.urgent)
        common: dict[str, Any] = {"entry": entry, "shape": shape, "urgent": urgent, "now": now}
        if item.problem is not None:
            record = self.store.new_record(
                request, state=NotificationState.failed, error=item.problem, **common
            )
            return Claim(record, (self._announce(record, "failed", item.problem),))
        if (
            entry is not None
            and entry.opt_out_allowed
            and self.store.address_index(normalise_email(request.to)) in opted_out
        ):
            record = self.store.new_record(
                request, state=NotificationState.skipped, skip_reason="optout", **common
            )
            detail = "alıcı bilgilendirme e-postalarından ayrıldı"
            return Claim(record, (self._announce(record, "skipped_optout", detail),))
        release = self._quiet_until(request.channel, urgent, now)
        state = NotificationState.queued if release is None else NotificationState.held
        record = self.store.new_record(
            request,
            state=state,
            content=content_of(item.rendered),
            due_at=release or now + QUEUE_LEASE,
            **common,
        )
        return Claim(record)

    def _quiet_until(
        self, channel: NotificationChannel, urgent: bool, now: datetime
    ) -> datetime | None:
        """When a message asked for `now` may go, if it must wait for quiet hours to end: only
        non-urgent SMS wait; e-mail and urgent SMS never do."""
        if channel is not NotificationChannel.sms or urgent or self.quiet_hours is None:
            return None
        return self.quiet_hours.release_at(now)

    def _count_claimed(self, record: Message) -> None:
        channel = record.channel.value
        if record.state is NotificationState.failed:
            FAILED.labels(channel, "invalid_recipient").inc()
        elif record.state is NotificationState.skipped:
            SKIPPED_OPTOUT.labels(record.template).inc()
            log.info("opted out: not sent", extra=_log(record))
        elif record.state is NotificationState.held:
            HELD.labels(channel).inc()
            log.info(
                "quiet hours: held",
                extra={**_log(record), "until": record.due_at.isoformat() if record.due_at else ""},
            )

    async def _on_known_key(
        self, request: NotificationRequest, existing: Message
    ) -> tuple[NotificationResult | None, _Send | None]:
        """A key already stored: what to announce, and a record to take over and send."""
        channel = request.channel.value
        state = existing.state
        redelivered = existing.request_event_id == str(request.event_id)
        DUPLICATES.labels(channel, "redelivered" if redelivered else "repeated").inc()
        if not redelivered:
            log.info("duplicate request, not sent", extra={**_log(existing), "state": state})
            return self._result(
                existing, "skipped_duplicate", f"zaten işlendi: {state}", request
            ), None
        if state is NotificationState.queued:
            # Its claimer died before any gateway call: whoever takes it first sends it.
            return None, self._waiting_send(existing)
        if state is NotificationState.sending:
            key = request.idempotency_key
            marked = await self.store.mark_uncertain(key, "redelivered_while_sending")
            if marked is None:
                return None, None
            UNCERTAIN.labels(channel, "redelivered_while_sending").inc()
            log.warning(
                "redelivered while sending: marked uncertain, not resent", extra=_log(existing)
            )
            # Kannel's delivery report may have come while its sender died: it settles it now.
            if marked.early_report is not None:
                return await self._settle(key, marked.early_report), None
            return None, None
        status = domain.result_status(state)  # held / retrying: the due loop's; nothing to say
        return (None if status is None else self._result(existing, status, existing.detail)), None

    # --- sending -------------------------------------------------------------------------------

    async def _send_all(
        self, items: Sequence[_Send], *, due_by: datetime | None, may_postpone: bool
    ) -> None:
        """Sends `items`: a consumer's (`due_by` None: its own queued records, which it may
        postpone for the rate limit) or the due loop's (records of any waiting state, due by
        `due_by`; it waits for the rate limit instead). Each channel on its own, side by side:
        a slow provider holds up only its own messages."""
        by_channel: dict[NotificationChannel, list[_Send]] = {}
        for item in items:
            by_channel.setdefault(item.record.channel, []).append(item)
        outcomes = await asyncio.gather(
            *(
                self._send_channel(channel, group, due_by, may_postpone)
                for channel, group in by_channel.items()
            ),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _send_channel(
        self,
        channel: NotificationChannel,
        items: list[_Send],
        due_by: datetime | None,
        may_postpone: bool,
    ) -> None:
        bucket = self.buckets[channel]
        queue = deque(items)
        postponed: list[_Send] = []

        async def worker() -> None:
            while queue:
                chunk: list[_Send] = []
                wait = 0.0
                while queue and len(chunk) < CHUNK:
                    item = queue.popleft()
                    if may_postpone and bucket.delay() > MAX_INLINE_WAIT:
                        postponed.append(item)
                        continue
                    wait = max(wait, bucket.reserve())
                    chunk.append(item)
                if wait > 0:
                    RATE_LIMITED.labels(channel.value, "waited").inc(len(chunk))
                    RATE_LIMIT_WAIT_SECONDS.labels(channel.value).observe(wait)
                    await self.sleep(wait)
                if chunk:
                    await self._send_chunk(chunk, due_by)

        outcomes = await asyncio.gather(
            *(worker() for _ in range(CHUNKS_IN_FLIGHT)), return_exceptions=True
        )
        if postponed:
            await self._postpone(channel, postponed, bucket)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _postpone(
        self, channel: NotificationChannel, items: list[_Send], bucket: TokenBucket
    ) -> None:
        """Leave messages the rate limit has no room for queued, each due when it will have."""
        now = self.clock()
        ahead = bucket.delay()
        spacing = 1 / bucket.rate if bucket.rate > 0 else 0.0
        await self._persist(
            lambda: self.store.postpone(
                (item.key, now + timedelta(seconds=ahead + n * spacing))
                for n, item in enumerate(items)
            )
        )
        RATE_LIMITED.labels(channel.value, "postponed").inc(len(items))

    async def _send_chunk(self, chunk: list[_Send], due_by: datetime | None) -> None:
        now = self.clock()
        # A consumer takes only what is queued (never a held SMS, even one it took over); the
        # due loop takes any waiting record that is due.
        states = domain.NOT_YET_SENT if due_by is not None else (NotificationState.queued,)

        async def take_and_call(item: _Send) -> tuple[_Send, str, GatewayReply] | None:
            # Each record is taken on its own, right before its own call: a process killed
            # now leaves uncertain only the calls it had begun, not a whole chunk.
            lease, taken = await self._persist(
                lambda: self.store.take(
                    [item.key],
                    lease_until=now + SEND_LEASE,
                    states=states,
                    due_by=due_by,
                    now=now,
                )
            )
            if item.key not in taken:
                return None  # another process (or its redelivered request) took it first
            return item, lease, await self._call(item)

        calls = await asyncio.gather(*(take_and_call(item) for item in chunk))
        answered = [call for call in calls if call is not None]
        if not answered:
            return
        answered_at = self.clock()
        mine = [item for item, _lease, _reply in answered]
        finishes = [
            self._finish(item, reply, lease, answered_at) for item, lease, reply in answered
        ]
        matched, announced = await self._persist(
            lambda: self.store.finish_many([finish for finish, _ in finishes], self.outbox)
        )
        if matched < len(finishes):
            log.warning(
                "notification records moved on while sending",
                extra={"records": len(finishes) - matched},
            )
        for item, (finish, state) in zip(mine, finishes, strict=True):
            self._count(item.record, state, finish)
        await self.outbox.deliver(announced, clear_later=True)
        # Delivery reports that came while the chunk was sending (fakesmsc reports within
        # milliseconds), applied side by side and announced after "sent". Only an SMS that
        # Kannel took (or may have taken) can have one: no look-up for e-mails or failures.
        keys = [
            item.key
            for item, (_finish, state) in zip(mine, finishes, strict=True)
            if item.record.channel is NotificationChannel.sms and state in _WAITING_FOR_DELIVERY
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
                await self._publish([result for result in settled if result is not None])

    async def _call(self, item: _Send) -> GatewayReply:
        try:
            if isinstance(item.rendered, RenderedSms):
                return await self.sms.send_sms(
                    to=item.address,
                    text=item.rendered.text,
                    encoding=domain.choose_encoding(item.rendered.text),
                    dlr_url=dlr_url(self.settings, item.key),
                )
            if isinstance(item.rendered, RenderedEmail):
                return await self.email.send_email(to=item.address, rendered=item.rendered)
            raise TypeError(f"{item.record.channel.value} ile {type(item.rendered).__name__}")
        except Exception as exc:  # a bug, not an answer: it may have gone out, so never resent
            log.exception("gateway call failed", extra=_log(item.record))
            return GatewayReply(
                GatewayOutcome.ambiguous, f"iç hata / internal error: {exc!r}"[:500]
            )

    def _finish(
        self, item: _Send, reply: GatewayReply, lease: str, now: datetime
    ) -> tuple[Finish, NotificationState]:
        """What a gateway's answer makes of a record: its new state, the attempt in its
        history, and what it announces."""
        record = item.record
        number = (record.attempts or 0) + 1
        attempt = Attempt(number=number, at=now, outcome=reply.outcome.value, detail=reply.detail)
        fields: dict[str, Any] = {
            "attempts": number,
            "gateway_answer": reply.detail,
            "updated_at": now,
        }
        finish = Finish(record.idempotency_key, lease, fields, attempt=attempt)
        outcome = reply.outcome
        if outcome is GatewayOutcome.transient:
            plan = self.retry.next_attempt(
                number - record.retry_base, now, record.give_up_at, self.rng
            )
            if plan.due_at is not None:
                attempt.next_at = plan.due_at
                fields |= {
                    "state": NotificationState.retrying.value,
                    "due_at": plan.due_at,
                    "give_up_at": plan.give_up_at,
                }
                return finish, NotificationState.retrying
            fields |= {"state": NotificationState.failed.value, "dead_lettered_at": now}
            finish.unset = ("due_at",)
            detail = f"{number} denemeden sonra gönderilemedi: {reply.detail}"[:500]
            finish.announce = [
                self._announce(record, "failed", detail),
                self._dead_letter(record, attempt, now),
            ]
            return finish, NotificationState.failed
        state = domain.state_after(outcome)
        fields["state"] = state.value
        if state is NotificationState.sent:
            fields["sent_at"] = now
            finish.unset = ("due_at", "content_enc")
            finish.announce = [self._announce(record, "sent", reply.detail)]
        elif state is NotificationState.failed:  # refused for good: nothing to resend
            finish.unset = ("due_at", "content_enc")
            finish.announce = [self._announce(record, "failed", reply.detail)]
        else:  # no answer: kept (sealed) in case an operator resends after asking the citizen
            fields["uncertain_reason"] = "no_gateway_answer"
            finish.unset = ("due_at",)
        return finish, state

    def _count(self, record: Message, state: NotificationState, finish: Finish) -> None:
        channel = record.channel.value
        detail = finish.fields.get("gateway_answer", "")
        if (record.attempts or 0) > 0:
            RETRY_ATTEMPTS.labels(channel, state.value).inc()
        if state is NotificationState.sent:
            SENT.labels(channel).inc()
            if record.encoding and record.segments:
                SMS_SEGMENTS.labels(record.encoding).observe(record.segments)
        elif state is NotificationState.retrying:
            RETRIES.labels(channel).inc()
            # Each message's first failure is worth a warning; its later ones are counted.
            first = (record.attempts or 0) == record.retry_base
            log.log(
                logging.WARNING if first else logging.INFO,
                "gateway unavailable, tried again later",
                extra={**_log(record), "attempt": finish.fields["attempts"], "detail": detail},
            )
        elif state is NotificationState.failed and "dead_lettered_at" in finish.fields:
            FAILED.labels(channel, "retries_exhausted").inc()
            DEAD_LETTERED.labels(channel).inc()
            log.error(
                "gateway unavailable too long: failed and dead-lettered",
                extra={**_log(record), "attempts": finish.fields["attempts"], "detail": detail},
            )
        elif state is NotificationState.failed:
            FAILED.labels(channel, "rejected").inc()
            log.warning("notification failed", extra={**_log(record), "detail": detail})
        else:
            UNCERTAIN.labels(channel, "no_gateway_answer").inc()
            log.warning(
                "no answer from the gateway: marked uncertain, not resent",
                extra={**_log(record), "detail": detail},
            )

    # --- what is due: retries, held SMS, queued messages left behind ---------------------------

    async def run_due(self) -> None:
        """The due loop every process runs: sends what is due, as long as there is some."""
        while True:
            try:
                found = await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("due loop failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                found = 0
            if found < DUE_BATCH:
                await self.sleep(DUE_INTERVAL)

    async def send_due(self) -> int:
        """One pass: leases run out become uncertain; due messages are sent (a non-urgent SMS
        that fell due in quiet hours is held again). Returns how many due records it read."""
        now = self.clock()
        if expired := await self.store.expire_leases(now):
            LEASES_EXPIRED.inc(expired)
            log.warning("leases ran out while sending: uncertain", extra={"records": expired})
        await self._update_gauge()
        due = await self.store.due(now, DUE_BATCH)
        # Processes that read the same due records each start somewhere else among them.
        self.rng.shuffle(due)
        holds: list[tuple[Message, datetime]] = []
        items: list[_Send] = []
        for message in due:
            release = self._quiet_until(message.channel, message.urgent, now)
            if release is not None:
                holds.append((message, release))
                continue
            item = self._waiting_send(message)
            if item is not None:
                items.append(item)
        if holds:
            await self.store.hold(holds, now)
            HELD.labels(NotificationChannel.sms.value).inc(len(holds))
        await self._send_all(items, due_by=now, may_postpone=False)
        return len(due)

    def _waiting_send(self, message: Message) -> _Send | None:
        """A waiting record as something to send: its recipient and content unsealed."""
        content = self.store.content_of(message)
        if content is None:
            log.error("waiting record without content: not sent", extra=_log(message))
            return None
        to = self.store.recipient_of(message)
        try:
            if message.channel is NotificationChannel.sms:
                address = domain.kannel_recipient(to)
            else:
                address = domain.check_email(to)
        except InvalidRecipient:
            log.error("waiting record with a bad recipient: not sent", extra=_log(message))
            return None
        return _Send(message, address, rendered_from(message.channel, content))

    async def _update_gauge(self) -> None:
        if time.monotonic() - self._gauge_at < GAUGE_INTERVAL:
            return
        self._gauge_at = time.monotonic()
        for state, count in (await self.store.waiting()).items():
            WAITING.labels(state).set(count)

    async def resend(self, key: str) -> Message | None:
        """An operator's resend of a failed or uncertain message: due now, to the due loop."""
        return await self.store.resend(key, self.clock())

    # --- opting out ----------------------------------------------------------------------------

    def unsubscribe_url(self, address: str) -> str:
        """The signed link an informational e-mail to `address` carries (docs/notifications.md)."""
        token = optout_token(self.optout_secret, self.store.address_index(normalise_email(address)))
        base = self.settings.notification_public_url.rstrip("/")
        return f"{base}/eposta/ayril?t={token}"

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
                await self._publish([result])
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
        return None if status is None else self._result(message, status, report.detail)

    # --- shared --------------------------------------------------------------------------------

    def _result(
        self,
        message: Message,
        status: ResultStatus,
        detail: str | None,
        request: NotificationRequest | None = None,
    ) -> NotificationResult:
        # Derived from what it says: announcing it again (a relay, a redelivery) is recognisably
        # the same event. A skipped repeat is one per repeating request.
        name = f"{message.idempotency_key}:{status}"
        if request is not None:
            name += f":{request.event_id}"
        return NotificationResult(
            event_id=uuid.uuid5(_RESULT_IDS, name),
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

    def _announce(self, message: Message, status: ResultStatus, detail: str | None) -> Outgoing:
        result = self._result(message, status, detail)
        return Outgoing.of(topics.NOTIFICATION_RESULTS, result, result.idempotency_key)

    def _dead_letter(self, message: Message, last: Attempt, now: datetime) -> Outgoing:
        """The letter of a message given up after its retries: its history, and the request as
        far as it may be shown (the recipient masked; the text stays sealed in the record)."""
        history = [*message.attempts_in_order(), last]
        first = history[0].at
        letter = DeadLetter(
            source_topic=topics.NOTIFICATION_REQUESTS,
            key=message.idempotency_key,
            reason=(
                f"{len(history)} deneme, {_duration(now - first)} boyunca ağ geçidine "
                f"ulaşılamadı; son yanıt: {last.detail}"
            )[:2000],
            error_type="retries_exhausted",
            attempts=len(history),
            consumer=f"{SERVICE}.due",
            failed_at=now,
            original=json.dumps(
                {
                    "idempotency_key": message.idempotency_key,
                    "channel": message.channel.value,
                    "template": message.template,
                    "template_version": message.template_version,
                    "application_id": message.application_id,
                    "application_number": message.application_number,
                    "to": message.recipient_masked,
                },
                ensure_ascii=False,
            ),
            history=[attempt.model_dump(mode="json") for attempt in history],
        )
        return Outgoing(
            topics.dlq(topics.NOTIFICATION_REQUESTS),
            message.idempotency_key,
            letter.model_dump_json().encode(),
            {"event_type": "dead_letter", "source_topic": topics.NOTIFICATION_REQUESTS},
        )

    async def _publish(self, results: Iterable[NotificationResult]) -> None:
        await self.publisher.send_all(
            Outgoing.of(topics.NOTIFICATION_RESULTS, result, result.idempotency_key)
            for result in results
        )

    async def _persist(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Retry a write that records what a gateway already did (or is about to): giving up
        would leave the record "sending" and the redelivery would call a sent message uncertain."""
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


def _log(message: Message) -> dict[str, Any]:
    # Never the recipient: a phone number or e-mail address is personal data.
    return {
        "idempotency_key": message.idempotency_key,
        "channel": message.channel.value,
        "template": message.template,
    }


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} sn"
    return f"{seconds // 60} dk {seconds % 60} sn"


def _recipient(request: NotificationRequest) -> tuple[str | None, str | None]:
    """(the gateway's form of the recipient, None) or (None, why it cannot be sent to)."""
    try:
        if request.channel is NotificationChannel.sms:
            return domain.kannel_recipient(request.to), None
        return domain.check_email(request.to), None
    except InvalidRecipient as exc:
        return None, str(exc)
