"""Reporting's pages in Chromium, on the real stack: ten applications of Bekilli reach reporting
through its own Kafka topics (received, routed, answered, a missed deadline, ratings); a
governorship supervisor logs in at /giris with a devtoken, filters the dashboard by district,
institution and period, opens the chronic problems, logs out and reads the public summary.
Every page loads nothing from outside and runs no script; the screenshots go to
docs/screenshots/pano.png, pano-kronik.png and rapor.png."""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Locator, Page, expect

from services.common import topics
from services.common.application_number import MAX_SEQUENCE, format_number
from services.common.auth import Role
from services.common.events import (
    ApplicantContact,
    ApplicationRated,
    ApplicationReceived,
    ApplicationRouted,
    ApplicationType,
    Channel,
    DeadlineEvent,
    Envelope,
    Location,
    Outcome,
    Status,
    StatusChanged,
)
from tests.browser.conftest import LiveService, LiveStack, NewPage, OfflineGuard, screenshot
from tests.conftest import kafka

WAIT = 90.0  # generous: the bus is shared with other runs
DISTRICT = "Bekilli"  # a small district the other tests leave alone: its figures are ours
TOWN = ("BEKILLI-BLD", "Bekilli Belediyesi", "BELEDIYE")
WATER = ("DESKI", "Denizli Su ve Kanalizasyon İdaresi (DESKİ)", "SU_IDARESI")
SCHOOLS = ("BEKILLI-MEM", "Bekilli İlçe Milli Eğitim Müdürlüğü", "MEB")
GARBAGE = ("BEL", "Belediye Hizmetleri", "BEL-001", "Çöp toplama")
PIPES = ("ALT", "Altyapı ve Su", "ALT-002", "Su arızası ve boru patlağı")
SCHOOL = ("EGT", "Eğitim", "EGT-001", "Okul binası bakım ve onarımı")
# The same problem, told by six citizens over five weeks in one neighbourhood.
GARBAGE_TEXTS = (
    "Cumhuriyet Mahallesi'nde çöpler bir haftadır toplanmıyor, konteynerler taştı.",
    "Cumhuriyet Mahallesi Atatürk Caddesi'ndeki çöp konteynerleri günlerdir boşaltılmadı.",
    "Cumhuriyet Mahallesi'nde çöp kamyonu uğramıyor, konteynerlerin çevresi çöp doldu.",
    "Cumhuriyet Mahallesi'nde konteynerler yine boşaltılmadı, çöpler sokağa taştı.",
    "Cumhuriyet Mahallesi Okul Sokak'ta çöpler toplanmadığı için koku var, konteyner taşıyor.",
    "Cumhuriyet Mahallesi'nde çöp toplama aksıyor, konteynerler haftalardır dolu.",
)


@dataclass(frozen=True)
class Case:
    """One application of the scenario, and what becomes of it."""

    institution: tuple[str, str, str]
    heading: tuple[str, str, str, str]
    text: str
    days_ago: int
    answer_after: int | None = None  # days after receipt; None: still open
    outcome: Outcome | None = None
    missed: bool = False
    rating: int | None = None


CASES = (
    # Bekilli Belediyesi: 6 applications, 5 answered (one after its deadline), 1 open and
    # overdue; 3 olumlu, 1 olumsuz, 1 kısmen olumlu; on time 4 of 5 (%80,0); rated 5 and 4.
    Case(TOWN, GARBAGE, GARBAGE_TEXTS[0], 35, 2, Outcome.olumlu, rating=5),
    Case(TOWN, GARBAGE, GARBAGE_TEXTS[1], 28, 12, Outcome.olumlu),  # late: deadline after 9
    Case(TOWN, GARBAGE, GARBAGE_TEXTS[2], 21, missed=True),
    Case(TOWN, GARBAGE, GARBAGE_TEXTS[3], 14, 3, Outcome.olumsuz),
    Case(TOWN, GARBAGE, GARBAGE_TEXTS[4], 13, 1, Outcome.kismen_olumlu, rating=4),
    Case(TOWN, GARBAGE, GARBAGE_TEXTS[5], 6, 2, Outcome.olumlu),
    # DESKİ: 3, two answered olumlu, one still open; the district's schools: 1.
    Case(
        WATER,
        PIPES,
        "Yeni Mahalle'de ana boru patladı, yol su içinde kaldı.",
        20,
        1,
        Outcome.olumlu,
    ),
    Case(WATER, PIPES, "Karaköy girişinde boru patlağı var, su boşa akıyor.", 9, 2, Outcome.olumlu),
    Case(WATER, PIPES, "Çarşı içinde vana arızası nedeniyle su sızıyor.", 2),
    Case(
        SCHOOLS,
        SCHOOL,
        "İlkokulun çatısı akıtıyor, sınıflara su giriyor.",
        16,
        3,
        Outcome.kismen_olumlu,
    ),
)
CHANNELS = (Channel.web, Channel.edevlet, Channel.counter, Channel.mobile)
DEADLINE_DAYS = 9  # seven business days, near enough: every answer "after 12" is late


def _events(case: Case, index: int, now: datetime, year: int) -> list[tuple[str, Envelope]]:
    application_id = str(uuid.uuid4())
    number = format_number(20, year, random.randint(1, MAX_SEQUENCE))
    received_at = now - timedelta(days=case.days_ago, hours=random.randint(0, 3))
    deadline_at = received_at + timedelta(days=DEADLINE_DAYS)
    code, name, kind = case.institution
    heading_code, heading_name, category_code, category_name = case.heading
    phone = f"+90532{random.randint(1_000_000, 9_999_999)}"
    events: list[tuple[str, Envelope]] = [
        (
            topics.RECEIVED,
            ApplicationReceived(
                application_id=application_id,
                application_number=number,
                producer="test-intake",
                channel=CHANNELS[index % len(CHANNELS)],
                application_type=ApplicationType.sikayet if index % 3 else ApplicationType.istek,
                category_code=category_code,
                province_code=20,
                district=DISTRICT,
                subject=case.text[:60],
                text=case.text,
                location=Location(
                    lat=38.23, lon=29.42, address=f"{case.text.split(',')[0]}, Bekilli"
                ),
                applicant=ApplicantContact(
                    tckn_masked="12*******90", first_name="Deniz", last_name="Kaya", phone=phone
                ),
                received_at=received_at,
            ),
        ),
        (
            topics.ROUTED,
            ApplicationRouted(
                application_id=application_id,
                application_number=number,
                producer="test-routing",
                occurred_at=received_at + timedelta(minutes=5),
                category_code=category_code,
                category_name=category_name,
                heading_code=heading_code,
                heading_name=heading_name,
                institution_code=code,
                institution_name=name,
                institution_kind=kind,
                routed_by="auto",
                deadline_at=deadline_at,
            ),
        ),
    ]
    facts: dict[str, Any] = {
        "application_id": application_id,
        "application_number": number,
        "producer": "test-tracking",
        "province_code": 20,
        "district": DISTRICT,
        "institution_code": code,
        "category_code": category_code,
        "received_at": received_at,
        "deadline_at": deadline_at,
    }
    if case.answer_after is not None:
        answered_at = received_at + timedelta(days=case.answer_after)
        events.append(
            (
                topics.STATUS,
                StatusChanged(
                    **facts,
                    status=Status.answered,
                    previous_status=Status.opened,
                    at=answered_at,
                    answered_at=answered_at,
                    outcome=case.outcome,
                    overdue=answered_at > deadline_at,
                ),
            )
        )
    if case.missed:
        events.append(
            (
                topics.DEADLINES,
                DeadlineEvent(
                    application_id=application_id,
                    application_number=number,
                    producer="test-tracking",
                    kind="missed",
                    institution_code=code,
                    deadline_at=deadline_at,
                ),
            )
        )
    if case.rating is not None:
        events.append(
            (
                topics.RATINGS,
                ApplicationRated(
                    application_id=application_id,
                    application_number=number,
                    producer="test-tracking",
                    rating=case.rating,
                    institution_code=code,
                    category_code=category_code,
                    province_code=20,
                    rated_at=received_at + timedelta(days=(case.answer_after or 0) + 1),
                ),
            )
        )
    return events


async def _publish(bootstrap: str, events: list[tuple[str, Envelope]]) -> None:
    producer = AIOKafkaProducer(**kafka(bootstrap), acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(topic, event.to_bytes(), key=str(event.application_id).encode())
            for topic, event in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _summary(reporting: LiveService, **query: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=15) as http:
        answer = await http.get(
            f"{reporting.url}/api/v1/reports/summary",
            params={"province_code": "20", **query},
            headers=reporting.token(Role.supervisor),
        )
        answer.raise_for_status()
        return dict(answer.json())


@pytest.fixture(scope="module")
async def seeded(live: LiveStack) -> dict[str, Any]:
    """The scenario on the bus, and once reporting has folded it, the overdue application's
    number and the start of the period the dashboard is filtered by."""
    reporting = await live.start("reporting")
    now = datetime.now(UTC)
    events: list[tuple[str, Envelope]] = []
    for index, case in enumerate(CASES):
        events += _events(case, index, now, now.year)
    await _publish(live.settings.kafka_bootstrap, events)
    overdue = next(
        e.application_number
        for topic, e in events
        if topic == topics.DEADLINES and isinstance(e, DeadlineEvent)
    )
    deadline = time.monotonic() + WAIT
    while True:
        town = await _summary(reporting, district=DISTRICT, institution_code=TOWN[0])
        district = await _summary(reporting, district=DISTRICT)
        if (town["total"], town["answered"], town["overdue"], town["ratings"]["count"]) == (
            6,
            5,
            2,
            2,
        ) and district["total"] == len(CASES):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"reporting did not fold the scenario: {town} / {district}")
        await asyncio.sleep(0.5)
    return {"overdue": overdue, "from": (now - timedelta(days=40)).date().isoformat()}


async def _devtoken() -> str:
    """A supervisor's token for Denizli, made as README tells a person to make one."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.common.devtoken",
        "--role",
        "supervisor",
        "--province",
        "20",
        stdout=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode().strip()


async def _reload_until(page: Page, locator: Locator, timeout: float = WAIT) -> None:
    """Chronic problems are found as the read model is folded: look again until it shows."""
    deadline = time.monotonic() + timeout
    while not await locator.count():
        if time.monotonic() > deadline:
            raise AssertionError(f"not shown within {timeout}s: {locator}")
        await asyncio.sleep(1.0)
        await page.reload()


def _card(page: Page, label: str) -> Locator:
    return page.locator(".card").filter(has=page.get_by_text(label, exact=True))


async def test_a_supervisor_reads_the_dashboards_and_anyone_the_public_summary(
    live: LiveStack, page: Page, new_page: NewPage, offline: OfflineGuard, seeded: dict[str, Any]
) -> None:
    reporting = await live.start("reporting")
    await page.set_viewport_size({"width": 1280, "height": 900})

    # Not logged in: the dashboard sends the browser to the login, which comes back to it.
    answer = await page.goto(f"{reporting.url}/pano")
    assert answer is not None and answer.status == 200
    assert page.url == f"{reporting.url}/giris?next=%2Fpano"
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    await expect(page.get_by_role("heading", name="Personel girişi")).to_be_visible()
    await expect(page.get_by_text("--role supervisor --province 20")).to_be_visible()

    # A wrong token first: a Turkish message, no session.
    await page.get_by_role("textbox", name="Oturum anahtarı").fill("yanlis-anahtar")
    await page.get_by_role("button", name="Giriş yap").click()
    await expect(page.get_by_role("alert")).to_contain_text("geçersiz ya da süresi dolmuş")
    # Only the login form's CSRF nonce, kept for /giris alone; no session.
    [nonce] = await page.context.cookies()
    assert (nonce["name"], nonce["path"], nonce["httpOnly"]) == ("ak_giris", "/giris", True)

    await page.get_by_role("textbox", name="Oturum anahtarı").fill(await _devtoken())
    await page.get_by_role("button", name="Giriş yap").click()
    await expect(page).to_have_url(f"{reporting.url}/pano")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Başvuru panosu: Denizli")
    [cookie] = [c for c in await page.context.cookies() if c["name"] != "ak_giris"]
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("ak_oturum", True, "Strict")

    # Filter by district, institution and period.
    filters = page.get_by_role("form", name="Süzgeçler")
    await filters.get_by_label("İlçe", exact=True).select_option(DISTRICT)
    await filters.get_by_label("Kurum", exact=True).select_option(label=TOWN[1])
    await filters.get_by_label("Başlangıç (dahil)").fill(seeded["from"])
    await filters.get_by_role("button", name="Göster").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Başvuru panosu: Denizli · Bekilli · Bekilli Belediyesi"
    )
    assert "district=Bekilli" in page.url and "institution_code=BEKILLI-BLD" in page.url
    await expect(_card(page, "Toplam başvuru")).to_contain_text("6")
    await expect(_card(page, "Yanıtlanan")).to_contain_text("5")
    await expect(_card(page, "Süresi aşılan")).to_contain_text("2")
    await expect(_card(page, "Süresinde yanıt payı")).to_contain_text("%80,0")
    await expect(_card(page, "Vatandaş memnuniyeti")).to_contain_text("4,50")
    await expect(
        page.get_by_role("img", name="Sonuç dağılımı (yanıtlanan başvurular)")
    ).to_contain_text("Olumlu: 3")
    ranking = page.get_by_role("img", name="Kurumlar: süresinde yanıt payına göre sıralama")
    await expect(ranking).to_contain_text("Bekilli Belediyesi")
    await expect(ranking).to_contain_text("%80,0 · 5 yanıt")
    await expect(
        page.get_by_role("img", name="Haftalara göre gelen ve yanıtlanan başvurular")
    ).to_be_visible()
    await expect(page.locator("#gecikenler")).to_contain_text(seeded["overdue"])
    xlsx = page.get_by_role("link", name="Tüm tablolar (Excel, XLSX)")
    href = await xlsx.get_attribute("href")
    assert href is not None and href.startswith("/api/v1/reports/export.xlsx?province_code=20")
    assert "district=Bekilli" in href and "institution_code=BEKILLI-BLD" in href
    await screenshot(page, "pano")

    # The chronic problems of the same scope: Cumhuriyet Mahallesi's garbage.
    await page.get_by_role("link", name="Bu süzgeçlerle tekrarlayan sorunlar").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Tekrarlayan sorunlar: Denizli · Bekilli · Bekilli Belediyesi"
    )
    problem = page.locator(".problem").filter(has_text="Belediye Hizmetleri")
    await _reload_until(page, problem)
    await expect(problem.get_by_role("heading", level=2)).to_contain_text("Bekilli")
    await expect(problem.get_by_role("heading", level=2)).to_contain_text("Cumhuriyet")
    await expect(problem.locator("dd").first).to_have_text("6")
    await expect(problem).to_contain_text("Bekilli Belediyesi")
    await expect(problem.locator("blockquote").first).to_contain_text("Cumhuriyet")
    await expect(problem.get_by_role("img")).to_have_attribute(
        "aria-label", re.compile(r"^Haftalık başvuru sayısı: \d+(, \d+)+$")
    )
    await screenshot(page, "pano-kronik")

    # Logging out ends the session: the dashboard asks for the login again.
    await page.get_by_role("button", name="Çıkış").click()
    await expect(page).to_have_url(f"{reporting.url}/giris")
    assert not [c for c in await page.context.cookies() if c["name"] == "ak_oturum"]

    # The public summary, in a browser that never logged in.
    public = await new_page(viewport={"width": 1280, "height": 900})
    answer = await public.goto(f"{reporting.url}/rapor")
    assert answer is not None and answer.status == 200
    await expect(public.get_by_role("heading", level=1)).to_have_text(
        "Vatandaş başvuruları: Denizli"
    )
    await public.get_by_label("İlçe", exact=True).select_option(DISTRICT)
    await public.get_by_role("button", name="Göster").click()
    await expect(public.get_by_role("heading", level=1)).to_have_text(
        "Vatandaş başvuruları: Denizli · Bekilli"
    )
    await expect(_card(public, "Toplam başvuru")).to_contain_text(str(len(CASES)))
    await expect(_card(public, "Olumlu")).to_contain_text("5")
    await expect(_card(public, "Yanıt bekleyen")).to_contain_text("2")
    await expect(public.get_by_role("img", name="İlçelere göre başvurular")).to_contain_text(
        "Bekilli"
    )
    html = await public.content()
    assert seeded["overdue"] not in html
    assert "Cumhuriyet" not in html and "Bekilli Belediyesi" not in html
    await screenshot(public, "rapor")
