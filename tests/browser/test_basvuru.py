"""The citizen's web form `/basvuru` in Chromium, against an intake that checks what the
citizen's channel must: the phone confirmed by an SMS code (read from fakesmsc's output) and
the identity against the demo population registry."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fpdf import FPDF
from playwright.async_api import Geolocation, Page, expect

from services.common.settings import Settings
from tests.browser.conftest import LiveService, LiveStack, screenshot, sms_to
from tests.support import sms_texts_to

NUMBER = re.compile(r"\d{2}-\d{4}-\d{7}-\d")
CODE = re.compile(r"\b(\d{6})\b")
ADDRESS = "Sırakapılar Mah. Gazi Cad. No: 12, Merkezefendi"
DENIZLI_CENTRE: Geolocation = {"latitude": 37.776512, "longitude": 29.086388, "accuracy": 20}
DENIZLI_CENTRE_SENT = {"lat": 37.776512, "lon": 29.086388}


@pytest.fixture(scope="module")
async def intake(settings: Settings) -> AsyncIterator[LiveService]:
    """An intake of its own with the citizen checks on (the session's stack has them off)."""
    checks_on = {
        "db_prefix": f"w{uuid.uuid4().hex[:8]}",
        "phone_verification": True,
        "identity_verifier": "registry_file",
    }
    stack = LiveStack(settings.model_copy(update=checks_on))
    try:
        yield await stack.start("intake")
    finally:
        await stack.close()


def petition(folder: Path) -> Path:
    """A one-page PDF, as a phone's scanner app saves a photographed document."""
    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font("helvetica", size=14)
    pdf.cell(0, 10, "Su kesintisi - fotograf ve fatura")
    path = folder / "belge.pdf"
    path.write_bytes(bytes(pdf.output()))
    return path


def registered_person() -> dict[str, Any]:
    """A synthetic person of the demo registry (never a real one), with a phone of this run's
    own, so that no earlier run's SMS is read."""
    text = resources.files("services.intake").joinpath("data/demo_registry.json").read_text()
    person = dict(json.loads(text)["persons"][0])
    rng = random.Random()
    person["phone"] = f"053{rng.randint(0, 9)}{rng.randint(0, 9_999_999):07d}"
    return person


async def fill_the_form(page: Page, person: dict[str, Any], *, district: str) -> None:
    await page.get_by_label("TC Kimlik No").fill(person["tckn"])
    await page.get_by_label("Ad", exact=True).fill(person["first_name"])
    await page.get_by_label("Soyad", exact=True).fill(person["last_name"])
    await page.get_by_label("Anne kızlık soyadının ilk ve son harfi").fill(
        person["mother_maiden_initials"]
    )
    await page.get_by_label("Cep telefonu").fill(person["phone"])
    await page.get_by_label("Başvuru türü").select_option("sikayet")
    await page.get_by_label("İlçe").select_option(district)
    await page.get_by_label("Ana başlık").select_option(label="Altyapı ve Su")
    await page.get_by_label("Konu başlığı").select_option(label="İçme suyu kesintisi")
    await page.get_by_label("Konu", exact=True).fill("Mahallemizde su kesintisi")
    await page.get_by_label("Başvuru metni").fill(
        "Üç gündür Sırakapılar'da musluklardan su akmıyor; ne zaman düzelecek?"
    )
    await page.get_by_label("Adres").fill(ADDRESS)


async def code_sent_to(phone: str, timeout: float = 30) -> str:
    """The code in the verification SMS fakesmsc received for `phone` (0532...). Intake sends
    it to the E.164 number with its "+", as Kannel then logs it; notification sends without."""
    data_dir = Path(os.environ["AK_DATA_DIR"])
    digits = "90" + phone[1:]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = await asyncio.to_thread(sms_texts_to, data_dir, "+" + digits)
        texts += await asyncio.to_thread(sms_texts_to, data_dir, digits)
        codes = [CODE.search(t) for t in texts if "doğrulama kodu" in t]
        if codes and codes[-1]:
            return codes[-1].group(1)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no verification code reached {phone} within {timeout}s")


async def verify_the_phone(page: Page, phone: str) -> None:
    """Ask for the code and type in what the SMS gateway delivered to the phone."""
    await page.get_by_role("button", name="Doğrulama kodu gönder").click()
    await expect(page.locator("#kod-durum")).to_contain_text("numarasına SMS ile gönderildi")
    await page.get_by_label("Doğrulama kodu").fill(await code_sent_to(phone))


async def test_a_citizen_applies_with_the_code_from_the_sms(
    intake: LiveService, live: LiveStack, page: Page, tmp_path: Path
) -> None:
    await live.start("notification")  # sends the "received" SMS with the number
    person = registered_person()

    await page.context.grant_permissions(["geolocation"])
    await page.context.set_geolocation(DENIZLI_CENTRE)

    started = time.perf_counter()
    await page.goto(f"{intake.url}/basvuru")
    await expect(page.get_by_role("heading", name="Başvuru Formu")).to_be_visible()
    await screenshot(page, "basvuru")
    await fill_the_form(page, person, district="Merkezefendi")
    await page.get_by_role("button", name="Konumumu kullan").click()
    await expect(page.locator("#konum-durum")).to_contain_text("Konumunuz eklendi: enlem 37,77")
    await page.get_by_label("Belge veya fotoğraf ekleyin").set_input_files(petition(tmp_path))
    await expect(page.locator("#ek-listesi li")).to_contain_text("Yüklendi.")
    await verify_the_phone(page, person["phone"])
    async with page.expect_request("**/api/v1/applications") as posted:
        await page.get_by_role("button", name="Başvuruyu gönder").click()

    done = page.locator("#tamam")
    await expect(done).to_be_visible(timeout=20_000)
    await expect(done).to_be_focused()
    number = (await page.locator("#basvuru-no").inner_text()).strip()
    elapsed = time.perf_counter() - started
    print(f"\n/basvuru: page load to confirmation {elapsed:.2f} s (number {number})")
    assert NUMBER.fullmatch(number), number
    await expect(done.locator("#sms-bilgi")).to_have_text(
        re.compile(r"bir SMS\s+cep telefonunuza gönderiliyor")
    )
    await screenshot(page, "basvuru-tamam")
    sent: dict[str, Any] = (await posted.value).post_data_json or {}
    assert sent["channel"] == "web"
    assert sent["phone_verification"]
    assert sent["location"] == {**DENIZLI_CENTRE_SENT, "address": ADDRESS}
    assert len(sent["attachments"]) == 1
    assert "category_code" in sent and sent["applicant"]["mother_maiden_initials"] == "VL"
    # The SMS the page promised, with the number in it.
    assert number in await sms_to("+90" + person["phone"][1:], number)


async def test_field_errors_are_turkish_before_and_after_sending(
    intake: LiveService, page: Page, tmp_path: Path
) -> None:
    person = registered_person()
    await page.goto(f"{intake.url}/basvuru")

    # Before sending: the page's own checks, next to the field and in a focused summary.
    await page.get_by_label("TC Kimlik No").fill("12345678901")
    await page.get_by_role("button", name="Başvuruyu gönder").click()
    summary = page.locator("#hata-ozeti")
    await expect(summary).to_be_visible()
    await expect(summary).to_be_focused()
    tckn = page.get_by_label("TC Kimlik No")
    await expect(tckn).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#tckn-error")).to_have_text(
        "TC Kimlik No geçersiz: kontrol haneleri tutmuyor."
    )
    await expect(summary).to_contain_text("Doğrulama kodu gönder")
    # The summary's link takes the keyboard to the field.
    await summary.get_by_role("link", name="TC Kimlik No geçersiz").click()
    await expect(tckn).to_be_focused()

    # After sending: the server's 422, mapped to its field by the `field` path. The district
    # list came from an older page (a district the province does not have).
    await page.get_by_label("İlçe").evaluate(
        "select => select.add(new Option('Atlantis', 'Atlantis'))"
    )
    await fill_the_form(page, person, district="Atlantis")
    # A file that only calls itself a PDF: the server refuses it, beside the file input, and
    # nothing typed is lost.
    fake = tmp_path / "fatura.pdf"
    fake.write_text("bu bir PDF değil")
    await page.get_by_label("Belge veya fotoğraf ekleyin").set_input_files(fake)
    await expect(page.locator("#ekler-error")).to_contain_text(
        "fatura.pdf: Dosya türü desteklenmiyor"
    )
    await expect(page.get_by_label("Konu", exact=True)).to_have_value("Mahallemizde su kesintisi")
    await page.get_by_role("button", name="fatura.pdf dosyasını kaldır").click()
    await expect(page.locator("#ek-listesi li")).to_have_count(0)
    await verify_the_phone(page, person["phone"])
    await page.get_by_role("button", name="Başvuruyu gönder").click()

    district_error = page.locator("#district-error")
    await expect(district_error).to_have_text(
        "Denizli iline bağlı böyle bir ilçe bulunamadı.", timeout=20_000
    )
    await expect(page.get_by_label("İlçe")).to_have_attribute("aria-invalid", "true")
    await expect(summary).to_be_focused()
    await expect(summary).to_contain_text("Denizli iline bağlı böyle bir ilçe bulunamadı.")
    await expect(page.locator("#tckn-error")).to_be_empty()
    await expect(page.locator("#tamam")).to_be_hidden()
    await screenshot(page, "basvuru-hatalar")

    # The identity check names no field (that would tell a stranger which one was right): its
    # error stands at the identity group.
    await page.get_by_label("İlçe").select_option("Merkezefendi")
    await page.get_by_label("Anne kızlık soyadının ilk ve son harfi").fill("AB")
    await page.get_by_role("button", name="Başvuruyu gönder").click()
    await expect(page.locator("#kimlik-error")).to_contain_text(
        "Kimlik bilgileriniz doğrulanamadı", timeout=20_000
    )
    await expect(district_error).to_be_empty()
    await expect(summary).to_be_focused()
    await expect(page.locator("#tamam")).to_be_hidden()
