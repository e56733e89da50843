"""The rating page in Chromium: the citizen opens the link of the answer SMS that the fake SMSC
received, chooses 4 of 5 with the keyboard alone, adds a word and sends it; a second visit says
the rating was taken. The page needs no script and fits a phone."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Page, expect

from services.common import topics
from services.common.application_number import format_number
from services.common.auth import Role
from services.common.events import ApplicantContact, ApplicationReceived, ApplicationRouted
from tests.browser.conftest import LiveStack, NewPage, OfflineGuard, screenshot, sms_to
from tests.conftest import create_topics, produce

WAIT = 90.0


@pytest.fixture(scope="module")
async def rating_link(live: LiveStack) -> str:
    """An application answered by its institution; the rating link of its answer SMS."""
    services = await live.start_all(["tracking", "notification"])
    tracking = services["tracking"]
    bootstrap = live.settings.kafka_bootstrap
    await create_topics(bootstrap, [topics.RATINGS], topics.PARTITIONS[topics.RATINGS])
    app_id, institution = str(uuid.uuid4()), f"PUAN-{uuid.uuid4().hex[:6].upper()}"
    number = format_number(20, 2026, random.randint(1, 9_999_999))
    phone = f"+90533{random.randint(1_000_000, 9_999_999)}"
    now = datetime.now(UTC)
    received = ApplicationReceived(
        application_id=app_id,
        application_number=number,
        producer="test-intake",
        channel="web",
        application_type="istek",
        province_code=20,
        district="Pamukkale",
        subject="Parka bank konulması",
        text="Mahallemizdeki parkta oturacak yer yok.",
        applicant=ApplicantContact(
            tckn_masked="10*******46", first_name="Gülşen", last_name="Öztürk", phone=phone
        ),
        received_at=now,
    )
    routed = ApplicationRouted(
        application_id=app_id,
        application_number=number,
        producer="test-routing",
        category_code="PARK-01",
        heading_code="PARK",
        institution_code=institution,
        institution_kind="BELEDIYE",
        institution_name="Pamukkale Belediyesi",
        routed_by="auto",
        deadline_at=now + timedelta(days=9),
    )
    await produce(bootstrap, topics.RECEIVED, received.to_bytes(), key=app_id)
    await produce(bootstrap, topics.ROUTED, routed.to_bytes(), key=app_id)
    track = f"{tracking.url}/api/v1/track/{number}?phone_last4={phone[-4:]}"
    url = f"{tracking.url}/api/v1/institutions/{institution}/applications/{app_id}/response"
    async with httpx.AsyncClient(timeout=15) as http, asyncio.timeout(WAIT):
        while (await http.get(track)).json().get("status") != "routed":
            await asyncio.sleep(0.3)
        reply = await http.post(
            url,
            json={"outcome": "olumlu", "text": "Parka üç bank konuldu."},
            headers=tracking.token(Role.institution, institution),
        )
        assert reply.status_code == 202, reply.text
    sms = await sms_to(phone, "puanlayın", timeout=WAIT)
    found = re.search(r"Yanıtı puanlayın \(1-5\): (\S+)$", sms)
    assert found, sms
    return found.group(1)


async def test_the_citizen_rates_the_answer_by_keyboard(
    rating_link: str, live: LiveStack, page: Page, offline: OfflineGuard, new_page: NewPage
) -> None:
    tracking = await live.start("tracking")
    assert rating_link.startswith(f"{tracking.url}/p/") and len(rating_link.rsplit("/")[-1]) == 16
    response = await page.goto(rating_link)
    assert response is not None and response.status == 200
    await expect(page).to_have_title("Yanıtı Değerlendirin — Açık Kapı")
    await expect(page.locator("#sonuc")).to_have_text("Olumlu")
    await expect(page.locator("section.result")).to_contain_text("Pamukkale Belediyesi")

    # Keyboard only: Tab into the group (it lands on the first choice), arrows move the choice.
    await page.keyboard.press("Tab")  # the skip link
    await page.keyboard.press("Tab")  # the link to the status page
    await page.keyboard.press("Tab")
    await expect(page.locator("#puan-1")).to_be_focused()
    for _ in range(3):
        await page.keyboard.press("ArrowRight")
    await expect(page.get_by_role("radio", name="4 Memnunum")).to_be_checked()
    await expect(page.locator("#puan-4")).to_be_focused()
    # The chosen star and those before it light up; the focus ring shows where the keyboard is.
    lit = "rgb(179, 107, 0)"
    for value, colour in [(1, lit), (4, lit), (5, "rgb(154, 154, 154)")]:
        star = page.locator(f'label[for="puan-{value}"] .star')
        assert await star.evaluate("e => getComputedStyle(e).color") == colour, value
    outline = await page.locator('label[for="puan-4"]').evaluate(
        "e => getComputedStyle(e).outlineStyle"
    )
    assert outline == "solid"
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Eklemek istedikleriniz (isteğe bağlı)")).to_be_focused()
    await page.keyboard.type("Çok hızlı ilgilendiler, teşekkürler.")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screenshot(page, "puan")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Değerlendirmeyi gönder")).to_be_focused()
    await page.keyboard.press("Enter")

    await expect(page.locator("#durum")).to_have_text("Değerlendirmeniz alındı. Teşekkür ederiz.")
    await expect(page.locator("#verilen-puan")).to_have_text("4 / 5")
    await expect(page.locator("form")).to_have_count(0)
    # Nothing but the service's own style sheets, and no script at all.
    assert offline.requested("/static/puan.css") and not offline.requested(".js")

    # Later, from another phone or the same one: the rating was taken, once.
    again = await new_page(java_script_enabled=False)
    await again.goto(rating_link)
    await expect(again.locator("#durum")).to_have_text(
        "Bu başvuru için değerlendirmeniz daha önce alındı."
    )
    await expect(again.locator("#verilen-puan")).to_have_text("4 / 5")
