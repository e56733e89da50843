"""The identity consent of şikâyet and ihbar in Chromium: the box shows for those types only, a
box hidden again is unticked, and a ticked one travels with the application from the counter."""

from __future__ import annotations

import random
import re

from playwright.async_api import Page, expect

from services.common.auth import Role
from tests.browser.conftest import LiveStack
from tests.support import valid_tckn

CONSENT = "Kimliğimin ilgili kuruma gösterilmesine izin veriyorum"


async def test_the_consent_box_follows_the_type_and_travels_from_the_counter(
    live: LiveStack, page: Page
) -> None:
    intake = await live.start("intake")
    token = intake.token(Role.officer)["Authorization"].removeprefix("Bearer ")
    await page.goto(f"{intake.url}/gise")
    await page.get_by_label("Oturum anahtarı").fill(token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Yeni başvuru kaydı")).to_be_visible()

    consent = page.get_by_label(CONSENT)
    kind = page.get_by_label("Başvuru türü")
    await expect(consent).to_be_hidden()
    await kind.select_option("sikayet")
    await expect(consent).to_be_visible()
    await expect(page.locator("#identity_consent-hint")).to_contain_text("gösterilmez")
    await consent.check()
    await kind.select_option("istek")
    await expect(consent).to_be_hidden()
    await kind.select_option("ihbar")
    await expect(consent).to_be_visible()
    await expect(consent).not_to_be_checked()  # a consent is given for this application only

    rng = random.Random()
    await page.get_by_label("TC Kimlik No").fill(valid_tckn(rng))
    await page.get_by_label("Ad", exact=True).fill("Şükran")
    await page.get_by_label("Soyad", exact=True).fill("Çelik")
    await page.get_by_label("Anne kızlık soyadının ilk ve son harfi").fill("YZ")
    await page.get_by_label("Cep telefonu").fill(
        f"053{rng.randint(0, 9)}{rng.randint(0, 9_999_999):07d}"
    )
    await page.get_by_label("İlçe").select_option("Merkezefendi")
    await page.get_by_label("Konu", exact=True).fill("Kaçak yapı ihbarı")
    await page.get_by_label("Başvuru metni").fill(
        "Sokağımızdaki boş arsaya ruhsatsız bir yapı yapılıyor, gece de çalışılıyor."
    )
    await consent.check()
    async with page.expect_response("**/api/v1/applications") as posted:
        await page.keyboard.press("Alt+S")
    answer = await posted.value
    assert answer.status == 201, await answer.text()
    sent = answer.request.post_data_json or {}
    assert sent["application_type"] == "ihbar"
    assert sent["identity_consent"] is True
    await expect(page.locator("#basvuru-no")).to_have_text(re.compile(r"\d{2}-\d{4}-\d{7}-\d"))

    # A new entry starts with the box hidden and unticked.
    await page.keyboard.press("Alt+Y")
    await expect(consent).to_be_hidden()
    await kind.select_option("sikayet")
    await expect(consent).not_to_be_checked()
