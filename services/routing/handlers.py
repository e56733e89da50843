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
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from services.common import topics
from services.common.auth import Principal, Role
from services.common.business_days import answer_deadline
from services.common.events import (
    ApplicantContact,
    ApplicationAwaitingRouting,
    ApplicationReceived,
    ApplicationRouted,
    ApplicationType,
    Channel,
    InstitutionAssignment,
    Location,
    NotificationChannel,
    NotificationRequest,
    Status,
    StatusChanged,
    facts_of,
    utcnow,
)
from services.common.messaging import Outgoing, PermanentError
from services.common.outbox import Pending as Written
from services.common.pii import PiiCipher
from services.routing import domain
from services.routing.domain import Decision, Pending, Suggestion, TaxonomyRegistry
from services.routing.store import PENDING, ROUTED, RoutingRecords

PRODUCER = "routing"
EMAIL_TEMPLATE = "institution_assignment"
EXCERPT_CHARS = 280
# Namespace of routing's deterministic event ids (uuid5 of application, round and event kind).
_EVENT_IDS = uuid.UUID("6f1d7c3e-2a4b-5e8f-9c1d-20a1c1c4a9e1")

log = logging.getLogger("acikkapi.routing")

# Publishes what writes put in their outboxes, then clears them (Outbox.deliver).
Deliver = Callable[[Iterable[Written | None]], Awaitable[None]]


class NotFound(Exception):
    """No application with that id has reached routing."""


class AlreadyRouted(Exception):
    """The application is not waiting for an officer (it was routed, and not returned since)."""


class OutsideProvince(Exception):
    """The officer's token is for another province."""


def event_id(application_id: str, round_: int, kind: str) -> uuid.UUID:
    return uuid.uuid5(_EVENT_IDS, f"{application_id}:{round_}:{kind}")


def email_key(application_id: str, institution_code: str, round_: int) -> str:
    key = f"{application_id}:routed:{institution_code}:email"
    # A later round (after a return) may go to the same institution again: that is a new e-mail.
    return key if round_ == 0 else f"{key}:{round_}"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ApplicationRecord(BaseModel):
    """What routing keeps of an application to route it now or later."""

    application_id: str
    application_number: str
    application_type: ApplicationType
    channel: Channel
    province_code: int
    district: str
    subject: str
    text: str
    location: Location | None = None
    received_at: datetime
    applicant: ApplicantContact

    @classmethod
    def from_event(cls, event: ApplicationReceived) -> ApplicationRecord:
        return cls.model_validate(event.model_dump(include=set(cls.model_fields)))

    def to_document(self, cipher: PiiCipher) -> dict[str, Any]:
        document = self.model_dump(mode="python", exclude={"application_id", "applicant"})
        document["_id"] = self.application_id
        document["application_type"] = self.application_type.value
        document["channel"] = self.channel.value
        # Name and phone are personal data: sealed at rest like everything personal here.
        document["applicant"] = cipher.encrypt(self.applicant.model_dump_json())
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any], cipher: PiiCipher) -> ApplicationRecord:
        fields = {k: v for k, v in document.items() if k in cls.model_fields}
        fields["application_id"] = document["_id"]
        fields["applicant"] = ApplicantContact.model_validate_json(
            cipher.decrypt(document["applicant"])
        )
        return cls.model_validate(fields)

    @property
    def about(self) -> str:
        """The text the keyword suggestions read."""
        return f"{self.subject}\n{self.text}"


class RoutingRecord(BaseModel):
    """A routing decision as stored and as the officer's endpoint answers it."""

    application_id: str
    application_number: str
    category_code: str
    category_name: str
    heading_code: str
    heading_name: str
    institution_code: str
    institution_kind: str
    institution_name: str
    routed_by: Literal["auto", "officer"]
    officer: str | None = None
    routed_at: datetime
    deadline_at: datetime


class PendingApplication(BaseModel):
    """One line of the officers' queue (no personal data of the applicant)."""

    application_id: str
    application_number: str
    application_type: ApplicationType
    channel: Channel
    province_code: int
    district: str
    subject: str
    excerpt: str
    reason: str
    suggestions: list[Suggestion]
    received_at: datetime
    waiting_since: datetime
    returned_by: str | None = None


class Routing:
    def __init__(
        self,
        store: RoutingRecords,
        deliver: Deliver,
        registry: TaxonomyRegistry,
        cipher: PiiCipher,
    ) -> None:
        self._store = store
        self._deliver = deliver
        self._registry = registry
        self._cipher = cipher

    # --- Events --------------------------------------------------------------------------------

    async def applications_received(self, events: list[ApplicationReceived]) -> None:
        """Route new applications at once when their category is known, else queue them."""
        for event in events:
            if event.received_at.tzinfo is None:
                raise PermanentError("received_at saat dilimi içermiyor; son tarih hesaplanamaz.")
        fresh = {e.application_id: e for e in reversed(events)}  # a repeat in the batch: once
        seen = await self._store.seen(list(fresh))
        now = utcnow()
        decided: list[tuple[dict[str, Any], list[Outgoing]]] = []
        for event in events:
            if event.application_id in seen or fresh.pop(event.application_id, None) is None:
                continue  # a redelivery: decided, stored and announced before
            decided.append(self._decide_on_arrival(event, now))
        if decided:
            await self._deliver(await self._store.add(decided))

    def _decide_on_arrival(
        self, event: ApplicationReceived, now: datetime
    ) -> tuple[dict[str, Any], list[Outgoing]]:
        app = ApplicationRecord.from_event(event)
        outcome = domain.plan(
            self._registry,
            province_code=app.province_code,
            district=app.district,
            category_code=event.category_code,
            text=app.about,
        )
        document = app.to_document(self._cipher) | {"round": 0, "returns": []}
        if isinstance(outcome, Decision):
            routing = self._routing(app, outcome, routed_by="auto", officer=None, at=now)
            document |= {"state": ROUTED, "routing": routing.model_dump(), "pending": None}
            return document, self._announce(app, outcome, routing, round_=0)
        document |= {"state": PENDING, "routing": None, "pending": _pending_fields(outcome, now)}
        return document, [self._announce_waiting(app, outcome.reason, round_=0)]

    async def statuses_changed(self, events: list[StatusChanged]) -> None:
        """Institutions gave applications back: they return to the officers' queue."""
        for event in events:
            await self.status_changed(event)

    async def status_changed(self, event: StatusChanged) -> None:
        """An institution gave an application back: it returns to the officers' queue."""
        if event.status is not Status.returned:
            return
        document = await self._store.get(event.application_id)
        if document is None or document["state"] != ROUTED:
            return  # not ours, or already back in the queue (a redelivery)
        routing = document["routing"]
        returned_at = _aware(event.at)
        if returned_at <= _aware(routing["routed_at"]):
            return  # a return from before the current decision: stale
        if event.institution_code and event.institution_code != routing["institution_code"]:
            return  # returned by an institution that no longer holds it
        app = ApplicationRecord.from_document(document, self._cipher)
        round_ = int(document["round"])
        why = f" Gerekçe: {event.reason.strip()}" if event.reason and event.reason.strip() else ""
        reason = (
            f"{routing['institution_name']} başvuruyu görev alanı dışında olduğu gerekçesiyle "
            f"iade etti.{why} {domain.PENDING_SUFFIX}"
        )
        suggestions = [
            s
            for s in self._suggestions(app, limit=domain.MAX_SUGGESTIONS + 1)
            if s.category_code != routing["category_code"]
        ][: domain.MAX_SUGGESTIONS]
        written = await self._store.back_to_pending(
            app.application_id,
            round_,
            pending=_pending_fields(Pending(reason, suggestions), returned_at),
            returns=[
                *document.get("returns", []),
                {
                    "institution_code": routing["institution_code"],
                    "category_code": routing["category_code"],
                    "at": returned_at,
                },
            ],
            messages=[self._announce_waiting(app, reason, round_=round_ + 1)],
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
        document = await self._store.get(application_id)
        if document is None:
            raise NotFound(application_id)
        app = ApplicationRecord.from_document(document, self._cipher)
        if not _may_see(principal, app.province_code):
            raise OutsideProvince(application_id)
        if document["state"] != PENDING:
            raise AlreadyRouted(application_id)
        decision = self._registry.for_province(app.province_code).decide(
            category_code, app.district
        )
        round_ = int(document["round"])
        routing = self._routing(
            app, decision, routed_by="officer", officer=principal.subject, at=utcnow()
        )
        claimed, written = await self._store.claim(
            application_id,
            round_,
            routing.model_dump(),
            messages=self._announce(app, decision, routing, round_=round_),
        )
        if not claimed:
            raise AlreadyRouted(application_id)  # another officer was quicker
        try:
            await self._deliver([written])
        except Exception as exc:
            # Stored with its events: the outbox relay announces it as soon as Kafka answers.
            log.warning(
                "officer's decision stored, announcement left to the relay",
                extra={"application_id": application_id, "error": type(exc).__name__},
            )
        return routing

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
        documents, total = await self._store.pending(
            province, limit, offset, district=district, application_number=application_number
        )
        return [_pending_view(d) for d in documents], total

    # --- Internals -----------------------------------------------------------------------------

    def _suggestions(self, app: ApplicationRecord, limit: int) -> list[Suggestion]:
        try:
            taxonomy = self._registry.for_province(app.province_code)
        except domain.UnknownProvince:
            return []
        return taxonomy.suggest(app.about, taxonomy.district(app.district), limit)

    @staticmethod
    def _routing(
        app: ApplicationRecord,
        decision: Decision,
        *,
        routed_by: Literal["auto", "officer"],
        officer: str | None,
        at: datetime,
    ) -> RoutingRecord:
        return RoutingRecord(
            application_id=app.application_id,
            application_number=app.application_number,
            **decision.model_dump(exclude={"institution_email"}),
            routed_by=routed_by,
            officer=officer,
            routed_at=at,
            # The legal clock runs from receipt, however long routing took.
            deadline_at=answer_deadline(app.received_at),
        )

    @staticmethod
    def _announce(
        app: ApplicationRecord, decision: Decision, routing: RoutingRecord, round_: int
    ) -> list[Outgoing]:
        """The decision, the institution's queue entry and its e-mail, announced together."""
        app_id = app.application_id
        routed = ApplicationRouted(
            event_id=event_id(app_id, round_, "routed"),
            application_id=app_id,
            application_number=app.application_number,
            producer=PRODUCER,
            category_code=decision.category_code,
            category_name=decision.category_name,
            heading_code=decision.heading_code,
            heading_name=decision.heading_name,
            institution_code=decision.institution_code,
            institution_kind=decision.institution_kind,
            institution_name=decision.institution_name,
            routed_by=routing.routed_by,
            officer=routing.officer,
            deadline_at=routing.deadline_at,
        )
        assignment = InstitutionAssignment(
            event_id=event_id(app_id, round_, "assignment"),
            application_id=app_id,
            producer=PRODUCER,
            **facts_of(app, exclude=("category_code",)),
            institution_code=decision.institution_code,
            category_code=decision.category_code,
            category_name=decision.category_name,
            heading_code=decision.heading_code,
            deadline_at=routing.deadline_at,
            applicant=app.applicant,
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


def _pending_fields(pending: Pending, since: datetime) -> dict[str, Any]:
    return {
        "reason": pending.reason,
        "suggestions": [s.model_dump() for s in pending.suggestions],
        "since": since,
    }


def _pending_view(document: dict[str, Any]) -> PendingApplication:
    text = document.get("text", "")
    excerpt = text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1].rstrip() + "…"
    pending = document.get("pending") or {}
    returns = document.get("returns") or []
    return PendingApplication(
        application_id=document["_id"],
        application_number=document["application_number"],
        application_type=document["application_type"],
        channel=document["channel"],
        province_code=document["province_code"],
        district=document["district"],
        subject=document["subject"],
        excerpt=excerpt,
        reason=pending.get("reason", ""),
        suggestions=pending.get("suggestions", []),
        received_at=document["received_at"],
        waiting_since=pending["since"],
        returned_by=returns[-1]["institution_code"] if returns else None,
    )
