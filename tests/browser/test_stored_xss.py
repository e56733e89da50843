"""Stored XSS, end to end in Chromium: a citizen's application whose subject and text carry
HTML and script is registered at intake over HTTP, routed on the real bus, and shown to the
institution's staff on /kurum; the institution's answer carries the same, and the citizen reads
it on /takip, with and without the page's script. Nothing of it runs: no `window.__xss`, no
dialog, no element it names; every payload is shown literally, as text. The counter receipt
(PDF) prints it literally too."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from services.common.auth import Role
from tests.browser.conftest import LiveStack, NewPage, OfflineGuard, poll, register_and_route

WAIT = 90.0  # generous: the bus is shared with other runs

SCRIPT = "<script>window.__xss=1</script>"
IMG = '<img src=x onerror="window.__xss=1">'
# Each payload as a citizen (or a careless answer) might type it; all must come out literally.
PAYLOADS = [
    SCRIPT,
    IMG,
    "<svg onload=window.__xss=1>",
    '"><iframe srcdoc="<script>parent.__xss=1</script>"></iframe>',
    "</textarea></title><script>window.__xss=1</script>",
    '<a href="javascript:window.__xss=1">tıklayın</a>',
    "{{ 7*7 }} ${7*7}",
    "<style>body{display:none}</style>",
]
SUBJECT = f"Su kesintisi {SCRIPT} {IMG}"
TEXT = "Mahallemizde iki gündür su yok. " + " ".join(PAYLOADS)
ANSWER = "Arıza giderildi. " + " ".join(reversed(PAYLOADS))
# What the pages must never contain as elements (the payloads' own tags).
FOREIGN = "img[src='x'], svg[onload], iframe, a[href^='javascript:'], body style"


@dataclass
class Case:
    application_id: str
    number: str
    phone: str
    institution: str


@pytest.fixture(scope="module")
async def case(live: LiveStack) -> Case:
    """The application, registered at intake's HTTP API and routed to an institution."""
    await live.start_all(["intake", "routing", "tracking"])
    async with httpx.AsyncClient(timeout=15) as http:
        routed = await register_and_route(
            live, http, application_type="istek", subject=SUBJECT, text=TEXT, timeout=WAIT
        )
    return Case(routed.application_id, routed.number, routed.phone, routed.institution)


def watch(page: Page) -> list[str]:
    """The dialogs the page opened (alert, confirm, prompt), dismissed and recorded."""
    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    return dialogs


async def assert_nothing_ran(page: Page, dialogs: list[str]) -> None:
    await page.wait_for_timeout(300)  # an onerror or onload would have fired by now
    assert await page.evaluate("() => window.__xss") is None
    assert not dialogs, dialogs
    assert await page.locator(FOREIGN).count() == 0
    own = await page.locator("script").evaluate_all(
        "(all) => all.filter((s) => !s.src && s.type !== 'application/json').length"
    )
    assert own == 0, "an inline script is in the page"


async def test_the_institution_sees_the_citizens_html_as_text_on_kurum(
    case: Case, live: LiveStack, page: Page, offline: OfflineGuard
) -> None:
    tracking = await live.start("tracking")
    staff = tracking.token(Role.institution, case.institution)
    async with httpx.AsyncClient(timeout=15) as http:
        url = f"{tracking.url}/api/v1/institutions/{case.institution}/applications/"
        await poll(
            lambda: http.get(url + case.application_id, headers=staff),
            lambda r: r.status_code == 200,
        )
    dialogs = watch(page)
    await page.set_viewport_size({"width": 1280, "height": 900})

    await page.goto(f"{tracking.url}/kurum")
    await expect(page.get_by_label("Oturum anahtarı")).to_be_focused()
    await page.keyboard.insert_text(staff["Authorization"].removeprefix("Bearer "))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Başvurular")).to_be_visible()
    await page.locator("#ara").fill(case.number)  # the inbox is shared with other runs
    await page.locator("#ara").press("Enter")

    row = page.locator("#satirlar tr").filter(has_text=case.number)
    await expect(row).to_contain_text(SUBJECT)  # the subject, tags and all, as text
    await assert_nothing_ran(page, dialogs)

    await row.get_by_role("button").click()
    await expect(page.locator("#ayrinti-baslik")).to_have_text(f"Başvuru {case.number}")
    await expect(page.locator("#bilgiler")).to_contain_text(SUBJECT)
    await expect(page.locator("#metin")).to_contain_text(TEXT)
    await assert_nothing_ran(page, dialogs)


async def test_the_citizen_sees_the_answers_html_as_text_on_takip(
    case: Case, live: LiveStack, page: Page, new_page: NewPage, offline: OfflineGuard
) -> None:
    tracking = await live.start("tracking")
    staff = tracking.token(Role.institution, case.institution)
    detail = (
        f"{tracking.url}/api/v1/institutions/{case.institution}/applications/{case.application_id}"
    )
    async with httpx.AsyncClient(timeout=15) as http:
        await poll(
            lambda: http.post(f"{detail}/open", headers=staff),
            lambda r: r.status_code in (200, 409),
        )
        answered = await http.get(detail, headers=staff)
        if answered.json().get("answer") != ANSWER:
            reply = await http.post(
                f"{detail}/response", json={"outcome": "olumlu", "text": ANSWER}, headers=staff
            )
            assert reply.status_code == 202, reply.text
        track = f"{tracking.url}/api/v1/track/{case.number}?phone_last4={case.phone[-4:]}"
        await poll(
            lambda: http.get(track),
            lambda r: r.status_code == 200 and r.json().get("answer") == ANSWER,
        )

    # With the page's script (it submits in place) and without it (the server's own page).
    for scripted in (True, False):
        shown = page if scripted else await new_page(java_script_enabled=False)
        dialogs = watch(shown)
        await shown.goto(f"{tracking.url}/takip")
        await shown.get_by_label("Başvuru numarası").fill(case.number)
        await shown.get_by_label("Telefon numaranızın son 4 hanesi").fill(case.phone[-4:])
        await shown.get_by_role("button", name="Sorgula").click()
        await expect(shown.locator("#cevap")).to_have_text(ANSWER)
        if scripted:
            await assert_nothing_ran(shown, dialogs)
        else:
            assert not dialogs
            assert await shown.locator(FOREIGN).count() == 0


async def test_the_counter_receipt_prints_the_html_literally(
    case: Case, live: LiveStack, tmp_path: Path
) -> None:
    intake = await live.start("intake")
    async with httpx.AsyncClient(timeout=15) as http:
        receipt = await http.get(
            f"{intake.url}/api/v1/applications/{case.application_id}/receipt.pdf",
            headers=intake.token(Role.officer),
        )
    assert receipt.status_code == 200, receipt.text
    assert receipt.headers["content-type"] == "application/pdf"
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: deploy/local/install.sh installs poppler-utils"
    pdf = tmp_path / "makbuz.pdf"
    pdf.write_bytes(receipt.content)
    command = [tool, "-enc", "UTF-8", str(pdf), "-"]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, check=True)
    text = done.stdout.decode("utf-8")
    flat = " ".join(text.split())
    assert SCRIPT in flat and "onerror=" in flat, flat
