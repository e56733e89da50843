"""An application's life in routing as data, and the pure functions that decide each step: it
arrives (routed at once, or waiting for an officer), an officer routes it, an institution gives
it back, forwards it to another institution, or splits it into parts that are routed on their
own. The use cases (handlers.py) load a file, call one of these and store what it returns.

An institution that gave an application back (or forwarded it away) is excluded from the
suggestions for it from then on (`RoutingFile.excluded_institutions`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from services.common.business_days import DeadlineRules
from services.common.events import (
    ApplicantContact,
    ApplicationFacts,
    ApplicationReceived,
    PartSpec,
    Status,
    StatusChanged,
)
from services.routing.domain import (
    MAX_SUGGESTIONS,
    PENDING_SUFFIX,
    Decision,
    Pending,
    Placement,
    Suggestion,
    Taxonomy,
)

# The deadline rules this process routes under: the settings' service levels on the calendar
# with the admins' leave days. The app sets it at start (build_app); tracking computes the same
# deadline and remains its keeper (extensions, questions to the citizen).
deadline_rules: Callable[[], DeadlineRules] = DeadlineRules

State = Literal["pending", "routed"]
PENDING: State = "pending"
ROUTED: State = "routed"


class AlreadyRouted(Exception):
    """The application is not waiting for an officer (it was routed, and not returned since)."""


class ApplicationRecord(ApplicationFacts):
    """What routing keeps of an application to route it now or later."""

    application_id: str
    applicant: ApplicantContact
    # For a şikayet or ihbar: whether the institution may see who the applicant is.
    identity_consent: bool = False

    @classmethod
    def from_event(cls, event: ApplicationReceived) -> ApplicationRecord:
        return cls.model_validate(event.model_dump(include=set(cls.model_fields)))

    @property
    def about(self) -> str:
        """The text the keyword suggestions read."""
        return f"{self.subject}\n{self.text}"


class RoutingRecord(Placement):
    """A routing decision as stored and as the officer's endpoint answers it."""

    application_id: str
    application_number: str
    # "institution": where the institution that held it said (a forward, or a split's part).
    routed_by: Literal["auto", "officer", "institution"]
    officer: str | None = None
    routed_at: datetime
    deadline_at: datetime

    @classmethod
    def of(
        cls,
        app: ApplicationRecord,
        decision: Decision,
        *,
        officer: str | None,
        at: datetime,
        by_institution: bool = False,
    ) -> RoutingRecord:
        return cls(
            application_id=app.application_id,
            application_number=app.application_number,
            **decision.model_dump(exclude={"institution_email"}),
            routed_by="institution" if by_institution else "auto" if officer is None else "officer",
            officer=officer,
            routed_at=at,
            # The legal clock runs from receipt, however long routing took.
            deadline_at=deadline_rules().first_deadline(
                app.received_at, app.application_type, decision.category_code
            ),
        )


class Waiting(BaseModel):
    """Why an application waits for an officer, what might fit it, and since when."""

    reason: str
    suggestions: list[Suggestion] = []
    since: datetime


class GivenBack(BaseModel):
    """An institution returned the application as outside its remit (and said, for a forward,
    where it goes, or for a split, which parts it became)."""

    institution_code: str
    category_code: str
    at: datetime
    forwarded_to: str | None = None
    parts: list[str] = []


class RoutingFile(BaseModel):
    """Everything routing knows of one application. `round` counts routings: 0 first, +1 each
    time the application comes back to the officers' queue."""

    application: ApplicationRecord
    state: State
    round: int = 0
    routing: RoutingRecord | None = None
    waiting: Waiting | None = None
    returns: list[GivenBack] = []

    @property
    def application_id(self) -> str:
        return self.application.application_id

    @property
    def excluded_institutions(self) -> frozenset[str]:
        """Institutions that gave this application back: never suggested for it again."""
        return frozenset(r.institution_code for r in self.returns)


class PendingApplication(ApplicationFacts):
    """One line of the officers' queue (no personal data of the applicant); `category_code` is
    the one the citizen chose, if any."""

    application_id: str
    excerpt: str
    reason: str
    suggestions: list[Suggestion]
    waiting_since: datetime
    returned_by: str | None = None


def arrive(app: ApplicationRecord, outcome: Decision | Pending, now: datetime) -> RoutingFile:
    """A new application: routed at once when the taxonomy decided, else waiting."""
    if isinstance(outcome, Decision):
        routing = RoutingRecord.of(app, outcome, officer=None, at=now)
        return RoutingFile(application=app, state=ROUTED, routing=routing)
    waiting = Waiting(reason=outcome.reason, suggestions=outcome.suggestions, since=now)
    return RoutingFile(application=app, state=PENDING, waiting=waiting)


def route(file: RoutingFile, decision: Decision, officer: str, now: datetime) -> RoutingFile:
    """An officer routes a waiting application; one that is not waiting is refused."""
    if file.state != PENDING:
        raise AlreadyRouted(file.application_id)
    routing = RoutingRecord.of(file.application, decision, officer=officer, at=now)
    return file.model_copy(update={"state": ROUTED, "routing": routing})


def give_back(
    file: RoutingFile, event: StatusChanged, suggestions: list[Suggestion]
) -> RoutingFile | None:
    """The institution returned the application: back to the officers' queue for the next
    round, with `suggestions` other than the category it had. None when the event changes
    nothing: not a return, not routed now (a redelivery), older than the current decision, or
    from an institution that no longer holds it."""
    routing = _handed_back_by_holder(file, event)
    if routing is None:
        return None
    returned_at = _aware(event.at)
    why = f" Gerekçe: {event.reason.strip()}" if event.reason and event.reason.strip() else ""
    reason = (
        f"{routing.institution_name} başvuruyu görev alanı dışında olduğu gerekçesiyle "
        f"iade etti.{why} {PENDING_SUFFIX}"
    )
    excluded = file.excluded_institutions | {routing.institution_code}
    others = [
        s
        for s in suggestions
        if s.category_code != routing.category_code and s.institution_code not in excluded
    ]
    given_back = GivenBack(
        institution_code=routing.institution_code,
        category_code=routing.category_code,
        at=returned_at,
    )
    return file.model_copy(
        update={
            "state": PENDING,
            "round": file.round + 1,
            "waiting": Waiting(
                reason=reason, suggestions=others[:MAX_SUGGESTIONS], since=returned_at
            ),
            "returns": [*file.returns, given_back],
        }
    )


def _handed_back_by_holder(file: RoutingFile, event: StatusChanged) -> RoutingRecord | None:
    """The current routing, if `event` is a new return by the institution that holds it (not a
    redelivery, not older than the decision, not from an institution that lost it)."""
    routing = file.routing
    if event.status is not Status.returned or file.state != ROUTED or routing is None:
        return None
    returned_at = _aware(event.at)
    if returned_at <= _aware(routing.routed_at):
        return None
    if event.institution_code and event.institution_code != routing.institution_code:
        return None
    if any(_aware(r.at) == returned_at for r in file.returns):
        return None  # a split already taken (its parent keeps its routing)
    return routing


def instructed_decision(
    taxonomy: Taxonomy, category_code: str, institution_code: str
) -> Decision | None:
    """The application's category, answered by the institution an institution named (None if
    the taxonomy has no such category or institution)."""
    institution = taxonomy.institution(institution_code)
    if institution is None or taxonomy.category(category_code) is None:
        return None
    # The category's own decision, with the institution named instead of the one it resolves to.
    return taxonomy.decide(category_code, None).model_copy(
        update={
            "institution_code": institution.code,
            "institution_kind": str(institution.kind),
            "institution_name": institution.name,
            "institution_email": institution.email,
        }
    )


def hand_over(
    file: RoutingFile, event: StatusChanged, decision: Decision, now: datetime
) -> RoutingFile | None:
    """An institution forwarded the application to another: routed there at once, in a new
    round, and the one that gave it away is excluded from later suggestions. None when the
    event changes nothing (as for `give_back`)."""
    routing = _handed_back_by_holder(file, event)
    if routing is None:
        return None
    given_back = GivenBack(
        institution_code=routing.institution_code,
        category_code=routing.category_code,
        at=_aware(event.at),
        forwarded_to=decision.institution_code,
    )
    record = RoutingRecord.of(
        file.application, decision, officer=None, at=max(now, _aware(event.at)), by_institution=True
    )
    return file.model_copy(
        update={
            "state": ROUTED,
            "round": file.round + 1,
            "routing": record,
            "waiting": None,
            "returns": [*file.returns, given_back],
        }
    )


def split_off(file: RoutingFile, event: StatusChanged) -> RoutingFile | None:
    """An institution split the application into parts: the parent keeps its decision and
    records the parts (which are routed as applications of their own); None for a repeat."""
    routing = _handed_back_by_holder(file, event)
    if routing is None or not event.parts:
        return None
    given_back = GivenBack(
        institution_code=routing.institution_code,
        category_code=routing.category_code,
        at=_aware(event.at),
        parts=[p.application_id for p in event.parts],
    )
    return file.model_copy(update={"round": file.round + 1, "returns": [*file.returns, given_back]})


def part_of(parent: ApplicationRecord, spec: PartSpec) -> ApplicationRecord:
    """A part of a split application as an application of its own: the parent's facts, its
    number and id, and what the part covers at the head of the text."""
    return parent.model_copy(
        update={
            "application_id": spec.application_id,
            "application_number": spec.application_number,
            "subject": f"[Bölüm {spec.part_no}] {parent.subject}",
            "text": f"Bu bölümün konusu: {spec.note}\n\n{parent.text}",
            "category_code": spec.category_code or parent.category_code,
        }
    )


def route_part(app: ApplicationRecord, decision: Decision, now: datetime) -> RoutingFile:
    """A part routed where the institution that split it said."""
    record = RoutingRecord.of(app, decision, officer=None, at=now, by_institution=True)
    return RoutingFile(application=app, state=ROUTED, routing=record)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
