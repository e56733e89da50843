"""Tracking's use cases: what happens when an event arrives, an institution acts, a supervisor
reviews an answer, a citizen asks or replies, or a deadline passes.

Every change is decided by `domain.apply`, stored with the events it causes in the record's
outbox (one conditional write), and then delivered (`services.common.outbox`). A batch of
events from the bus is folded per application in its order and written with one bulk write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from services.common import business_days, topics
from services.common.business_days import Calendar, DeadlineRules
from services.common.events import (
    ApplicationReceived,
    ApplicationResponse,
    DeadlineEvent,
    InstitutionEntry,
    NotificationResult,
    Outcome,
    RoutingOutcome,
    Status,
    TaxonomyPublished,
)
from services.common.messaging import EventPublisher, Outgoing, PermanentError
from services.common.outbox import Pending
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.tracking import deadlines, domain, metrics, rating
from services.tracking.directory import (
    Directory,
    category_in,
    institution_in,
    province_of_institution,
)
from services.tracking.store import DueField, InstitutionPage, NumberTaken, TrackingStore, Write
from services.tracking.workflow import MAX_PARTS, MIN_PARTS, ApprovalPolicy, Stage

log = logging.getLogger("acikkapi.tracking")

Deliver = Callable[[Iterable[Pending | None]], Awaitable[None]]

# An institution may answer before routing's event reaches us (the topics are independent):
# wait this long for the assignment before the answer is refused.
RESPONSE_GRACE_SECONDS = 10.0
# A notification result waits at most this long for intake's event (it is seconds behind at
# most; the result itself changes no status but the answer SMS's, which comes long after).
RESULT_GRACE_SECONDS = 2.0
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


@dataclass(frozen=True)
class ApplicantIdentity:
    """Who applied, as the institution may see it (when the shield allows): opened from the
    record's sealed fields."""

    first_name: str
    last_name: str
    tckn_masked: str
    phone: str | None
    email: str | None


class DirectoryUnavailable(Exception):
    """Routing's list of the province's institutions has not reached tracking yet."""


@dataclass(frozen=True)
class InvalidTarget(Exception):
    """A forward's or a split's target that the province does not have (`field` names it in
    the request as validation errors do, e.g. `parts.1.institution_code` for the second part)."""

    field: str
    code: str
    message: str


class EmptyDirectory:
    """No directory: every forward and split is refused as not checkable (tests of other use
    cases)."""

    def province(self, province_code: int) -> TaxonomyPublished | None:
        return None

    def provinces(self) -> list[TaxonomyPublished]:
        return []


class Tracking:
    def __init__(
        self,
        store: TrackingStore,
        publisher: EventPublisher,
        cipher: PiiCipher,
        settings: Settings,
        *,
        response_grace_seconds: float = RESPONSE_GRACE_SECONDS,
        directory: Directory | None = None,
        calendar: Callable[[], Calendar] | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.deliver: Deliver = store.outbox.deliver
        self.cipher = cipher
        self.settings = settings
        self.response_grace_seconds = response_grace_seconds
        self.directory: Directory = directory or EmptyDirectory()
        self.approval = ApprovalPolicy.of(
            settings.answer_approval_institutions, settings.answer_approval_types
        )
        # The calendar an admin keeps (leave days), as this process knows it now.
        self.calendar: Callable[[], Calendar] = calendar or (lambda: business_days.PUBLIC)
        self._rules = business_days.rules_from(settings)

    def rules(self) -> DeadlineRules:
        """The deadline rules now: the settings' service levels on the current calendar."""
        return self._rules.with_calendar(self.calendar())

    # --- events ------------------------------------------------------------------------------

    def _receive(self, event: ApplicationReceived) -> tuple[str, domain.Command, str]:
        phone = event.applicant.phone
        email = event.applicant.email
        who = event.applicant
        identity = {
            "first_name": who.first_name,
            "last_name": who.last_name,
            "tckn_masked": who.tckn_masked,
        }
        command = domain.Receive(
            event,
            phone_enc=self.cipher.encrypt(phone),
            phone_index=self.phone_index(event.application_id, phone[-4:]),
            email_enc=self.cipher.encrypt(email) if email else None,
            identity_enc=self.cipher.encrypt(json.dumps(identity, ensure_ascii=False)),
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
        """A citizen's messages went out (the status page lists them; the answer SMS closes
        the application). A result may overtake intake's event on its own topic: those are
        tried again together for the grace period, then let go (the message was sent; only
        the status page's list lacks it)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + min(self.response_grace_seconds, RESULT_GRACE_SECONDS)
        pending = events
        while pending:
            unknown = [event for event in pending if not await self.on_notification_result(event)]
            if not unknown or loop.time() >= give_up:
                return
            await asyncio.sleep(0.5)
            pending = unknown

    async def on_response(self, event: ApplicationResponse) -> None:
        """An institution answered: only the institution it is assigned to may. Where the
        province wants it, the answer waits for a supervisor's approval."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.response_grace_seconds
        command = domain.Respond(event, self.approval)
        while True:
            try:
                state = await self._apply(
                    event.application_id, command, f"response:{event.event_id}"
                )
                if state is not None:
                    await self._settle_part(state)
                return
            except domain.NotAssignedYet as exc:
                if loop.time() >= give_up:
                    raise PermanentError(str(exc)) from exc
                await asyncio.sleep(0.5)
            except domain.Refused as exc:
                raise PermanentError(str(exc)) from exc

    async def on_notification_result(self, event: NotificationResult) -> bool:
        """A citizen's message went out (the status page lists it); the answer SMS closes the
        application. False: tracking does not know the application (yet)."""
        found = domain.citizen_message_of(event.idempotency_key)
        if found is None:
            return True
        state = await self._apply(found[0], event, f"notification:{event.event_id}")
        return state is not None

    # --- institutions ------------------------------------------------------------------------

    async def institution_applications(
        self, page: InstitutionPage
    ) -> tuple[list[domain.Application], int]:
        """One page of the institution's list and how many match its filters in all. Reading
        it changes nothing: opening is an act of its own (`open_application`)."""
        apps = await self.store.list_for_institution(page)
        total = await self.store.count_for_institution(page)
        return apps, total

    async def institution_application(
        self, institution_code: str, application_id: str
    ) -> domain.Application:
        return await self._held(institution_code, application_id)

    def identity_of(self, app: domain.Application) -> ApplicantIdentity | None:
        """The applicant's identity opened from the record (None: tracking holds none, as for
        a part of a split application). Whether it may be shown is the caller's rule
        (workflow.identity_shielded)."""
        if app.identity_enc is None:
            return None
        identity = json.loads(self.cipher.decrypt(app.identity_enc))
        return ApplicantIdentity(
            first_name=identity["first_name"],
            last_name=identity["last_name"],
            tckn_masked=identity["tckn_masked"],
            phone=self.cipher.decrypt(app.phone_enc) if app.phone_enc else None,
            email=self.cipher.decrypt(app.email_enc) if app.email_enc else None,
        )

    async def unmask(
        self, application_id: str, *, by: str, reason: str, province: int | None, now: datetime
    ) -> domain.Application:
        """A supervisor (of the application's province; None: an admin, any) reveals a shielded
        applicant to the institution, with a reason; recorded on the application."""
        await self.under_review(application_id, province)
        return await self._act(application_id, domain.Unmask(by, reason, now), "unmasked")

    def province_of(self, institution_code: str) -> int | None:
        """The province of an institution, as routing's directory says (None: unknown here)."""
        taxonomy = province_of_institution(self.directory, institution_code)
        return taxonomy.province_code if taxonomy is not None else None

    async def _held(self, institution_code: str, application_id: str) -> domain.Application:
        """The application, if that institution holds it (or held it last)."""
        app = await self.store.get(application_id)
        if app is None or app.institution_code != institution_code:
            raise NotFound(application_id)
        return app

    async def open_application(
        self, institution_code: str, application_id: str, *, by: str, now: datetime
    ) -> domain.Application:
        """The institution opens the application: `opened`, with who did it (once a round)."""
        app = await self._held(institution_code, application_id)
        if app.status in (Status.opened, Status.answered, Status.closed):
            return app  # opened before: nothing to do
        if not app.assigned_to(institution_code):
            raise NotFound(application_id)
        source = f"opened:{app.round}:{institution_code}"
        opened = await self._apply(application_id, domain.Open(institution_code, now, by), source)
        return opened or app

    async def assign(
        self,
        institution_code: str,
        application_id: str,
        *,
        assignee: str | None,
        unit: str | None,
        by: str,
        now: datetime,
    ) -> domain.Application:
        """Hand the application to a staff member or a sub-unit of the institution."""
        await self._held(institution_code, application_id)
        command = domain.AssignStaff(institution_code, assignee, unit, by, now)
        return await self._act(application_id, command, "assigned")

    async def ask_information(
        self, institution_code: str, application_id: str, *, question: str, by: str, now: datetime
    ) -> domain.Application:
        """Ask the citizen for more information: the application waits for the reply, and the
        citizen is told by SMS to read the question on the status page."""
        await self._held(institution_code, application_id)
        command = domain.AskInformation(institution_code, question, by, now)
        return await self._act(application_id, command, "information-requested")

    async def submit_response(
        self,
        institution_code: str,
        application_id: str,
        *,
        outcome: Outcome,
        text: str,
        responded_by: str,
    ) -> Stage:
        """The institution's answer. Without approval it goes on the responses topic, where the
        consumer records it, so answers from HTTP and from institutions' own producers take one
        path. Where approval is needed it is recorded here as a draft, never published before
        a supervisor approves it. Returns the stage it reached (`answered` meaning "on its
        way")."""
        app = await self._held(institution_code, application_id)
        if app.status in (Status.answered, Status.closed):
            raise domain.AlreadyAnswered(application_id)
        if not app.assigned_to(institution_code):
            raise NotFound(application_id)
        if app.pending_draft is not None:
            raise domain.WrongStage(Stage.awaiting_approval, application_id)
        response = ApplicationResponse(
            application_id=application_id,
            application_number=app.application_number,
            producer=domain.PRODUCER,
            institution_code=institution_code,
            outcome=outcome,
            text=text,
            responded_by=responded_by,
        )
        if self.approval.requires(app.institution_code, app.application_type):
            command = domain.Respond(response, self.approval)
            await self._apply(application_id, command, f"response:{response.event_id}")
            return Stage.awaiting_approval
        await self.publisher.send(topics.RESPONSES, response, application_id)
        return Stage.answered

    async def return_application(
        self,
        institution_code: str,
        application_id: str,
        *,
        reason: str,
        now: datetime,
        by: str | None = None,
    ) -> domain.Application:
        """Not this institution's competence: give it back to routing."""
        app = await self._held(institution_code, application_id)
        source = f"returned:{app.round}:{institution_code}"
        returned = await self._apply(
            application_id, domain.Return(institution_code, reason, now, by), source
        )
        if returned is None:
            raise NotFound(application_id)
        return returned

    async def forward(
        self,
        institution_code: str,
        application_id: str,
        *,
        target: str,
        reason: str,
        by: str,
        now: datetime,
    ) -> domain.Application:
        """Hand the application to another institution of the province: routing sends it to
        that institution's queue (this institution's list no longer shows it)."""
        app = await self._held(institution_code, application_id)
        taxonomy = self._taxonomy_of(app)
        entry = self._institution(taxonomy, target, "institution_code")
        if entry.code == institution_code:
            raise InvalidTarget(
                "institution_code", target, "Başvuru, zaten bulunduğu kuruma aktarılamaz."
            )
        command = domain.Forward(institution_code, entry.code, entry.name, reason, by, now)
        source = f"forwarded:{app.round}:{institution_code}"
        forwarded = await self._apply(application_id, command, source)
        if forwarded is None:  # pragma: no cover - the record was read just now
            raise NotFound(application_id)
        return forwarded

    async def split(
        self,
        institution_code: str,
        application_id: str,
        *,
        parts: Sequence[domain.SplitPart],
        reason: str | None,
        by: str,
        now: datetime,
    ) -> domain.Application:
        """Split an application that concerns several institutions into parts, each routed
        and answered on its own; the parent is answered once every part is."""
        app = await self._held(institution_code, application_id)
        if not MIN_PARTS <= len(parts) <= MAX_PARTS:
            raise InvalidTarget(
                "parts", "", f"Başvuru en az {MIN_PARTS}, en çok {MAX_PARTS} bölüme ayrılabilir."
            )
        taxonomy = self._taxonomy_of(app)
        for n, part in enumerate(parts, start=1):
            self._check_part(taxonomy, n, part)
        command = domain.Split(institution_code, tuple(parts), reason, by, now)
        source = f"split:{app.round}:{institution_code}"
        # Decided first without writing: a refused split leaves no parts behind.
        planned = domain.apply(app, command, source, self.rules()).state
        if planned is None:  # pragma: no cover - the record was read just now
            raise NotFound(application_id)
        for piece in planned.parts:
            # Parts are stored before the parent announces them, so routing's decision for a
            # part always finds its record; a retried split finds them there (not an error).
            await self.store.save(Write(domain.new_part(planned, piece, now), 0))
        split = await self._apply(application_id, command, source)
        if split is None:  # pragma: no cover
            raise NotFound(application_id)
        return split

    async def parts_of(self, app: domain.Application) -> list[domain.Application]:
        """A split application's parts as they stand now, in their order."""
        found = await self.store.get_many([p.application_id for p in app.parts])
        return [found[p.application_id] for p in app.parts if p.application_id in found]

    # --- supervisors -------------------------------------------------------------------------

    async def approval_queue(self, page: InstitutionPage) -> tuple[list[domain.Application], int]:
        """Answers that wait for approval (the page names the province, or none for all)."""
        page = replace(page, institution_code=None, stages=frozenset({Stage.awaiting_approval}))
        return await self.institution_applications(page)

    async def under_review(self, application_id: str, province: int | None) -> domain.Application:
        app = await self.store.get(application_id)
        if app is None or (province is not None and app.province_code != province):
            raise NotFound(application_id)
        return app

    async def approve(
        self, application_id: str, *, by: str, province: int | None, now: datetime
    ) -> domain.Application:
        """The supervisor approves the answer: it reaches the citizen (the answer SMS)."""
        app = await self.under_review(application_id, province)
        source = f"approved:{len(app.drafts)}"
        approved = await self._act(application_id, domain.Approve(by, now), source, fixed=True)
        await self._settle_part(approved)
        return approved

    async def send_back(
        self, application_id: str, *, by: str, note: str, province: int | None, now: datetime
    ) -> domain.Application:
        """The supervisor sends the answer back to the institution with a note."""
        app = await self.under_review(application_id, province)
        source = f"sent-back:{len(app.drafts)}"
        return await self._act(application_id, domain.SendBack(by, note, now), source, fixed=True)

    async def extend(
        self,
        application_id: str,
        *,
        business_days: int,
        reason: str,
        by: str,
        province: int | None,
        now: datetime,
    ) -> domain.Application:
        """The supervisor extends the deadline once, with a reason: a new deadline is computed
        and announced, and the watcher warns afresh."""
        await self.under_review(application_id, province)
        command = domain.Extend(business_days, reason, by, now)
        return await self._act(application_id, command, "extension:1", fixed=True)

    # --- the directory -----------------------------------------------------------------------

    def _taxonomy_of(self, app: domain.Application) -> TaxonomyPublished:
        taxonomy = (
            self.directory.province(app.province_code)
            if app.province_code is not None
            else province_of_institution(self.directory, app.institution_code or "")
        )
        if taxonomy is None or not taxonomy.institutions:
            raise DirectoryUnavailable(str(app.province_code))
        return taxonomy

    @staticmethod
    def _institution(taxonomy: TaxonomyPublished, code: str, field: str) -> InstitutionEntry:
        entry = institution_in(taxonomy, code.strip().upper())
        if entry is None:
            raise InvalidTarget(
                field, code, f"'{code}' kodlu bir kurum {taxonomy.province} ilinde yok."
            )
        return entry

    def _check_part(self, taxonomy: TaxonomyPublished, n: int, part: domain.SplitPart) -> None:
        if (part.institution_code is None) == (part.category_code is None):
            raise InvalidTarget(
                f"parts.{n - 1}",
                "",
                f"{n}. bölüm için ya bir kurum ya da bir kategori seçin (ikisi birden değil).",
            )
        if part.institution_code is not None:
            self._institution(taxonomy, part.institution_code, f"parts.{n - 1}.institution_code")
        elif part.category_code is not None and category_in(taxonomy, part.category_code) is None:
            raise InvalidTarget(
                f"parts.{n - 1}.category_code",
                part.category_code,
                f"'{part.category_code}' kodlu bir kategori {taxonomy.province} ilinde yok.",
            )

    def institutions(self, province_code: int) -> TaxonomyPublished | None:
        return self.directory.province(province_code)

    # --- split applications --------------------------------------------------------------------

    async def _settle_part(self, part: domain.Application) -> None:
        """An answered part tells its parent; the parent takes its overall answer when every
        part has one. Safe to repeat: a redelivered answer settles the part again."""
        if part.parent_id is None or part.part_no is None or part.outcome is None:
            return
        if part.status not in (Status.answered, Status.closed) or part.answered_at is None:
            return
        command = domain.PartAnswered(
            part.part_no, part.outcome, part.answer or "", part.answered_at, part.institution_name
        )
        try:
            await self._apply(part.parent_id, command, f"part:{part.part_no}:answered")
        except domain.Refused as exc:
            log.error(
                "an answered part could not be settled on its parent",
                extra={"application_id": part.application_id, "error": str(exc)},
            )

    async def _act(
        self, application_id: str, command: domain.Command, what: str, *, fixed: bool = False
    ) -> domain.Application:
        """Apply a staff member's act; `what` names the source, made unique per request unless
        `fixed` (then a retried request is recognised as a repeat)."""
        source = what if fixed else f"{what}:{uuid.uuid4().hex}"
        state = await self._apply(application_id, command, source)
        if state is None:
            raise NotFound(application_id)
        return state

    # --- citizens ----------------------------------------------------------------------------

    async def track(self, number_key: str, phone_last4: str, now: datetime) -> domain.Application:
        """The citizen's look-up: the number and the last four phone digits must both match.

        An unknown number and a wrong phone fail alike, and both count towards the lock, so
        the answers never tell which numbers exist.
        """
        # The guess takes its place before it is checked (atomically: parallel guesses cannot
        # all see room left), so at most MAX_MISSES are checked per window; a right one gives
        # its place back.
        guess = await self.store.reserve_guess(number_key, now)
        if guess.count > MAX_MISSES:
            raise TooManyAttempts(number_key)
        app = await self.store.by_number(number_key)
        if app is None or app.phone_index != self.phone_index(app.application_id, phone_last4):
            raise NotFound(number_key)
        await self.store.release_guess(number_key, guess)
        return app

    async def provide_information(
        self, number_key: str, phone_last4: str, reply: str, now: datetime
    ) -> domain.Application:
        """The citizen's reply to the institution's question (number and phone digits checked
        as for the look-up); the application goes back to the institution."""
        app = await self.track(number_key, phone_last4, now)
        asked = app.open_information_request
        number = asked.number if asked else len(app.information_requests)
        command = domain.ProvideInformation(reply, now)
        return await self._act(app.application_id, command, f"information:{number}", fixed=True)

    def phone_index(self, application_id: str, last4: str) -> str:
        # Salted with the application id: equal digits of two applicants do not look alike.
        return self.cipher.blind_index(f"phone-last4:{application_id}:{last4}")

    # --- the deadline ------------------------------------------------------------------------

    async def check_deadlines(self, now: datetime) -> int:
        """Flag missed deadlines and give the warnings; safe with several processes."""
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
            decision = domain.check_deadline(current, now, self.rules())
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
            messages += [
                Outgoing.of(topics.NOTIFICATION_REQUESTS, mail, mail.idempotency_key)
                for mail in deadlines.deadline_emails(
                    decision.state, decision.events, self.directory, self.settings
                )
            ]
            saved, pending = await self.store.save(Write(decision.state, current.version, messages))
            if saved:
                # Counted where the miss is stored, once: a republish from the outbox or a
                # redelivery never comes this way again.
                for event in decision.events:
                    if isinstance(event, DeadlineEvent) and event.kind == "missed":
                        metrics.count_miss(decision.state.province_code, event.institution_code)
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
        rules = self.rules()
        messages: dict[str, list[Outgoing]] = {}
        for application_id, command, source in inputs:
            decision = self._decide(states.get(application_id), command, source, rules)
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
        state: domain.Application | None,
        command: domain.Command,
        source: str,
        rules: DeadlineRules,
    ) -> domain.Decision:
        try:
            return domain.apply(state, command, source, rules)
        except domain.Refused as exc:
            raise PermanentError(str(exc)) from exc

    async def _apply(
        self, application_id: str, command: domain.Command, source: str
    ) -> domain.Application | None:
        """Read, decide, write conditionally with the events (retry if someone else wrote),
        then deliver them."""
        for _ in range(_CONFLICT_RETRIES):
            current = await self.store.get(application_id)
            decision = domain.apply(current, command, source, self.rules())
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
        out += [
            Outgoing.of(
                topics.DEADLINES, domain.deadline_changed(state, change), state.application_id
            )
            for change in decision.deadline_changes
        ]
        if decision.answer_sms and state.phone_enc is not None:
            sms = domain.answer_sms(
                state,
                self.cipher.decrypt(state.phone_enc),
                self.settings.public_tracking_url,
                rating.sms_link(self.settings, state.application_number),
            )
            out.append(Outgoing.of(topics.NOTIFICATION_REQUESTS, sms, sms.idempotency_key))
        if decision.answer_sms and state.email_enc is not None:
            mail = domain.answer_email(
                state,
                self.cipher.decrypt(state.email_enc),
                self.settings.public_tracking_url,
                rating.sms_link(self.settings, state.application_number),
            )
            out.append(Outgoing.of(topics.NOTIFICATION_REQUESTS, mail, mail.idempotency_key))
        if decision.information_sms is not None and state.phone_enc is not None:
            asked = domain.information_sms(
                state,
                decision.information_sms,
                self.cipher.decrypt(state.phone_enc),
                self.settings.public_tracking_url,
            )
            out.append(Outgoing.of(topics.NOTIFICATION_REQUESTS, asked, asked.idempotency_key))
        if decision.response:
            # Made final here (approved, or a split's overall answer): the readers of the
            # responses topic (intake's Open311 answer text) learn it like any other answer.
            response = domain.published_response(state)
            out.append(Outgoing.of(topics.RESPONSES, response, state.application_id))
        return out
