"""The browser ring: pages driven in Debian's Chromium by Playwright (async API, on the session's
event loop), against services served over real HTTP in this process on the real test stack.

Fixtures and helpers for every browser test module (import the helpers from here):

    browser           headless Chromium for the whole ring (/usr/bin/chromium, installed by
                      deploy/local/install.sh; `playwright install` is not used).
    page              a fresh page (its own context: Turkish locale, Istanbul time, a phone-sized
                      viewport unless the test changes it) behind the offline guard.
    new_page          `await new_page(**context_options)`: more pages behind the same guard,
                      e.g. `java_script_enabled=False` to see the server's own answer.
    offline           that page's `OfflineGuard`: every request to a host other than
                      127.0.0.1/localhost is aborted and recorded, and the test FAILS if there
                      was one; `offline.requests` lists every URL the page asked for, so a test
                      can also prove that some request was never sent.
    live              `LiveStack` for the whole ring: `await live.start("tracking")` serves that
                      service (intake, routing, tracking, notification, reporting) on a free
                      127.0.0.1 port with a consumer group of its own, once, and returns a
                      `LiveService` (`.url`, `.app`, `.settings`, `.token(role, ...)`).
                      Intake is returned only once it serves Denizli (province 20). The
                      services stop when the ring's last test ends (package scope), so under
                      `make test` they never share the bus with the integration ring's.
    screenshot(page, name)       saves docs/screenshots/<name>.png (full page) and returns it.
    serve_app(app)               async context manager: any ASGI app on a free port → base URL.
    await sms_to(phone, needle)  the first SMS text fakesmsc received for `phone` that contains
                                 `needle` (needs `live.start("notification")`; polls, 60 s).

Every test in this folder gets the `browser` marker. Browser tests end with `await page...`
assertions from `playwright.async_api.expect`, which retry until the page settles.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Route,
    ViewportSize,
    WebSocketRoute,
    async_playwright,
)
from pymongo import AsyncMongoClient

from services.common import topics
from services.common.auth import Role
from services.common.settings import SERVICE_PORTS, Settings
from services.intake.domain import counter_key, numbering_year
from tests.conftest import Tap, fresh_consumer_group, intake_serves_denizli
from tests.e2e.conftest import READS
from tests.support import bearer, sms_texts_to, valid_tckn

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# A mid-range phone: the pages must work there first.
PHONE_VIEWPORT: ViewportSize = {"width": 390, "height": 844}
START_TIMEOUT = 90.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


# --- the browser and the offline guard ----------------------------------------------------------


@dataclass
class OfflineGuard:
    """Lets a page reach only this machine; what it tried beyond is recorded and refused."""

    requests: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)

    @staticmethod
    def is_local(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("data", "blob", "about") or parts.hostname in LOCAL_HOSTS

    async def route(self, route: Route) -> None:
        url = route.request.url
        self.requests.append(url)
        if self.is_local(url):
            await route.continue_()
        else:
            self.external.append(url)
            await route.abort("internetdisconnected")

    async def route_web_socket(self, ws: WebSocketRoute) -> None:
        if self.is_local(ws.url):
            ws.connect_to_server()
        else:
            self.external.append(ws.url)
            await ws.close()

    def requested(self, fragment: str) -> list[str]:
        """The URLs the page asked for that contain `fragment`."""
        return [url for url in self.requests if fragment in url]


_GUARD = pytest.StashKey[OfflineGuard]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """A page that tried to reach the internet fails its test, whatever the test asserted."""
    result = yield
    guard = item.stash.get(_GUARD, None)
    if guard is not None and guard.external:
        raise AssertionError(f"the page tried to reach the internet: {guard.external}")
    return result


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: deploy/local/install.sh installs Debian's chromium")
    playwright: Playwright = await async_playwright().start()
    try:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()
    finally:
        await playwright.stop()


@pytest.fixture
def offline(request: pytest.FixtureRequest) -> OfflineGuard:
    guard = OfflineGuard()
    request.node.stash[_GUARD] = guard
    return guard


NewPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def new_page(browser: Browser, offline: OfflineGuard) -> AsyncIterator[NewPage]:
    """Opens further pages behind the same guard, each in a context of its own; keyword
    arguments change the context (e.g. `java_script_enabled=False`, `viewport=...`)."""
    contexts: list[BrowserContext] = []

    async def open_page(**options: Any) -> Page:
        settings: dict[str, Any] = {
            "locale": "tr-TR",
            "timezone_id": "Europe/Istanbul",
            "viewport": PHONE_VIEWPORT,
            "service_workers": "block",
            **options,
        }
        context = await browser.new_context(**settings)
        contexts.append(context)
        await context.route("**/*", offline.route)
        await context.route_web_socket("**/*", offline.route_web_socket)
        return await context.new_page()

    try:
        yield open_page
    finally:
        for context in contexts:
            await context.close()


@pytest.fixture
async def page(new_page: NewPage) -> Page:
    return await new_page()


async def screenshot(page: Page, name: str) -> Path:
    """Keep what the page looks like now as docs/screenshots/<name>.png (README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


# --- services on real ports ----------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn inside the test process: signals stay pytest's (several servers run at once)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def free_socket() -> socket.socket:
    """A socket bound to a free 127.0.0.1 port, held until a server takes it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serve_app(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app (lifespan included) on `sock` or a free port; yields its base URL."""
    sock = sock or free_socket()
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn {url_of(sock)}")
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped before it started")
                await asyncio.sleep(0.05)
        yield url_of(sock)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await asyncio.wait_for(task, 30)
        sock.close()


@dataclass
class LiveService:
    """One service served over HTTP by the test process."""

    name: str
    url: str
    app: FastAPI
    settings: Settings

    def token(self, role: Role, institution: str | None = None) -> dict[str, str]:
        return bearer(self.settings, role, institution=institution)


class LiveStack:
    """The services the browser tests need, started on demand and kept for the ring. Ports are
    chosen up front, so each service's settings already name the others (the tracking page's URL
    in SMS texts, Kannel's delivery-report callback to notification)."""

    def __init__(self, settings: Settings) -> None:
        self._sockets = {name: free_socket() for name in SERVICE_PORTS}
        self.urls = {name: url_of(sock) for name, sock in self._sockets.items()}
        self.settings = settings.model_copy(
            update={
                "public_tracking_url": f"{self.urls['tracking']}/takip",
                "sms_dlr_base_url": self.urls["notification"],
                # Chronic problems looked for every few seconds, not hourly: the dashboard's
                # test plants one and reads it back.
                "chronic_interval_minutes": 0.05,
            }
        )
        self._running: dict[str, LiveService] = {}
        self._lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    async def start(self, name: str) -> LiveService:
        async with self._lock:
            if name not in self._running:
                self._running[name] = await self._start(name)
            return self._running[name]

    async def start_all(self, names: Sequence[str]) -> dict[str, LiveService]:
        return {name: await self.start(name) for name in names}

    async def _start(self, name: str) -> LiveService:
        settings = self.settings
        group = await fresh_consumer_group(settings.kafka_bootstrap, name, READS[name])
        if name == "intake":
            await _number_from_far(settings)
        app: FastAPI = import_module(f"services.{name}.app").build_app(
            settings, consumer_group=group
        )
        if name == "tracking":
            # On the shared bus this instance also reads every other run's answers, mostly to
            # applications it never saw; each would hold its queue for the full grace (10 s).
            app.state.tracking.response_grace_seconds = 1.0
        routed = _record_routed(app) if name == "routing" else None
        url = await self._stack.enter_async_context(serve_app(app, self._sockets.pop(name)))
        if routed is not None:  # runs before the app stops: the stack unwinds last in, first out
            self._stack.push_async_callback(_forget_routed, app, settings, routed)
        await asyncio.wait_for(app.state.runtime.started.wait(), START_TIMEOUT)
        if name == "intake":
            await intake_serves_denizli(app, settings)
        return LiveService(name, url, app, settings)

    async def close(self) -> None:
        await self._stack.aclose()
        for sock in self._sockets.values():
            sock.close()


async def _number_from_far(settings: Settings) -> None:
    """Start this intake's numbers at a random point. Every test database numbers from 1, and
    tracking keeps one application per number: on the shared broker, another run's
    20-2026-0000001 would otherwise take the place of ours in this run's tracking."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_uri_for("intake"))
    try:
        counters = client[settings.database_name("intake")]["intake_counters"]
        start = random.randint(1_000, 8_000) * 1_000
        for year in {numbering_year(datetime.now(UTC)), datetime.now(UTC).year}:
            await counters.update_one(
                {"_id": counter_key(20, year)}, {"$max": {"next": start}}, upsert=True
            )
    finally:
        await client.close()


def _record_routed(app: FastAPI) -> list[str]:
    """The ids the routing instance stores. nx-27017 in single-file mode shares one
    `routing_applications` table between database names, hence between test runs, and on the
    shared broker this instance also queues what others publish: it removes them at the end."""
    stored: list[str] = []
    store = app.state.store
    add = store.add

    async def recording_add(decided: Any) -> Any:
        stored.extend(file.application_id for file, _ in decided)
        return await add(decided)

    store.add = recording_add
    return stored


async def _forget_routed(app: FastAPI, settings: Settings, stored: list[str]) -> None:
    table = app.state.runtime.mongo[settings.database_name("routing")]["routing_applications"]
    for start in range(0, len(stored), 500):
        await table.delete_many({"_id": {"$in": stored[start : start + 500]}})


@pytest.fixture(scope="package")
async def live(settings: Settings) -> AsyncIterator[LiveStack]:
    stack = LiveStack(settings.model_copy(update={"db_prefix": f"b{uuid.uuid4().hex[:8]}"}))
    try:
        yield stack
    finally:
        await stack.close()


# --- what the stack sent ---------------------------------------------------------------------


async def sms_to(phone: str, needle: str, timeout: float = 60.0) -> str:
    """The first SMS text fakesmsc received for `phone` (+90...) that contains `needle`."""
    data_dir = Path(os.environ["AK_DATA_DIR"])
    digits = phone.lstrip("+")
    deadline = time.monotonic() + timeout
    while True:
        texts = await asyncio.to_thread(sms_texts_to, data_dir, digits)
        found = [text for text in texts if needle in text]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no SMS containing {needle!r} within {timeout}s: {texts}")
        await asyncio.sleep(0.3)


async def poll(fetch: Any, ok: Any, timeout: float = 90.0) -> Any:
    """Calls `fetch` until `ok` says its answer is the one awaited; that answer."""
    deadline = time.monotonic() + timeout
    while True:
        last = await fetch()
        if ok(last):
            return last
        if time.monotonic() > deadline:
            shown = last.text if isinstance(last, httpx.Response) else last
            raise AssertionError(f"not reached within {timeout}s; last: {shown}")
        await asyncio.sleep(0.3)


@dataclass(frozen=True)
class Routed:
    """An application a citizen sent over the web form's API, as routing routed it."""

    application_id: str
    number: str
    phone: str
    applicant: dict[str, str]
    institution: str


async def register_and_route(
    live: LiveStack,
    http: httpx.AsyncClient,
    *,
    application_type: str,
    subject: str,
    text: str,
    timeout: float = 90.0,
) -> Routed:
    """A water application (a category whose name says so) registered at the running intake
    and awaited on the routed topic."""
    running = await live.start_all(["intake", "routing"])
    intake, routing = running["intake"], running["routing"]
    phone = f"+90532{random.randint(1_000_000, 9_999_999)}"
    applicant = {
        "tckn": valid_tckn(random.Random()),
        "first_name": "Gülşen",
        "last_name": "Çağlayanoğlu",
        "mother_maiden_initials": "ÖZ",
        "phone": phone,
    }
    async with Tap(live.settings.kafka_bootstrap, [topics.ROUTED]) as tap:
        taxonomy = (await http.get(f"{routing.url}/api/v1/taxonomy")).json()
        category = next(
            c
            for h in taxonomy["headings"]
            for c in h["categories"]
            if "su" in c["name"].lower() or "içme" in c["name"].lower()
        )
        created = await http.post(
            f"{intake.url}/api/v1/applications",
            json={
                "channel": "web",
                "applicant": applicant,
                "province_code": 20,
                "district": "Merkezefendi",
                "application_type": application_type,
                "category_code": category["code"],
                "subject": subject,
                "text": text,
            },
        )
        assert created.status_code == 201, created.text
        registered = created.json()
        _, routed = await tap.wait_for(
            topics.ROUTED,
            lambda e: e.get("application_id") == registered["application_id"],
            timeout=timeout,
        )
    return Routed(
        registered["application_id"],
        registered["application_number"],
        phone,
        applicant,
        routed["institution_code"],
    )
