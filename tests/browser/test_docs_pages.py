"""Every service's /docs in the browser: Swagger UI draws the service's operations from the
scripts the service serves itself, and the page asks no other host for anything."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import ConsoleMessage, Page, expect

from tests.browser.conftest import LiveStack, OfflineGuard, screenshot

# An operation only this service has. Notification is left out: served here it would send
# every SMS other tests ask for on the shared bus (its HTML is checked in the unit ring).
OWN_OPERATION = {
    "intake": "/api/v1/applications",
    "routing": "/api/v1/taxonomy",
    "tracking": "/api/v1/track/{application_number}",
    "reporting": "/api/v1/reports/summary",
}


@pytest.mark.parametrize("service", sorted(OWN_OPERATION))
async def test_swagger_ui_draws_the_operations_offline(
    service: str, live: LiveStack, page: Page, offline: OfflineGuard
) -> None:
    running = await live.start(service)
    await page.set_viewport_size({"width": 1280, "height": 900})
    refused = csp_refusals(page)

    response = await page.goto(f"{running.url}/docs")

    # The page's Content-Security-Policy lets its one inline script run by hash, nothing else.
    assert response is not None
    policy = response.headers["content-security-policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert "'sha256-" in script_src and "unsafe-inline" not in script_src, policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"

    operations = page.locator(".opblock")
    await expect(operations.first).to_be_visible(timeout=20_000)
    await expect(page.locator(".opblock-summary-path", has_text="/healthz")).to_be_visible()
    await expect(
        page.locator(".opblock-summary-path", has_text=OWN_OPERATION[service]).first
    ).to_be_visible()
    assert await operations.count() >= 4
    # The scripts came from the service itself, and nothing went anywhere else.
    assert offline.requested("/static-offline-docs/swagger-ui-bundle.js")
    assert not offline.external
    assert not refused, refused
    await screenshot(page, f"docs-{service}")


async def test_redoc_draws_the_operations_under_its_policy(
    live: LiveStack, page: Page, offline: OfflineGuard
) -> None:
    running = await live.start("routing")
    await page.set_viewport_size({"width": 1280, "height": 900})
    refused = csp_refusals(page)

    response = await page.goto(f"{running.url}/redoc")

    assert (
        response is not None and "default-src 'none'" in response.headers["content-security-policy"]
    )
    await expect(page.get_by_text("/api/v1/taxonomy").first).to_be_attached(timeout=20_000)
    assert offline.requested("/static-offline-docs/redoc.standalone.js")
    assert not refused, refused


def csp_refusals(page: Page) -> list[str]:
    """What the page's Content-Security-Policy refused of its own, as Chromium reports it on
    the console. Another host refused is the policy keeping the page offline (ReDoc's footer
    asks cdn.redoc.ly for its logo): not counted."""
    refused: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" not in text:
            return
        urls = re.findall(r"'(https?://[^']+)'", text)
        if urls and not any(OfflineGuard.is_local(url) for url in urls):
            return
        refused.append(text)

    page.on("console", seen)
    return refused


async def test_the_guard_refuses_and_reports_a_request_to_another_host(
    page: Page, offline: OfflineGuard
) -> None:
    await page.set_content('<img src="https://cdn.example.org/logo.png" alt="">')
    await page.wait_for_load_state("load")

    assert offline.external == ["https://cdn.example.org/logo.png"]
    offline.external.clear()  # seen: this test proves the guard, it must not fail on it
