"""The institution workflow against the real broker and database, with routing and tracking
running side by side: an application intake registered is routed to its institution, which
lists it (opening nothing), opens it, assigns it, asks the citizen and gets the reply, answers
it (straight, or through a supervisor's approval, or sent back first), returns it (and is not
suggested again), forwards it (it reaches the other institution's own topic), or splits it
(each part routed and answered on its own, the whole answered with the overall outcome)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.common import topics
from services.common.application_number import MAX_SEQUENCE, format_number
from services.common.auth import Role
from services.common.events import ApplicantContact, ApplicationReceived, NotificationRequest
from services.common.settings import Settings
from services.routing.app import build_app as build_routing
from services.routing.lifecycle import RoutingFile
from services.routing.taxonomy import default_registry
from services.tracking.app import build_app as build_tracking
from tests import support
from tests.conftest import Tap, fresh_consumer_group, produce
from tests.support import bearer

pytestmark = pytest.mark.integration

WAIT = 40.0
TRACKING_READS = [topics.RECEIVED, topics.ROUTED, topics.RESPONSES, topics.NOTIFICATION_RESULTS]
ROUTING_READS = [topics.RECEIVED, topics.STATUS]
WRITES = [topics.STATUS, topics.DEADLINES, topics.NOTIFICATION_REQUESTS, topics.TAXONOMY]
DESKI = "DESKI"  # water: categories ALT-001.. in Denizli
TOWN = "MERKEZEFENDI-BLD"  # the district municipality of Merkezefendi
INSTITUTION_TOPICS = [topics.institution_topic(c) for c in (DESKI, TOWN)]


@dataclass
class Stack:
    routing: httpx.AsyncClient
    tracking: httpx.AsyncClient
    routing_app: Any
    tracking_app: Any
    settings: Settings
    tap: Tap

    def token(self, role: Role, **claims: Any) -> dict[str, str]:
        return bearer(self.settings, role, **claims)

    def staff(self, institution: str, name: str = "test-institution") -> dict[str, str]:
        return bearer(self.settings, Role.institution, subject=name, institution=institution)


@pytest.fixture(scope="module")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    """Routing and tracking in this process, each with a consumer group of its own; answers to
    ihbar applications wait for a supervisor's approval (the province's setting)."""
    bootstrap = settings.kafka_bootstrap
    routing_group = await fresh_consumer_group(bootstrap, "routing", ROUTING_READS)
    tracking_group = await fresh_consumer_group(bootstrap, "tracking", TRACKING_READS, WRITES)
    routing_app = build_routing(settings, consumer_group=routing_group)
    stored: list[str] = []  # removed at the end (nx-27017 shares the routing table across runs)
    add = routing_app.state.store.add

    async def recording_add(decided: list[tuple[RoutingFile, Any]]) -> Any:
        stored.extend(file.application_id for file, _ in decided)
        return await add(decided)

    routing_app.state.store.add = recording_add
    tracking_settings = settings.model_copy(update={"answer_approval_types": "ihbar"})
    tracking_app = build_tracking(tracking_settings, consumer_group=tracking_group)
    # The shared bus carries other runs' answers too; none of them should hold a batch long.
    tracking_app.state.tracking.response_grace_seconds = 1.0
    async with (
        routing_app.router.lifespan_context(routing_app),
        tracking_app.router.lifespan_context(tracking_app),
    ):
        await asyncio.wait_for(routing_app.state.runtime.started.wait(), 60)
        await asyncio.wait_for(tracking_app.state.runtime.started.wait(), 60)
        directory = tracking_app.state.tracking.directory
        async with asyncio.timeout(60):  # routing announces Denizli with its institutions
            while not (
                (t := directory.province(20)) and any(i.code == TOWN for i in t.institutions)
            ):
                await asyncio.sleep(0.1)
        tap = Tap(bootstrap, [*WRITES[:3], topics.RESPONSES, topics.ROUTED, *INSTITUTION_TOPICS])
        await tap.start()
        try:
            async with (
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=routing_app), base_url="http://routing"
                ) as routing_http,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=tracking_app), base_url="http://tracking"
                ) as tracking_http,
            ):
                yield Stack(routing_http, tracking_http, routing_app, tracking_app, settings, tap)
        finally:
            await tap.stop()
            table = routing_app.state.runtime.mongo[settings.database_name("routing")][
                "routing_applications"
            ]
            for start in range(0, len(stored), 500):
                await table.delete_many({"_id": {"$in": stored[start : start + 500]}})


@dataclass
class Case:
    application_id: str
    number: str
    phone: str
    institution: str

    @property
    def last4(self) -> str:
        return self.phone[-4:]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = WAIT) -> Any:
    return await support.eventually(check, timeout, interval=0.1)


async def registered(
    stack: Stack,
    *,
    category: str = "ALT-001",
    application_type: str = "sikayet",
    subject: str = "Su kesintisi",
    text: str = "Mahallemizde iki gündür şebeke suyu akmıyor, su arızası giderilsin.",
    priority: str | None = None,
) -> Case:
    """An application as intake announces it; returned once routing routed it and tracking
    lists it at its institution."""
    phone = f"+90532{random.randint(0, 9_999_999):07d}"
    event = ApplicationReceived(
        application_id=str(uuid.uuid4()),
        application_number=format_number(20, 2026, random.randint(1, MAX_SEQUENCE)),
        producer="test-intake",
        channel="web",
        application_type=application_type,
        category_code=category,
        province_code=20,
        district="Merkezefendi",
        subject=subject,
        text=text,
        priority=priority,
        applicant=ApplicantContact(
            tckn_masked="12*******90", first_name="Ayşe", last_name="Yılmaz", phone=phone
        ),
        received_at=datetime.now(UTC),
    )
    await produce(
        stack.settings.kafka_bootstrap, topics.RECEIVED, event.to_bytes(), event.application_id
    )
    institution = default_registry().for_province(20).decide(category, "Merkezefendi")
    case = Case(event.application_id, event.application_number, phone, institution.institution_code)

    async def routed() -> bool:
        found = await detail(stack, case)
        return found.status_code == 200 and found.json()["district"] == "Merkezefendi"

    await eventually(routed)
    return case


def url(case: Case, act: str = "", institution: str | None = None) -> str:
    base = f"/api/v1/institutions/{institution or case.institution}/applications/"
    return base + case.application_id + (f"/{act}" if act else "")


async def detail(stack: Stack, case: Case, institution: str | None = None) -> httpx.Response:
    code = institution or case.institution
    return await stack.tracking.get(url(case, institution=code), headers=stack.staff(code))


async def act(stack: Stack, case: Case, action: str, body: Any = None, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", None) or stack.staff(case.institution)
    return await stack.tracking.post(url(case, action), json=body, headers=headers, **kw)


async def track(stack: Stack, case: Case, number: str | None = None) -> dict[str, Any]:
    reply = await stack.tracking.get(
        f"/api/v1/track/{number or case.number}", params={"phone_last4": case.last4}
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def about(case: Case, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda body: (
        body.get("application_id") == case.application_id
        and all(body.get(k) == v for k, v in fields.items())
    )


# --- list and open ---------------------------------------------------------------------------


async def test_the_list_opens_nothing_filters_and_opening_is_an_act_with_who(stack: Stack):
    case = await registered(
        stack, subject=f"Çeşme arızası {uuid.uuid4().hex[:6]}", priority="engelli"
    )
    listing = f"/api/v1/institutions/{DESKI}/applications"
    mine = stack.staff(DESKI, "ayse.kaya")
    word = (await detail(stack, case)).json()["subject"].split()[-1]

    found = await stack.tracking.get(listing, params={"q": f"cesme {word}"}, headers=mine)
    assert found.status_code == 200, found.text
    assert [i["application_id"] for i in found.json()["items"]] == [case.application_id]
    assert found.json()["total"] == 1
    item = found.json()["items"][0]
    assert (item["status"], item["stage"], item["stage_label"]) == ("routed", "new", "Yeni")
    narrowed = {
        "district": "Merkezefendi",
        "type": "sikayet",
        "priority": "true",
        "active": "true",
        "stage": "new",
        "q": word,
    }
    assert (await stack.tracking.get(listing, params=narrowed, headers=mine)).json()["total"] == 1
    for miss in ({"type": "ihbar"}, {"district": "Pamukkale"}, {"stage": "opened"}):
        params = {"q": word, **miss}
        assert (await stack.tracking.get(listing, params=params, headers=mine)).json()["total"] == 0
    # Reading the list and the application opened nothing.
    assert (await detail(stack, case)).json()["status"] == "routed"
    refused = await stack.tracking.get(listing, headers=stack.staff(TOWN))
    assert refused.status_code == 403

    opened = await act(stack, case, "open", headers=mine)
    assert opened.status_code == 200, opened.text
    assert (opened.json()["status"], opened.json()["stage"]) == ("opened", "opened")
    _, event = await stack.tap.wait_for(topics.STATUS, about(case, status="opened"), WAIT)
    assert event["previous_status"] == "routed" and event["institution_code"] == DESKI
    again = await act(stack, case, "open", headers=mine)
    assert again.status_code == 200
    await stack.tap.caught_up()
    assert stack.tap.count(topics.STATUS, about(case, status="opened")) == 1
    shown = (await detail(stack, case)).json()
    assert shown["opened_by"] == "ayse.kaya"
    assert shown["timeline"][-1]["label"] == "Kurum inceliyor"
    assert shown["timeline"][-1]["actor"] == "ayse.kaya"
    assert "open" not in shown["actions"] and "answer" in shown["actions"]
    assert (await act(stack, case, "open", headers=stack.token(Role.supervisor))).status_code == 403


async def test_an_assignment_names_the_unit_to_the_citizen_never_the_staff_member(stack: Stack):
    case = await registered(stack)
    empty = await act(stack, case, "assign", {})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["message"] == "Bir personel ya da bir birim belirtin."

    assigned = await act(stack, case, "assign", {"assignee": "mehmet.oz", "unit": "Arıza Şube"})
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["status"] == "opened"  # acting on it opened it
    shown = (await detail(stack, case)).json()
    assert (shown["assignee"], shown["unit"]) == ("mehmet.oz", "Arıza Şube")
    assert shown["opened_by"] == "test-institution"
    citizen = await track(stack, case)
    steps = [(t["status"], t.get("step"), t.get("detail")) for t in citizen["timeline"]]
    assert steps[-2:] == [("opened", None, None), ("opened", "assigned", "Arıza Şube")]
    assert "mehmet" not in str(citizen) and "test-institution" not in str(citizen)


# --- the citizen asked -------------------------------------------------------------------------


async def test_asking_the_citizen_sends_an_sms_and_the_reply_resumes_the_application(
    stack: Stack,
):
    case = await registered(stack)
    question = "Arızanın tam adresini ve hangi saatlerde su kesildiğini yazar mısınız?"
    asked = await act(stack, case, "information-request", {"question": question})
    assert asked.status_code == 200, asked.text
    assert asked.json()["stage"] == "waiting_for_citizen"
    _, sms = await stack.tap.wait_for(
        topics.NOTIFICATION_REQUESTS,
        lambda b: b.get("idempotency_key") == f"{case.application_id}:information:1:sms",
        WAIT,
    )
    assert NotificationRequest.model_validate(sms).to == case.phone  # sealed on the wire
    assert sms["template"] == "information_requested"
    assert sms["params"]["application_number"] == case.number
    again = await act(stack, case, "information-request", {"question": "Başka bir soru daha var."})
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "waiting_for_citizen"

    citizen = await track(stack, case)
    assert citizen["information_request"]["question"] == question
    assert citizen["timeline"][-1]["step"] == "information_requested"
    wrong = "0000" if case.last4 != "0000" else "1111"
    reply_url = f"/api/v1/track/{case.number}/information"
    refused = await stack.tracking.post(reply_url, json={"phone_last4": wrong, "reply": "Adres"})
    assert refused.status_code == 404
    reply = "Atatürk Cad. No 5; sular sabah 8'den beri yok."
    replied = await stack.tracking.post(reply_url, json={"phone_last4": case.last4, "reply": reply})
    assert replied.status_code == 200, replied.text
    assert "information_request" not in replied.json()
    assert replied.json()["timeline"][-1]["step"] == "information_received"
    repeat = await stack.tracking.post(reply_url, json={"phone_last4": case.last4, "reply": reply})
    assert repeat.status_code == 200  # the same reply again changes nothing
    late = await stack.tracking.post(
        reply_url, json={"phone_last4": case.last4, "reply": "Bir şey daha"}
    )
    assert late.status_code == 409 and late.json()["errors"][0]["code"] == "no_information_asked"

    shown = (await detail(stack, case)).json()
    assert shown["stage"] == "opened"
    (request,) = shown["information_requests"]
    assert request["reply"] == reply and request["asked_by"] == "test-institution"
    # The wait is recorded, so a deadline clock can stand still in it.
    assert request["asked_at"] < request["replied_at"]


# --- answers and approval ----------------------------------------------------------------------


async def test_an_answer_that_needs_approval_reaches_the_citizen_only_once_approved(stack: Stack):
    case = await registered(stack, application_type="ihbar")
    answer = "Ekiplerimiz bölgede; arıza bu akşam giderilecektir."
    sent = await act(stack, case, "response", {"outcome": "olumlu", "text": answer})
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"application_id": case.application_id, "status": "awaiting_approval"}
    assert (await detail(stack, case)).json()["stage"] == "awaiting_approval"
    citizen = await track(stack, case)
    assert citizen["status"] != "answered" and "answer" not in citizen
    assert citizen["timeline"][-1]["step"] == "answer_submitted"
    second = await act(stack, case, "response", {"outcome": "olumsuz", "text": answer})
    assert second.status_code == 409 and second.json()["errors"][0]["code"] == "awaiting_approval"

    supervisor = stack.token(Role.supervisor, province=20)
    queue = (await stack.tracking.get("/api/v1/approvals", headers=supervisor)).json()
    (item,) = [i for i in queue["items"] if i["application_id"] == case.application_id]
    assert item["draft"]["text"] == answer and item["institution_code"] == DESKI
    elsewhere = stack.token(Role.supervisor, province=35)
    hidden = (await stack.tracking.get("/api/v1/approvals", headers=elsewhere)).json()
    assert case.application_id not in [i["application_id"] for i in hidden["items"]]
    approve = f"/api/v1/approvals/{case.application_id}/approve"
    assert (await stack.tracking.post(approve, headers=elsewhere)).status_code == 404
    assert (await stack.tracking.post(approve, headers=stack.staff(DESKI))).status_code == 403
    await stack.tap.caught_up()
    assert stack.tap.count(topics.RESPONSES, about(case)) == 0  # nothing public before approval

    started = time.monotonic()
    approved = await stack.tracking.post(approve, headers=supervisor)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "answered"
    _, sms = await stack.tap.wait_for(
        topics.NOTIFICATION_REQUESTS,
        lambda b: b.get("idempotency_key") == f"{case.application_id}:answered:sms",
        WAIT,
    )
    print(f"\napprove → answer SMS request: {(time.monotonic() - started) * 1000:.0f} ms")
    _, public = await stack.tap.wait_for(topics.RESPONSES, about(case), WAIT)
    assert public["approved_by"] == "test-supervisor" and public["text"] == answer
    assert NotificationRequest.model_validate(sms).to == case.phone  # sealed on the wire
    assert sms["params"]["outcome_label"] == "olumlu"
    await stack.tap.wait_for(topics.STATUS, about(case, status="answered"), WAIT)
    citizen = await track(stack, case)
    assert (citizen["status"], citizen["outcome"], citizen["answer"]) == (
        "answered",
        "olumlu",
        answer,
    )
    assert [t.get("step") for t in citizen["timeline"][-2:]] == ["answer_approved", None]
    assert (await stack.tracking.post(approve, headers=supervisor)).status_code == 200  # repeat


async def test_a_supervisor_sends_an_answer_back_and_the_corrected_one_is_approved(stack: Stack):
    case = await registered(stack, application_type="ihbar")
    first = await act(
        stack, case, "response", {"outcome": "olumsuz", "text": "Yapılacak bir şey yok."}
    )
    assert first.status_code == 202
    supervisor = stack.token(Role.supervisor, province=20)
    back = f"/api/v1/approvals/{case.application_id}/send-back"
    note = "Gerekçe yazılmamış; mevzuat dayanağını ekleyin."
    returned = await stack.tracking.post(back, json={"note": note}, headers=supervisor)
    assert returned.status_code == 200, returned.text
    assert returned.json()["stage"] == "opened"
    shown = (await detail(stack, case)).json()
    assert shown["drafts"][-1]["note"] == note and shown["drafts"][-1]["approved"] is False
    assert shown["timeline"][-1]["label"] == "Cevap düzeltilmek üzere kuruma geri gönderildi"
    assert (
        await stack.tracking.post(back, json={"note": note}, headers=supervisor)
    ).status_code == 200
    approve = f"/api/v1/approvals/{case.application_id}/approve"
    nothing = await stack.tracking.get("/api/v1/approvals", headers=supervisor)
    assert case.application_id not in [i["application_id"] for i in nothing.json()["items"]]

    corrected = "Talebiniz 5393 sayılı Kanun'un 15. maddesi uyarınca karşılanamamaktadır."
    again = await act(stack, case, "response", {"outcome": "olumsuz", "text": corrected})
    assert again.status_code == 202 and again.json()["status"] == "awaiting_approval"
    approved = await stack.tracking.post(approve, headers=supervisor)
    assert approved.status_code == 200, approved.text
    _, public = await stack.tap.wait_for(topics.RESPONSES, about(case), WAIT)
    assert public["text"] == corrected
    assert (await track(stack, case))["answer"] == corrected


async def test_an_answer_without_approval_goes_straight_to_the_citizen(stack: Stack):
    case = await registered(stack, application_type="sikayet")
    text = "Arıza giderildi, su verilmeye başlandı."
    sent = await act(stack, case, "response", {"outcome": "olumlu", "text": text})
    assert sent.status_code == 202 and sent.json()["status"] == "answer_received"
    _, public = await stack.tap.wait_for(topics.RESPONSES, about(case), WAIT)
    assert public["approved_by"] is None
    await eventually(lambda: _status_is(stack, case, "answered"))
    supervisor = stack.token(Role.supervisor, province=20)
    refused = await stack.tracking.post(
        f"/api/v1/approvals/{case.application_id}/approve", headers=supervisor
    )
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["code"] == "nothing_to_review"


async def _status_is(stack: Stack, case: Case, status: str) -> bool:
    return (await track(stack, case))["status"] == status


# --- return, forward, split --------------------------------------------------------------------


async def pending_item(stack: Stack, case: Case) -> dict[str, Any]:
    officer = stack.token(Role.officer, province=20)

    async def queued() -> dict[str, Any] | None:
        page = await stack.routing.get(
            "/api/v1/routing/pending", params={"application_number": case.number}, headers=officer
        )
        assert page.status_code == 200, page.text
        return next(
            (i for i in page.json()["items"] if i["application_id"] == case.application_id), None
        )

    found: dict[str, Any] = await eventually(queued)
    return found


async def test_an_institution_that_returned_an_application_is_not_suggested_for_it_again(
    stack: Stack,
):
    text = "Mahallemizde su kesintisi var, şebeke suyu akmıyor, su arızası giderilsin."
    case = await registered(stack, text=text)
    # Without the exclusion, water categories of DESKİ other than the one it had would be
    # among the suggestions.
    raw = default_registry().suggest(text, 20, "Merkezefendi", limit=20)
    assert [s for s in raw if s.institution_code == DESKI and s.category_code != "ALT-001"]

    back = await act(stack, case, "return", {"reason": "Şebeke bağlantısı belediyenin işidir."})
    assert back.status_code == 200, back.text
    item = await pending_item(stack, case)
    assert item["returned_by"] == DESKI
    assert item["suggestions"] and DESKI not in {s["institution_code"] for s in item["suggestions"]}

    # The officer routes it to the municipality, which gives it back too: both are left out.
    officer = stack.token(Role.officer, province=20)
    routed = await stack.routing.post(
        f"/api/v1/routing/{case.application_id}/route",
        json={"category_code": "ALT-016"},
        headers=officer,
    )
    assert routed.status_code == 200, routed.text
    case.institution = TOWN
    await eventually(lambda: _held_by_now(stack, case))
    again = await act(stack, case, "return", {"reason": "Bizim görev alanımızda değildir."})
    assert again.status_code == 200, again.text

    async def both_left_out() -> bool:
        item = await pending_item(stack, case)
        return item["returned_by"] == TOWN

    await eventually(both_left_out)
    file = await stack.routing_app.state.store.get(case.application_id)
    assert file.excluded_institutions == {DESKI, TOWN}
    item = await pending_item(stack, case)
    assert not {DESKI, TOWN} & {s["institution_code"] for s in item["suggestions"]}


async def test_a_forward_moves_the_application_to_the_other_institutions_topic_and_list(
    stack: Stack,
):
    case = await registered(stack)
    unknown = await act(
        stack, case, "forward", {"institution_code": "YOK-BOYLE", "reason": "Deneme gerekçesi"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "institution_code"
    itself = await act(
        stack, case, "forward", {"institution_code": DESKI, "reason": "Deneme gerekçesi"}
    )
    assert itself.status_code == 422

    started = time.monotonic()
    moved = await act(
        stack,
        case,
        "forward",
        {"institution_code": TOWN, "reason": "Yol çalışması belediyenindir."},
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["status"], moved.json()["stage"]) == ("returned", "forwarded")
    _, assignment = await stack.tap.wait_for(topics.institution_topic(TOWN), about(case), WAIT)
    took = time.monotonic() - started
    assert assignment["institution_code"] == TOWN and assignment["category_code"] == "ALT-001"
    assert assignment["application_number"] == case.number
    _, status = await stack.tap.wait_for(topics.STATUS, about(case, status="returned"), WAIT)
    assert status["forward_to"] == TOWN and status["institution_code"] == DESKI
    _, routed = await stack.tap.wait_for(topics.ROUTED, about(case, institution_code=TOWN), WAIT)
    assert routed["routed_by"] == "institution"
    print(f"\nforward → {TOWN} topic: {took * 1000:.0f} ms")

    case.institution = TOWN
    await eventually(lambda: _held_by_now(stack, case))
    gone = await stack.tracking.get(
        f"/api/v1/institutions/{DESKI}/applications",
        params={"q": case.number, "active": "true"},
        headers=stack.staff(DESKI),
    )
    assert gone.json()["total"] == 0
    citizen = await track(stack, case)
    forwarded = [t for t in citizen["timeline"] if t.get("step") == "forwarded"]
    assert forwarded and forwarded[0]["detail"] == "Merkezefendi Belediyesi"
    file = await stack.routing_app.state.store.get(case.application_id)
    assert file.excluded_institutions == {DESKI}


async def test_a_split_application_is_answered_in_parts_with_an_overall_outcome(stack: Stack):
    case = await registered(stack, text="Su kesik ve sokağımızdaki yol çöktü.")
    one = await act(
        stack, case, "split", {"parts": [{"institution_code": DESKI, "note": "Su kesintisi"}]}
    )
    assert one.status_code == 422 and one.json()["errors"][0]["field"] == "parts"
    bad = await act(
        stack,
        case,
        "split",
        {
            "parts": [
                {"institution_code": DESKI, "note": "Su kesintisi"},
                {"institution_code": "YOK", "note": "Çöken yol"},
            ]
        },
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "parts.1.institution_code"

    parts = [
        {"institution_code": DESKI, "note": "Su kesintisi"},
        {"category_code": "ULS-006", "note": "Çöken yol"},
    ]
    started = time.monotonic()
    split = await act(stack, case, "split", {"parts": parts})
    assert split.status_code == 200, split.text
    assert (split.json()["status"], split.json()["stage"]) == ("returned", "split")
    first = Case(f"{case.application_id}.1", f"{case.number}/1", case.phone, DESKI)
    second = Case(f"{case.application_id}.2", f"{case.number}/2", case.phone, TOWN)
    for part in (first, second):
        _, assignment = await stack.tap.wait_for(
            topics.institution_topic(part.institution), about(part), WAIT
        )
        assert assignment["application_number"] == part.number
    print(f"\nsplit → both parts on their topics: {(time.monotonic() - started) * 1000:.0f} ms")
    await eventually(lambda: _held_by_now(stack, first))
    await eventually(lambda: _held_by_now(stack, second))
    shown = (await detail(stack, first)).json()
    assert shown["parent_id"] == case.application_id and shown["part_note"] == "Su kesintisi"
    again = await act(
        stack,
        first,
        "split",
        {
            "parts": [
                {"institution_code": DESKI, "note": "a b c"},
                {"institution_code": TOWN, "note": "d e f"},
            ]
        },
    )
    assert again.status_code == 409 and again.json()["errors"][0]["code"] == "not_splittable"

    citizen = await track(stack, case)
    assert [p["application_number"] for p in citizen["parts"]] == [first.number, second.number]
    assert citizen["timeline"][-1]["step"] == "split" and citizen["timeline"][-1]["detail"] == "2"

    water = "Su verildi, arıza giderildi."
    road = "Yol yenileme programımızda yer almamaktadır."
    ok = await act(stack, first, "response", {"outcome": "olumlu", "text": water})
    assert ok.status_code == 202, ok.text
    no = await act(stack, second, "response", {"outcome": "olumsuz", "text": road})
    assert no.status_code == 202, no.text

    await eventually(lambda: _status_is(stack, case, "answered"))
    citizen = await track(stack, case)
    assert citizen["outcome"] == "kismen_olumlu"
    assert water in citizen["answer"] and road in citizen["answer"]
    assert [p["outcome"] for p in citizen["parts"]] == ["olumlu", "olumsuz"]
    page = await stack.tracking.get(
        "/takip", params={"number": case.number, "phone_last4": case.last4}
    )
    assert "Başvurunuzun bölümleri" in page.text and "Kısmen olumlu" in page.text
    assert first.number in page.text and "Bölümlere ayrıldı (2 bölüm)" in page.text
    _, sms = await stack.tap.wait_for(
        topics.NOTIFICATION_REQUESTS,
        lambda b: b.get("idempotency_key") == f"{case.application_id}:answered:sms",
        WAIT,
    )
    assert sms["params"]["outcome_label"] == "kısmen olumlu"
    _, overall = await stack.tap.wait_for(topics.RESPONSES, about(case), WAIT)
    assert overall["outcome"] == "kismen_olumlu"
    await stack.tap.caught_up()

    # The citizen hears once, about the whole: no SMS for the parts (their institutions get
    # routing's e-mail, as for any application).
    def part_sms(body: dict[str, Any]) -> bool:
        key = str(body.get("idempotency_key", ""))
        return body.get("channel") == "sms" and key.startswith(f"{case.application_id}.")

    assert stack.tap.count(topics.NOTIFICATION_REQUESTS, part_sms) == 0
    # A part's status events say whose part they are, and carry no receipt of their own.
    _, part_status = await stack.tap.wait_for(topics.STATUS, about(first, status="answered"), WAIT)
    assert part_status["parent_application_id"] == case.application_id
    assert part_status["received_at"] is None


async def _held_by_now(stack: Stack, case: Case) -> bool:
    """Routed to `case.institution` (tracking has routing's decision)."""
    found = await detail(stack, case)
    return found.status_code == 200 and found.json()["status"] == "routed"


# --- measured ---------------------------------------------------------------------------------


async def test_forwards_reach_the_new_institutions_topic_within_a_second(stack: Stack):
    """Time from the forward's HTTP answer back to the assignment on the target's topic
    (tracking's write and publish, routing's consumer, its write and publish)."""
    cases = [await registered(stack) for _ in range(10)]
    took: list[float] = []
    for case in cases:
        started = time.monotonic()
        moved = await act(
            stack, case, "forward", {"institution_code": TOWN, "reason": "Ölçüm için aktarma"}
        )
        assert moved.status_code == 200, moved.text
        await stack.tap.wait_for(topics.institution_topic(TOWN), about(case), WAIT)
        took.append((time.monotonic() - started) * 1000)
    took.sort()
    p50, worst = statistics.median(took), took[-1]
    print(
        f"\nforward → institution topic, {len(took)} forwards: p50 {p50:.0f} ms, max {worst:.0f} ms"
    )
    assert p50 < 1000, took


async def test_the_status_page_shows_the_question_and_takes_the_reply(stack: Stack):
    case = await registered(stack)
    question = "Arıza hangi sokakta, kaç numaranın önünde?"
    asked = await act(stack, case, "information-request", {"question": question})
    assert asked.status_code == 200, asked.text
    query = {"number": case.number, "phone_last4": case.last4}
    page = await stack.tracking.get("/takip", params=query)
    assert page.status_code == 200
    assert question in page.text and 'action="/takip/bilgi"' in page.text
    assert "Sizden ek bilgi istendi" in page.text and "test-institution" not in page.text

    empty = await stack.tracking.post("/takip/bilgi", data={**query, "reply": " "})
    assert empty.status_code == 422 and "Cevabınızı yazın" in empty.text
    sent = await stack.tracking.post(
        "/takip/bilgi", data={**query, "reply": "Gül Sokak, 12 numaranın önü."}
    )
    assert sent.status_code == 303
    assert (
        sent.headers["location"].startswith("/takip?")
        and "bilgi=alindi" in sent.headers["location"]
    )
    shown = await stack.tracking.get(sent.headers["location"])
    assert "Ek bilginiz kuruma iletildi" in shown.text and question not in shown.text
    assert "Ek bilginiz alındı" in shown.text
    again = await stack.tracking.post("/takip/bilgi", data={**query, "reply": "Bir şey daha."})
    assert again.status_code == 422 and "sizden beklenen bir bilgi yok" in again.text
    (request,) = (await detail(stack, case)).json()["information_requests"]
    assert request["reply"] == "Gül Sokak, 12 numaranın önü."
