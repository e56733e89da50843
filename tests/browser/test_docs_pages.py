"""Every service's /docs in the browser: Swagger UI draws the service's operations from the
scripts the service serves itself, and the page asks no other host for anything."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

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

    await page.goto(f"{running.url}/docs")

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
    await screenshot(page, f"docs-{service}")


async def test_the_guard_refuses_and_reports_a_request_to_another_host(
    page: Page, offline: OfflineGuard
) -> None:
    await page.set_content('<img src="https://cdn.example.org/logo.png" alt="">')
    await page.wait_for_load_state("load")

    assert offline.external == ["https://cdn.example.org/logo.png"]
    offline.external.clear()  # seen: this test proves the guard, it must not fail on it
