"""Tracking against the real broker and database: events on the real topics become statuses,
institutions see and answer their applications, citizens look them up, and the answer SMS
closes the loop."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.common import topics
from services.common.application_number import format_number
from services.common.auth import Role
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationResponse,
    ApplicationRouted,
    NotificationResult,
    Outcome,
    Priority,
)
from services.common.pii import unseal
from services.common.settings import Settings
from services.tracking.app import build_app
from tests import support
from tests.conftest import ServiceUnderTest, consume_until, fresh_consumer_group, produce

pytestmark = pytest.mark.integration

INPUTS = [topics.RECEIVED, topics.ROUTED, topics.RESPONSES, topics.NOTIFICATION_RESULTS]
OUTPUTS = [topics.STATUS, topics.DEADLINES, topics.NOTIFICATION_REQUESTS]

# Generous: the dev broker is shared, and other runs' traffic may queue ahead of ours.
WAIT = 40.0

FIRST_NAME, LAST_NAME = "Zeynep", "Karaağaçlı"
TCKN_MASKED = "38*******26"


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[ServiceUnderTest]:
    group = await fresh_consumer_group(settings.kafka_bootstrap, "tracking", INPUTS, OUTPUTS)
    app = build_app(settings, consumer_group=group, watch_interval=0.5)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracking") as http:
            yield ServiceUnderTest(http, settings)


@dataclass
class Case:
    """One fresh application, with its own institution so nothing else shows in its list."""

    application_id: str
    number: str
    phone: str
    institution: str

    @property
    def last4(self) -> str:
        return self.phone[-4:]


def new_case() -> Case:
    phone = f"+90532{random.randint(0, 9_999_999):07d}"
    return Case(
        application_id=str(uuid.uuid4()),
        number=format_number(20, 2026, random.randint(1, 9_999_999)),
        phone=phone,
        institution=f"TEST-{uuid.uuid4().hex[:8].upper()}",
    )


def received_event(
    case: Case, received_at: datetime | None = None, priority: Priority | None = None
) -> ApplicationReceived:
    return ApplicationReceived(
        priority=priority,
        application_id=case.application_id,
        application_number=case.number,
        producer="test-intake",
        channel="web",
        application_type="sikayet",
        province_code=20,
        district="Merkezefendi",
        subject="Kaldırım bozuk",
        text="Okul önündeki kaldırım taşları kırık, çocuklar düşüyor.",
        applicant=ApplicantContact(
            tckn_masked=TCKN_MASKED, first_name=FIRST_NAME, last_name=LAST_NAME, phone=case.phone
        ),
        received_at=received_at or datetime.now(UTC),
    )


def routed_event(case: Case, deadline_at: datetime | None = None) -> ApplicationRouted:
    return ApplicationRouted(
        application_id=case.application_id,
        application_number=case.number,
        producer="test-routing",
        category_code="YOL-KALDIRIM",
        heading_code="ALTYAPI",
        institution_code=case.institution,
        institution_kind="BELEDIYE",
        institution_name="Test Belediyesi",
        routed_by="auto",
        deadline_at=deadline_at or datetime.now(UTC) + timedelta(days=9),
    )


async def registered(
    svc: ServiceUnderTest, case: Case, *, routed_first: bool = False, **kwargs: Any
) -> None:
    """Put the application on the real topics the way intake and routing would."""
    bootstrap = svc.settings.kafka_bootstrap
    received = (
        topics.RECEIVED,
        received_event(case, kwargs.get("received_at"), kwargs.get("priority")),
    )
    routed = (topics.ROUTED, routed_event(case, kwargs.get("deadline_at")))
    for topic, event in [routed, received] if routed_first else [received, routed]:
        await produce(bootstrap, topic, event.to_bytes(), key=case.application_id)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = WAIT) -> Any:
    return await support.eventually(check, timeout)


async def track(svc: ServiceUnderTest, case: Case, last4: str | None = None) -> httpx.Response:
    return await svc.http.get(
        f"/api/v1/track/{case.number}", params={"phone_last4": last4 or case.last4}
    )


async def status_of(svc: ServiceUnderTest, case: Case) -> str | None:
    reply = await track(svc, case)
    return reply.json()["status"] if reply.status_code == 200 else None


def status_event(case: Case, status: str) -> Callable[[dict], bool]:
    return lambda body: (
        body.get("application_id") == case.application_id and (body.get("status") == status)
    )


async def test_the_institution_sees_its_application_and_opening_it_is_an_announced_act(service):
    case = new_case()
    await registered(service, case)
    mine = service.token(Role.institution, case.institution)
    url = f"/api/v1/institutions/{case.institution}/applications"

    async def listed() -> dict | None:
        reply = await service.http.get(url, headers=mine)
        assert reply.status_code == 200, reply.text
        items = [i for i in reply.json()["items"] if i["application_id"] == case.application_id]
        # Routing's event may overtake intake's: wait until both are in.
        return items[0] if items and items[0]["district"] else None

    item = await eventually(listed)
    assert item["application_number"] == case.number
    # Reading the list changes nothing: opening is an act of its own.
    assert item["status"] == "routed" and item["stage"] == "new"
    assert item["category_code"] == "YOL-KALDIRIM" and item["district"] == "Merkezefendi"
    assert item["subject"] == "Kaldırım bozuk" and item["overdue"] is False
    assert FIRST_NAME not in json.dumps(item) and case.phone[-7:] not in json.dumps(item)
    again = await service.http.get(url, headers=mine)
    assert [i["status"] for i in again.json()["items"]] == ["routed"]

    opening = await service.http.post(f"{url}/{case.application_id}/open", headers=mine)
    assert opening.status_code == 200, opening.text
    assert opening.json()["status"] == "opened"
    opened = await consume_until(
        service.settings.kafka_bootstrap, topics.STATUS, status_event(case, "opened"), timeout=WAIT
    )
    assert opened["previous_status"] == "routed"
    assert opened["institution_code"] == case.institution

    other = service.token(Role.institution, "BASKA-KURUM")
    refused = await service.http.get(url, headers=other)
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["code"] == "forbidden"
    officer = await service.http.get(url, headers=service.token(Role.officer))
    assert officer.status_code == 403
    anonymous = await service.http.get(url)
    assert anonymous.status_code == 401

    detail = await service.http.get(f"{url}/{case.application_id}", headers=mine)
    assert detail.status_code == 200
    assert [t["status"] for t in detail.json()["timeline"]] == ["received", "routed", "opened"]
    assert detail.json()["opened_by"] == "test-institution"


async def test_an_answer_goes_through_the_topic_the_sms_is_requested_and_the_result_closes_it(
    service,
):
    case = new_case()
    await registered(service, case)
    bootstrap = service.settings.kafka_bootstrap
    mine = service.token(Role.institution, case.institution)
    await eventually(lambda: _is(service, case, "routed"))
    url = f"/api/v1/institutions/{case.institution}/applications/{case.application_id}"

    too_short = await service.http.post(
        f"{url}/response", json={"outcome": "olumlu", "text": "kısa"}, headers=mine
    )
    assert too_short.status_code == 422
    other = await service.http.post(
        f"{url.replace(case.institution, 'BASKA-KURUM')}/response",
        json={"outcome": "olumlu", "text": "Gerekli onarım yapılmıştır."},
        headers=mine,
    )
    assert other.status_code == 403

    answer = "Kaldırım taşları 3 gün içinde yenilenecektir; ekibimiz yönlendirilmiştir."
    reply = await service.http.post(
        f"{url}/response", json={"outcome": "kismen_olumlu", "text": answer}, headers=mine
    )
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"application_id": case.application_id, "status": "answer_received"}

    on_topic = await consume_until(
        bootstrap,
        topics.RESPONSES,
        lambda b: b.get("application_id") == case.application_id,
        timeout=WAIT,
    )
    assert on_topic["institution_code"] == case.institution
    assert on_topic["responded_by"] == "test-institution"
    answered = await consume_until(
        bootstrap, topics.STATUS, status_event(case, "answered"), timeout=WAIT
    )
    assert answered["outcome"] == "kismen_olumlu" and answered["answered_at"]
    # The snapshot reporting reads (intake's facts were in before the answer: see `_is` above).
    assert answered["province_code"] == 20 and answered["channel"] == "web"
    assert answered["district"] == "Merkezefendi" and answered["application_type"] == "sikayet"
    assert answered["institution_code"] == case.institution and answered["deadline_at"]
    key = f"{case.application_id}:answered:sms"
    sms = await consume_until(
        bootstrap,
        topics.NOTIFICATION_REQUESTS,
        lambda b: b.get("idempotency_key") == key,
        timeout=WAIT,
    )
    assert unseal(sms["to"]) == case.phone and sms["template"] == "application_answered"
    assert sms["params"]["outcome_label"] == "kısmen olumlu"
    assert sms["params"]["application_number"] == case.number

    again = await service.http.post(
        f"{url}/response", json={"outcome": "olumlu", "text": answer}, headers=mine
    )
    assert again.status_code == 409

    found = (await track(service, case)).json()
    assert found["status"] == "answered" and found["answer"] == answer
    assert found["outcome"] == "kismen_olumlu"

    result = NotificationResult(
        application_id=case.application_id,
        producer="test-notification",
        idempotency_key=key,
        channel="sms",
        status="sent",
    )
    await produce(bootstrap, topics.NOTIFICATION_RESULTS, result.to_bytes(), key=key)
    await eventually(lambda: _is(service, case, "closed"))
    closed = await consume_until(
        bootstrap, topics.STATUS, status_event(case, "closed"), timeout=WAIT
    )
    assert closed["previous_status"] == "answered"


async def _is(svc: ServiceUnderTest, case: Case, status: str) -> bool:
    return await status_of(svc, case) == status


async def test_the_citizen_look_up_shows_no_personal_data_and_probing_is_fruitless(service):
    case = new_case()
    await registered(service, case, routed_first=True)  # routing overtakes intake
    await eventually(lambda: _is(service, case, "routed"))
    reply = await track(service, case)
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) <= {
        "application_number",
        "status",
        "received_at",
        "deadline_at",
        "overdue",
        "outcome",
        "answer",
        "timeline",
        "deadline_paused",
        "messages",
    }
    assert [t["status"] for t in body["timeline"]] == ["received", "routed"]
    for secret in (case.phone, case.phone[3:], FIRST_NAME, LAST_NAME, TCKN_MASKED, "phone"):
        assert secret not in reply.text
    # With or without hyphens.
    plain = await service.http.get(
        f"/api/v1/track/{case.number.replace('-', '')}", params={"phone_last4": case.last4}
    )
    assert plain.status_code == 200 and plain.json()["application_number"] == case.number

    wrong_phone = await track(service, case, last4="0000" if case.last4 != "0000" else "1111")
    assert wrong_phone.status_code == 404
    assert wrong_phone.json()["errors"][0]["message"].startswith("Başvuru bulunamadı")
    unknown = await service.http.get(
        f"/api/v1/track/{format_number(20, 2026, 1)}", params={"phone_last4": case.last4}
    )
    assert unknown.status_code == 404
    assert unknown.json() == wrong_phone.json()  # the same answer for both

    digits = case.number.replace("-", "")
    bad_check = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    checked = await service.http.get(
        f"/api/v1/track/{bad_check}", params={"phone_last4": case.last4}
    )
    assert checked.status_code == 422
    assert checked.json()["errors"][0]["field"] == "application_number"
    assert "kontrol hanesi" in checked.json()["errors"][0]["message"]
    shapeless = await service.http.get("/api/v1/track/abc", params={"phone_last4": "1234"})
    assert shapeless.status_code == 422
    bad_digits = await service.http.get(
        f"/api/v1/track/{case.number}", params={"phone_last4": "12a4"}
    )
    assert bad_digits.status_code == 422
    assert bad_digits.json()["errors"][0]["field"] == "phone_last4"


async def test_an_escorted_applicant_heads_the_institutions_list_on_every_page(service):
    institution = f"TEST-{uuid.uuid4().hex[:8].upper()}"
    cases = [replace(new_case(), institution=institution) for _ in range(3)]
    # The priority case has the latest deadline: it still comes first. Tracking computes the
    # deadline from the receipt, so the receipts are days apart (a week apart: never the same
    # business day, whatever holidays fall between).
    start = datetime.now(UTC) - timedelta(days=21)
    for n, (case, priority) in enumerate(zip(cases, [None, None, Priority.gazi], strict=True)):
        received_at = start + timedelta(days=7 * n)
        await registered(service, case, received_at=received_at, priority=priority)
    url = f"/api/v1/institutions/{institution}/applications"
    supervisor = service.token(Role.institution, institution)  # (reading opens nothing)

    async def all_three() -> list[dict] | None:
        reply = await service.http.get(url, headers=supervisor)
        items = reply.json()["items"]
        return items if len(items) == 3 and all(i["district"] for i in items) else None

    first_page = await eventually(all_three)
    pages, cursor = [], None
    while True:  # two at a time: the order holds across the cursor
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        reply = (await service.http.get(url, headers=supervisor, params=params)).json()
        pages.extend(reply["items"])
        if not (cursor := reply["next_cursor"]):
            break

    expected = [cases[2].application_id, cases[0].application_id, cases[1].application_id]
    assert [i["application_id"] for i in first_page] == expected
    assert [i["application_id"] for i in pages] == expected
    assert first_page[0]["priority"] == "gazi" and first_page[1]["priority"] is None


async def _listed_as_routed(svc: ServiceUnderTest, case: Case) -> bool:
    """Asked as the institution (reading opens nothing), not on the status page: a look-up
    there before the record exists would count as a guess towards the lock."""
    reply = await svc.http.get(
        f"/api/v1/institutions/{case.institution}/applications",
        headers=svc.token(Role.institution, case.institution),
    )
    items = reply.json().get("items", []) if reply.status_code == 200 else []
    return any(
        i["application_id"] == case.application_id and i["status"] == "routed" for i in items
    )


async def test_guessing_the_phone_digits_is_stopped_after_ten_misses(service):
    case = new_case()
    await registered(service, case)
    await eventually(lambda: _listed_as_routed(service, case))
    wrong = "0000" if case.last4 != "0000" else "1111"
    for _ in range(10):
        assert (await track(service, case, last4=wrong)).status_code == 404
    locked = await track(service, case)
    assert locked.status_code == 429
    assert "çok fazla hatalı deneme" in locked.json()["errors"][0]["message"]


async def test_a_response_from_another_institution_is_dead_lettered_with_the_reason(service):
    case = new_case()
    await registered(service, case)
    await eventually(lambda: _is(service, case, "routed"))
    stranger = ApplicationResponse(
        application_id=case.application_id,
        application_number=case.number,
        producer="test-other-institution",
        institution_code="BASKA-KURUM",
        outcome=Outcome.olumsuz,
        text="Bu bizim işimiz değil ama yine de cevaplıyoruz.",
    )
    bootstrap = service.settings.kafka_bootstrap
    await produce(bootstrap, topics.RESPONSES, stranger.to_bytes(), key=case.application_id)
    letter = await consume_until(
        bootstrap,
        topics.dlq(topics.RESPONSES),
        lambda b: b.get("key") == case.application_id,
        timeout=WAIT,
    )
    assert letter["error_type"] == "unprocessable"
    assert f"assigned to {case.institution}, not to BASKA-KURUM" in letter["reason"]
    assert await status_of(service, case) == "routed"


async def test_the_institution_returns_what_is_not_its_competence(service):
    case = new_case()
    await registered(service, case)
    await eventually(lambda: _is(service, case, "routed"))
    mine = service.token(Role.institution, case.institution)
    url = f"/api/v1/institutions/{case.institution}/applications/{case.application_id}/return"
    reply = await service.http.post(
        url, json={"reason": "Konu il özel idaresinin görev alanındadır."}, headers=mine
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "returned"
    returned = await consume_until(
        service.settings.kafka_bootstrap,
        topics.STATUS,
        status_event(case, "returned"),
        timeout=WAIT,
    )
    assert returned["institution_code"] == case.institution
    assert returned["reason"] == "Konu il özel idaresinin görev alanındadır."
    answer = await service.http.post(
        url.replace("/return", "/response"),
        json={"outcome": "olumlu", "text": "Artık bizde değil ama cevap veriyoruz."},
        headers=mine,
    )
    assert answer.status_code == 404


async def test_a_missed_deadline_is_flagged_and_announced(service):
    case = new_case()
    past = datetime.now(UTC) - timedelta(days=20)
    # Routing first, so the record names the institution from the start (the watcher may run
    # between the two events).
    await registered(
        service, case, routed_first=True, received_at=past, deadline_at=past + timedelta(days=9)
    )
    bootstrap = service.settings.kafka_bootstrap
    missed = await consume_until(
        bootstrap,
        topics.DEADLINES,
        lambda b: b.get("application_id") == case.application_id and b.get("kind") == "missed",
        timeout=30,
    )
    assert missed["institution_code"] == case.institution
    flag = await consume_until(
        bootstrap,
        topics.STATUS,
        lambda b: b.get("application_id") == case.application_id and b.get("overdue") is True,
        timeout=WAIT,
    )
    assert flag["status"] == "routed" and flag["previous_status"] == "routed"
    assert (await track(service, case)).json()["overdue"] is True


async def test_the_status_page_speaks_turkish(service):
    empty = await service.http.get("/takip")
    assert empty.status_code == 200
    assert empty.headers["content-type"].startswith("text/html")
    assert '<html lang="tr">' in empty.text
    assert "Başvuru Takibi" in empty.text and "son 4 hanesi" in empty.text
    # Its one script is its own file: nothing inline (the CSP forbids it), nothing from outside.
    assert empty.text.count("<script") == 1
    assert '<script src="/static/takip.js" defer>' in empty.text
    assert "http://" not in empty.text.replace("http://tracking", "")

    case = new_case()
    await registered(service, case)
    await eventually(lambda: _is(service, case, "routed"))
    page = await service.http.get(
        "/takip", params={"number": case.number, "phone_last4": case.last4}
    )
    assert page.status_code == 200
    assert "Kuruma yönlendirildi" in page.text and "Alındı" in page.text
    assert "Cevap için son gün" in page.text and "Test Belediyesi" in page.text
    assert FIRST_NAME not in page.text and case.phone not in page.text

    missing = await service.http.get(
        "/takip", params={"number": format_number(20, 2026, 2), "phone_last4": "1234"}
    )
    assert missing.status_code == 404 and "Başvuru bulunamadı" in missing.text
    bad = await service.http.get("/takip", params={"number": "20-2026-12", "phone_last4": "12"})
    assert bad.status_code == 422
    assert "biçiminde olmalıdır" in bad.text and "son 4 hanesini" in bad.text
