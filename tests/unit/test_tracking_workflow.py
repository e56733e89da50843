"""The institution workflow's pure rules: the overall outcome of a split application, the
stages and their transitions, who may do what, and when an answer waits for approval."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.common.auth import Role
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationResponse,
    ApplicationRouted,
    ApplicationType,
    Outcome,
    Status,
)
from services.tracking import domain
from services.tracking.domain import Application, apply
from services.tracking.workflow import (
    NO_APPROVAL,
    Action,
    ApprovalPolicy,
    Stage,
    Step,
    available_actions,
    identity_shielded,
    in_unit,
    may,
    overall_outcome,
    part_id,
    part_number,
    search_key,
    unit_key,
)

APP = "app-7"
NUMBER = "20-2026-0000123-4"
BLD = "MERKEZEFENDI-BLD"
T0 = datetime(2026, 3, 16, 7, 0, tzinfo=UTC)
YES, NO, PART = Outcome.olumlu, Outcome.olumsuz, Outcome.kismen_olumlu


# --- the overall outcome of a split application -------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "overall"),
    [
        ([YES, YES], YES),
        ([YES, YES, YES], YES),
        ([NO, NO], NO),
        ([YES, NO], PART),
        ([NO, YES, YES], PART),
        ([YES, PART], PART),
        ([NO, PART], PART),
        ([PART, PART], PART),
    ],
)
def test_all_olumlu_is_olumlu_all_olumsuz_is_olumsuz_anything_else_kismen(outcomes, overall):
    assert overall_outcome(outcomes) is overall
    for order in itertools.permutations(outcomes):
        assert overall_outcome(order) is overall


def test_no_outcomes_have_no_overall_outcome():
    with pytest.raises(ValueError):
        overall_outcome([])


def test_parts_are_numbered_after_their_parent():
    assert part_number(NUMBER, 3) == "20-2026-0000123-4/3"
    assert part_id("5b1c", 2) == "5b1c.2" and "/" not in part_id("5b1c", 2)


def test_the_search_key_ignores_turkish_letters_and_case():
    assert search_key("ÇÖP TOPLANMIYOR, İşıklar") == "cop toplanmiyor isiklar"
    assert search_key("20-2026-0000123-4 Şebeke") == "20 2026 0000123 4 sebeke"


# --- who may do what ------------------------------------------------------------------------------


def test_an_institution_acts_only_on_its_own_applications():
    for action in (Action.view, Action.open, Action.answer, Action.forward, Action.split_up):
        assert may(Role.institution, action, own_institution=BLD, institution_code=BLD)
        assert not may(Role.institution, action, own_institution="DESKI", institution_code=BLD)
    assert not may(Role.institution, Action.approve, own_institution=BLD, institution_code=BLD)


def test_a_supervisor_reads_and_approves_only_in_its_own_province_and_never_answers():
    assert may(Role.supervisor, Action.view, own_province=20, institution_code=BLD)
    assert may(Role.supervisor, Action.view, own_province=20, province_code=20)
    assert not may(Role.supervisor, Action.view, own_province=35, province_code=20)
    assert may(Role.supervisor, Action.approve, own_province=20, province_code=20)
    assert may(Role.supervisor, Action.unmask, own_province=20, province_code=20)
    assert not may(Role.supervisor, Action.approve, own_province=35, province_code=20)
    # A supervisor's token must name the province.
    assert not may(Role.supervisor, Action.view, own_province=None, province_code=20)
    assert not may(Role.supervisor, Action.approve, own_province=None, province_code=20)
    for action in (Action.open, Action.answer, Action.return_, Action.forward, Action.split_up):
        assert not may(Role.supervisor, action, own_province=20, institution_code=BLD)


def test_no_other_role_has_a_part_in_the_inbox():
    others = (
        Role.citizen,
        Role.counter_officer,
        Role.routing_officer,
        Role.governor,
        Role.auditor,
    )
    for role in others:
        assert not any(
            may(role, a, own_institution=BLD, institution_code=BLD, own_province=20) for a in Action
        )
    assert not may(Role.institution, Action.unmask, own_institution=BLD, institution_code=BLD)


def test_a_units_staff_see_only_what_was_assigned_to_their_unit():
    assert in_unit(None, None) and in_unit(None, "Su Arıza Birimi")
    assert in_unit("Su Arıza Birimi", "SU ARIZA BİRİMİ")
    assert not in_unit("Su Arıza Birimi", None)
    assert not in_unit("Su Arıza Birimi", "Kanalizasyon Birimi")
    assert unit_key(None) is None and unit_key("Çöp Birimi") == "cop birimi"


def test_only_a_complaint_or_tip_off_without_consent_or_unmasking_is_shielded():
    for kind in (ApplicationType.sikayet, ApplicationType.ihbar):
        assert identity_shielded(kind, False, ())
        assert not identity_shielded(kind, True, ())
        assert not identity_shielded(kind, False, ("unmasked",))
    for other in (ApplicationType.istek, ApplicationType.bilgi_edinme, None):
        assert not identity_shielded(other, False, ())


def test_an_officer_has_no_part_in_the_workflow_and_an_admin_may_stand_in_for_anyone():
    assert not any(may(Role.officer, action, institution_code=BLD) for action in Action)
    assert all(may(Role.admin, action, institution_code=BLD) for action in Action)


def test_an_unmasking_is_recorded_once_per_shielded_application_and_moves_nothing_else():
    complaint = Application(
        application_id=APP,
        application_number=NUMBER,
        status=Status.routed,
        application_type=ApplicationType.sikayet,
    )
    why = "Şikâyet edilen işlemi yapanı kurum ancak başvuru sahibiyle görüşerek bulabilir."
    decision = apply(complaint, domain.Unmask("denetci.ali", why, T0), "unmasked:1")
    assert decision.changed and decision.transitions == ()
    assert decision.state is not None
    assert decision.state.unmaskings == (domain.Unmasking("denetci.ali", T0, why),)
    assert decision.state.deadline_changes == () and decision.state.timeline == ()
    with pytest.raises(domain.NotShielded):
        apply(decision.state, domain.Unmask("denetci.ali", why, T0), "unmasked:2")
    consented = Application(
        application_id=APP,
        application_number=NUMBER,
        status=Status.routed,
        application_type=ApplicationType.ihbar,
        identity_consent=True,
    )
    with pytest.raises(domain.NotShielded):
        apply(consented, domain.Unmask("denetci.ali", why, T0), "unmasked:1")
    assert apply(None, domain.Unmask("denetci.ali", why, T0), "unmasked:1").state is None


def test_each_stage_offers_only_the_acts_it_allows():
    assert Action.open in available_actions(Stage.new)
    assert Action.open not in available_actions(Stage.opened)
    assert Action.ask_information not in available_actions(Stage.waiting_for_citizen)
    assert Action.answer in available_actions(Stage.waiting_for_citizen)
    assert available_actions(Stage.awaiting_approval) == {Action.assign}
    for done in (Stage.answered, Stage.closed, Stage.returned, Stage.forwarded, Stage.split_up):
        assert available_actions(done) == frozenset()
    part = available_actions(Stage.opened, is_part=True)
    assert Action.split_up not in part and Action.ask_information not in part
    assert Action.answer in part and Action.forward in part


# --- when an answer waits for approval ----------------------------------------------------------


def test_approval_is_needed_for_the_listed_institutions_and_types():
    policy = ApprovalPolicy.of(" DESKI , ", "sikayet,ihbar")
    assert policy.requires("DESKI", ApplicationType.istek)
    assert policy.requires(BLD, ApplicationType.ihbar)
    assert policy.requires(None, ApplicationType.sikayet)
    assert not policy.requires(BLD, ApplicationType.istek)
    assert not NO_APPROVAL.requires("DESKI", ApplicationType.sikayet)


def test_an_unknown_application_type_in_the_setting_is_refused_at_start():
    with pytest.raises(ValueError, match="answer_approval_types"):
        ApprovalPolicy.of("", "sikayet,sikâyet")


# --- the transitions ------------------------------------------------------------------------------


def received(application_type: str = "sikayet") -> domain.Receive:
    event = ApplicationReceived(
        application_id=APP,
        application_number=NUMBER,
        channel="web",
        application_type=application_type,
        province_code=20,
        district="Merkezefendi",
        subject="Kaldırım çöktü",
        text="Okulun önündeki kaldırım çöktü.",
        applicant=ApplicantContact(
            tckn_masked="12*******90", first_name="Ayşe", last_name="Yılmaz", phone="+905321234567"
        ),
        received_at=T0,
        occurred_at=T0,
    )
    return domain.Receive(event, phone_enc="sealed", phone_index="idx")


def routed(institution: str = BLD, at: datetime = T0 + timedelta(minutes=1)) -> ApplicationRouted:
    return ApplicationRouted(
        application_id=APP,
        application_number=NUMBER,
        category_code="ULS-006",
        heading_code="ULS",
        institution_code=institution,
        institution_kind="BELEDIYE",
        institution_name="Merkezefendi Belediyesi",
        routed_by="auto",
        deadline_at=T0 + timedelta(days=9),
        occurred_at=at,
    )


def answer(outcome: Outcome = YES, at: datetime = T0 + timedelta(days=1)) -> ApplicationResponse:
    return ApplicationResponse(
        application_id=APP,
        institution_code=BLD,
        outcome=outcome,
        text="Kaldırım onarıldı.",
        responded_by="ali.veli",
        responded_at=at,
    )


def step(state: Application | None, command: domain.Command, source: str) -> domain.Decision:
    return apply(state, command, source)


def routed_app(application_type: str = "sikayet") -> Application:
    state = step(None, received(application_type), "r").state
    state = step(state, routed(), "ro").state
    assert state is not None and state.stage is Stage.new
    return state


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_opening_records_who_and_announces_opened_once():
    state = routed_app()
    opened = step(state, domain.Open(BLD, at(2), "ali.veli"), "o")
    assert opened.state is not None and opened.state.stage is Stage.opened
    assert (opened.state.opened_by, opened.state.opened_at) == ("ali.veli", at(2))
    assert [e.status for e in opened.transitions] == [Status.opened]
    assert opened.transitions[0].actor == "ali.veli"
    assert not step(opened.state, domain.Open(BLD, at(3), "veli"), "o2").changed


def test_assigning_opens_first_and_is_a_step_the_status_topic_does_not_carry():
    state = routed_app()
    decision = step(state, domain.AssignStaff(BLD, "mehmet", "Fen İşleri", "ali", at(2)), "a")
    assert decision.state is not None
    assert (decision.state.assignee, decision.state.unit) == ("mehmet", "Fen İşleri")
    assert [e.status for e in decision.transitions] == [Status.opened]  # only the opening
    last = decision.state.timeline[-1]
    assert (last.step, last.detail, last.announced) == (Step.assigned, "Fen İşleri", False)
    assert not step(
        decision.state, domain.AssignStaff(BLD, "mehmet", "Fen İşleri", "ali", at(3)), "a2"
    ).changed
    with pytest.raises(domain.NotAssigned):
        step(decision.state, domain.AssignStaff("DESKI", "x", None, "y", at(3)), "a3")


def test_a_question_waits_for_the_citizen_who_replies_and_the_wait_is_recorded():
    state = routed_app()
    asked = step(state, domain.AskInformation(BLD, "Adres nedir?", "ali", at(2)), "q")
    assert asked.state is not None and asked.state.stage is Stage.waiting_for_citizen
    assert asked.information_sms is not None and asked.information_sms.number == 1
    sms = domain.information_sms(asked.state, asked.information_sms, "+905321234567", "https://t")
    assert sms.template == "information_requested"
    assert sms.idempotency_key == f"{APP}:information:1:sms"
    with pytest.raises(domain.WrongStage) as refused:
        step(asked.state, domain.AskInformation(BLD, "Başka?", "ali", at(3)), "q2")
    assert refused.value.stage is Stage.waiting_for_citizen

    replied = step(asked.state, domain.ProvideInformation("Atatürk Cad. 5", at(5)), "i1")
    assert replied.state is not None and replied.state.stage is Stage.opened
    assert replied.state.waiting_intervals == ((at(2), at(5)),)
    assert replied.state.timeline[-1].step is Step.information_received
    assert not step(replied.state, domain.ProvideInformation("Atatürk Cad. 5", at(6)), "i1").changed
    with pytest.raises(domain.NoInformationAsked):
        step(replied.state, domain.ProvideInformation("Başka bir şey", at(6)), "i2")


def test_answering_without_the_reply_ends_the_wait():
    state = routed_app()
    asked = step(state, domain.AskInformation(BLD, "Adres nedir?", "ali", at(2)), "q").state
    done = step(asked, answer(at=at(4)), "resp").state
    assert done is not None and done.status is Status.answered
    assert done.waiting_intervals == ((at(2), at(4)),)
    assert done.information_requests[0].reply is None


def test_an_answer_that_needs_approval_is_a_draft_until_approved_then_reaches_the_citizen():
    policy = ApprovalPolicy.of("", "sikayet")
    state = routed_app()
    given = answer()
    proposed = step(state, domain.Respond(given, policy), "resp")
    draft_state = proposed.state
    assert draft_state is not None and draft_state.stage is Stage.awaiting_approval
    assert draft_state.status is Status.opened and draft_state.outcome is None
    assert not proposed.answer_sms and not proposed.response
    assert [e.status for e in proposed.transitions] == [Status.opened]
    assert not step(draft_state, domain.Respond(given, policy), "resp").changed  # redelivered
    with pytest.raises(domain.WrongStage):
        step(draft_state, domain.Respond(answer(NO), policy), "resp2")

    approved = step(draft_state, domain.Approve("denetci", at(30)), "approved:1")
    final = approved.state
    assert final is not None and final.status is Status.answered
    assert (final.outcome, final.answer, final.answered_at) == (YES, "Kaldırım onarıldı.", at(30))
    assert approved.answer_sms and approved.response
    assert [e.status for e in approved.transitions] == [Status.answered]
    published = domain.published_response(final)
    assert published.approved_by == "denetci" and str(published.event_id) == final.response_event_id
    # When the published answer comes back on the responses topic, it is a repeat.
    assert not step(final, domain.Respond(published, policy), "echo").changed
    assert not step(final, domain.Approve("denetci", at(31)), "approved:1").changed


def test_an_answer_sent_back_returns_to_the_institution_with_the_note():
    policy = ApprovalPolicy.of("", "sikayet")
    draft_state = step(routed_app(), domain.Respond(answer(), policy), "resp").state
    back = step(draft_state, domain.SendBack("denetci", "Gerekçe ekleyin.", at(30)), "sb")
    state = back.state
    assert state is not None and state.stage is Stage.opened and not back.transitions
    assert state.drafts[-1].note == "Gerekçe ekleyin." and not state.drafts[-1].approved
    assert state.timeline[-1].step is Step.answer_sent_back
    with pytest.raises(domain.NothingToReview):
        step(state, domain.Approve("denetci", at(31)), "ap")


def test_no_answer_without_approval_where_it_is_needed_and_none_awaited_where_it_is_not():
    plain = step(
        routed_app("istek"), domain.Respond(answer(), ApprovalPolicy.of("", "sikayet")), "r"
    )
    assert plain.state is not None and plain.state.status is Status.answered and plain.answer_sms
    with pytest.raises(domain.NothingToReview):
        step(plain.state, domain.Approve("denetci", at(30)), "ap")


def test_a_forward_is_a_return_that_names_the_next_institution():
    state = routed_app()
    forwarded = step(
        state, domain.Forward(BLD, "DENIZLI-BB", "Büyükşehir", "Ana cadde.", "ali", at(2)), "f"
    )
    after = forwarded.state
    assert after is not None and after.stage is Stage.forwarded and after.status is Status.returned
    (entry,) = forwarded.transitions
    event = domain.status_changed(after, entry)
    assert (event.status, event.forward_to, event.reason) == (
        Status.returned,
        "DENIZLI-BB",
        "Ana cadde.",
    )
    assert entry.step is Step.forwarded and entry.detail == "Büyükşehir"
    assert not step(after, domain.Forward(BLD, "DENIZLI-BB", "B", "x", "ali", at(3)), "f2").changed
    # Routing's decision for the new institution starts the next round there.
    there = step(after, routed("DENIZLI-BB", at(2.1)), "ro2").state
    assert there is not None and there.institution_code == "DENIZLI-BB" and there.round == 1
    assert there.stage is Stage.new and there.forwarded_to is None
    with pytest.raises(domain.NotSplittable):
        step(routed_app(), domain.Forward(BLD, BLD, "Aynı", "x", "ali", at(2)), "f3")


def split_app() -> tuple[Application, domain.Decision]:
    parts = (
        domain.SplitPart("Kaldırım", institution_code=BLD),
        domain.SplitPart("Su borusu", category_code="ALT-002"),
    )
    decision = step(routed_app(), domain.Split(BLD, parts, None, "ali", at(2)), "s")
    assert decision.state is not None
    return decision.state, decision


def test_a_split_names_its_parts_after_the_parent_and_tells_routing_where_they_go():
    parent, decision = split_app()
    assert parent.stage is Stage.split_up and parent.status is Status.returned
    event = domain.status_changed(parent, decision.transitions[0])
    assert event.parts is not None
    assert [(p.application_id, p.application_number) for p in event.parts] == [
        (f"{APP}.1", f"{NUMBER}/1"),
        (f"{APP}.2", f"{NUMBER}/2"),
    ]
    assert (event.parts[0].institution_code, event.parts[1].category_code) == (BLD, "ALT-002")
    part = domain.new_part(parent, parent.parts[1], at(2))
    assert (part.parent_id, part.part_no, part.status) == (APP, 2, Status.received)
    assert part.phone_enc is None and part.deadline_at == parent.deadline_at
    assert part.category_code == "ALT-002" and part.timeline[0].announced is False
    # A part's own events carry no receipt of their own (it is not an application in the
    # figures) and say whose part they are.
    routed_part = step(
        part, routed().model_copy(update={"application_id": part.application_id}), "p"
    )
    assert routed_part.state is not None
    snapshot = domain.status_changed(routed_part.state, routed_part.transitions[0])
    assert snapshot.parent_application_id == APP and snapshot.received_at is None
    with pytest.raises(domain.NotSplittable):
        step(routed_part.state, domain.Split(BLD, parent_parts(), None, "ali", at(3)), "s2")
    with pytest.raises(domain.NotForParts):
        step(routed_part.state, domain.AskInformation(BLD, "Adres?", "ali", at(3)), "q")


def parent_parts() -> tuple[domain.SplitPart, ...]:
    return (domain.SplitPart("a b c", institution_code=BLD), domain.SplitPart("d e f", "DESKI"))


def test_the_parent_is_answered_with_the_overall_outcome_once_every_part_is():
    parent, _ = split_app()
    first = step(parent, domain.PartAnswered(1, YES, "Onarıldı.", at(20), "Belediye"), "p1")
    assert first.state is not None and first.state.status is Status.returned
    assert not first.answer_sms and not first.transitions
    assert not step(first.state, domain.PartAnswered(1, YES, "x", at(21), "B"), "p1b").changed
    done = step(first.state, domain.PartAnswered(2, NO, "Yetkimiz yok.", at(30), "DESKİ"), "p2")
    final = done.state
    assert final is not None and final.status is Status.answered
    assert (final.outcome, final.answered_at) == (PART, at(30))
    assert "Onarıldı." in (final.answer or "") and "Yetkimiz yok." in (final.answer or "")
    assert done.answer_sms and done.response  # the citizen hears once, about the whole
    assert [e.status for e in done.transitions] == [Status.answered]
    assert domain.published_response(final).outcome is PART
