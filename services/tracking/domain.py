"""The life of one application as tracking sees it: statuses, the allowed transitions, the overdue
flag, and the events each change announces. Pure: no I/O and no clock (time arrives with the input).

Kafka topics are independent, so events about one application arrive in any order and more than
once. Three rules keep the status honest:
- a status moves only along `ALLOWED`, which within one routing round always climbs `RANK`, so a
  late or repeated event can never move it backwards;
- `returned` ends a round; only a routing decision made *after* the return opens the next one,
  so a stale `routed` of the previous round cannot undo the return;
- every transition remembers the input (`source`) that caused it, so when that input is
  delivered again the same announcements are replayed with the same deterministic event ids
  instead of being lost or duplicated under new ids.

The institution's workflow (workflow.py) adds steps inside a status: opening is recorded with
who did it, staff assignment, questions to the citizen and their replies, answers waiting for a
supervisor's approval. A forward and a split are `returned` transitions that tell routing where
the application goes now; a split creates the parts as applications of their own and answers
the parent, with the overall outcome, once every part is answered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from services.common import business_days
from services.common.business_days import Calendar, DeadlineRules
from services.common.events import (
    ApplicationAwaitingRouting,
    ApplicationReceived,
    ApplicationResponse,
    ApplicationRouted,
    ApplicationType,
    Channel,
    DeadlineEvent,
    Envelope,
    NotificationChannel,
    NotificationRequest,
    NotificationResult,
    Outcome,
    PartSpec,
    Priority,
    Status,
    StatusChanged,
)
from services.common.turkish_time import ISTANBUL
from services.tracking.workflow import (
    NO_APPROVAL,
    ApprovalPolicy,
    Stage,
    Step,
    identity_shielded,
    overall_outcome,
    part_id,
    part_number,
)

PRODUCER = "tracking"
ANSWER_SMS_SUFFIX = ":answered:sms"
ANSWER_SMS_TEMPLATE = "application_answered"
INFORMATION_SMS_TEMPLATE = "information_requested"

# Deterministic event ids live in this namespace: uuid5(namespace, "<application_id>:<what>").
EVENT_NAMESPACE = uuid.UUID("5d0c6f3e-8a57-4c86-9a51-7c1f1f0e2b64")

# Position of each status within one routing round.
RANK: dict[Status, int] = {
    Status.received: 0,
    Status.awaiting_routing: 1,
    Status.routed: 2,
    Status.opened: 3,
    Status.returned: 4,
    Status.answered: 5,
    Status.closed: 6,
}

# The status machine. `None` is "nothing known yet": routing's topic may overtake intake's.
ALLOWED: dict[Status | None, frozenset[Status]] = {
    None: frozenset({Status.received, Status.awaiting_routing, Status.routed}),
    Status.received: frozenset({Status.awaiting_routing, Status.routed}),
    Status.awaiting_routing: frozenset({Status.routed}),
    Status.routed: frozenset({Status.opened, Status.answered, Status.returned}),
    Status.opened: frozenset({Status.answered, Status.returned}),
    Status.returned: frozenset({Status.awaiting_routing, Status.routed}),
    Status.answered: frozenset({Status.closed}),
    Status.closed: frozenset(),
}
# The only edges that go down the ladder: they start a new routing round.
ROUND_STARTS: frozenset[tuple[Status, Status]] = frozenset(
    {(Status.returned, Status.awaiting_routing), (Status.returned, Status.routed)}
)

# Still waiting for an answer: the deadline is watched.
OPEN_STATUSES: frozenset[Status] = frozenset(
    {Status.received, Status.awaiting_routing, Status.routed, Status.opened, Status.returned}
)
# Assigned to an institution that may answer or return it.
ASSIGNED_STATUSES: frozenset[Status] = frozenset({Status.routed, Status.opened})

STATUS_LABELS: dict[Status, str] = {
    Status.received: "Alındı",
    Status.routed: "Kuruma yönlendirildi",
    Status.awaiting_routing: "Yönlendirme bekliyor",
    Status.opened: "Kurum inceliyor",
    Status.answered: "Cevaplandı",
    Status.closed: "Kapandı",
    Status.returned: "İade edildi",
}
# What the SMS says about the outcome, in the citizen's words.
OUTCOME_LABELS: dict[Outcome, str] = {
    Outcome.olumlu: "olumlu",
    Outcome.olumsuz: "olumsuz",
    Outcome.kismen_olumlu: "kısmen olumlu",
}


class Refused(Exception):
    """The input can never be applied to this application (a business rule says no)."""


class NotAssignedYet(Refused):
    """No institution has been assigned yet (routing's event may still be on its way)."""


class NotAssigned(Refused):
    """The application is not (or no longer) assigned to the institution that acted."""


class AlreadyAnswered(Refused):
    """The application has its answer already."""


class WrongStage(Refused):
    """The application's stage does not allow this step now (e.g. an answer awaits approval)."""

    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class NothingToReview(Refused):
    """No answer awaits approval on this application."""


class NoInformationAsked(Refused):
    """The citizen is not being asked for anything on this application."""


class NotSplittable(Refused):
    """A part of a split application is not split again, nor forwarded to its own holder."""


class AlreadyExtended(Refused):
    """The application's deadline was extended once already: one extension is the rule."""


class NotOpen(Refused):
    """The application is answered or closed: its deadline no longer runs."""


class NotShielded(Refused):
    """An unmasking of an applicant whom the institution may see already."""


class NotForParts(Refused):
    """The citizen is not asked through a part of a split application (the citizen follows the
    whole application: its number is the one the SMS and the status page know)."""


@dataclass(frozen=True)
class TimelineEntry:
    status: Status
    at: datetime
    previous: Status | None
    round: int
    # Which input caused it (see module docstring); replayed when that input comes again.
    source: str
    institution_code: str | None = None
    reason: str | None = None
    # False for a fact learnt late (intake's `received` after routing's `routed`): it belongs in
    # the timeline but is not announced, since announcing it would move readers backwards.
    # Workflow steps inside a status (workflow.Step) are not announced either.
    announced: bool = True
    # The workflow step it records (None: a plain status transition).
    step: Step | None = None
    # Who did it (a staff member or supervisor): shown to staff, never to the citizen.
    actor: str | None = None
    # What the citizen may read about it: the unit it went to, the institution it was forwarded
    # to, the number of parts.
    detail: str | None = None


@dataclass(frozen=True)
class InformationRequest:
    """A question the institution asked the citizen; the wait lasts from `asked_at` until the
    reply, or until the institution went on without one (`closed_at`)."""

    number: int
    question: str
    asked_at: datetime
    asked_by: str | None
    institution_code: str
    source: str
    reply: str | None = None
    replied_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.replied_at is None and self.closed_at is None

    @property
    def waited_until(self) -> datetime | None:
        return self.replied_at or self.closed_at


@dataclass(frozen=True)
class DraftAnswer:
    """An institution's answer that waits for (or had) an Açık Kapı supervisor's review."""

    outcome: Outcome
    text: str
    institution_code: str
    submitted_by: str | None
    submitted_at: datetime
    # The response's event id: a redelivered response is recognised by it.
    event_id: str
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    approved: bool = False
    # The supervisor's note when the answer was sent back.
    note: str | None = None

    @property
    def pending(self) -> bool:
        return self.reviewed_at is None


@dataclass(frozen=True)
class Part:
    """One part of a split application, as its parent keeps it: what it covers, who should
    answer it, and its answer once given."""

    part_no: int
    application_id: str
    application_number: str
    note: str
    institution_code: str | None = None
    category_code: str | None = None
    outcome: Outcome | None = None
    answer: str | None = None
    answered_at: datetime | None = None
    answered_by_name: str | None = None  # the institution that answered it

    def spec(self) -> PartSpec:
        return PartSpec(
            part_no=self.part_no,
            application_id=self.application_id,
            application_number=self.application_number,
            institution_code=self.institution_code,
            category_code=self.category_code,
            note=self.note,
        )


DEFAULT_RULES = DeadlineRules()  # the settings' defaults, without leave days


@dataclass(frozen=True)
class DeadlineChange:
    """The deadline moved (or stopped): announced once on the deadlines topic."""

    at: datetime
    # The new deadline; with `paused`, the one that stands still until the citizen replies.
    deadline_at: datetime
    previous: datetime | None
    # service_level | extension | paused | resumed | calendar
    reason: str
    source: str
    paused: bool = False


@dataclass(frozen=True)
class SentMessage:
    """A message the citizen was sent about the application, as notification reported it."""

    key: str
    kind: str  # received | answered | information
    channel: str  # sms | email
    status: str  # sent | delivered | failed
    at: datetime


# The citizen's messages, by the kind their idempotency key names (`<id>:<kind>:...:<channel>`).
CITIZEN_MESSAGES: dict[str, str] = {
    "received": "Başvurunuzun alındığına dair",
    "information": "Sizden ek bilgi istendiğine dair",
    "answered": "Başvurunuzun cevaplandığına dair",
}
MESSAGE_STATUS_LABELS: dict[str, str] = {
    "sent": "gönderildi",
    "delivered": "telefonunuza ulaştı",
    "failed": "gönderilemedi",
}


def citizen_message_of(key: str) -> tuple[str, str, str] | None:
    """(application id, kind, channel) for a citizen's message key, else None."""
    parts = key.split(":")
    if len(parts) < 3 or parts[1] not in CITIZEN_MESSAGES or parts[-1] not in ("sms", "email"):
        return None
    return parts[0], parts[1], parts[-1]


@dataclass(frozen=True)
class Unmasking:
    """A supervisor revealed a shielded applicant's identity to the institution, with a reason."""

    by: str
    at: datetime
    reason: str


@dataclass(frozen=True)
class Application:
    """Tracking's record of one application: no TC Kimlik No, no names, the phone only sealed."""

    application_id: str
    application_number: str
    status: Status
    round: int = 0
    received_seen: bool = False
    channel: Channel | None = None
    application_type: ApplicationType | None = None
    province_code: int | None = None
    district: str | None = None
    subject: str | None = None
    priority: Priority | None = None
    category_code: str | None = None
    institution_code: str | None = None
    institution_name: str | None = None
    received_at: datetime | None = None
    deadline_at: datetime | None = None
    deadline_from_routing: bool = False
    routed_at: datetime | None = None
    returned_at: datetime | None = None
    outcome: Outcome | None = None
    answer: str | None = None
    answered_at: datetime | None = None
    responded_by: str | None = None
    response_event_id: str | None = None
    overdue: bool = False
    warned_deadline: datetime | None = None
    phone_enc: str | None = None
    phone_index: str | None = None
    # The applicant's e-mail address, sealed like the phone (None: they gave none).
    email_enc: str | None = None
    answer_sms_source: str | None = None
    # A supervisor's one extension of the deadline.
    extension_days: int = 0
    extension_reason: str | None = None
    extended_by: str | None = None
    extended_at: datetime | None = None
    deadline_changes: tuple[DeadlineChange, ...] = ()
    # What the citizen was sent (shown on the status page).
    messages: tuple[SentMessage, ...] = ()
    # The rules' warning distance when the deadline was last computed, and the warning time it
    # gives on their calendar (leave days included).
    warning_days: int = DEFAULT_RULES.warning_days
    warn_at: datetime | None = None
    # The application's text, for the institution's inbox (the citizen's own words).
    text: str | None = None
    # The applicant's name and masked TC Kimlik No, sealed (`identity_of` opens them).
    identity_enc: str | None = None
    # The applicant agreed that the institution may know who they are (a şikâyet or an ihbar
    # is shielded otherwise: workflow.identity_shielded).
    identity_consent: bool = False
    # Supervisors who revealed a shielded applicant to the institution: who, when and why.
    unmaskings: tuple[Unmasking, ...] = ()
    # The institution's workflow (workflow.py).
    opened_by: str | None = None
    opened_at: datetime | None = None
    assignee: str | None = None
    unit: str | None = None
    assigned_by: str | None = None
    assigned_at: datetime | None = None
    information_requests: tuple[InformationRequest, ...] = ()
    drafts: tuple[DraftAnswer, ...] = ()
    approved_by: str | None = None
    # The input whose answer tracking itself publishes on the responses topic (an approved
    # answer, or a split application's overall answer).
    response_source: str | None = None
    forwarded_to: str | None = None
    # A split application's parts; on a part, its parent and its number among them.
    parts: tuple[Part, ...] = ()
    parent_id: str | None = None
    part_no: int | None = None
    part_note: str | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    # Optimistic concurrency: the version this state was read at (0 = not stored yet).
    version: int = 0
    # Events a write decided and stored that are not yet confirmed published (the outbox,
    # `services.common.outbox`): a write that replaces the record carries them on.
    outbox: tuple[str, ...] = ()

    @property
    def miss_due_at(self) -> datetime | None:
        """When the deadline watcher must mark it overdue (None: nothing to watch). A split
        application is not watched itself: each part has its deadline."""
        if self.status in OPEN_STATUSES and not self.overdue and not self.clock_paused:
            return None if self.parts else self.deadline_at
        return None

    @property
    def warn_due_at(self) -> datetime | None:
        """When the warning is due (None: not due for this deadline): `warn_at`, as the rules
        put it on the calendar they computed the deadline with."""
        if self.status not in OPEN_STATUSES or self.overdue or self.deadline_at is None:
            return None
        if self.clock_paused or self.parts:
            return None
        if self.warned_deadline is not None and _same_instant(
            self.warned_deadline, self.deadline_at
        ):
            return None
        return self.warn_at or warning_time(self.deadline_at, self.warning_days)

    @property
    def clock_paused(self) -> bool:
        """A question to the citizen is open: the deadline stands still."""
        return self.open_information_request is not None

    def assigned_to(self, institution_code: str) -> bool:
        return self.status in ASSIGNED_STATUSES and self.institution_code == institution_code

    @property
    def open_information_request(self) -> InformationRequest | None:
        last = self.information_requests[-1] if self.information_requests else None
        return last if last is not None and last.is_open else None

    @property
    def pending_draft(self) -> DraftAnswer | None:
        last = self.drafts[-1] if self.drafts else None
        return last if last is not None and last.pending else None

    @property
    def waiting_intervals(self) -> tuple[tuple[datetime, datetime | None], ...]:
        """When the application waited for the citizen (end None: still waiting); the deadline
        clock may stand still in these."""
        return tuple((r.asked_at, r.waited_until) for r in self.information_requests)

    @property
    def stage(self) -> Stage:
        if self.status is Status.closed:
            return Stage.closed
        if self.status is Status.answered:
            return Stage.answered
        if self.status is Status.returned:
            if self.parts:
                return Stage.split_up
            return Stage.forwarded if self.forwarded_to else Stage.returned
        if self.status not in ASSIGNED_STATUSES:
            return Stage.unrouted
        if self.pending_draft is not None:
            return Stage.awaiting_approval
        if self.open_information_request is not None:
            return Stage.waiting_for_citizen
        return Stage.new if self.status is Status.routed else Stage.opened


# --- inputs that do not come as events -------------------------------------------------------


@dataclass(frozen=True)
class Receive:
    """Intake's event, with the phone already sealed by the caller (crypto is not a rule)."""

    event: ApplicationReceived
    phone_enc: str
    phone_index: str
    email_enc: str | None = None
    # The name and masked TC Kimlik No, sealed (None: an event that carries none).
    identity_enc: str | None = None


@dataclass(frozen=True)
class Open:
    """The assigned institution opens the application (an explicit act, with who did it)."""

    institution_code: str
    at: datetime
    by: str | None = None


@dataclass(frozen=True)
class Return:
    """The assigned institution says the application is not its competence."""

    institution_code: str
    reason: str
    at: datetime
    by: str | None = None


@dataclass(frozen=True)
class AssignStaff:
    """The institution hands the application to one of its staff or sub-units."""

    institution_code: str
    assignee: str | None
    unit: str | None
    by: str | None
    at: datetime


@dataclass(frozen=True)
class AskInformation:
    """The institution asks the citizen for more information."""

    institution_code: str
    question: str
    by: str | None
    at: datetime


@dataclass(frozen=True)
class ProvideInformation:
    """The citizen's reply to the open question."""

    reply: str
    at: datetime


@dataclass(frozen=True)
class Respond:
    """An institution's answer, under the province's approval policy."""

    response: ApplicationResponse
    policy: ApprovalPolicy = NO_APPROVAL


@dataclass(frozen=True)
class Approve:
    """An Açık Kapı supervisor approves the answer that awaits approval."""

    by: str
    at: datetime


@dataclass(frozen=True)
class SendBack:
    """An Açık Kapı supervisor sends the answer back to the institution with a note."""

    by: str
    note: str
    at: datetime


@dataclass(frozen=True)
class Forward:
    """The institution hands the application to another institution of the province."""

    institution_code: str
    target_code: str
    target_name: str
    reason: str
    by: str | None
    at: datetime


@dataclass(frozen=True)
class SplitPart:
    """One part asked for: answered by an institution, or by the one a category resolves to."""

    note: str
    institution_code: str | None = None
    category_code: str | None = None


@dataclass(frozen=True)
class Split:
    """The institution splits an application that concerns several institutions into parts."""

    institution_code: str
    parts: tuple[SplitPart, ...]
    reason: str | None
    by: str | None
    at: datetime


@dataclass(frozen=True)
class Extend:
    """An Açık Kapı supervisor extends the deadline, once, with a reason."""

    business_days: int
    reason: str
    by: str
    at: datetime


@dataclass(frozen=True)
class Unmask:
    """An Açık Kapı supervisor reveals a shielded applicant to the institution (lekelenmeme
    hakkı yields only to a stated reason)."""

    by: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Recalculate:
    """Compute the deadline again under the current rules (a leave day was declared)."""

    at: datetime


@dataclass(frozen=True)
class PartAnswered:
    """A part of this (split) application has its answer."""

    part_no: int
    outcome: Outcome
    answer: str
    answered_at: datetime
    institution_name: str | None


Command = (
    Receive
    | ApplicationRouted
    | ApplicationAwaitingRouting
    | Open
    | Return
    | ApplicationResponse
    | Respond
    | NotificationResult
    | AssignStaff
    | AskInformation
    | ProvideInformation
    | Approve
    | SendBack
    | Forward
    | Split
    | PartAnswered
    | Extend
    | Recalculate
    | Unmask
)


@dataclass(frozen=True)
class Decision:
    """What applying one input gives: the state to store (if `changed`) and what to announce."""

    state: Application | None
    changed: bool
    transitions: tuple[TimelineEntry, ...]
    answer_sms: bool
    # The question whose SMS to the citizen this input causes.
    information_sms: InformationRequest | None = None
    # Whether this input made an answer final that tracking publishes itself (responses topic).
    response: bool = False
    # How this input moved (or stopped) the deadline.
    deadline_changes: tuple[DeadlineChange, ...] = ()


def apply(
    state: Application | None,
    command: Command,
    source: str,
    rules: DeadlineRules = DEFAULT_RULES,
) -> Decision:
    """Apply one input; a repeat of an input already applied changes nothing and replays its
    announcements. Raises `Refused` for an input that can never apply. The deadline is
    computed again under `rules` after every change."""
    new = _apply(state, command, source)
    # (An unmasking is no step of the application's: it leaves the deadline alone.)
    moves = new is not state or isinstance(command, Recalculate)
    if new is not None and moves and not isinstance(command, Unmask):
        new = settle_deadline(new, rules, source, _input_time(command, new))
    changed = new is not state
    if new is None:
        return Decision(None, False, (), False)
    transitions, sms = announced_by(new, source)
    asked = next((r for r in new.information_requests if r.source == source), None)
    moved = tuple(c for c in new.deadline_changes if c.source == source)
    return Decision(new, changed, transitions, sms, asked, new.response_source == source, moved)


def _input_time(command: Command, state: Application) -> datetime:
    """When the input happened (the domain has no clock)."""
    if isinstance(command, Receive):
        return command.event.received_at
    if isinstance(command, Envelope):
        return command.occurred_at
    if isinstance(command, Respond):
        return command.response.occurred_at
    if isinstance(command, PartAnswered):
        return command.answered_at
    at: datetime = command.at
    return at


# --- the deadline ----------------------------------------------------------------------------


def paused_business_days(state: Application, calendar: Calendar) -> int:
    """The business days the citizen's replies gave back (see DeadlineRules)."""
    return sum(
        calendar.business_days_between(asked, until)
        for asked, until in state.waiting_intervals
        if until is not None
    )


def computed_deadline(state: Application, rules: DeadlineRules) -> datetime | None:
    """The deadline under `rules`; None while intake's event (the receipt time) is unknown."""
    if state.received_at is None:
        return None
    days = (
        rules.service_days(state.application_type, state.category_code)
        + state.extension_days
        + paused_business_days(state, rules.calendar)
    )
    return rules.calendar.answer_deadline(state.received_at, days)


def settle_deadline(
    state: Application, rules: DeadlineRules, source: str, at: datetime
) -> Application:
    """Put the deadline the rules give on the record, with its warning time; a move of a
    watched deadline (and the clock stopping for a question) is recorded once, for the
    deadlines topic."""
    settled = _settle_deadline(state, rules, source, at)
    deadline = settled.deadline_at
    warn = warning_time(deadline, rules.warning_days, rules.calendar) if deadline else None
    if (settled.warning_days, settled.warn_at) == (rules.warning_days, warn):
        return settled
    return replace(settled, warning_days=rules.warning_days, warn_at=warn)


def _settle_deadline(
    state: Application, rules: DeadlineRules, source: str, at: datetime
) -> Application:
    if state.status not in OPEN_STATUSES:
        return state  # answered: the deadline is history
    if any(c.source == source for c in state.deadline_changes):
        return state  # a repeat: announced before
    target = computed_deadline(state, rules)
    previous = state.deadline_at
    asked = state.open_information_request
    if asked is not None and asked.source == source and previous is not None:
        change = DeadlineChange(at, previous, previous, "paused", source, paused=True)
        return replace(state, deadline_changes=(*state.deadline_changes, change))
    if target is None or (previous is not None and _same_instant(previous, target)):
        return state
    if previous is None or not state.received_seen or state.timeline == ():
        return replace(state, deadline_at=target)  # the first deadline: told with `received`
    reason = _reason_for_move(state, source)
    change = DeadlineChange(at, target, previous, reason, source)
    return replace(state, deadline_at=target, deadline_changes=(*state.deadline_changes, change))


def _reason_for_move(state: Application, source: str) -> str:
    if source.startswith("extension:"):
        return "extension"
    if source.startswith("recalculate:"):
        return "calendar"
    last = state.deadline_changes[-1] if state.deadline_changes else None
    if last is not None and last.paused:
        return "resumed"
    return "service_level"


def _unmask(state: Application | None, cmd: Unmask) -> Application | None:
    if state is None:
        return None
    if not identity_shielded(state.application_type, state.identity_consent, state.unmaskings):
        raise NotShielded(f"application {state.application_id} shields no identity")
    return replace(state, unmaskings=(*state.unmaskings, Unmasking(cmd.by, cmd.at, cmd.reason)))


def _extend(state: Application | None, cmd: Extend, source: str) -> Application:
    if state is None:
        raise NotAssigned("unknown application")
    if state.status not in OPEN_STATUSES:
        raise NotOpen(f"application {state.application_id} is answered: its deadline is over")
    if state.extension_days:
        if (state.extension_days, state.extension_reason) == (cmd.business_days, cmd.reason):
            return state  # a repeat
        raise AlreadyExtended(f"application {state.application_id} was extended once already")
    extended = replace(
        state,
        extension_days=cmd.business_days,
        extension_reason=cmd.reason,
        extended_by=cmd.by,
        extended_at=cmd.at,
        # A new deadline: the watcher warns and flags afresh.
        overdue=False,
    )
    return _step(extended, Step.extended, cmd.at, source, actor=cmd.by, detail=cmd.reason)


def announced_by(state: Application, source: str) -> tuple[tuple[TimelineEntry, ...], bool]:
    """The transitions (and whether the answer SMS) that `source` caused."""
    entries = tuple(e for e in state.timeline if e.source == source and e.announced)
    return entries, state.answer_sms_source == source


def _apply(state: Application | None, command: Command, source: str) -> Application | None:
    if isinstance(command, Receive):
        return _receive(state, command, source)
    if isinstance(command, ApplicationRouted):
        return _routed(state, command, source)
    if isinstance(command, ApplicationAwaitingRouting):
        return _awaiting(state, command, source)
    if isinstance(command, Open):
        return _open(state, command, source)
    if isinstance(command, Return):
        return _return(state, command, source)
    if isinstance(command, ApplicationResponse):
        return _respond(state, Respond(command), source)
    if isinstance(command, Respond):
        return _respond(state, command, source)
    if isinstance(command, NotificationResult):
        return _notification_result(state, command, source)
    if isinstance(command, Extend):
        return _extend(state, command, source)
    if isinstance(command, Recalculate):
        return state
    if isinstance(command, Unmask):
        return _unmask(state, command)
    return _workflow(state, command, source)


def _receive(state: Application | None, cmd: Receive, source: str) -> Application:
    ev = cmd.event
    if state is None:
        first = _learn(
            Application(
                application_id=ev.application_id,
                application_number=ev.application_number,
                status=Status.received,
                category_code=ev.category_code,
            ),
            cmd,
        )  # the deadline: settle_deadline, under the rules
        entry = TimelineEntry(Status.received, ev.received_at, None, 0, source)
        return replace(first, timeline=(entry,))
    if state.received_seen:
        return state  # a repeat
    # Routing overtook intake: keep routing's category and deadline, learn the rest.
    late = TimelineEntry(Status.received, ev.received_at, None, 0, source, announced=False)
    merged = replace(
        _learn(state, cmd),
        category_code=state.category_code or ev.category_code,
        deadline_at=state.deadline_at,
        timeline=_insert(state.timeline, late),
    )
    if merged.status is Status.answered and merged.answer_sms_source is None:
        # The answer came before we knew where to send it: send it now.
        merged = replace(merged, answer_sms_source=source)
    return merged


def _learn(state: Application, cmd: Receive) -> Application:
    ev = cmd.event
    return replace(
        state,
        received_seen=True,
        channel=ev.channel,
        application_type=ev.application_type,
        province_code=ev.province_code,
        district=ev.district,
        subject=ev.subject,
        priority=ev.priority,
        received_at=ev.received_at,
        text=ev.text,
        phone_enc=cmd.phone_enc,
        phone_index=cmd.phone_index,
        email_enc=cmd.email_enc,
        identity_enc=cmd.identity_enc,
        identity_consent=ev.identity_consent,
    )


def _routed(state: Application | None, ev: ApplicationRouted, source: str) -> Application:
    if state is None:
        first = _assign(
            Application(
                application_id=ev.application_id,
                application_number=ev.application_number,
                status=Status.routed,
            ),
            ev,
        )
        entry = TimelineEntry(Status.routed, ev.occurred_at, None, 0, source, ev.institution_code)
        return replace(first, timeline=(entry,))
    if state.parts or not _may_move(state, Status.routed, ev.occurred_at):
        return state  # a repeat, stale, or a split application (its parts are routed instead)
    return _transition(_assign(state, ev), Status.routed, ev.occurred_at, source, previous=state)


def _assign(state: Application, ev: ApplicationRouted) -> Application:
    if state.institution_code != ev.institution_code:
        # Another institution's round: the previous one's staff and marks do not carry over.
        state = replace(
            state,
            assignee=None,
            unit=None,
            assigned_by=None,
            assigned_at=None,
            opened_by=None,
            opened_at=None,
        )
    return replace(
        state,
        forwarded_to=None,
        category_code=ev.category_code,
        institution_code=ev.institution_code,
        institution_name=ev.institution_name,
        # Routing's first deadline stands only until tracking knows the receipt; from then on
        # tracking keeps it (extensions, questions to the citizen, leave days).
        deadline_at=state.deadline_at
        if state.received_seen and state.deadline_at
        else ev.deadline_at,
        deadline_from_routing=True,
        routed_at=ev.occurred_at,
    )


def _awaiting(
    state: Application | None, ev: ApplicationAwaitingRouting, source: str
) -> Application:
    if state is None:
        first = Application(
            application_id=ev.application_id,
            application_number=ev.application_number,
            status=Status.awaiting_routing,
        )
        entry = TimelineEntry(Status.awaiting_routing, ev.occurred_at, None, 0, source)
        return replace(first, timeline=(entry,))
    if not _may_move(state, Status.awaiting_routing, ev.occurred_at):
        return state
    return _transition(
        replace(state, institution_code=None, institution_name=None),
        Status.awaiting_routing,
        ev.occurred_at,
        source,
        previous=state,
    )


def _open(state: Application | None, cmd: Open, source: str) -> Application | None:
    if state is None or state.status is not Status.routed:
        return state
    if state.institution_code != cmd.institution_code:
        return state
    opened = replace(state, opened_by=cmd.by, opened_at=cmd.at)
    return _transition(opened, Status.opened, cmd.at, source, actor=cmd.by)


def _return(state: Application | None, cmd: Return, source: str) -> Application:
    if state is None:
        raise NotAssigned("unknown application")
    if state.status is Status.returned and state.institution_code == cmd.institution_code:
        return state  # a repeat
    _held_by(state, cmd.institution_code)
    if state.pending_draft is not None:
        raise WrongStage(Stage.awaiting_approval, "an answer awaits approval")
    given_back = replace(_stop_waiting(state, cmd.at), returned_at=cmd.at)
    return _transition(given_back, Status.returned, cmd.at, source, reason=cmd.reason, actor=cmd.by)


def _respond(state: Application | None, cmd: Respond, source: str) -> Application:
    ev = cmd.response
    app_id = ev.application_id
    if state is None or state.status in (Status.received, Status.awaiting_routing):
        raise NotAssignedYet(f"application {app_id} has not been routed to an institution yet")
    if state.status in (Status.answered, Status.closed):
        if state.response_event_id == str(ev.event_id):
            return state  # a repeat
        raise AlreadyAnswered(
            f"application {app_id} was already answered by {state.institution_code}"
        )
    if state.status is Status.returned:
        raise NotAssigned(
            f"application {app_id} was returned by {state.institution_code} and is not "
            f"assigned to any institution now; response from {ev.institution_code} refused"
        )
    if state.institution_code != ev.institution_code:
        raise NotAssigned(
            f"application {app_id} is assigned to {state.institution_code}, "
            f"not to {ev.institution_code}; response refused"
        )
    draft = state.pending_draft
    if draft is not None:
        if draft.event_id == str(ev.event_id):
            return state  # a repeat
        raise WrongStage(
            Stage.awaiting_approval,
            f"application {app_id} has an answer awaiting approval; response refused",
        )
    if cmd.policy.requires(state.institution_code, state.application_type):
        return _propose(state, ev, source)
    answered = _transition(
        replace(
            _stop_waiting(state, ev.responded_at),
            outcome=ev.outcome,
            answer=ev.text,
            answered_at=ev.responded_at,
            responded_by=ev.responded_by,
            response_event_id=str(ev.event_id),
        ),
        Status.answered,
        ev.responded_at,
        source,
    )
    if answered.phone_enc is not None:
        answered = replace(answered, answer_sms_source=source)
    return answered


def _propose(state: Application, ev: ApplicationResponse, source: str) -> Application:
    """The answer waits for a supervisor: recorded as a draft, not yet the citizen's."""
    draft = DraftAnswer(
        outcome=ev.outcome,
        text=ev.text,
        institution_code=ev.institution_code,
        submitted_by=ev.responded_by,
        submitted_at=ev.responded_at,
        event_id=str(ev.event_id),
    )
    # Answering is acting on it: an application nobody opened is opened first.
    opened = _opened_for(
        _stop_waiting(state, ev.responded_at), ev.responded_by, ev.responded_at, source
    )
    proposed = replace(opened, drafts=(*opened.drafts, draft))
    return _step(proposed, Step.answer_submitted, ev.responded_at, source, actor=ev.responded_by)


def _notification_result(
    state: Application | None, ev: NotificationResult, source: str
) -> Application | None:
    if state is None:
        return state
    state = _record_message(state, ev)
    if state.status is not Status.answered:
        return state
    if not ev.idempotency_key.endswith(ANSWER_SMS_SUFFIX) or ev.status not in ("sent", "delivered"):
        return state
    at = max(ev.occurred_at, state.answered_at) if state.answered_at else ev.occurred_at
    return _transition(state, Status.closed, at, source)


def _record_message(state: Application, ev: NotificationResult) -> Application:
    """Keep the newest news of each citizen's message (delivered after sent, not before)."""
    found = citizen_message_of(ev.idempotency_key)
    if found is None or ev.status not in MESSAGE_STATUS_LABELS:
        return state
    _, kind, channel = found
    known = next((m for m in state.messages if m.key == ev.idempotency_key), None)
    if known is not None and (
        known.status == ev.status or (known.status == "delivered" and ev.status == "sent")
    ):
        return state  # a repeat, or older news
    message = SentMessage(ev.idempotency_key, kind, channel, ev.status, ev.occurred_at)
    others = tuple(m for m in state.messages if m.key != ev.idempotency_key)
    return replace(state, messages=tuple(sorted((*others, message), key=lambda m: m.at)))


# --- the institution's workflow ---------------------------------------------------------------

WorkflowCommand = (
    AssignStaff
    | AskInformation
    | ProvideInformation
    | Approve
    | SendBack
    | Forward
    | Split
    | PartAnswered
)


def _workflow(state: Application | None, cmd: WorkflowCommand, source: str) -> Application:
    if isinstance(cmd, AssignStaff):
        return _assign_staff(state, cmd, source)
    if isinstance(cmd, AskInformation):
        return _ask(state, cmd, source)
    if isinstance(cmd, ProvideInformation):
        return _reply(state, cmd, source)
    if isinstance(cmd, Approve):
        return _approve(state, cmd, source)
    if isinstance(cmd, SendBack):
        return _send_back(state, cmd, source)
    if isinstance(cmd, Forward):
        return _forward(state, cmd, source)
    if isinstance(cmd, Split):
        return _split(state, cmd, source)
    return _part_answered(state, cmd, source)


def _held_by(state: Application | None, institution_code: str) -> Application:
    """The application, if `institution_code` holds it now (else the reason it may not act)."""
    if state is None:
        raise NotAssigned("unknown application")
    if state.status in (Status.answered, Status.closed):
        raise AlreadyAnswered(f"application {state.application_id} is already answered")
    if not state.assigned_to(institution_code):
        raise NotAssigned(
            f"application {state.application_id} is not assigned to {institution_code}"
        )
    return state


def _no_draft(state: Application) -> None:
    if state.pending_draft is not None:
        raise WrongStage(
            Stage.awaiting_approval,
            f"application {state.application_id}: an answer awaits approval",
        )


def _opened_for(state: Application, by: str | None, at: datetime, source: str) -> Application:
    """An act on an application nobody opened yet opens it first (in the actor's name)."""
    if state.status is not Status.routed:
        return state
    opened = replace(state, opened_by=by, opened_at=at)
    return _transition(opened, Status.opened, at, source, actor=by)


def _stop_waiting(state: Application, at: datetime) -> Application:
    """The institution goes on without the citizen's reply: the wait ends now."""
    asked = state.open_information_request
    if asked is None:
        return state
    closed = replace(asked, closed_at=max(at, asked.asked_at))
    return replace(state, information_requests=(*state.information_requests[:-1], closed))


def _assign_staff(state: Application | None, cmd: AssignStaff, source: str) -> Application:
    held = _held_by(state, cmd.institution_code)
    if (held.assignee, held.unit) == (cmd.assignee, cmd.unit):
        return held  # a repeat, or no change
    moved = replace(
        _opened_for(held, cmd.by, cmd.at, source),
        assignee=cmd.assignee,
        unit=cmd.unit,
        assigned_by=cmd.by,
        assigned_at=cmd.at,
    )
    # The citizen reads the unit's name, never a staff member's.
    return _step(moved, Step.assigned, cmd.at, source, actor=cmd.by, detail=cmd.unit)


def _ask(state: Application | None, cmd: AskInformation, source: str) -> Application:
    held = _held_by(state, cmd.institution_code)
    if held.parent_id is not None:
        raise NotForParts(f"{held.application_id} is a part; the citizen is not asked through it")
    _no_draft(held)
    asked = held.open_information_request
    if asked is not None:
        if asked.question == cmd.question:
            return held  # a repeat
        raise WrongStage(
            Stage.waiting_for_citizen,
            f"application {held.application_id}: the citizen's reply is still awaited",
        )
    request = InformationRequest(
        number=len(held.information_requests) + 1,
        question=cmd.question,
        asked_at=cmd.at,
        asked_by=cmd.by,
        institution_code=cmd.institution_code,
        source=source,
    )
    moved = _opened_for(held, cmd.by, cmd.at, source)
    moved = replace(moved, information_requests=(*moved.information_requests, request))
    return _step(moved, Step.information_requested, cmd.at, source, actor=cmd.by)


def _reply(state: Application | None, cmd: ProvideInformation, source: str) -> Application:
    if state is None:
        raise NoInformationAsked("unknown application")
    asked = state.open_information_request
    if asked is None:
        last = state.information_requests[-1] if state.information_requests else None
        if last is not None and last.reply == cmd.reply:
            return state  # a repeat
        raise NoInformationAsked(f"application {state.application_id} asks the citizen nothing")
    answered = replace(asked, reply=cmd.reply, replied_at=max(cmd.at, asked.asked_at))
    moved = replace(state, information_requests=(*state.information_requests[:-1], answered))
    return _step(moved, Step.information_received, cmd.at, source)


def _approve(state: Application | None, cmd: Approve, source: str) -> Application:
    if state is None:
        raise NothingToReview("unknown application")
    draft = state.pending_draft
    if draft is None:
        if state.response_source == source:
            return state  # a repeat
        raise NothingToReview(f"application {state.application_id} has no answer to approve")
    if not state.assigned_to(draft.institution_code):
        raise NothingToReview(f"application {state.application_id} moved on; nothing to approve")
    approved = replace(draft, reviewed_by=cmd.by, reviewed_at=cmd.at, approved=True)
    moved = replace(
        state,
        drafts=(*state.drafts[:-1], approved),
        outcome=draft.outcome,
        answer=draft.text,
        # The answer reaches the citizen now: that is when the application is answered.
        answered_at=cmd.at,
        responded_by=draft.submitted_by,
        response_event_id=str(event_id(state.application_id, "approved", str(len(state.drafts)))),
        approved_by=cmd.by,
        response_source=source,
    )
    moved = _step(moved, Step.answer_approved, cmd.at, source, actor=cmd.by)
    answered = _transition(moved, Status.answered, cmd.at, source)
    if answered.phone_enc is not None:
        answered = replace(answered, answer_sms_source=source)
    return answered


def _send_back(state: Application | None, cmd: SendBack, source: str) -> Application:
    if state is None:
        raise NothingToReview("unknown application")
    draft = state.pending_draft
    if draft is None:
        last = state.drafts[-1] if state.drafts else None
        if last is not None and last.note == cmd.note and last.reviewed_by == cmd.by:
            return state  # a repeat
        raise NothingToReview(f"application {state.application_id} has no answer to review")
    reviewed = replace(draft, reviewed_by=cmd.by, reviewed_at=cmd.at, note=cmd.note)
    moved = replace(state, drafts=(*state.drafts[:-1], reviewed))
    return _step(moved, Step.answer_sent_back, cmd.at, source, actor=cmd.by)


def _forward(state: Application | None, cmd: Forward, source: str) -> Application:
    if (
        state is not None
        and state.status is Status.returned
        and state.forwarded_to == cmd.target_code
        and state.institution_code == cmd.institution_code
    ):
        return state  # a repeat
    held = _held_by(state, cmd.institution_code)
    _no_draft(held)
    if cmd.target_code == cmd.institution_code:
        raise NotSplittable("an application is not forwarded to the institution that holds it")
    moved = replace(_stop_waiting(held, cmd.at), forwarded_to=cmd.target_code, returned_at=cmd.at)
    return _transition(
        moved,
        Status.returned,
        cmd.at,
        source,
        reason=cmd.reason,
        step=Step.forwarded,
        actor=cmd.by,
        detail=cmd.target_name,
    )


def _split(state: Application | None, cmd: Split, source: str) -> Application:
    if (
        state is not None
        and state.parts
        and state.status is Status.returned
        and state.institution_code == cmd.institution_code
    ):
        return state  # a repeat
    held = _held_by(state, cmd.institution_code)
    _no_draft(held)
    if held.parent_id is not None:
        raise NotSplittable(f"{held.application_id} is a part already; it is not split again")
    parts = tuple(
        Part(
            part_no=n,
            application_id=part_id(held.application_id, n),
            application_number=part_number(held.application_number, n),
            note=wanted.note,
            institution_code=wanted.institution_code,
            category_code=wanted.category_code,
        )
        for n, wanted in enumerate(cmd.parts, start=1)
    )
    moved = replace(_stop_waiting(held, cmd.at), parts=parts, returned_at=cmd.at)
    return _transition(
        moved,
        Status.returned,
        cmd.at,
        source,
        reason=cmd.reason,
        step=Step.split_up,
        actor=cmd.by,
        detail=str(len(parts)),
    )


def new_part(parent: Application, part: Part, at: datetime) -> Application:
    """A part of a split application as an application of its own: the parent's facts, its
    deadline (the legal clock runs from the parent's receipt), and no phone (the citizen hears
    once, about the whole)."""
    return Application(
        application_id=part.application_id,
        application_number=part.application_number,
        status=Status.received,
        received_seen=True,
        channel=parent.channel,
        application_type=parent.application_type,
        province_code=parent.province_code,
        district=parent.district,
        subject=parent.subject,
        text=parent.text,
        priority=parent.priority,
        category_code=part.category_code or parent.category_code,
        received_at=parent.received_at,
        deadline_at=parent.deadline_at,
        deadline_from_routing=True,
        parent_id=parent.application_id,
        part_no=part.part_no,
        part_note=part.note,
        timeline=(
            TimelineEntry(
                Status.received, at, None, 0, f"split:{parent.application_id}", announced=False
            ),
        ),
    )


def _part_answered(state: Application | None, cmd: PartAnswered, source: str) -> Application:
    if state is None or not state.parts:
        raise Refused("not a split application")
    if not 1 <= cmd.part_no <= len(state.parts):
        raise Refused(f"application {state.application_id} has no part {cmd.part_no}")
    part = state.parts[cmd.part_no - 1]
    if part.outcome is not None:
        return state  # a repeat
    done = replace(
        part,
        outcome=cmd.outcome,
        answer=cmd.answer,
        answered_at=cmd.answered_at,
        answered_by_name=cmd.institution_name,
    )
    parts = tuple(done if p.part_no == cmd.part_no else p for p in state.parts)
    moved = _step(
        replace(state, parts=parts),
        Step.part_answered,
        cmd.answered_at,
        source,
        detail=part.application_number,
    )
    if any(p.outcome is None for p in parts) or moved.status is not Status.returned:
        return moved
    # Every part is answered: the application has its overall answer.
    answered_at = max(p.answered_at for p in parts if p.answered_at is not None)
    moved = replace(
        moved,
        outcome=overall_outcome(p.outcome for p in parts if p.outcome is not None),
        answer=overall_answer(parts),
        answered_at=answered_at,
        responded_by=None,
        response_event_id=str(event_id(state.application_id, "parts", "answered")),
        response_source=source,
    )
    answered = _transition(moved, Status.answered, answered_at, source)
    if answered.phone_enc is not None:
        answered = replace(answered, answer_sms_source=source)
    return answered


def overall_answer(parts: tuple[Part, ...]) -> str:
    """The split application's answer: each part's answer under its number and institution."""
    lines = [f"Başvurunuz {len(parts)} bölüm hâlinde ilgili kurumlarca cevaplandı."]
    for p in parts:
        who = f" — {p.answered_by_name}" if p.answered_by_name else ""
        outcome = OUTCOME_LABELS[p.outcome] if p.outcome else ""
        lines.append(f"Bölüm {p.part_no} ({p.note}){who}, {outcome}: {p.answer or ''}".strip())
    return "\n\n".join(lines)


def _step(
    state: Application,
    step: Step,
    at: datetime,
    source: str,
    *,
    actor: str | None = None,
    detail: str | None = None,
) -> Application:
    """Record a workflow step inside the current status (not announced on the status topic)."""
    entry = TimelineEntry(
        status=state.status,
        at=at,
        previous=state.status,
        round=state.round,
        source=source,
        institution_code=state.institution_code,
        announced=False,
        step=step,
        actor=actor,
        detail=detail,
    )
    return replace(state, timeline=_insert(state.timeline, entry))


def _may_move(state: Application, target: Status, decided_at: datetime) -> bool:
    if target not in ALLOWED[state.status]:
        return False
    if (state.status, target) in ROUND_STARTS:
        # Only a decision made after the return starts the next round.
        return state.returned_at is not None and decided_at > state.returned_at
    return True


def _transition(
    moved: Application,
    target: Status,
    at: datetime,
    source: str,
    *,
    previous: Application | None = None,
    reason: str | None = None,
    step: Step | None = None,
    actor: str | None = None,
    detail: str | None = None,
) -> Application:
    """Move to `target`; `moved` already carries the new facts, `previous` is the state before."""
    before = previous or moved
    next_round = before.round + 1 if (before.status, target) in ROUND_STARTS else before.round
    entry = TimelineEntry(
        status=target,
        at=at,
        previous=before.status,
        round=next_round,
        source=source,
        # For a return: the institution that gave it back.
        institution_code=moved.institution_code,
        reason=reason,
        step=step,
        actor=actor,
        detail=detail,
    )
    return replace(moved, status=target, round=next_round, timeline=_insert(before.timeline, entry))


def _insert(timeline: tuple[TimelineEntry, ...], entry: TimelineEntry) -> tuple[TimelineEntry, ...]:
    # Ordered by round and rank, not by clock: services' clocks may differ by a little.
    return tuple(sorted((*timeline, entry), key=lambda e: (e.round, RANK[e.status])))


def _same_instant(a: datetime, b: datetime) -> bool:
    # MongoDB keeps milliseconds; events may carry microseconds.
    return abs(a - b) < timedelta(milliseconds=1)


# --- the deadline ----------------------------------------------------------------------------


def warning_time(
    deadline_at: datetime, days_before: int = 2, calendar: Calendar = business_days.PUBLIC
) -> datetime:
    """`days_before` business days before the deadline: the same clock time that many business
    days earlier (with 2, the institution still has that day and the last one)."""
    local = deadline_at.astimezone(ISTANBUL)
    day = local.date()
    for _ in range(days_before):
        day = calendar.previous_business_day(day)
    return datetime.combine(day, local.time(), tzinfo=ISTANBUL)


@dataclass(frozen=True)
class DeadlineDecision:
    state: Application
    changed: bool
    events: tuple[Envelope, ...]


def check_deadline(
    state: Application, now: datetime, rules: DeadlineRules = DEFAULT_RULES
) -> DeadlineDecision:
    """What the watcher does with an application it found due: first the deadline is computed
    again under the current rules (a leave day declared since moves it, and nothing else
    happens now); then a missed deadline is flagged and escalated, or the warning given, once
    each per deadline."""
    source = f"recalculate:{now.isoformat()}"
    settled = settle_deadline(state, rules, source, now)
    if settled.deadline_at != state.deadline_at:
        moved = tuple(deadline_changed(settled, c) for c in settled.deadline_changes[-1:])
        return DeadlineDecision(settled, True, moved)
    # Only an institution that holds it can be late with it (not one that gave it back).
    holder = state.institution_code if state.status in ASSIGNED_STATUSES else None
    miss = state.miss_due_at
    if miss is not None and now >= miss:
        flagged = replace(state, overdue=True)
        stamp = miss.isoformat(timespec="seconds")

        def deadline_event(kind: Literal["missed", "escalated"]) -> DeadlineEvent:
            return DeadlineEvent(
                event_id=event_id(state.application_id, "deadline", kind, stamp),
                occurred_at=miss,
                application_id=state.application_id,
                application_number=state.application_number,
                producer=PRODUCER,
                kind=kind,
                institution_code=holder,
                deadline_at=miss,
            )

        flag = _snapshot(
            flagged,
            event_id=event_id(state.application_id, "overdue", stamp),
            status=state.status,
            previous=state.status,
            at=miss,
            institution_code=holder,
        )
        return DeadlineDecision(
            flagged, True, (deadline_event("missed"), flag, deadline_event("escalated"))
        )
    warn = state.warn_due_at
    if warn is not None and now >= warn and state.deadline_at is not None:
        deadline = state.deadline_at
        warning = DeadlineEvent(
            event_id=event_id(
                state.application_id, "deadline", "warning", deadline.isoformat(timespec="seconds")
            ),
            occurred_at=warn,
            application_id=state.application_id,
            application_number=state.application_number,
            producer=PRODUCER,
            kind="warning",
            institution_code=holder,
            deadline_at=deadline,
        )
        return DeadlineDecision(replace(state, warned_deadline=deadline), True, (warning,))
    return DeadlineDecision(state, False, ())


def deadline_changed(state: Application, change: DeadlineChange) -> DeadlineEvent:
    """The announcement of a moved (or stopped) deadline."""
    return DeadlineEvent(
        event_id=event_id(state.application_id, "deadline", "changed", change.source),
        occurred_at=change.at,
        application_id=state.application_id,
        application_number=state.application_number,
        producer=PRODUCER,
        kind="changed",
        institution_code=state.institution_code if state.status in ASSIGNED_STATUSES else None,
        deadline_at=change.deadline_at,
        previous_deadline_at=change.previous,
        reason=change.reason,
        paused=change.paused,
    )


# --- what is announced -----------------------------------------------------------------------


def event_id(application_id: str, *parts: str) -> uuid.UUID:
    """The same announcement always gets the same id, so a re-publish is recognisable."""
    return uuid.uuid5(EVENT_NAMESPACE, ":".join((application_id, *parts)))


def transition_event_id(application_id: str, status: Status, round_: int) -> uuid.UUID:
    if round_ == 0:
        return event_id(application_id, status.value)
    return event_id(application_id, status.value, f"r{round_}")


def status_changed(state: Application, entry: TimelineEntry) -> StatusChanged:
    changed = _snapshot(
        state,
        event_id=transition_event_id(state.application_id, entry.status, entry.round),
        status=entry.status,
        previous=entry.previous,
        at=entry.at,
        institution_code=entry.institution_code,
        reason=entry.reason,
    )
    # A forward or a split tells routing where the application goes now.
    if entry.step is Step.forwarded:
        changed.forward_to = state.forwarded_to
    elif entry.step is Step.split_up:
        changed.parts = [p.spec() for p in state.parts]
    return changed


def _snapshot(
    state: Application,
    *,
    event_id: uuid.UUID,
    status: Status,
    previous: Status | None,
    at: datetime,
    institution_code: str | None,
    reason: str | None = None,
) -> StatusChanged:
    return StatusChanged(
        event_id=event_id,
        occurred_at=at,
        application_id=state.application_id,
        application_number=state.application_number,
        producer=PRODUCER,
        status=status,
        previous_status=previous,
        at=at,
        province_code=state.province_code,
        district=state.district,
        channel=state.channel,
        application_type=state.application_type,
        category_code=state.category_code,
        institution_code=institution_code,
        outcome=state.outcome,
        # A part is not an application of its own in the figures: no receipt of its own.
        received_at=state.received_at if state.parent_id is None else None,
        deadline_at=state.deadline_at,
        answered_at=state.answered_at,
        overdue=state.overdue,
        reason=reason,
        parent_application_id=state.parent_id,
    )


def answer_sms_key(application_id: str) -> str:
    return f"{application_id}{ANSWER_SMS_SUFFIX}"


def application_id_of_answer_sms(idempotency_key: str) -> str | None:
    if not idempotency_key.endswith(ANSWER_SMS_SUFFIX):
        return None
    return idempotency_key[: -len(ANSWER_SMS_SUFFIX)] or None


def answer_sms(
    state: Application, to: str, tracking_url: str, rating_url: str | None = None
) -> NotificationRequest:
    """The SMS that tells the citizen the answer is in (the text itself is on the status page),
    with the signed link to rate it when there is one (rating.py)."""
    if state.outcome is None:
        raise ValueError("no outcome to announce")
    return NotificationRequest(
        event_id=event_id(state.application_id, "answered", "sms"),
        application_id=state.application_id,
        application_number=state.application_number,
        producer=PRODUCER,
        idempotency_key=answer_sms_key(state.application_id),
        channel=NotificationChannel.sms,
        to=to,
        template=ANSWER_SMS_TEMPLATE,
        params={
            "application_number": state.application_number,
            "outcome": state.outcome.value,
            "outcome_label": OUTCOME_LABELS[state.outcome],
            "tracking_url": tracking_url,
            **({"rating_url": rating_url} if rating_url else {}),
        },
    )


def answer_email(
    state: Application, to: str, tracking_url: str, rating_url: str | None = None
) -> NotificationRequest:
    """The same news by e-mail, for an applicant who gave an address; with the answer's text
    (and the same rating link as the SMS)."""
    sms = answer_sms(state, to, tracking_url, rating_url)
    return sms.model_copy(
        update={
            "event_id": event_id(state.application_id, "answered", "email"),
            "idempotency_key": f"{state.application_id}:answered:email",
            "channel": NotificationChannel.email,
            "params": {**sms.params, "answer": state.answer or ""},
        }
    )


def information_sms_key(application_id: str, number: int) -> str:
    return f"{application_id}:information:{number}:sms"


def information_sms(
    state: Application, request: InformationRequest, to: str, tracking_url: str
) -> NotificationRequest:
    """The SMS that tells the citizen a question waits for them (the question itself is on the
    status page, behind the number and the phone digits)."""
    key = information_sms_key(state.application_id, request.number)
    return NotificationRequest(
        event_id=event_id(state.application_id, "information", str(request.number), "sms"),
        application_id=state.application_id,
        application_number=state.application_number,
        producer=PRODUCER,
        idempotency_key=key,
        channel=NotificationChannel.sms,
        to=to,
        template=INFORMATION_SMS_TEMPLATE,
        params={"application_number": state.application_number, "tracking_url": tracking_url},
    )


def published_response(state: Application) -> ApplicationResponse:
    """The answer tracking made final itself (approved, or a split application's overall
    answer), for the readers of the responses topic; its id is the one the record keeps, so
    when it comes back to tracking's own consumer it is recognised as a repeat."""
    if (
        state.outcome is None
        or state.answer is None
        or state.response_event_id is None
        or state.answered_at is None
    ):
        raise ValueError("no final answer to publish")
    draft = state.drafts[-1] if state.drafts and state.drafts[-1].approved else None
    return ApplicationResponse(
        event_id=uuid.UUID(state.response_event_id),
        application_id=state.application_id,
        application_number=state.application_number,
        producer=PRODUCER,
        institution_code=state.institution_code or "",
        outcome=state.outcome,
        text=state.answer,
        responded_by=state.responded_by,
        responded_at=draft.submitted_at if draft else state.answered_at,
        approved_by=state.approved_by if draft else None,
    )
