"""The citizen's rating against the real broker and database: the answer SMS carries the signed
link, the page it opens takes one rating per answered application, the rating is announced on
`acikkapi.ratings` through tracking's outbox (also when the process dies before publishing),
and reporting counts it per institution and overall."""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.common import topics
from services.common.application_number import format_number
from services.common.auth import Role
from services.common.events import ApplicantContact, ApplicationReceived, ApplicationRouted
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.reporting.app import build_app as build_reporting
from services.tracking import rating
from services.tracking.app import build_app as build_tracking
from tests import support
from tests.conftest import Tap, fresh_consumer_group, produce
from tests.support import bearer

pytestmark = pytest.mark.integration

TRACKING_READS = [topics.RECEIVED, topics.ROUTED, topics.RESPONSES, topics.NOTIFICATION_RESULTS]
TRACKING_WRITES = [topics.STATUS, topics.DEADLINES, topics.NOTIFICATION_REQUESTS, topics.RATINGS]
REPORTING_READS = [topics.RECEIVED, topics.ROUTED, topics.STATUS, topics.DEADLINES, topics.RATINGS]
WAIT = 40.0
ALREADY = "Bu başvuru için değerlendirmeniz daha önce alındı."


@dataclass
class Stack:
    tracking: httpx.AsyncClient
    reporting: httpx.AsyncClient
    tracking_app: Any
    settings: Settings
    tap: Tap


@pytest.fixture(scope="module")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    bootstrap = settings.kafka_bootstrap
    tracking_group = await fresh_consumer_group(
        bootstrap, "tracking", TRACKING_READS, TRACKING_WRITES
    )
    reporting_group = await fresh_consumer_group(bootstrap, "reporting", REPORTING_READS)
    tracking_app = build_tracking(settings, consumer_group=tracking_group)
    reporting_app = build_reporting(settings, consumer_group=reporting_group)
    async with (
        tracking_app.router.lifespan_context(tracking_app),
        reporting_app.router.lifespan_context(reporting_app),
        Tap(bootstrap, [topics.NOTIFICATION_REQUESTS, topics.RATINGS]) as tap,
    ):
        for app in (tracking_app, reporting_app):
            await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=tracking_app), base_url="http://tracking"
            ) as tracking,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=reporting_app), base_url="http://reporting"
            ) as reporting,
        ):
            yield Stack(tracking, reporting, tracking_app, settings, tap)


@dataclass
class Case:
    application_id: str
    number: str
    phone: str
    institution: str


def new_case() -> Case:
    return Case(
        application_id=str(uuid.uuid4()),
        number=format_number(20, 2026, random.randint(1, 9_999_999)),
        phone=f"+90532{random.randint(0, 9_999_999):07d}",
        institution=f"PUAN-{uuid.uuid4().hex[:8].upper()}",
    )


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = WAIT) -> Any:
    return await support.eventually(check, timeout)


async def registered(stack: Stack, case: Case) -> None:
    """The application on the real topics as intake and routing put it there, and in
    tracking's records as routed."""
    now = datetime.now(UTC)
    received = ApplicationReceived(
        application_id=case.application_id,
        application_number=case.number,
        producer="test-intake",
        channel="web",
        application_type="sikayet",
        province_code=20,
        district="Merkezefendi",
        subject="Sokak lambası yanmıyor",
        text="Sokağımızdaki lamba bir haftadır yanmıyor.",
        applicant=ApplicantContact(
            tckn_masked="10*******46", first_name="Ayşe", last_name="Yılmaz", phone=case.phone
        ),
        received_at=now,
    )
    routed = ApplicationRouted(
        application_id=case.application_id,
        application_number=case.number,
        producer="test-routing",
        category_code="ALT-001",
        heading_code="ALT",
        institution_code=case.institution,
        institution_kind="BELEDIYE",
        institution_name="Puan Belediyesi",
        routed_by="auto",
        deadline_at=now + timedelta(days=9),
    )
    bootstrap = stack.settings.kafka_bootstrap
    for topic, event in [(topics.RECEIVED, received), (topics.ROUTED, routed)]:
        await produce(bootstrap, topic, event.to_bytes(), key=case.application_id)

    async def routed_with_facts() -> bool:
        reply = await stack.tracking.get(
            f"/api/v1/track/{case.number}", params={"phone_last4": case.phone[-4:]}
        )
        return reply.status_code == 200 and reply.json()["status"] == "routed"

    await eventually(routed_with_facts)


async def answered(stack: Stack, case: Case) -> str:
    """The institution answers; returns the rating link of the answer SMS."""
    await registered(stack, case)
    url = f"/api/v1/institutions/{case.institution}/applications/{case.application_id}/response"
    reply = await stack.tracking.post(
        url,
        json={"outcome": "kismen_olumlu", "text": "Lamba değiştirildi, kablo yenilenecek."},
        headers=bearer(stack.settings, Role.institution, institution=case.institution),
    )
    assert reply.status_code == 202, reply.text
    key = f"{case.application_id}:answered:sms"
    _, sms = await stack.tap.wait_for(
        topics.NOTIFICATION_REQUESTS, lambda b: b.get("idempotency_key") == key, timeout=WAIT
    )
    link = sms["params"]["rating_url"]
    assert isinstance(link, str)
    return link


def path_of(link: str) -> str:
    return httpx.URL(link).path


def rated_event(case: Case) -> Callable[[dict[str, Any]], bool]:
    return lambda body: body.get("application_id") == case.application_id


async def test_an_answer_is_rated_once_through_the_sms_link_and_reporting_counts_it(stack):
    case = new_case()
    link = await answered(stack, case)
    base = stack.settings.public_tracking_url.rsplit("/", 1)[0]
    assert re.fullmatch(re.escape(base) + r"/p/[0-9a-hjkmnp-tv-z]{16}", link), link

    page = await stack.tracking.get(path_of(link))
    assert page.status_code == 200, page.text
    html = page.text
    assert f"20-2026-••••{case.number[-5:]}" in html and case.number not in html
    assert "Kısmen olumlu" in html and "Puan Belediyesi" in html
    assert len(re.findall(r'<input type="radio" id="puan-[1-5]" name="rating"', html)) == 5
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "Ayşe" not in html and case.phone[-4:] not in html

    saved = await stack.tracking.post(path_of(link), data={"rating": "4", "comment": "Sağ olun."})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{path_of(link)}?durum=kaydedildi"
    thanks = await stack.tracking.get(saved.headers["location"])
    assert "Değerlendirmeniz alındı. Teşekkür ederiz." in thanks.text
    assert 'id="verilen-puan">4 / 5' in thanks.text and "<form" not in thanks.text

    again = await stack.tracking.post(path_of(link), data={"rating": "1"})
    assert again.status_code == 409
    assert ALREADY in again.text and "<form" not in again.text
    reopened = await stack.tracking.get(path_of(link))
    assert ALREADY in reopened.text

    _, event = await stack.tap.wait_for(topics.RATINGS, rated_event(case), timeout=WAIT)
    assert event["event_type"] == "application.rated" and event["rating"] == 4
    assert event["application_number"] == case.number
    assert event["institution_code"] == case.institution
    assert (event["category_code"], event["province_code"]) == ("ALT-001", 20)
    assert "comment" not in event and "Sağ olun" not in str(event)

    staff = bearer(stack.settings, Role.supervisor, subject="test-vali-yardimcisi")

    async def counted() -> dict[str, Any] | None:
        reply = await stack.reporting.get(
            "/api/v1/reports/summary", params={"province_code": 20}, headers=staff
        )
        assert reply.status_code == 200, reply.text
        rows = [
            i for i in reply.json()["by_institution"] if i["institution_code"] == case.institution
        ]
        return rows[0] if rows and rows[0]["ratings"]["count"] else None

    row = await eventually(counted)
    assert row["ratings"] == {
        "count": 1,
        "average": 4.0,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0},
    }
    # The staff dashboard shows it (the public /rapor carries no institution's figures).
    report = await stack.reporting.get("/pano", params={"province_code": "20"}, headers=staff)
    assert report.status_code == 200 and "Vatandaş memnuniyeti" in report.text
    assert "Puan Belediyesi" in report.text.split('id="memnuniyet"')[1].split("</section>")[0]
    await stack.tap.caught_up()
    assert stack.tap.count(topics.RATINGS, rated_event(case)) == 1


async def test_an_unanswered_application_waits_and_a_bad_rating_is_asked_again(stack):
    case = new_case()
    await registered(stack, case)
    key = rating.key_of(stack.settings.jwt_secret)
    path = f"/p/{rating.sign(key, case.number)}"
    waiting = await stack.tracking.get(path)
    assert waiting.status_code == 200
    assert "Bu başvuru henüz cevaplanmadı" in waiting.text and "<form" not in waiting.text
    early = await stack.tracking.post(path, data={"rating": "5"})
    assert early.status_code == 409 and "henüz cevaplanmadı" in early.text

    link = await answered(stack, case)
    assert path_of(link) == path  # the SMS carries the same link
    none_chosen = await stack.tracking.post(path, data={"comment": "Puan seçmeyi unuttum."})
    assert none_chosen.status_code == 422
    assert "Lütfen 1 ile 5 arasında bir puan seçin." in none_chosen.text
    assert "Puan seçmeyi unuttum." in none_chosen.text  # the comment is kept for the retry
    too_long = await stack.tracking.post(path, data={"rating": "3", "comment": "ğ" * 501})
    assert too_long.status_code == 422 and "en çok 500 karakter" in too_long.text
    assert (await stack.tracking.post(path, data={"rating": "3"})).status_code == 303


@pytest.mark.parametrize(
    "token",
    ["0000000000000000", "kisa", "ehyhfac9z3n0mw9!", "ehyhfac9z3n0mw9a-fazla-uzun"],
)
async def test_an_invalid_or_altered_link_gets_a_plain_turkish_404(stack, token):
    reply = await stack.tracking.get(f"/p/{token}")
    assert reply.status_code == 404
    assert "Bu değerlendirme bağlantısı geçersiz." in reply.text
    assert "<form" not in reply.text and "Traceback" not in reply.text
    posted = await stack.tracking.post(f"/p/{token}", data={"rating": "5"})
    assert posted.status_code == 404


async def test_a_changed_character_of_a_real_link_is_refused(stack):
    case = new_case()
    link = await answered(stack, case)
    token = path_of(link).rsplit("/", 1)[1]
    altered = token[:7] + ("2" if token[7] != "2" else "3") + token[8:]
    reply = await stack.tracking.post(f"/p/{altered}", data={"rating": "1"})
    assert reply.status_code == 404
    assert (await stack.tracking.get(path_of(link))).status_code == 200
    assert "<form" in (await stack.tracking.get(path_of(link))).text  # still not rated


async def test_a_rating_stored_by_a_process_that_died_before_publishing_is_relayed(stack):
    """The rating and its event are one insert: what the writer never published, the relay of
    any tracking process publishes once the outbox is due."""
    case = new_case()
    await answered(stack, case)
    tracking_app = stack.tracking_app
    application = await tracking_app.state.tracking.store.get(case.application_id)
    store = tracking_app.state.ratings.store
    event = rating.rated_event(application, 2, datetime.now(UTC))
    await store.add(event, "Geç cevap verildi.")  # ... and the process dies here

    doc = await store.ratings.find_one({"_id": case.application_id})
    assert doc["outbox"] and doc["rating"] == 2
    cipher = PiiCipher(stack.settings.pii_key_bytes())
    assert (
        "Geç cevap" not in str(doc) and cipher.decrypt(doc["comment_enc"]) == "Geç cevap verildi."
    )
    assert stack.tap.count(topics.RATINGS, rated_event(case)) == 0

    relayed = await store.outbox.relay_once(now=time.time() + 60)
    assert relayed >= 1
    _, on_topic = await stack.tap.wait_for(topics.RATINGS, rated_event(case), timeout=WAIT)
    assert on_topic["rating"] == 2 and on_topic["event_id"] == str(event.event_id)
    cleared = await store.ratings.find_one({"_id": case.application_id})
    assert cleared["outbox"] == []
    link_path = f"/p/{rating.sign(rating.key_of(stack.settings.jwt_secret), case.number)}"
    assert ALREADY in (await stack.tracking.get(link_path)).text
