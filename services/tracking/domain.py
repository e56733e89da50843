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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.common import business_days
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
    Priority,
    Status,
    StatusChanged,
)
from services.common.turkish_time import ISTANBUL

PRODUCER = "tracking"
ANSWER_SMS_SUFFIX = ":answered:sms"
ANSWER_SMS_TEMPLATE = "application_answered"

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
    announced: bool = True


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
    answer_sms_source: str | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    # Optimistic concurrency: the version this state was read at (0 = not stored yet).
    version: int = 0
    # Events a write decided and stored that are not yet confirmed published (the outbox,
    # `services.common.outbox`): a write that replaces the record carries them on.
    outbox: tuple[str, ...] = ()

    @property
    def miss_due_at(self) -> datetime | None:
        """When the deadline watcher must mark it overdue (None: nothing to watch)."""
        if self.status in OPEN_STATUSES and not self.overdue:
            return self.deadline_at
        return None

    @property
    def warn_due_at(self) -> datetime | None:
        """When the one-business-day warning is due (None: not due for this deadline)."""
        if self.status not in OPEN_STATUSES or self.overdue or self.deadline_at is None:
            return None
        if self.warned_deadline is not None and _same_instant(
            self.warned_deadline, self.deadline_at
        ):
            return None
        return warning_time(self.deadline_at)

    def assigned_to(self, institution_code: str) -> bool:
        return self.status in ASSIGNED_STATUSES and self.institution_code == institution_code


# --- inputs that do not come as events -------------------------------------------------------


@dataclass(frozen=True)
class Receive:
    """Intake's event, with the phone already sealed by the caller (crypto is not a rule)."""

    event: ApplicationReceived
    phone_enc: str
    phone_index: str


@dataclass(frozen=True)
class Open:
    """The assigned institution looked at the application."""

    institution_code: str
    at: datetime


@dataclass(frozen=True)
class Return:
    """The assigned institution says the application is not its competence."""

    institution_code: str
    reason: str
    at: datetime


Command = (
    Receive
    | ApplicationRouted
    | ApplicationAwaitingRouting
    | Open
    | Return
    | ApplicationResponse
    | NotificationResult
)


@dataclass(frozen=True)
class Decision:
    """What applying one input gives: the state to store (if `changed`) and what to announce."""

    state: Application | None
    changed: bool
    transitions: tuple[TimelineEntry, ...]
    answer_sms: bool


def apply(state: Application | None, command: Command, source: str) -> Decision:
    """Apply one input; a repeat of an input already applied changes nothing and replays its
    announcements. Raises `Refused` for an input that can never apply."""
    new = _apply(state, command, source)
    changed = new is not state
    if new is None:
        return Decision(None, False, (), False)
    transitions, sms = announced_by(new, source)
    return Decision(new, changed, transitions, sms)


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
        return _respond(state, command, source)
    return _notification_result(state, command, source)


def _receive(state: Application | None, cmd: Receive, source: str) -> Application:
    ev = cmd.event
    if state is None:
        first = _learn(
            Application(
                application_id=ev.application_id,
                application_number=ev.application_number,
                status=Status.received,
                category_code=ev.category_code,
                deadline_at=business_days.answer_deadline(ev.received_at),
            ),
            cmd,
        )
        entry = TimelineEntry(Status.received, ev.received_at, None, 0, source)
        return replace(first, timeline=(entry,))
    if state.received_seen:
        return state  # a repeat
    # Routing overtook intake: keep routing's category and deadline, learn the rest.
    late = TimelineEntry(Status.received, ev.received_at, None, 0, source, announced=False)
    merged = replace(
        _learn(state, cmd),
        category_code=state.category_code or ev.category_code,
        deadline_at=state.deadline_at
        if state.deadline_from_routing
        else business_days.answer_deadline(ev.received_at),
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
        phone_enc=cmd.phone_enc,
        phone_index=cmd.phone_index,
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
    if not _may_move(state, Status.routed, ev.occurred_at):
        return state  # a repeat, or stale
    return _transition(_assign(state, ev), Status.routed, ev.occurred_at, source, previous=state)


def _assign(state: Application, ev: ApplicationRouted) -> Application:
    return replace(
        state,
        category_code=ev.category_code,
        institution_code=ev.institution_code,
        institution_name=ev.institution_name,
        deadline_at=ev.deadline_at,
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
    return _transition(state, Status.opened, cmd.at, source)


def _return(state: Application | None, cmd: Return, source: str) -> Application:
    if state is None:
        raise NotAssigned("unknown application")
    if state.status is Status.returned and state.institution_code == cmd.institution_code:
        return state  # a repeat
    if state.status in (Status.answered, Status.closed):
        raise AlreadyAnswered(f"application {state.application_id} is already answered")
    if not state.assigned_to(cmd.institution_code):
        raise NotAssigned(
            f"application {state.application_id} is not assigned to {cmd.institution_code}"
        )
    return _transition(
        replace(state, returned_at=cmd.at), Status.returned, cmd.at, source, reason=cmd.reason
    )


def _respond(state: Application | None, ev: ApplicationResponse, source: str) -> Application:
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
    answered = _transition(
        replace(
            state,
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


def _notification_result(
    state: Application | None, ev: NotificationResult, source: str
) -> Application | None:
    if state is None or state.status is not Status.answered:
        return state
    if not ev.idempotency_key.endswith(ANSWER_SMS_SUFFIX) or ev.status not in ("sent", "delivered"):
        return state
    at = max(ev.occurred_at, state.answered_at) if state.answered_at else ev.occurred_at
    return _transition(state, Status.closed, at, source)


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
    )
    return replace(moved, status=target, round=next_round, timeline=_insert(before.timeline, entry))


def _insert(timeline: tuple[TimelineEntry, ...], entry: TimelineEntry) -> tuple[TimelineEntry, ...]:
    # Ordered by round and rank, not by clock: services' clocks may differ by a little.
    return tuple(sorted((*timeline, entry), key=lambda e: (e.round, RANK[e.status])))


def _same_instant(a: datetime, b: datetime) -> bool:
    # MongoDB keeps milliseconds; events may carry microseconds.
    return abs(a - b) < timedelta(milliseconds=1)


# --- the deadline ----------------------------------------------------------------------------


def warning_time(deadline_at: datetime) -> datetime:
    """One business day before the deadline: the same clock time on the previous business day."""
    local = deadline_at.astimezone(ISTANBUL)
    day = local.date() - timedelta(days=1)
    while not business_days.is_business_day(day):
        day -= timedelta(days=1)
    return datetime.combine(day, local.time(), tzinfo=ISTANBUL)


@dataclass(frozen=True)
class DeadlineDecision:
    state: Application
    changed: bool
    events: tuple[Envelope, ...]


def check_deadline(state: Application, now: datetime) -> DeadlineDecision:
    """Mark a missed deadline (the overdue flag) or give the one-day warning, once each."""
    # Only an institution that holds it can be late with it (not one that gave it back).
    holder = state.institution_code if state.status in ASSIGNED_STATUSES else None
    miss = state.miss_due_at
    if miss is not None and now >= miss:
        flagged = replace(state, overdue=True)
        missed = DeadlineEvent(
            event_id=event_id(state.application_id, "deadline", "missed"),
            occurred_at=miss,
            application_id=state.application_id,
            application_number=state.application_number,
            producer=PRODUCER,
            kind="missed",
            institution_code=holder,
            deadline_at=miss,
        )
        flag = _snapshot(
            flagged,
            event_id=event_id(state.application_id, "overdue"),
            status=state.status,
            previous=state.status,
            at=miss,
            institution_code=holder,
        )
        return DeadlineDecision(flagged, True, (missed, flag))
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


# --- what is announced -----------------------------------------------------------------------


def event_id(application_id: str, *parts: str) -> uuid.UUID:
    """The same announcement always gets the same id, so a re-publish is recognisable."""
    return uuid.uuid5(EVENT_NAMESPACE, ":".join((application_id, *parts)))


def transition_event_id(application_id: str, status: Status, round_: int) -> uuid.UUID:
    if round_ == 0:
        return event_id(application_id, status.value)
    return event_id(application_id, status.value, f"r{round_}")


def status_changed(state: Application, entry: TimelineEntry) -> StatusChanged:
    return _snapshot(
        state,
        event_id=transition_event_id(state.application_id, entry.status, entry.round),
        status=entry.status,
        previous=entry.previous,
        at=entry.at,
        institution_code=entry.institution_code,
        reason=entry.reason,
    )


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
        received_at=state.received_at,
        deadline_at=state.deadline_at,
        answered_at=state.answered_at,
        overdue=state.overdue,
        reason=reason,
    )


def answer_sms_key(application_id: str) -> str:
    return f"{application_id}{ANSWER_SMS_SUFFIX}"


def application_id_of_answer_sms(idempotency_key: str) -> str | None:
    if not idempotency_key.endswith(ANSWER_SMS_SUFFIX):
        return None
    return idempotency_key[: -len(ANSWER_SMS_SUFFIX)] or None


def answer_sms(state: Application, to: str, tracking_url: str) -> NotificationRequest:
    """The SMS that tells the citizen the answer is in (the text itself is on the status page)."""
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
        },
    )
