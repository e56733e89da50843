"""The complainant shield on `/kurum` in Chromium: a şikâyet whose applicant did not consent shows
DESKİ's staff the shield's notice instead of the applicant; the province's Açık Kapı supervisor
opens it in the same inbox, unmasks it with a reason, and the applicant's name appears."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import httpx
from playwright.async_api import Page, expect

from services.common import topics
from services.common.application_number import MAX_SEQUENCE, format_number
from services.common.auth import Role
from services.common.events import ApplicantContact, ApplicationReceived
from services.tracking.workflow import SHIELD_NOTICE
from tests.browser.conftest import LiveStack, OfflineGuard
from tests.browser.test_kurum import DESKI, _has_institutions, poll
from tests.conftest import produce
from tests.support import bearer

REASON = "Sayaç yerinde incelenecek; kurumun başvuru sahibine ulaşması gerekiyor."


async def test_a_supervisor_unmasks_a_shielded_complainant_in_the_inbox(
    live: LiveStack, page: Page, offline: OfflineGuard
) -> None:
    services = await live.start_all(["routing", "tracking"])
    tracking = services["tracking"]
    await poll(lambda: _has_institutions(tracking.app.state.tracking.directory))
    tag = uuid.uuid4().hex[:6]
    event = ApplicationReceived(
        application_id=str(uuid.uuid4()),
        application_number=format_number(20, 2026, random.randint(1, MAX_SEQUENCE)),
        producer="test-intake",
        channel="web",
        application_type="sikayet",
        category_code="ALT-001",
        province_code=20,
        district="Merkezefendi",
        subject=f"Sayaç okuyucusu {tag}",
        text="Sayaç okuyucusu evimize hiç gelmeden tahmini fatura kesiyor.",
        applicant=ApplicantContact(
            tckn_masked="12*******90",
            first_name="Gülşen",
            last_name="Çağlayan",
            phone="+905321112299",
        ),
        received_at=datetime.now(UTC),
    )
    await produce(
        live.settings.kafka_bootstrap, topics.RECEIVED, event.to_bytes(), event.application_id
    )
    one = f"{tracking.url}/api/v1/institutions/{DESKI}/applications/{event.application_id}"
    async with httpx.AsyncClient(timeout=15) as http:

        async def listed() -> bool:
            found = await http.get(one, headers=tracking.token(Role.institution, DESKI))
            return found.status_code == 200 and found.json()["district"] == "Merkezefendi"

        await poll(listed)

    supervisor = bearer(live.settings, Role.supervisor, subject="denetci.ayse", province=20)
    token = supervisor["Authorization"].removeprefix("Bearer ")
    await page.goto(f"{tracking.url}/kurum")
    await page.get_by_label("Oturum anahtarı").fill(token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Başvurular")).to_be_visible()
    await page.locator("#kurum").select_option(DESKI)
    await page.get_by_label("Konu veya numara").fill(tag)
    await page.keyboard.press("Enter")
    rows = page.locator("#satirlar tr")
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("button").click()

    facts = page.locator("#bilgiler")
    await expect(facts).to_contain_text(SHIELD_NOTICE)
    await expect(facts).not_to_contain_text("Gülşen")
    await page.get_by_label("Gerekçe (en az 10 karakter)").fill("kısa")
    await page.get_by_role("button", name="Kimliği aç").click()
    await expect(page.locator("#hata")).to_contain_text("İşlem yapılamadı")
    await page.get_by_label("Gerekçe (en az 10 karakter)").fill(REASON)
    await page.get_by_role("button", name="Kimliği aç").click()
    await expect(page.locator("#durum")).to_contain_text("kimliği kuruma açıldı")
    await expect(facts).to_contain_text("Gülşen Çağlayan (T.C. 12*******90)")
    await expect(facts).to_contain_text("+905321112299")
    await expect(page.locator("#f-unmask")).to_be_hidden()
    assert offline.requested("/unmask") and not offline.external
