"""The Açık Kapı counter console `/gise` in Chromium: an officer signs in with a token, types a
priority application in with the keyboard alone, scans the written petition in, and prints
the PDF receipt."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import httpx
from fpdf import FPDF
from playwright.async_api import Page, Route, expect

from services.common.auth import Role
from tests.browser.conftest import SCREENSHOTS, LiveStack, OfflineGuard, screenshot
from tests.support import valid_tckn

NUMBER = re.compile(r"\d{2}-\d{4}-\d{7}-\d")


def scanned_petition(folder: Path) -> Path:
    """A small PDF standing for the citizen's handwritten petition, as the scanner saves it."""
    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font("helvetica", size=14)
    pdf.cell(0, 10, "Dilekce - Denizli Valiligine", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 10, "Caddemizdeki sokak lambalari yanmiyor.")
    path = folder / "dilekce.pdf"
    path.write_bytes(bytes(pdf.output()))
    return path


def pdf_text(pdf: Path) -> str:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: deploy/local/install.sh installs poppler-utils"
    result = subprocess.run([tool, "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True)
    return result.stdout.decode("utf-8")


def keep_first_page_as_png(pdf: Path, name: str) -> None:
    """docs/screenshots/<name>.png: the receipt as printed (pdftoppm, from poppler-utils)."""
    tool = shutil.which("pdftoppm")
    assert tool, "pdftoppm is missing: deploy/local/install.sh installs poppler-utils"
    target = SCREENSHOTS / name
    subprocess.run(
        [tool, "-png", "-r", "80", "-f", "1", "-singlefile", str(pdf), str(target)], check=True
    )


async def type_and_tab(page: Page, text: str) -> None:
    await page.keyboard.type(text)
    await page.keyboard.press("Tab")


async def test_an_officer_registers_a_priority_application_by_keyboard_and_prints_its_receipt(
    live: LiveStack, page: Page, offline: OfflineGuard, tmp_path: Path
) -> None:
    intake = await live.start("intake")
    token = intake.token(Role.officer)["Authorization"].removeprefix("Bearer ")
    rng = random.Random()
    phone = f"053{rng.randint(0, 9)}{rng.randint(0, 9_999_999):07d}"
    await page.set_viewport_size({"width": 1280, "height": 900})

    await page.goto(f"{intake.url}/gise")
    token_input = page.get_by_label("Oturum anahtarı")
    await expect(token_input).to_be_focused()
    await page.keyboard.insert_text(token)  # pasted
    await page.keyboard.press("Enter")

    await expect(page.get_by_role("heading", name="Yeni başvuru kaydı")).to_be_visible()
    await expect(page.get_by_text("Görevli: test-officer")).to_be_visible()
    await expect(page.get_by_label("TC Kimlik No")).to_be_focused()
    # The tab order is the order an officer reads an ID card and a petition in.
    await type_and_tab(page, valid_tckn(rng))
    await type_and_tab(page, "Şükrü")
    await type_and_tab(page, "Öztürk")
    await type_and_tab(page, "yz")
    await type_and_tab(page, phone)
    await page.keyboard.press("Tab")  # no e-mail
    await expect(page.get_by_label("Öncelik işareti")).to_be_focused()
    for _ in range(2):
        await page.keyboard.press("ArrowDown")  # Yok → Şehit yakını → Gazi
    await page.keyboard.press("Tab")
    await page.keyboard.press("ArrowDown")  # Seçin → İstek
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")  # the province stays Denizli
    await type_and_tab(page, "Merkezefendi")
    await type_and_tab(page, "Belediye")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Tab")
    await type_and_tab(page, "Sokak lambaları yanmıyor")
    await type_and_tab(page, "Çamlık Caddesi'ndeki sokak lambaları iki haftadır yanmıyor.")
    await type_and_tab(page, "Çamlık Cad. No: 4, Merkezefendi")
    await expect(page.get_by_label("Taranmış dilekçe ve belgeler")).to_be_focused()
    async with page.expect_file_chooser() as chooser:
        await page.keyboard.press("Space")
    async with page.expect_response("**/api/v1/attachments") as uploaded:
        await (await chooser.value).set_files(scanned_petition(tmp_path))
    upload = await uploaded.value
    assert upload.status == 201
    attachment_id = (await upload.json())["attachment_id"]
    await expect(page.locator("#ek-listesi li")).to_contain_text("Yüklendi.")
    await expect(page.get_by_label("Öncelik işareti")).to_have_value("gazi")
    await expect(page.get_by_label("Başvuru türü")).to_have_value("istek")
    await expect(page.get_by_label("İlçe")).to_have_value("Merkezefendi")

    async with page.expect_response("**/api/v1/applications") as posted:
        await page.keyboard.press("Alt+S")
    sent = (await posted.value).request
    body = sent.post_data_json or {}
    assert body["attachments"] == [attachment_id]
    assert body["priority"] == "gazi"
    assert sent.headers["authorization"] == f"Bearer {token}"
    assert sent.headers["idempotency-key"]
    answer = await (await posted.value).json()

    number = page.locator("#basvuru-no")
    await expect(number).to_have_text(NUMBER)
    await expect(number).to_have_text(answer["application_number"])
    await expect(page.locator("#kayit-ozet")).to_contain_text("Öncelik: Gazi")
    print_button = page.get_by_role("button", name="Makbuzu yazdır")
    await expect(print_button).to_be_focused()
    await screenshot(page, "gise")

    # The body as it crossed the wire (Chromium keeps none of a body the page reads into a blob).
    received: list[bytes] = []

    async def keep(route: Route) -> None:
        answer = await route.fetch()
        received.append(await answer.body())
        await route.fulfill(response=answer)

    await page.route("**/receipt.pdf", keep)
    async with page.context.expect_page() as opened:
        async with page.expect_response("**/receipt.pdf") as receipt:
            await page.keyboard.press("Enter")
    tab = await opened.value  # the receipt, in a tab of its own, ready to print
    assert tab.url.startswith("blob:")
    await tab.close()
    # Chromium's PDF viewer loads its own chrome:// and chrome-extension:// files: the
    # browser's insides, not the network.
    internal = ("chrome://", "chrome-extension://")
    assert all(url.startswith(internal) for url in offline.external), offline.external
    offline.external.clear()
    response = await receipt.value
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    await expect(page.get_by_role("link", name="Makbuzu aç (PDF)")).to_be_visible()
    pdf = tmp_path / "makbuz.pdf"
    pdf.write_bytes(received[0])
    text = pdf_text(pdf)
    assert answer["application_number"] in text
    for words in ("T.C. Denizli Valiliği", "Açık Kapı Başvuru Alındı Belgesi", "Başvuru", "Gazi"):
        assert words in text, words
    assert "Şükrü Öztürk" in text
    keep_first_page_as_png(pdf, "makbuz")

    # Registered as typed: the counter's channel, the mark, the officer.
    headers = intake.token(Role.officer)
    async with httpx.AsyncClient(base_url=intake.url, headers=headers) as http:
        stored = (await http.get(f"/api/v1/applications/{answer['application_id']}")).json()
    assert stored["channel"] == "counter"
    assert stored["priority"] == "gazi"
    assert stored["recorded_by"] == "test-officer"
    assert stored["applicant"]["first_name"] == "Şükrü"

    # Alt+Y: a new entry, empty, with the cursor in its first field.
    await page.keyboard.press("Alt+Y")
    await expect(page.get_by_label("TC Kimlik No")).to_be_focused()
    await expect(page.get_by_label("TC Kimlik No")).to_have_value("")
    await expect(page.locator("#kayit")).to_be_hidden()
