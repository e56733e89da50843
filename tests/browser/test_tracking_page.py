"""The citizen's status page, /takip, in Chromium: a real application registered at intake,
routed, opened and answered by its institution, its answer sent by SMS, is looked up from the
SMS's link with its number and the last four phone digits; a mistyped number is caught in the
page before anything is sent, and by the server when the page runs no script; the page shows no
personal data and works by keyboard."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from services.common.application_number import InvalidApplicationNumber, parse_number
from services.common.auth import Role
from services.common.turkish_time import long_datetime, parse_instant
from tests.browser.conftest import (
    LiveStack,
    NewPage,
    OfflineGuard,
    poll,
    register_and_route,
    screenshot,
    sms_to,
)

ANSWER = (
    "Sırakapılar Mahallesi'ndeki arıza giderilmiş, şebeke suyu 14.00'te yeniden verilmiştir. "
    "Ölçüm sonuçları içme suyu yönetmeliğine uygundur."
)
WAIT = 90.0  # generous: the bus is shared with other runs


@dataclass
class Answered:
    """An application that went through intake, routing and tracking, was answered, and
    whose answer SMS was sent (so it is closed)."""

    number: str
    phone: str
    applicant: dict[str, str]
    institution: str
    tracked: dict[str, Any]  # what tracking's JSON API says about it
    sms: str  # the answer SMS, with the status page's address

    @property
    def last4(self) -> str:
        return self.phone[-4:]


@pytest.fixture(scope="module")
async def answered(live: LiveStack) -> Answered:
    services = await live.start_all(["intake", "routing", "tracking", "notification"])
    tracking = services["tracking"]
    async with httpx.AsyncClient(timeout=15) as http:
        routed = await register_and_route(
            live,
            http,
            application_type="sikayet",
            subject="Mahallemizde içme suyu kesintisi",
            text="Sırakapılar Mahallesi'nde iki gündür şebeke suyu akmıyor.",
            timeout=WAIT,
        )
        app_id, number, phone, code = (
            routed.application_id,
            routed.number,
            routed.phone,
            routed.institution,
        )
        applicant = routed.applicant

        # The institution opens it (an explicit act: reading it opens nothing) and answers.
        mine = tracking.token(Role.institution, code)
        detail_url = f"{tracking.url}/api/v1/institutions/{code}/applications/{app_id}"
        await poll(
            lambda: http.post(f"{detail_url}/open", headers=mine),
            lambda r: r.status_code == 200 and r.json()["status"] == "opened",
        )
        reply = await http.post(
            f"{detail_url}/response", json={"outcome": "olumlu", "text": ANSWER}, headers=mine
        )
        assert reply.status_code == 202, reply.text
        track_url = f"{tracking.url}/api/v1/track/{number}?phone_last4={phone[-4:]}"
        # Closed once notification reports the answer SMS sent.
        tracked = await poll(
            lambda: http.get(track_url),
            lambda r: r.status_code == 200 and r.json()["status"] == "closed",
        )
    sms = await sms_to(phone, "yanıtlandı")
    return Answered(number, phone, applicant, code, tracked.json(), sms)


async def test_the_citizen_follows_the_sms_and_sees_the_answer_with_every_stage(
    answered: Answered, live: LiveStack, page: Page, offline: OfflineGuard
) -> None:
    tracking = await live.start("tracking")
    assert answered.number in answered.sms and "(olumlu)" in answered.sms
    link = re.search(r"https?://\S+", answered.sms)
    assert link and link.group() == f"{tracking.url}/takip", answered.sms

    started = time.perf_counter()
    response = await page.goto(link.group())
    await page.get_by_label("Başvuru numarası").fill(answered.number)
    await page.get_by_label("Telefon numaranızın son 4 hanesi").fill(answered.last4)
    await page.get_by_role("button", name="Sorgula").click()
    await expect(page.locator("#sonuc")).to_have_text("Olumlu")
    elapsed = time.perf_counter() - started
    print(f"\n/takip: page load to the answer shown: {elapsed * 1000:.0f} ms")

    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    await expect(page).to_have_title(re.compile(r"^Kapandı — Başvuru Takibi"))
    result = page.locator("section.result")
    await expect(result.get_by_role("heading", level=2)).to_have_text(f"Başvuru {answered.number}")
    await expect(result.locator(".status")).to_have_text("Kapandı")
    await expect(result).to_contain_text("Başvurunuz cevaplandı ve cevabı size bildirildi.")
    await expect(page.locator("#cevap")).to_have_text(ANSWER)
    deadline = long_datetime(parse_instant(answered.tracked["deadline_at"]))
    await expect(page.locator("#son-gun time")).to_have_text(deadline)

    # Every stage, in order, each with its time in Turkish words.
    stages = page.locator("ol.timeline li")
    await expect(stages.locator("strong")).to_have_text(
        ["Alındı", "Kuruma yönlendirildi", "Kurum inceliyor", "Cevaplandı", "Kapandı"]
    )
    expected_times = [long_datetime(parse_instant(t["at"])) for t in answered.tracked["timeline"]]
    await expect(stages.locator("time")).to_have_text(expected_times)
    assert all(re.search(r"\d{4} \w+, \d\d:\d\d$", t) for t in expected_times), expected_times

    # The service's own style sheet and script were used; the page fits a phone's width.
    assert offline.requested("/static/takip.css") and offline.requested("/static/takip.js")
    header_colour = await page.locator("header").evaluate("e => getComputedStyle(e).background")
    assert "rgb(11, 79, 138)" in header_colour
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screenshot(page, "takip-sonuc")


async def test_the_page_shows_no_personal_data(
    answered: Answered, live: LiveStack, page: Page
) -> None:
    tracking = await live.start("tracking")
    await page.goto(f"{tracking.url}/takip?number={answered.number}")
    await page.get_by_label("Telefon numaranızın son 4 hanesi").fill(answered.last4)
    await page.keyboard.press("Enter")
    await expect(page.locator("#cevap")).to_have_text(ANSWER)

    html = await page.content()
    text = await page.locator("body").inner_text()
    person = answered.applicant
    for secret in [
        person["tckn"],
        person["first_name"],
        person["last_name"],
        answered.phone,
        answered.phone[3:],  # 532xxxxxxx
        answered.phone[-7:],
    ]:
        assert secret not in html and secret not in text, "personal data on the page"
    # The phone digits typed in are not written back into the form either.
    await expect(page.get_by_label("Telefon numaranızın son 4 hanesi")).to_have_value("")


def wrong_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 3) % 10)


async def test_a_wrong_check_digit_is_caught_before_anything_is_sent(
    answered: Answered, live: LiveStack, page: Page, offline: OfflineGuard
) -> None:
    tracking = await live.start("tracking")
    await page.goto(f"{tracking.url}/takip")
    await screenshot(page, "takip")
    loaded = len(offline.requests)

    number = page.get_by_label("Başvuru numarası")
    await number.fill(wrong_check_digit(answered.number))
    await page.get_by_label("Telefon numaranızın son 4 hanesi").fill(answered.last4)
    await page.get_by_role("button", name="Sorgula").click()

    error = page.locator("#number-error")
    await expect(error).to_have_text(
        "Başvuru numarasının kontrol hanesi tutmuyor; numarayı kontrol edin."
    )
    await expect(number).to_have_attribute("aria-invalid", "true")
    await expect(number).to_be_focused()
    summary = page.get_by_role("alert")
    await expect(summary).to_contain_text("Lütfen aşağıdaki hataları düzeltin.")
    await expect(summary.get_by_role("link")).to_have_text(
        ["Başvuru numarasının kontrol hanesi tutmuyor; numarayı kontrol edin."]
    )
    await expect(page).to_have_title(re.compile(r"^Hata — "))
    # Nothing left the page: no look-up, not even a reload of the form.
    assert offline.requests[loaded:] == []
    assert page.url == f"{tracking.url}/takip"
    await screenshot(page, "takip-hata")

    # Put right, the error goes as the citizen types, and the look-up is made.
    await number.fill(answered.number)
    await expect(number).not_to_have_attribute("aria-invalid", "true")
    await expect(error).to_be_empty()
    await page.get_by_role("button", name="Sorgula").click()
    await expect(page.locator("#sonuc")).to_have_text("Olumlu")
    assert offline.requested("phone_last4=")


async def test_without_script_the_server_catches_the_wrong_check_digit(
    answered: Answered, live: LiveStack, new_page: NewPage, offline: OfflineGuard
) -> None:
    tracking = await live.start("tracking")
    page = await new_page(java_script_enabled=False)
    await page.goto(f"{tracking.url}/takip")
    await page.get_by_label("Başvuru numarası").fill(wrong_check_digit(answered.number))
    await page.get_by_label("Telefon numaranızın son 4 hanesi").fill(answered.last4)
    async with page.expect_response(re.compile(r"/takip\?")) as reply:
        await page.get_by_role("button", name="Sorgula").click()

    assert (await reply.value).status == 422
    number = page.get_by_label("Başvuru numarası")
    await expect(number).to_have_attribute("aria-invalid", "true")
    await expect(number).to_have_accessible_description(re.compile("kontrol hanesi tutmuyor"))
    await expect(page.get_by_role("alert")).to_contain_text("kontrol hanesi tutmuyor")
    await expect(page.locator("section.result")).to_have_count(0)


async def test_the_form_works_by_keyboard_and_its_errors_are_announced(
    live: LiveStack, page: Page
) -> None:
    tracking = await live.start("tracking")
    await page.goto(f"{tracking.url}/takip")

    order = []
    for _ in range(4):
        await page.keyboard.press("Tab")
        order.append(
            await page.evaluate("document.activeElement.id || document.activeElement.textContent")
        )
    assert order == ["İçeriğe geç", "number", "phone_last4", "Sorgula"]

    number = page.get_by_role("textbox", name="Başvuru numarası")
    await expect(number).to_have_accessible_description(re.compile("^Örnek: 20-2026"))
    await number.focus()
    outline = await number.evaluate(
        "e => getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth"
    )
    assert outline == "solid 3px", outline

    # Typed and sent from the keyboard only: a number too short, and no phone digits.
    await page.keyboard.type("20-2026-12")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")

    await expect(number).to_be_focused()
    await expect(number).to_have_attribute("aria-invalid", "true")
    await expect(number).to_have_attribute("aria-describedby", "number-hint number-error")
    await expect(number).to_have_accessible_description(
        re.compile("Başvuru numarası 20-2026-0000123-4 biçiminde olmalıdır")
    )
    phone = page.get_by_role("textbox", name="Telefon numaranızın son 4 hanesi")
    await expect(phone).to_have_attribute("aria-invalid", "true")
    await expect(phone).to_have_accessible_description(re.compile("rakamla girin"))
    await expect(page.get_by_role("alert").get_by_role("link")).to_have_count(2)


async def test_the_page_and_the_server_agree_on_check_digits(live: LiveStack, page: Page) -> None:
    tracking = await live.start("tracking")
    await page.goto(f"{tracking.url}/takip")
    rng = random.Random(7)
    candidates = []
    for _ in range(60):
        digits = f"{rng.randint(1, 81):02d}2026{rng.randint(1, 9_999_999):07d}"
        candidates += [digits + str(d) for d in range(10)]
    candidates += ["", "20-2026-0000123", "20.2026.0000001.x", " 20 2026 0000001 5 "]

    def server(text: str) -> str | None:
        try:
            parse_number(text)
        except InvalidApplicationNumber as exc:
            return "check_digit" if exc.shape_ok else "format"
        return None

    in_page = await page.evaluate(
        "numbers => numbers.map(n => window.AcikKapiTakip.numberProblem(n))", candidates
    )
    assert in_page == [server(c) for c in candidates]
    assert in_page.count(None) >= 60  # one valid check digit per body
