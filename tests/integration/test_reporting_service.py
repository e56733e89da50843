"""Reporting against the real broker and database: events on the real topics, in any order and
more than once, become the summary's figures; bad input goes to the dead-letter topic."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.common import topics
from services.common.auth import Role
from services.common.business_days import business_days_between
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationRouted,
    DeadlineEvent,
    Envelope,
    StatusChanged,
)
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.reporting.app import build_app
from tests.conftest import consume_until, fresh_consumer_group, kafka
from tests.support import bearer

pytestmark = pytest.mark.integration

SOURCES = [topics.RECEIVED, topics.ROUTED, topics.STATUS, topics.DEADLINES]


@pytest.fixture(scope="module")
async def reporting(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    group = await fresh_consumer_group(settings.kafka_bootstrap, "reporting", SOURCES)
    app = build_app(settings, consumer_group=group)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://reporting") as http:
            yield http


@pytest.fixture(scope="module")
def staff(settings: Settings) -> dict[str, str]:
    return bearer(settings, Role.supervisor, subject="test-vali-yardimcisi")


async def send(bootstrap: str, items: list[tuple[str, Envelope | bytes, str]]) -> None:
    producer = AIOKafkaProducer(**kafka(bootstrap), acks="all")
    await producer.start()
    try:
        for topic, event, key in items:
            body = event if isinstance(event, bytes) else event.to_bytes()
            await producer.send_and_wait(topic, body, key=key.encode())
    finally:
        await producer.stop()


async def poll_summary(
    http: httpx.AsyncClient, params: dict[str, Any], headers: dict[str, str], ok, timeout=30.0
) -> dict[str, Any]:
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                response = await http.get("/api/v1/reports/summary", params=params, headers=headers)
                assert response.status_code == 200, response.text
                last = response.json()
                if ok(last):
                    return last
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"summary never matched; last: {last}") from None


def a_unique_monday() -> date:
    """A Monday far in the past that no other test run will use for province 20."""
    day = date(2001, 1, 1) + timedelta(days=random.randrange(0, 19 * 365))
    return day - timedelta(days=day.weekday())


def received(app_id: str, at: datetime, channel: str, province: int = 20) -> ApplicationReceived:
    return ApplicationReceived(
        application_id=app_id,
        application_number="20-2001-0000001-0",
        channel=channel,
        application_type="sikayet",
        province_code=province,
        district="Pamukkale",
        subject="Sokak lambası yanmıyor",
        text="Sokağımızdaki lamba bir haftadır yanmıyor.",
        applicant=ApplicantContact(
            tckn_masked="10*******46", first_name="Mehmet", last_name="Kaya", phone="+905551112233"
        ),
        received_at=at,
    )


def routed(app_id: str, at: datetime, code: str, deadline: datetime) -> ApplicationRouted:
    return ApplicationRouted(
        application_id=app_id,
        application_number="20-2001-0000001-0",
        occurred_at=at,
        category_code=f"{code}-01",
        heading_code=code,
        institution_code=code,
        institution_kind="BELEDIYE",
        institution_name=f"{code} Kurumu",
        routed_by="auto",
        deadline_at=deadline,
    )


def answered(app_id: str, at: datetime, outcome: str, received_at: datetime) -> StatusChanged:
    # Tracking gives each (application, status) a deterministic event id.
    return StatusChanged(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{app_id}:answered"),
        application_id=app_id,
        application_number="20-2001-0000001-0",
        status="answered",
        at=at,
        outcome=outcome,
        answered_at=at,
        received_at=received_at,
        province_code=20,
    )


async def test_events_in_any_order_and_repeated_become_the_summary(
    reporting: httpx.AsyncClient, staff: dict[str, str], settings: Settings
):
    monday = a_unique_monday()
    t0 = datetime.combine(monday, time(10, 0), tzinfo=ISTANBUL)
    deadline = datetime.combine(monday + timedelta(days=9), time(23, 59, 59), tzinfo=ISTANBUL)
    tag = uuid.uuid4().hex[:8]
    a, b, c, d = (f"rep-{tag}-{x}" for x in "abcd")
    outside_window, other_province = f"rep-{tag}-e", f"rep-{tag}-f"
    ans_a, ans_b, ans_d = t0 + timedelta(days=2), t0 + timedelta(days=15), t0 + timedelta(days=4)
    S, R, T, D = topics.STATUS, topics.ROUTED, topics.RECEIVED, topics.DEADLINES
    items: list[tuple[str, Envelope | bytes, str]] = [
        # a: on time, olumlu; its answer is delivered three times.
        (T, received(a, t0, "web"), a),
        (R, routed(a, t0 + timedelta(minutes=1), "INSTA", deadline), a),
        (S, answered(a, ans_a, "olumlu", t0), a),
        (S, answered(a, ans_a, "olumlu", t0), a),
        # b: answered late, olumsuz.
        (T, received(b, t0, "counter"), b),
        (R, routed(b, t0 + timedelta(minutes=1), "INSTA", deadline), b),
        (S, answered(b, ans_b, "olumsuz", t0), b),
        # c: still open, and tracking said its deadline was missed.
        (T, received(c, t0 + timedelta(days=1), "edevlet"), c),
        (R, routed(c, t0 + timedelta(days=1), "INSTB", deadline), c),
        (
            D,
            DeadlineEvent(
                application_id=c, application_number="n", kind="missed", deadline_at=deadline
            ),
            c,
        ),
        # d: the answer arrives before the application itself and before its routing.
        (S, answered(d, ans_d, "kismen_olumlu", t0), d),
        (R, routed(d, t0 + timedelta(minutes=3), "INSTB", deadline), d),
        (T, received(d, t0, "web"), d),
        # Outside the question: the day after the window, and another province.
        (T, received(outside_window, t0 + timedelta(days=7), "web"), outside_window),
        (T, received(other_province, t0, "web", province=48), other_province),
        # Redelivered after everything else.
        (S, answered(a, ans_a, "olumlu", t0), a),
        (S, answered(b, ans_b, "olumsuz", t0), b),
    ]
    await send(settings.kafka_bootstrap, items)

    params = {
        "province_code": 20,
        "from": monday.isoformat(),
        "to": (monday + timedelta(days=6)).isoformat(),
    }
    summary = await poll_summary(
        reporting,
        params,
        staff,
        # d's answer alone already places it; wait for its receipt (the channel) too.
        lambda s: (
            s["total"] == 4
            and s["answered"] == 3
            and len(s["by_institution"]) == 2
            and all(c["channel"] for c in s["by_channel"])
        ),
    )
    assert summary["outcomes"] == {"olumlu": 1, "olumsuz": 1, "kismen_olumlu": 1}
    assert summary["open"] == 1
    assert summary["overdue"] == 2  # b answered late, c missed its deadline
    assert summary["on_time_ratio"] == round(2 / 3, 4)
    days = [business_days_between(t0, x) for x in (ans_a, ans_b, ans_d)]
    assert summary["mean_response_business_days"] == round(sum(days) / 3, 2)
    by_inst = {i["institution_code"]: i for i in summary["by_institution"]}
    assert by_inst["INSTA"]["total"] == 2 and by_inst["INSTA"]["olumsuz"] == 1
    assert by_inst["INSTA"]["institution_name"] == "INSTA Kurumu"
    assert by_inst["INSTB"]["open"] == 1 and by_inst["INSTB"]["kismen_olumlu"] == 1
    assert {c["channel"]: c["total"] for c in summary["by_channel"]} == {
        "web": 2,
        "counter": 1,
        "edevlet": 1,
    }
    assert {c["category_code"] for c in summary["by_category"]} == {"INSTA-01", "INSTB-01"}
    assert summary["period"] == {"province_code": 20, "from": params["from"], "to": params["to"]}

    wider = dict(params, to=(monday + timedelta(days=7)).isoformat())
    assert (await poll_summary(reporting, wider, staff, lambda s: s["total"] == 5))["open"] == 2

    # The same question narrowed to an institution, and to a district it has no application in.
    insta = await reporting.get(
        "/api/v1/reports/summary", params=dict(params, institution_code="INSTA"), headers=staff
    )
    assert insta.status_code == 200, insta.text
    assert (insta.json()["total"], insta.json()["scope"]["institution_name"]) == (2, "INSTA Kurumu")
    assert [i["institution_code"] for i in insta.json()["by_institution"]] == ["INSTA"]
    elsewhere = await reporting.get(
        "/api/v1/reports/summary", params=dict(params, district="Çivril"), headers=staff
    )
    assert elsewhere.json()["total"] == 0
    pamukkale = await reporting.get(
        "/api/v1/reports/summary", params=dict(params, district="Pamukkale"), headers=staff
    )
    assert pamukkale.json()["total"] == 4
    # c is the one open application past its deadline: the overdue list names it by number.
    assert summary["overdue_list_total"] == 1
    assert summary["overdue_list"][0]["institution_code"] == "INSTB"
    # Trends count by the week and month of receipt; the ranking by the share on time.
    assert sum(w["received"] for w in summary["trends"]["weekly"]) == 4
    assert [r["institution_code"] for r in summary["institution_ranking"]] == ["INSTB", "INSTA"]
    # An institution reads its own figures only.
    institution = bearer(settings, Role.institution, subject="insta", institution="INSTA")
    own = await reporting.get("/api/v1/reports/summary", params=params, headers=institution)
    assert own.status_code == 200 and own.json()["total"] == 2
    for secret in ("Mehmet", "Kaya", "+905551112233", "Sokak lambası", "lamba"):
        assert secret not in own.text


async def test_bad_events_go_to_the_dead_letter_topic(
    reporting: httpx.AsyncClient, settings: Settings
):
    tag = uuid.uuid4().hex[:8]
    garbage, bad_province = f"rep-{tag}-garbage", f"rep-{tag}-p99"
    t0 = datetime(2003, 3, 3, 10, tzinfo=ISTANBUL)
    await send(
        settings.kafka_bootstrap,
        [
            (topics.RECEIVED, b"{not json", garbage),
            (topics.RECEIVED, received(bad_province, t0, "web", province=99), bad_province),
        ],
    )
    letters = {}
    for key in (garbage, bad_province):
        letters[key] = await consume_until(
            settings.kafka_bootstrap,
            topics.dlq(topics.RECEIVED),
            lambda m, k=key: (
                m.get("key") == k and str(m.get("consumer", "")).startswith("reporting")
            ),
            timeout=30,
        )
    assert letters[garbage]["error_type"] == "invalid_message"
    assert letters[bad_province]["error_type"] == "unprocessable"
    assert "99" in letters[bad_province]["reason"]


async def test_bad_questions_are_answered_in_turkish(
    reporting: httpx.AsyncClient, staff: dict[str, str], settings: Settings
):
    url = "/api/v1/reports/summary"
    backwards = await reporting.get(
        url, params={"from": "2024-03-10", "to": "2024-03-01"}, headers=staff
    )
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "from"
    assert "sonra olamaz" in backwards.json()["errors"][0]["message"]

    bad_day = await reporting.get(url, params={"from": "2024-02-30"}, headers=staff)
    assert bad_day.status_code == 422
    assert "YYYY-AA-GG" in bad_day.json()["errors"][0]["message"]

    for plate in ("0", "82", "abc"):
        response = await reporting.get(url, params={"province_code": plate}, headers=staff)
        assert response.status_code == 422, plate
        assert response.json()["errors"][0]["field"] == "province_code"

    assert (await reporting.get(url)).status_code == 401
    # An institution asking for another one's figures, and a province's staff for another
    # province's, are refused, in Turkish.
    institution = bearer(settings, Role.institution, subject="deski", institution="X1")
    other = await reporting.get(url, params={"institution_code": "X2"}, headers=institution)
    assert other.status_code == 403
    assert "kendi kurumunuzun" in other.json()["errors"][0]["message"]
    izmir = bearer(settings, Role.supervisor, subject="izmir", province=35)
    denizli = await reporting.get(url, params={"province_code": 20}, headers=izmir)
    assert denizli.status_code == 403
    assert "kendi ilinizin" in denizli.json()["errors"][0]["message"]
    assert (await reporting.get(url, headers=izmir)).json()["scope"]["province_code"] == 35
    admin = bearer(settings, Role.admin, subject="yonetici")
    assert (
        await reporting.get(url, params={"province_code": 35}, headers=admin)
    ).status_code == 200
    bad_code = await reporting.get(url, params={"institution_code": "no spaces"}, headers=staff)
    assert bad_code.status_code == 422
    assert bad_code.json()["errors"][0]["field"] == "institution_code"
    officer = bearer(settings, Role.officer, subject="memur")
    assert (
        await reporting.get(
            url,
            params={"province_code": 20, "from": "1990-01-01", "to": "1990-01-01"},
            headers=officer,
        )
    ).json()["total"] == 0


async def test_exports_and_chronic_problems_through_the_api(
    reporting: httpx.AsyncClient, staff: dict[str, str], settings: Settings
):
    monday = a_unique_monday()
    t0 = datetime.combine(monday, time(11, 0), tzinfo=ISTANBUL)
    deadline = t0 + timedelta(days=9)
    tag = uuid.uuid4().hex[:8]
    apps = [f"exp-{tag}-{i}" for i in range(3)]
    items: list[tuple[str, Envelope | bytes, str]] = []
    for i, app in enumerate(apps):
        items.append((topics.RECEIVED, received(app, t0 + timedelta(hours=i), "web"), app))
        items.append((topics.ROUTED, routed(app, t0, "EXPKURUM", deadline), app))
    items.append((topics.STATUS, answered(apps[0], t0 + timedelta(days=1), "olumlu", t0), apps[0]))
    await send(settings.kafka_bootstrap, items)
    params = {"from": monday.isoformat(), "to": (monday + timedelta(days=6)).isoformat()}
    await poll_summary(reporting, params, staff, lambda s: s["total"] == 3 and s["answered"] == 1)

    csv_answer = await reporting.get(
        "/api/v1/reports/export.csv", params=dict(params, table="by_institution"), headers=staff
    )
    assert csv_answer.status_code == 200, csv_answer.text
    assert csv_answer.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''" in csv_answer.headers["content-disposition"]
    text = csv_answer.content.decode("utf-8-sig")
    header, row = text.splitlines()[:2]
    assert header.startswith("Kurum") and ";" in header
    assert row.startswith("EXPKURUM;EXPKURUM Kurumu;BELEDIYE;3;1;")

    bad_table = await reporting.get(
        "/api/v1/reports/export.csv", params=dict(params, table="yok"), headers=staff
    )
    assert bad_table.status_code == 422 and bad_table.json()["errors"][0]["field"] == "table"

    xlsx = await reporting.get("/api/v1/reports/export.xlsx", params=params, headers=staff)
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"

    pdf = await reporting.get(
        "/api/v1/reports/monthly.pdf", params={"month": monday.strftime("%Y-%m")}, headers=staff
    )
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    bad_month = await reporting.get(
        "/api/v1/reports/monthly.pdf", params={"month": "2026-13"}, headers=staff
    )
    assert bad_month.status_code == 422 and bad_month.json()["errors"][0]["field"] == "month"

    chronic = await reporting.get("/api/v1/reports/chronic", headers=staff)
    assert chronic.status_code == 200 and isinstance(chronic.json()["problems"], list)

    # The dashboard's session cookie opens the exports too; nothing opens them without one.
    assert (await reporting.get("/api/v1/reports/export.xlsx", params=params)).status_code == 401
    token = staff["Authorization"].removeprefix("Bearer ")
    form = await reporting.get("/giris")  # sets the login nonce its CSRF token is bound to
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
    assert csrf is not None, form.text
    login = await reporting.post(
        "/giris",
        data={"token": token, "next": "/pano", "csrf": csrf.group(1)},
        headers={"Origin": "http://reporting"},
    )
    assert login.status_code == 303, login.text
    with_cookie = await reporting.get(
        "/api/v1/reports/export.csv", params=dict(params, table="by_channel")
    )
    assert with_cookie.status_code == 200
    reporting.cookies.clear()
