"""The status machine: order-independent, repeat-proof, and honest about returns and deadlines."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from services.common import business_days
from services.common.events import (
    ApplicantContact,
    ApplicationAwaitingRouting,
    ApplicationReceived,
    ApplicationResponse,
    ApplicationRouted,
    DeadlineEvent,
    NotificationResult,
    Outcome,
    Status,
    StatusChanged,
)
from services.common.turkish_time import ISTANBUL
from services.tracking import domain
from services.tracking.domain import Application, apply

APP = "app-1"
NUMBER = "20-2026-0000123-4"
T0 = datetime(2026, 3, 16, 7, 0, tzinfo=UTC)  # Monday 10:00 in Istanbul


def received(at: datetime = T0) -> domain.Receive:
    event = ApplicationReceived(
        application_id=APP,
        application_number=NUMBER,
        channel="web",
        application_type="sikayet",
        province_code=20,
        district="Merkezefendi",
        subject="Sokak lambası yanmıyor",
        text="Sokağımızdaki lamba bir haftadır yanmıyor.",
        applicant=ApplicantContact(
            tckn_masked="12*******90", first_name="Ayşe", last_name="Yılmaz", phone="+905321234567"
        ),
        received_at=at,
        occurred_at=at,
    )
    return domain.Receive(event, phone_enc="sealed", phone_index="idx")


def routed(
    institution: str = "DENIZLI-BLD", at: datetime = T0 + timedelta(minutes=1)
) -> ApplicationRouted:
    return ApplicationRouted(
        application_id=APP,
        application_number=NUMBER,
        category_code="AYDINLATMA",
        heading_code="ALTYAPI",
        institution_code=institution,
        institution_kind="BELEDIYE",
        institution_name="Denizli Büyükşehir Belediyesi",
        routed_by="auto",
        deadline_at=datetime(2026, 3, 26, 20, 59, 59, tzinfo=UTC),
        occurred_at=at,
    )


def awaiting(at: datetime = T0 + timedelta(seconds=30)) -> ApplicationAwaitingRouting:
    return ApplicationAwaitingRouting(
        application_id=APP, application_number=NUMBER, reason="kategori yok", occurred_at=at
    )


def response(
    institution: str = "DENIZLI-BLD", outcome: Outcome = Outcome.kismen_olumlu
) -> ApplicationResponse:
    return ApplicationResponse(
        application_id=APP,
        institution_code=institution,
        outcome=outcome,
        text="Lamba değiştirildi, kablo arızası için ekip yönlendirildi.",
        responded_at=T0 + timedelta(days=2),
    )


def sms_result(status: str = "sent", key: str = f"{APP}:answered:sms") -> NotificationResult:
    return NotificationResult(
        idempotency_key=key,
        channel="sms",
        status=status,
        occurred_at=T0 + timedelta(days=2, minutes=1),
    )


def src(event: object) -> str:
    inner = event.event if isinstance(event, domain.Receive) else event
    return f"{type(inner).__name__}:{getattr(inner, 'event_id', inner)}"


def run(state: Application | None, *commands: domain.Command) -> Application:
    for command in commands:
        state = apply(state, command, src(command)).state
    assert state is not None
    return state


def statuses(state: Application) -> list[Status]:
    return [e.status for e in state.timeline]


# --- the machine itself ----------------------------------------------------------------------


def test_within_a_round_every_allowed_move_goes_up_the_ladder():
    for current, targets in domain.ALLOWED.items():
        for target in targets:
            if current is None or (current, target) in domain.ROUND_STARTS:
                continue
            assert domain.RANK[target] > domain.RANK[current], (current, target)
    assert set(domain.RANK) == set(Status)
    assert not domain.ALLOWED[Status.closed]


def test_the_happy_path_announces_each_transition_once():
    r, ro, resp, res = received(), routed(), response(), sms_result()
    state = None
    announced: list[Status] = []
    for command in (r, ro, domain.Open("DENIZLI-BLD", T0 + timedelta(hours=3)), resp, res):
        decision = apply(state, command, src(command))
        assert decision.changed
        announced += [t.status for t in decision.transitions]
        state = decision.state
    assert state is not None
    assert announced == [
        Status.received,
        Status.routed,
        Status.opened,
        Status.answered,
        Status.closed,
    ]
    assert state.status is Status.closed
    assert state.outcome is Outcome.kismen_olumlu
    assert state.answered_at == T0 + timedelta(days=2)
    assert [e.previous for e in state.timeline] == [
        None,
        Status.received,
        Status.routed,
        Status.opened,
        Status.answered,
    ]


def test_the_answer_requests_the_sms_with_the_turkish_outcome_label():
    state = run(None, received(), routed())
    decision = apply(state, response(), "resp")
    assert decision.answer_sms
    sms = domain.answer_sms(decision.state, "+905321234567", "https://acikkapi.example/takip")
    assert sms.idempotency_key == f"{APP}:answered:sms"
    assert sms.template == "application_answered"
    assert sms.params == {
        "application_number": NUMBER,
        "outcome": "kismen_olumlu",
        "outcome_label": "kısmen olumlu",
        "tracking_url": "https://acikkapi.example/takip",
    }
    assert domain.OUTCOME_LABELS == {
        Outcome.olumlu: "olumlu",
        Outcome.olumsuz: "olumsuz",
        Outcome.kismen_olumlu: "kısmen olumlu",
    }


def test_received_sets_the_seven_business_day_deadline():
    state = run(None, received())
    assert state.status is Status.received
    assert state.deadline_at == business_days.answer_deadline(T0)
    assert state.phone_enc == "sealed" and state.phone_index == "idx"


# --- order and repeats -----------------------------------------------------------------------


def test_routed_before_received_never_moves_back_and_keeps_routings_deadline():
    ro, r = routed(), received()
    first = apply(None, ro, src(ro))
    assert first.state is not None and first.state.status is Status.routed
    second = apply(first.state, r, src(r))
    assert second.changed  # it learnt the applicant's district, the phone, ...
    assert second.transitions == ()  # ... but announces no step back to `received`
    state = second.state
    assert state is not None
    assert state.status is Status.routed
    assert state.deadline_at == ro.deadline_at
    assert state.district == "Merkezefendi" and state.phone_index == "idx"
    assert statuses(state) == [Status.received, Status.routed]


@pytest.mark.parametrize("order", list(itertools.permutations(["received", "awaiting", "routed"])))
def test_any_arrival_order_ends_in_the_same_state(order: tuple[str, ...]):
    # awaiting and routed share a topic (keyed by id) so they keep their order; received may
    # land anywhere around them. Orders that swap those two are the stale-redelivery case.
    commands = {"received": received(), "awaiting": awaiting(), "routed": routed()}
    state = run(None, *(commands[name] for name in order))
    assert state.status is Status.routed
    assert state.institution_code == "DENIZLI-BLD"
    assert state.deadline_at == commands["routed"].deadline_at
    assert state.received_seen


def test_a_repeated_event_changes_nothing_and_replays_the_same_announcement():
    r, ro = received(), routed()
    state = run(None, r)
    first = apply(state, ro, src(ro))
    again = apply(first.state, ro, src(ro))
    assert not again.changed
    assert again.state is first.state
    assert again.transitions == first.transitions
    ids = [domain.status_changed(again.state, t).event_id for t in again.transitions]
    assert ids == [domain.transition_event_id(APP, Status.routed, 0)]


def test_the_same_fact_under_another_event_id_is_a_no_op_without_announcements():
    state = run(None, received(), routed())
    decision = apply(state, received(), "received:republished-by-intake")
    assert not decision.changed
    assert decision.transitions == ()


def test_stale_awaiting_routing_after_routed_is_ignored():
    state = run(None, received(), routed())
    decision = apply(state, awaiting(), "late")
    assert not decision.changed
    assert decision.state.status is Status.routed


def test_opened_only_by_the_assigned_institution_and_only_once():
    state = run(None, received(), routed())
    assert not apply(state, domain.Open("BASKA-KURUM", T0), "o1").changed
    opened = apply(state, domain.Open("DENIZLI-BLD", T0 + timedelta(hours=1)), "o2")
    assert opened.state.status is Status.opened
    assert not apply(opened.state, domain.Open("DENIZLI-BLD", T0), "o3").changed


# --- responses -------------------------------------------------------------------------------


def test_a_response_from_another_institution_is_refused_with_the_reason():
    state = run(None, received(), routed())
    with pytest.raises(domain.NotAssigned, match="assigned to DENIZLI-BLD, not to MEB-DENIZLI"):
        apply(state, response("MEB-DENIZLI"), "r")


def test_a_response_before_routing_is_not_assigned_yet():
    with pytest.raises(domain.NotAssignedYet):
        apply(None, response(), "r")
    with pytest.raises(domain.NotAssignedYet):
        apply(run(None, received()), response(), "r")


def test_a_second_answer_is_refused_but_a_redelivered_one_is_a_no_op():
    resp = response()
    state = run(None, received(), routed(), resp)
    assert not apply(state, resp, src(resp)).changed
    with pytest.raises(domain.AlreadyAnswered):
        apply(state, response(outcome=Outcome.olumlu), "another")


def test_an_answer_before_the_phone_is_known_sends_the_sms_when_it_arrives():
    r = received()
    state = run(None, routed(), response())
    assert state.answer_sms_source is None
    decision = apply(state, r, src(r))
    assert decision.answer_sms
    assert decision.state.status is Status.answered


def test_the_answer_sms_result_closes_only_when_sent_or_delivered():
    state = run(None, received(), routed(), response())
    failed = apply(state, sms_result("failed"), "f").state
    assert failed.status is Status.answered  # recorded for the status page, not closed
    assert [(m.kind, m.status) for m in failed.messages] == [("answered", "failed")]
    receipt = apply(state, sms_result("sent", key=f"{APP}:received:sms"), "x").state
    assert receipt.status is Status.answered
    assert [(m.kind, m.channel) for m in receipt.messages] == [("received", "sms")]
    closed = apply(state, sms_result("delivered"), "d")
    assert closed.state.status is Status.closed
    assert closed.state.messages[-1].status == "delivered"
    # Older news (sent after delivered) and repeats change nothing.
    assert not apply(closed.state, sms_result("sent"), "s").changed
    assert not apply(closed.state, sms_result("delivered"), "d2").changed
    # Institutions' e-mails are not the citizen's messages.
    deadline_mail = sms_result("sent", key=f"{APP}:deadline:warning:2026-03-26T23:59:59:email")
    assert not apply(state, deadline_mail, "w").changed
    assert domain.application_id_of_answer_sms(f"{APP}:answered:sms") == APP
    assert domain.application_id_of_answer_sms(f"{APP}:received:sms") is None


# --- returns ---------------------------------------------------------------------------------


def test_a_return_opens_a_new_round_and_a_stale_routing_cannot_undo_it():
    first_routing = routed(at=T0 + timedelta(minutes=1))
    state = run(None, received(), first_routing)
    returned_at = T0 + timedelta(hours=5)
    back = apply(state, domain.Return("DENIZLI-BLD", "Görev alanımız dışında.", returned_at), "ret")
    assert back.state.status is Status.returned
    assert back.transitions[0].reason == "Görev alanımız dışında."
    assert back.transitions[0].institution_code == "DENIZLI-BLD"
    # A redelivery of the first routing must not put it back to the same institution.
    assert not apply(back.state, first_routing, "redelivered").changed
    # Answers are refused while nobody holds it.
    with pytest.raises(domain.NotAssigned):
        apply(back.state, response(), "r")
    rerouted = apply(back.state, routed("PAMUKKALE-BLD", at=returned_at + timedelta(hours=1)), "rr")
    state = rerouted.state
    assert state.status is Status.routed and state.round == 1
    assert state.institution_code == "PAMUKKALE-BLD"
    assert rerouted.transitions[0].previous is Status.returned
    new_id = domain.status_changed(state, rerouted.transitions[0]).event_id
    assert new_id != domain.transition_event_id(APP, Status.routed, 0)
    answered = apply(state, response("PAMUKKALE-BLD"), "ok")
    assert answered.state.status is Status.answered
    assert statuses(answered.state) == [
        Status.received,
        Status.routed,
        Status.returned,
        Status.routed,
        Status.answered,
    ]


def test_only_the_assigned_institution_may_return_and_not_after_answering():
    state = run(None, received(), routed())
    with pytest.raises(domain.NotAssigned):
        apply(state, domain.Return("BASKA", "yetkisiz", T0), "x")
    answered = run(state, response())
    with pytest.raises(domain.AlreadyAnswered):
        apply(answered, domain.Return("DENIZLI-BLD", "geç", T0), "y")


# --- announcements ---------------------------------------------------------------------------


def test_status_changed_carries_the_snapshot_and_a_deterministic_id():
    state = run(None, received(), routed(), response())
    entry = state.timeline[-1]
    event = domain.status_changed(state, entry)
    assert isinstance(event, StatusChanged)
    assert event.event_id == uuid.uuid5(domain.EVENT_NAMESPACE, f"{APP}:answered")
    assert event.status is Status.answered and event.previous_status is Status.routed
    assert event.province_code == 20 and event.district == "Merkezefendi"
    assert event.channel == "web" and event.application_type == "sikayet"
    assert event.category_code == "AYDINLATMA" and event.institution_code == "DENIZLI-BLD"
    assert event.outcome is Outcome.kismen_olumlu
    assert event.received_at == T0 and event.answered_at == T0 + timedelta(days=2)
    assert event.deadline_at == state.deadline_at
    assert "Ayşe" not in event.model_dump_json() and "5321234567" not in event.model_dump_json()


# --- the deadline ----------------------------------------------------------------------------


def test_a_missed_deadline_sets_the_flag_once_and_announces_it():
    state = run(None, received(), routed())
    assert state.deadline_at is not None
    before = domain.check_deadline(state, state.deadline_at - timedelta(seconds=1))
    assert all(not isinstance(e, DeadlineEvent) or e.kind != "missed" for e in before.events)
    missed = domain.check_deadline(state, state.deadline_at + timedelta(seconds=1))
    assert missed.changed and missed.state.overdue
    deadline_event, flag, escalated = missed.events
    assert isinstance(deadline_event, DeadlineEvent) and deadline_event.kind == "missed"
    assert deadline_event.institution_code == "DENIZLI-BLD"
    assert isinstance(escalated, DeadlineEvent) and escalated.kind == "escalated"
    assert escalated.event_id != deadline_event.event_id
    assert isinstance(flag, StatusChanged) and flag.overdue and flag.status is Status.routed
    assert missed.state.miss_due_at is None
    assert not domain.check_deadline(missed.state, state.deadline_at + timedelta(days=3)).changed


def test_no_deadline_flag_once_answered():
    state = run(None, received(), routed(), response())
    assert state.miss_due_at is None and state.warn_due_at is None
    assert not domain.check_deadline(state, T0 + timedelta(days=30)).changed


def test_the_warning_comes_two_business_days_before_once_per_deadline():
    state = run(None, received(), routed())
    assert state.deadline_at is not None
    warn_at = domain.warning_time(state.deadline_at)
    assert warn_at == state.deadline_at - timedelta(days=2)  # Thu 26 → end of Tue 24 March
    assert state.warn_due_at == warn_at
    assert not domain.check_deadline(state, warn_at - timedelta(seconds=1)).changed
    warned = domain.check_deadline(state, warn_at)
    (event,) = warned.events
    assert isinstance(event, DeadlineEvent) and event.kind == "warning"
    assert event.deadline_at == state.deadline_at
    assert warned.state.warn_due_at is None
    assert not domain.check_deadline(warned.state, warn_at + timedelta(hours=1)).changed


def test_the_warning_skips_the_bayram_and_the_weekend():
    # Deadline Monday 23 March 2026: Fri 20 is Ramazan Bayramı, so the business day before is
    # Thu 19 (its eve, a half day, is a business day) and the one before that Wed 18.
    deadline = datetime(2026, 3, 23, 23, 59, 59, tzinfo=ISTANBUL)
    assert domain.warning_time(deadline, 1).astimezone(ISTANBUL).date() == date(2026, 3, 19)
    assert domain.warning_time(deadline).astimezone(ISTANBUL).date() == date(2026, 3, 18)


def test_a_missed_deadline_after_a_return_blames_no_institution():
    state = run(None, received(), routed())
    back = apply(state, domain.Return("DENIZLI-BLD", "Görev alanı dışında.", T0), "ret").state
    assert back.deadline_at is not None
    missed = domain.check_deadline(back, back.deadline_at + timedelta(seconds=1))
    deadline_event, flag, _ = missed.events
    assert isinstance(deadline_event, DeadlineEvent) and deadline_event.institution_code is None
    assert isinstance(flag, StatusChanged) and flag.institution_code is None
    assert flag.status is Status.returned and flag.overdue


# --- service levels, extension, the clock stopped for the citizen ------------------------------


def test_an_information_request_gets_fifteen_business_days():
    bilgi = received()
    event = bilgi.event.model_copy(update={"application_type": "bilgi_edinme"})
    decision = apply(None, domain.Receive(event, phone_enc="sealed", phone_index="idx"), "r")
    state = decision.state
    assert state is not None
    # 17 March … 7 April 2026, the Ramazan Bayramı (20 March) left out.
    assert state.deadline_at == business_days.answer_deadline(T0, 15)
    assert state.deadline_at.astimezone(ISTANBUL).date() == date(2026, 4, 7)
    # The first deadline is told with `received`: no move is announced.
    assert decision.deadline_changes == () and state.deadline_changes == ()


def test_a_category_level_wins_over_the_type():
    rules = business_days.DeadlineRules(by_category={"AYDINLATMA": 3})
    state = apply(None, received(), "r", rules).state
    assert state is not None and state.deadline_at == business_days.answer_deadline(T0, 7)
    routed_state = apply(state, routed(), "x", rules).state
    assert routed_state is not None
    assert routed_state.deadline_at == business_days.answer_deadline(T0, 3)
    decision = apply(state, routed(), "x", rules)
    (change,) = decision.deadline_changes
    assert change.reason == "service_level" and change.previous == state.deadline_at


def test_one_extension_moves_the_deadline_and_is_announced():
    state = run(None, received(), routed())
    before = state.deadline_at
    extend = domain.Extend(5, "Saha incelemesi gerekiyor.", "denetci-1", T0 + timedelta(days=1))
    decision = apply(state, extend, "extension:1")
    assert decision.state is not None
    assert decision.state.deadline_at == business_days.answer_deadline(T0, 12)
    (change,) = decision.deadline_changes
    assert change.reason == "extension" and change.previous == before
    event = domain.deadline_changed(decision.state, change)
    assert event.kind == "changed" and event.deadline_at == decision.state.deadline_at
    # A repeat changes nothing; a second extension is refused.
    assert not apply(decision.state, extend, "extension:1").changed
    with pytest.raises(domain.AlreadyExtended):
        apply(decision.state, domain.Extend(2, "Bir kez daha.", "d", T0), "extension:1")


def test_an_extension_after_a_miss_clears_the_flag_and_watches_again():
    state = run(None, received(), routed())
    assert state.deadline_at is not None
    missed = domain.check_deadline(state, state.deadline_at + timedelta(hours=1)).state
    assert missed.overdue and missed.miss_due_at is None
    extend = domain.Extend(3, "Kurumun talebiyle.", "d", state.deadline_at + timedelta(hours=2))
    again = apply(missed, extend, "extension:1").state
    assert again is not None and not again.overdue
    assert again.miss_due_at == business_days.answer_deadline(T0, 10)
    late = domain.check_deadline(again, again.miss_due_at + timedelta(seconds=1))
    ids = {e.event_id for e in late.events}
    first = domain.check_deadline(state, state.deadline_at + timedelta(hours=1))
    assert ids.isdisjoint({e.event_id for e in first.events})  # a second miss is news


def test_waiting_for_the_citizen_stops_the_clock_and_gives_the_days_back():
    state = run(None, received(), routed())
    before = state.deadline_at
    # Asked on Tue 17 March, replied on Mon 23 March: 18, 19 (eve), 23 given back (20 is a
    # bayram day, 21–22 the weekend).
    ask = domain.AskInformation(
        "DENIZLI-BLD", "Lambanın direk numarasını yazar mısınız?", "memur", T0 + timedelta(days=1)
    )
    asked = apply(state, ask, "ask")
    assert asked.state is not None and asked.state.clock_paused
    assert asked.state.miss_due_at is None and asked.state.warn_due_at is None
    (paused,) = asked.deadline_changes
    assert paused.paused and paused.deadline_at == before
    reply = domain.ProvideInformation("Direk no 42.", T0 + timedelta(days=7))
    replied = apply(asked.state, reply, "information:1")
    assert replied.state is not None and not replied.state.clock_paused
    assert replied.state.deadline_at == business_days.answer_deadline(T0, 7 + 3)
    (resumed,) = replied.deadline_changes
    assert resumed.reason == "resumed" and resumed.previous == before


def test_the_watcher_moves_a_deadline_when_a_leave_day_was_declared():
    state = run(None, received(), routed())
    assert state.deadline_at is not None and state.warn_due_at is not None
    leave = business_days.Calendar(frozenset({date(2026, 3, 24)}))
    decision = domain.check_deadline(
        state, state.warn_due_at + timedelta(minutes=1), business_days.DeadlineRules(calendar=leave)
    )
    (event,) = decision.events
    assert isinstance(event, DeadlineEvent) and event.kind == "changed"
    assert event.reason == "calendar" and event.previous_deadline_at == state.deadline_at
    assert decision.state.deadline_at == leave.answer_deadline(T0)
    assert decision.state.deadline_at > state.deadline_at


def test_the_warning_time_counts_the_leave_days():
    leave = business_days.Calendar(frozenset({date(2026, 3, 25)}))
    rules = business_days.DeadlineRules(calendar=leave)
    state = apply(None, received(), "r", rules).state
    assert state is not None and state.deadline_at is not None
    # Deadline Fri 27 March (25 is closed); two business days before: end of Tue 24.
    assert state.deadline_at.astimezone(ISTANBUL).date() == date(2026, 3, 27)
    assert state.warn_due_at is not None
    assert state.warn_due_at.astimezone(ISTANBUL).date() == date(2026, 3, 24)


def test_routing_again_after_an_extension_keeps_the_extended_deadline():
    state = run(None, received(), routed())
    extended = apply(state, domain.Extend(5, "Saha incelemesi.", "d", T0), "extension:1").state
    assert extended is not None
    back = apply(extended, domain.Return("DENIZLI-BLD", "Görev alanı dışında.", T0), "ret").state
    again = apply(back, routed("MEB", at=T0 + timedelta(hours=2)), "second")
    assert again.state is not None
    assert again.state.deadline_at == extended.deadline_at
    assert again.deadline_changes == ()


def test_a_split_application_is_not_watched_its_parts_are():
    state = run(None, received(), routed())
    split = domain.Split(
        "DENIZLI-BLD",
        (domain.SplitPart("Lamba", "DENIZLI-BLD"), domain.SplitPart("Kaldırım", "MEB")),
        None,
        "memur",
        T0 + timedelta(hours=1),
    )
    parent = apply(state, split, "split").state
    assert parent is not None and parent.parts
    assert parent.miss_due_at is None and parent.warn_due_at is None
    part = domain.new_part(parent, parent.parts[0], T0 + timedelta(hours=1))
    assert part.deadline_at == parent.deadline_at
