"""Tracking's use cases: what happens when an event arrives, an institution acts, a citizen asks,
or a deadline passes.

Every change is decided by `domain.apply`, stored with the events it causes in the record's
outbox (one conditional write), and then delivered (`services.common.outbox`). A batch of
events from the bus is folded per application in its order and written with one bulk write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import datetime

from services.common import topics
from services.common.events import (
    ApplicationReceived,
    ApplicationResponse,
    DeadlineEvent,
    NotificationResult,
    Outcome,
    RoutingOutcome,
    Status,
)
from services.common.messaging import EventPublisher, Outgoing, PermanentError
from services.common.outbox import Pending
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.tracking import domain
from services.tracking.store import DueField, InstitutionPage, NumberTaken, TrackingStore, Write

Deliver = Callable[[Iterable[Pending | None]], Awaitable[None]]

# An institution may answer before routing's event reaches us (the topics are independent):
# wait this long for the assignment before the answer is refused.
RESPONSE_GRACE_SECONDS = 10.0
# After this many failed guesses of the phone digits, a number is locked for MISS_WINDOW.
MAX_MISSES = 10
WATCH_LEASE_SECONDS = 60.0
WATCH_BATCH = 200
_CONFLICT_RETRIES = 20


class NotFound(Exception):
    """Unknown, or not this caller's to see."""


class TooManyAttempts(Exception):
    """Too many wrong phone digits for one application number lately."""


class ConcurrentUpdate(Exception):
    """Other processes kept changing the application; the caller should retry later."""


class Tracking:
    def __init__(
        self,
        store: TrackingStore,
        publisher: EventPublisher,
        cipher: PiiCipher,
        settings: Settings,
        *,
        response_grace_seconds: float = RESPONSE_GRACE_SECONDS,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.deliver: Deliver = store.outbox.deliver
        self.cipher = cipher
        self.settings = settings
        self.response_grace_seconds = response_grace_seconds

    # --- events ------------------------------------------------------------------------------

    def _receive(self, event: ApplicationReceived) -> tuple[str, domain.Command, str]:
        phone = event.applicant.phone
        command = domain.Receive(
            event,
            phone_enc=self.cipher.encrypt(phone),
            phone_index=self.phone_index(event.application_id, phone[-4:]),
        )
        return event.application_id, command, f"received:{event.event_id}"

    async def on_received_batch(self, events: list[ApplicationReceived]) -> None:
        """Applications were registered: start their records and their deadlines."""
        await self._apply_batch([self._receive(event) for event in events])

    async def on_routed_batch(self, outcomes: list[RoutingOutcome]) -> None:
        """Routing decided institutions, or left applications to an officer."""
        await self._apply_batch(
            [
                (o.root.application_id, o.root, f"{o.root.event_type}:{o.root.event_id}")
                for o in outcomes
            ]
        )

    async def on_responses(self, events: list[ApplicationResponse]) -> None:
        """Institutions answered: only the institution an application is assigned to may."""
        for event in events:
            await self.on_response(event)

    async def on_notification_results(self, events: list[NotificationResult]) -> None:
        """Answer SMS went out: those applications are closed."""
        for event in events:
            await self.on_notification_result(event)

    async def on_response(self, event: ApplicationResponse) -> None:
        """An institution answered: only the institution it is assigned to may."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.response_grace_seconds
        while True:
            try:
                await self._apply(event.application_id, event, f"response:{event.event_id}")
                return
            except domain.NotAssignedYet as exc:
                if loop.time() >= give_up:
                    raise PermanentError(str(exc)) from exc
                await asyncio.sleep(0.5)
            except domain.Refused as exc:
                raise PermanentError(str(exc)) from exc

    async def on_notification_result(self, event: NotificationResult) -> None:
        """The answer SMS went out: the application is closed."""
        application_id = domain.application_id_of_answer_sms(event.idempotency_key)
        if application_id is None or event.status not in ("sent", "delivered"):
            return
        await self._apply(application_id, event, f"notification:{event.event_id}")

    # --- institutions ------------------------------------------------------------------------

    async def institution_applications(
        self, page: InstitutionPage, *, opened_by_institution: bool, now: datetime
    ) -> list[domain.Application]:
        """The institution's list; what it sees for the first time becomes `opened`."""
        apps = await self.store.list_for_institution(page)
        if not opened_by_institution:
            return apps
        return [await self._open(app, page.institution_code, now) for app in apps]

    async def institution_application(
        self,
        institution_code: str,
        application_id: str,
        *,
        opened_by_institution: bool,
        now: datetime,
    ) -> domain.Application:
        app = await self.store.get(application_id)
        if app is None or app.institution_code != institution_code:
            raise NotFound(application_id)
        if opened_by_institution:
            app = await self._open(app, institution_code, now)
        return app

    async def _open(self, app: domain.Application, code: str, now: datetime) -> domain.Application:
        if app.status is not Status.routed:
            return app
        source = f"opened:{app.round}:{code}"
        opened = await self._apply(app.application_id, domain.Open(code, now), source)
        return opened or app

    async def submit_response(
        self,
        institution_code: str,
        application_id: str,
        *,
        outcome: Outcome,
        text: str,
        responded_by: str,
    ) -> ApplicationResponse:
        """Put the institution's answer on the responses topic; the consumer records it, so
        answers from HTTP and from institutions' own producers take one path."""
        app = await self.store.get(application_id)
        if app is None or app.institution_code != institution_code:
            raise NotFound(application_id)
        if app.status in (Status.answered, Status.closed):
            raise domain.AlreadyAnswered(application_id)
        if not app.assigned_to(institution_code):
            raise NotFound(application_id)
        response = ApplicationResponse(
            application_id=application_id,
            application_number=app.application_number,
            producer=domain.PRODUCER,
            institution_code=institution_code,
            outcome=outcome,
            text=text,
            responded_by=responded_by,
        )
        await self.publisher.send(topics.RESPONSES, response, application_id)
        return response

    async def return_application(
        self, institution_code: str, application_id: str, *, reason: str, now: datetime
    ) -> domain.Application:
        """Not this institution's competence: give it back to routing."""
        app = await self.store.get(application_id)
        if app is None or app.institution_code != institution_code:
            raise NotFound(application_id)
        source = f"returned:{app.round}:{institution_code}"
        returned = await self._apply(
            application_id, domain.Return(institution_code, reason, now), source
        )
        if returned is None:
            raise NotFound(application_id)
        return returned

    # --- citizens ----------------------------------------------------------------------------

    async def track(self, number_key: str, phone_last4: str, now: datetime) -> domain.Application:
        """The citizen's look-up: the number and the last four phone digits must both match.

        An unknown number and a wrong phone fail alike, and both count towards the lock, so
        the answers never tell which numbers exist.
        """
        if await self.store.recent_misses(number_key, now) >= MAX_MISSES:
            raise TooManyAttempts(number_key)
        app = await self.store.by_number(number_key)
        if app is None or app.phone_index != self.phone_index(app.application_id, phone_last4):
            await self.store.record_miss(number_key, now)
            raise NotFound(number_key)
        return app

    def phone_index(self, application_id: str, last4: str) -> str:
        # Salted with the application id: equal digits of two applicants do not look alike.
        return self.cipher.blind_index(f"phone-last4:{application_id}:{last4}")

    # --- the deadline ------------------------------------------------------------------------

    async def check_deadlines(self, now: datetime) -> int:
        """Flag missed deadlines and give the one-day warnings; safe with several processes."""
        done = 0
        due_fields: tuple[DueField, ...] = ("miss_due_at", "warn_due_at")
        for due in due_fields:
            for _ in range(WATCH_BATCH):
                claimed = await self.store.claim_due(due, now, WATCH_LEASE_SECONDS)
                if claimed is None:
                    break
                await self._settle_deadline(claimed, now)
                done += 1
        return done

    async def _settle_deadline(self, state: domain.Application, now: datetime) -> None:
        # The lease keeps other processes off; the events are stored with the flag they belong
        # to, so a process that dies after the write leaves them to the outbox relay.
        current: domain.Application | None = state
        for _ in range(_CONFLICT_RETRIES):
            if current is None:
                return
            decision = domain.check_deadline(current, now)
            if not decision.changed:
                return
            messages = [
                Outgoing.of(
                    topics.DEADLINES if isinstance(event, DeadlineEvent) else topics.STATUS,
                    event,
                    current.application_id,
                )
                for event in decision.events
            ]
            saved, pending = await self.store.save(Write(decision.state, current.version, messages))
            if saved:
                await self.deliver([pending])
                return
            current = await self.store.get(state.application_id)
        raise ConcurrentUpdate(state.application_id)

    # --- the one way state changes -----------------------------------------------------------

    async def _apply_batch(self, inputs: list[tuple[str, domain.Command, str]]) -> None:
        """Fold a batch of inputs per application in order, write once, then deliver.

        Applications another writer changed meanwhile are applied again one input at a time.
        """
        current = await self.store.get_many(list(dict.fromkeys(i[0] for i in inputs)))
        states: dict[str, domain.Application] = dict(current)
        messages: dict[str, list[Outgoing]] = {}
        for application_id, command, source in inputs:
            decision = self._decide(states.get(application_id), command, source)
            if decision.state is None or not decision.changed:
                continue  # a repeat: stored and announced before (or still in the outbox)
            states[application_id] = decision.state
            messages.setdefault(application_id, []).extend(self._messages(decision))
        writes = [
            Write(states[app_id], current[app_id].version if app_id in current else 0, msgs)
            for app_id, msgs in messages.items()
        ]
        saved = await self.store.save_many(writes)
        await self.deliver(saved.pending)
        for application_id, command, source in inputs:
            if application_id in saved.conflicts:
                await self._apply(application_id, command, source)

    @staticmethod
    def _decide(
        state: domain.Application | None, command: domain.Command, source: str
    ) -> domain.Decision:
        try:
            return domain.apply(state, command, source)
        except domain.Refused as exc:
            raise PermanentError(str(exc)) from exc

    async def _apply(
        self, application_id: str, command: domain.Command, source: str
    ) -> domain.Application | None:
        """Read, decide, write conditionally with the events (retry if someone else wrote),
        then deliver them."""
        for _ in range(_CONFLICT_RETRIES):
            current = await self.store.get(application_id)
            decision = domain.apply(current, command, source)
            state = decision.state
            if state is None:
                return None
            if not decision.changed:
                return state
            expected = current.version if current else 0
            try:
                saved, pending = await self.store.save(
                    Write(state, expected, self._messages(decision))
                )
            except NumberTaken as exc:
                raise PermanentError(
                    f"application number {exc} already belongs to another application"
                ) from exc
            if not saved:
                continue
            await self.deliver([pending])
            return replace(state, version=expected + 1, outbox=())
        raise ConcurrentUpdate(application_id)

    def _messages(self, decision: domain.Decision) -> list[Outgoing]:
        """What a decision announces: its status transitions and, once, the answer SMS."""
        state = decision.state
        assert state is not None
        out = [
            Outgoing.of(topics.STATUS, domain.status_changed(state, entry), state.application_id)
            for entry in decision.transitions
        ]
        if decision.answer_sms and state.phone_enc is not None:
            sms = domain.answer_sms(
                state, self.cipher.decrypt(state.phone_enc), self.settings.public_tracking_url
            )
            out.append(Outgoing.of(topics.NOTIFICATION_REQUESTS, sms, sms.idempotency_key))
        return out
