"""Routing's use cases: an application arrives, an institution gives one back, an officer decides.

Kafka delivers at least once, so every use case is safe to run twice. Each decision is stored
together with the events it causes (the document's outbox, `services.common.outbox`), then the
events are delivered: a crash in between leaves them to the relay, never lost, and a
redelivered event finds its application already there and decides nothing again. A batch of
arrivals costs one read, one insert and one outbox clearing, whatever its size.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from services.common import topics
from services.common.auth import Principal, Role
from services.common.events import (
    ApplicationAwaitingRouting,
    ApplicationReceived,
    ApplicationRouted,
    InstitutionAssignment,
    InstitutionContact,
    NotificationChannel,
    NotificationRequest,
    PartSpec,
    Status,
    StatusChanged,
    facts_of,
    identity_shielded,
    utcnow,
)
from services.common.messaging import Outgoing, PermanentError
from services.common.outbox import Pending as Written
from services.routing import domain, lifecycle
from services.routing.domain import Decision, Pending, Suggestion, Taxonomy, TaxonomyRegistry
from services.routing.learned import (
    DecisionRecorder,
    LearnedRouting,
    ModelDecision,
    OfficerDecision,
)
from services.routing.lifecycle import (
    ROUTED,
    AlreadyRouted,
    ApplicationRecord,
    PendingApplication,
    RoutingFile,
    RoutingRecord,
)
from services.routing.store import QueuePage, RoutingRecords

PRODUCER = "routing"
EMAIL_TEMPLATE = "institution_assignment"
# What of a routing decision the institution's queue entry carries.
ASSIGNED = {"institution_code", "category_code", "category_name", "heading_code", "deadline_at"}
# Namespace of routing's deterministic event ids (uuid5 of application, round and event kind).
_EVENT_IDS = uuid.UUID("6f1d7c3e-2a4b-5e8f-9c1d-20a1c1c4a9e1")

log = logging.getLogger("acikkapi.routing")

# Publishes what writes put in their outboxes, then clears them (Outbox.deliver).
Deliver = Callable[[Iterable[Written | None]], Awaitable[None]]


class NotFound(Exception):
    """No application with that id has reached routing."""


class OutsideProvince(Exception):
    """The officer's token is for another province."""


def event_id(application_id: str, round_: int, kind: str) -> uuid.UUID:
    return uuid.uuid5(_EVENT_IDS, f"{application_id}:{round_}:{kind}")


def email_key(application_id: str, institution_code: str, round_: int) -> str:
    key = f"{application_id}:routed:{institution_code}:email"
    # A later round (after a return) may go to the same institution again: that is a new e-mail.
    return key if round_ == 0 else f"{key}:{round_}"


class Routing:
    def __init__(
        self,
        store: RoutingRecords,
        deliver: Deliver,
        registry: TaxonomyRegistry,
        *,
        learned: LearnedRouting | None = None,
        decisions: DecisionRecorder | None = None,
    ) -> None:
        """`learned`: suggestions from the learned model and auto-routing (else keywords only);
        `decisions`: where officers' decisions are kept for it to learn from."""
        self._store = store
        self._deliver = deliver
        self._registry = registry
        self._learned = learned
        self._decisions = decisions

    # --- Events --------------------------------------------------------------------------------

    async def applications_received(self, events: list[ApplicationReceived]) -> None:
        """Route new applications at once when their category is known, else queue them."""
        for event in events:
            if event.received_at.tzinfo is None:
                raise PermanentError("received_at saat dilimi içermiyor; son tarih hesaplanamaz.")
        fresh = {e.application_id: e for e in reversed(events)}  # a repeat in the batch: once
        seen = await self._store.seen(list(fresh))
        now = utcnow()
        decided: list[tuple[RoutingFile, list[Outgoing]]] = []
        for event in events:
            if event.application_id in seen or fresh.pop(event.application_id, None) is None:
                continue  # a redelivery: decided, stored and announced before
            decided.append(self._decide_on_arrival(event, now))
        if decided:
            await self._deliver(await self._store.add(decided))

    def _decide_on_arrival(
        self, event: ApplicationReceived, now: datetime
    ) -> tuple[RoutingFile, list[Outgoing]]:
        app = ApplicationRecord.from_event(event)
        outcome = domain.plan(
            self._registry,
            province_code=app.province_code,
            district=app.district,
            category_code=event.category_code,
            text=app.about,
        )
        if self._learned is not None and isinstance(outcome, Pending) and not event.category_code:
            # No category: routed at once if the model is sure enough, else its suggestions.
            outcome = self._learned.reconsider(app.province_code, app.district, app.about, outcome)
        file = lifecycle.arrive(app, outcome, now)
        return file, self._announce_step(file, outcome)

    async def statuses_changed(self, events: list[StatusChanged]) -> None:
        """Institutions gave applications back: they return to the officers' queue, go to the
        institution they were forwarded to, or are routed in parts."""
        for event in events:
            await self.status_changed(event)

    async def status_changed(self, event: StatusChanged) -> None:
        """An institution gave an application back: to the officers' queue (without that
        institution among the suggestions), to the institution it named (a forward), or in
        parts to several (a split)."""
        if event.status is not Status.returned:
            return
        file = await self._store.get(event.application_id)
        if file is None:
            return  # not ours
        if event.parts:
            await self._split(file, event)
            return
        target = self._forwarded_to(file, event)
        if target is not None:
            forwarded = lifecycle.hand_over(file, event, target, utcnow())
            if forwarded is not None:
                _, sent = await self._store.replace(
                    file, forwarded, messages=self._announce_step(forwarded, target)
                )
                await self._deliver([sent])
            return
        # More than shown: the institutions that gave it back are left out of them.
        candidates = self._suggestions(file.application, limit=domain.MAX_SUGGESTIONS * 4)
        after = lifecycle.give_back(file, event, candidates)
        if after is None:
            return  # a redelivery, a stale return, or one from an institution that lost it
        _, written = await self._store.replace(
            file, after, messages=self._announce_step(after, None)
        )
        await self._deliver([written])

    # --- Officers ------------------------------------------------------------------------------

    async def route_by_officer(
        self, application_id: str, category_code: str, principal: Principal
    ) -> RoutingRecord:
        """Route a queued application the way the automatic path would, in an officer's name.

        Raises NotFound, OutsideProvince, AlreadyRouted, or domain.RoutingError (unknown
        category or province).
        """
        file = await self._store.get(application_id)
        if file is None:
            raise NotFound(application_id)
        app = file.application
        if not _may_see(principal, app.province_code):
            raise OutsideProvince(application_id)
        decision = self._registry.for_province(app.province_code).decide(
            category_code, app.district
        )
        after = lifecycle.route(file, decision, principal.subject, utcnow())
        claimed, written = await self._store.replace(
            file, after, messages=self._announce_step(after, decision)
        )
        if not claimed or after.routing is None:
            raise AlreadyRouted(application_id)  # another officer was quicker
        await self._record_decision(file, after.routing)
        try:
            await self._deliver([written])
        except Exception as exc:
            # Stored with its events: the outbox relay announces it as soon as Kafka answers.
            log.warning(
                "officer's decision stored, announcement left to the relay",
                extra={"application_id": application_id, "error": type(exc).__name__},
            )
        return after.routing

    async def pending(
        self,
        principal: Principal,
        limit: int,
        offset: int,
        *,
        district: str | None = None,
        application_number: str | None = None,
    ) -> tuple[list[PendingApplication], int]:
        """The officers' queue, oldest first, within the principal's province."""
        province = None if principal.role is Role.admin else principal.province
        return await self._store.pending(
            QueuePage(province, limit, offset, district, application_number)
        )

    # --- Forwards and splits ----------------------------------------------------------------

    def _forwarded_to(self, file: RoutingFile, event: StatusChanged) -> Decision | None:
        """Where a forward goes: the application's category, answered by the institution named
        (None: no forward, or one this taxonomy cannot place; then the officers decide)."""
        if not event.forward_to or file.routing is None:
            return None
        try:
            taxonomy = self._registry.for_province(file.application.province_code)
        except domain.UnknownProvince:
            return None
        return lifecycle.instructed_decision(taxonomy, file.routing.category_code, event.forward_to)

    async def _split(self, file: RoutingFile, event: StatusChanged) -> None:
        """Route each part as an application of its own, then mark the parent as split."""
        parent = lifecycle.split_off(file, event)
        if parent is None or file.routing is None or not event.parts:
            return  # a redelivery, or stale
        now = utcnow()
        parts: list[tuple[RoutingFile, list[Outgoing]]] = []
        for spec in event.parts:
            app = lifecycle.part_of(file.application, spec)
            placed = self._place_part(app, spec, file.routing.category_code)
            part = (
                lifecycle.route_part(app, placed, now)
                if isinstance(placed, Decision)
                else lifecycle.arrive(app, placed, now)
            )
            parts.append((part, self._announce_step(part, placed)))
        seen = await self._store.seen([part.application_id for part, _ in parts])
        fresh = [(part, messages) for part, messages in parts if part.application_id not in seen]
        if fresh:
            await self._deliver(await self._store.add(fresh))
        _, written = await self._store.replace(file, parent, messages=[])
        await self._deliver([written])

    def _place_part(
        self, app: ApplicationRecord, spec: PartSpec, category_code: str
    ) -> Decision | Pending:
        """Who answers a part: the institution named (with the application's category), or
        the one the part's category resolves to in the applicant's district. A part the
        taxonomy cannot place waits for an officer."""
        try:
            taxonomy = self._registry.for_province(app.province_code)
            if spec.institution_code:
                decided = lifecycle.instructed_decision(
                    taxonomy, spec.category_code or category_code, spec.institution_code
                )
                if decided is not None:
                    return decided
            elif spec.category_code:
                return taxonomy.decide(spec.category_code, app.district)
        except domain.RoutingError:
            pass
        suggestions = self._suggestions(app, limit=domain.MAX_SUGGESTIONS)
        return Pending(
            f"Bölümlere ayıran kurumun gösterdiği yer bulunamadı. {domain.PENDING_SUFFIX}",
            suggestions,
        )

    # --- Internals -----------------------------------------------------------------------------

    def suggest(
        self,
        taxonomy: Taxonomy,
        text: str,
        district: str | None,
        limit: int = domain.MAX_SUGGESTIONS,
    ) -> list[Suggestion]:
        """Categories for a text, best first: the learned model's, else the keyword index's."""
        if self._learned is None:
            return taxonomy.suggest(text, district, limit)
        return self._learned.rank(taxonomy, text, district, limit).suggestions

    def _suggestions(self, app: ApplicationRecord, limit: int) -> list[Suggestion]:
        try:
            taxonomy = self._registry.for_province(app.province_code)
        except domain.UnknownProvince:
            return []
        return self.suggest(taxonomy, app.about, taxonomy.district(app.district), limit)

    async def _record_decision(self, file: RoutingFile, routing: RoutingRecord) -> None:
        """Keep what the officer decided, for the learned model; losing one costs only that."""
        if self._decisions is None:
            return
        app = file.application
        shown = file.waiting.suggestions if file.waiting is not None else []
        decision = OfficerDecision(
            application_id=app.application_id,
            round=file.round,
            province_code=app.province_code,
            district=app.district,
            text=app.about,
            category_code=routing.category_code,
            institution_code=routing.institution_code,
            officer=routing.officer or "",
            decided_at=routing.routed_at,
            suggested_category_code=shown[0].category_code if shown else None,
        )
        try:
            await self._decisions.record_decision(decision)
        except Exception as exc:
            log.warning(
                "officer's decision not recorded for learning",
                extra={"application_id": app.application_id, "error": type(exc).__name__},
            )

    def _announce_step(
        self, file: RoutingFile, decision: Decision | Pending | None
    ) -> list[Outgoing]:
        """What a step of the file announces: a routing three ways, or the wait for an officer
        (`decision` is the taxonomy's answer; None for a return)."""
        if file.state == ROUTED and isinstance(decision, Decision) and file.routing is not None:
            return self._announce(file.application, decision, file.routing, round_=file.round)
        assert file.waiting is not None
        return [self._announce_waiting(file.application, file.waiting.reason, round_=file.round)]

    @staticmethod
    def _announce(
        app: ApplicationRecord, decision: Decision, routing: RoutingRecord, round_: int
    ) -> list[Outgoing]:
        """The decision, the institution's queue entry and its e-mail, announced together."""
        app_id = app.application_id
        # The mark of a category chosen by the learned model rather than a person.
        auto = decision.confidence if isinstance(decision, ModelDecision) else None
        shielded = identity_shielded(app.application_type, app.identity_consent)
        routed = ApplicationRouted(
            event_id=event_id(app_id, round_, "routed"),
            producer=PRODUCER,
            **routing.model_dump(exclude={"routed_at"}),
            auto_confidence=auto,
        )
        assignment = InstitutionAssignment(
            event_id=event_id(app_id, round_, "assignment"),
            application_id=app_id,
            producer=PRODUCER,
            **facts_of(app, exclude=("category_code",)),
            **routing.model_dump(include=ASSIGNED),
            # Institutions read their topic without the key: the applicant in clear, unless
            # the complainant shield keeps it from them.
            applicant=None if shielded else InstitutionContact.of(app.applicant),
            identity_shielded=shielded,
            auto_confidence=auto,
        )
        key = email_key(app_id, decision.institution_code, round_)
        email = NotificationRequest(
            event_id=event_id(app_id, round_, "email"),
            application_id=app_id,
            application_number=app.application_number,
            producer=PRODUCER,
            idempotency_key=key,
            channel=NotificationChannel.email,
            to=decision.institution_email,
            template=EMAIL_TEMPLATE,
            params={
                "application_number": app.application_number,
                "institution_name": decision.institution_name,
                "category_name": decision.category_name,
                "subject": app.subject,
                "deadline_at": routing.deadline_at.isoformat(),
                "district": app.district,
            },
        )
        return [
            Outgoing.of(topics.ROUTED, routed, app_id),
            Outgoing.of(topics.institution_topic(decision.institution_code), assignment, app_id),
            Outgoing.of(topics.NOTIFICATION_REQUESTS, email, key),
        ]

    @staticmethod
    def _announce_waiting(app: ApplicationRecord, reason: str, round_: int) -> Outgoing:
        waiting = ApplicationAwaitingRouting(
            event_id=event_id(app.application_id, round_, "awaiting"),
            application_id=app.application_id,
            application_number=app.application_number,
            producer=PRODUCER,
            reason=reason,
        )
        return Outgoing.of(topics.ROUTED, waiting, app.application_id)


def _may_see(principal: Principal, province_code: int) -> bool:
    return (
        principal.role is Role.admin
        or principal.province is None
        or principal.province == province_code
    )
