"""An application's life in routing as data, and the pure functions that decide each step: it
arrives (routed at once, or waiting for an officer), an officer routes it, an institution gives
it back. The use cases (handlers.py) load a file, call one of these and store what it returns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from services.common.business_days import answer_deadline
from services.common.events import (
    ApplicantContact,
    ApplicationFacts,
    ApplicationReceived,
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
)

State = Literal["pending", "routed"]
PENDING: State = "pending"
ROUTED: State = "routed"


class AlreadyRouted(Exception):
    """The application is not waiting for an officer (it was routed, and not returned since)."""


class ApplicationRecord(ApplicationFacts):
    """What routing keeps of an application to route it now or later."""

    application_id: str
    applicant: ApplicantContact

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
    routed_by: Literal["auto", "officer"]
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
    ) -> RoutingRecord:
        return cls(
            application_id=app.application_id,
            application_number=app.application_number,
            **decision.model_dump(exclude={"institution_email"}),
            routed_by="auto" if officer is None else "officer",
            officer=officer,
            routed_at=at,
            # The legal clock runs from receipt, however long routing took.
            deadline_at=answer_deadline(app.received_at),
        )


class Waiting(BaseModel):
    """Why an application waits for an officer, what might fit it, and since when."""

    reason: str
    suggestions: list[Suggestion] = []
    since: datetime


class GivenBack(BaseModel):
    """An institution returned the application as outside its remit."""

    institution_code: str
    category_code: str
    at: datetime


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
    routing = file.routing
    if event.status is not Status.returned or file.state != ROUTED or routing is None:
        return None
    returned_at = _aware(event.at)
    if returned_at <= _aware(routing.routed_at):
        return None
    if event.institution_code and event.institution_code != routing.institution_code:
        return None
    why = f" Gerekçe: {event.reason.strip()}" if event.reason and event.reason.strip() else ""
    reason = (
        f"{routing.institution_name} başvuruyu görev alanı dışında olduğu gerekçesiyle "
        f"iade etti.{why} {PENDING_SUFFIX}"
    )
    others = [s for s in suggestions if s.category_code != routing.category_code]
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


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
