"""Schemathesis against every service's OpenAPI, on the real stack: no 5xx, no response that
breaks its own schema, no status code the schema does not list.

Each of the five services runs as it does in production, a uvicorn server (on a free port, in
a thread with an event loop of its own, so the synchronous Hypothesis tests can call it over
real HTTP) wired to the test stack's Kafka and MongoDB. Every generated case is sent twice:
with a development token of the admin role (which passes every role check, so the handlers
behind the checks are exercised) and with no token at all (the 401 paths).

What it may not do to the runs after it: its MongoDB data has a database prefix of its own,
and its consumer groups start at the topics' end. The operations that change what every
process in the run shares through a compacted topic — the national leave-day calendar
(`acikkapi.calendar`) and the taxonomies (`acikkapi.taxonomy`), which later tests' services
read at their start — are sent without a token only (and with a role that may not change
them): an admin's random leave day would move every later test's deadlines.

The run is deterministic (derandomized) and small: MAX_EXAMPLES cases per operation, both
generation modes (valid and invalid input). The number of cases sent per service is written
to $AK_DATA_DIR/schemathesis-cases.json and checked at the end of the module.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from services.common import topics
from services.common.auth import Role
from services.common.settings import Settings
from tests.conftest import fresh_consumer_group, intake_serves_denizli
from tests.support import bearer

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("AK_SCHEMATHESIS_EXAMPLES", "8"))
# Client errors every API may answer through the shared error contract (services/common/errors.py:
# `{"errors": [{field, code, message}]}`), whether an operation's OpenAPI lists them or not: no
# or a bad token (401), a role or scope that may not (403), nothing there (404), a state that
# does not allow it (409), a body too large or of another type (413, 415), a lock (423), a limit
# (429). Any other undocumented status, 2xx or 5xx, fails.
ERROR_CONTRACT = frozenset({400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 423, 429})
UNDOCUMENTED: dict[str, set[int]] = {}


def status_code_conformance_or_error_contract(ctx: Any, response: Any, case: Any) -> bool | None:
    """`status_code_conformance`, with the shared error contract's statuses allowed."""
    if response.status_code in ERROR_CONTRACT:
        documented = {str(code) for code in case.operation.responses.status_codes}
        if str(response.status_code) not in documented and "default" not in documented:
            label = f"{case.method.upper()} {case.operation.path}"
            UNDOCUMENTED.setdefault(label, set()).add(response.status_code)
        return None
    result: bool | None = status_code_conformance(ctx, response, case)
    return result


CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance_or_error_contract,
]

# (path, method) sent without a token and with a role that may not use them, never as admin:
# they change the calendar or a taxonomy for every process of the run (see the module's doc).
SHARED_STATE_WRITES = {
    ("/api/v1/calendar/leave-days", "POST"),
    ("/api/v1/calendar/leave-days/{date}", "DELETE"),
}
SHARED_STATE_PREFIX = "/api/v1/admin/taxonomy/{province_code}"

CASES: Counter[str] = Counter()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServedApp:
    """One service's app under uvicorn in a thread of its own, on the real stack."""

    def __init__(
        self,
        name: str,
        build: Callable[[Settings, str], FastAPI],
        settings: Settings,
        consumes: list[str],
        produces: list[str],
        prepare: Callable[[FastAPI, Settings], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.port = _free_port()
        self.settings = settings
        self._build = build
        self._consumes = consumes
        self._produces = produces
        self._prepare = prepare
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"schemathesis-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{self.name} did not start within {timeout} s")
        if self._failure is not None:
            raise RuntimeError(f"{self.name} did not start") from self._failure

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        bootstrap = self.settings.kafka_bootstrap
        group = await fresh_consumer_group(bootstrap, self.name, self._consumes, self._produces)
        app = self._build(self.settings, group)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        )
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(90):
                while not (server.started and app.state.runtime.started.is_set()):
                    if task.done():
                        task.result()
                        raise RuntimeError("uvicorn stopped before it started")
                    await asyncio.sleep(0.05)
            if self._prepare is not None:
                await self._prepare(app, self.settings)
            self._ready.set()
            await self._stop.wait()
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)


def _intake(settings: Settings, group: str) -> FastAPI:
    from services.intake.app import build_app

    return build_app(settings, consumer_group=group)


def _routing(settings: Settings, group: str) -> FastAPI:
    from services.routing.app import build_app

    return build_app(settings, consumer_group=group)


def _tracking(settings: Settings, group: str) -> FastAPI:
    from services.tracking.app import build_app

    return build_app(settings, consumer_group=group)


def _notification(settings: Settings, group: str) -> FastAPI:
    from services.notification.app import build_app

    return build_app(settings, consumer_group=group)


def _reporting(settings: Settings, group: str) -> FastAPI:
    from services.reporting.app import build_app

    return build_app(settings, consumer_group=group)


async def _serves_denizli(app: FastAPI, settings: Settings) -> None:
    await intake_serves_denizli(app, settings)


@pytest.fixture(scope="module")
def fuzz_settings(settings: Settings) -> Settings:
    """The run's settings with a database prefix of its own: the random data stays apart."""
    return settings.model_copy(update={"db_prefix": f"sch{uuid.uuid4().hex[:8]}"})


def _served(app: ServedApp) -> Iterator[ServedApp]:
    app.start()
    try:
        yield app
    finally:
        app.stop()


def _schema(app: ServedApp) -> Any:
    response = requests.get(f"{app.url}/openapi.json", timeout=30)
    response.raise_for_status()
    schema = schemathesis.openapi.from_dict(response.json())
    schema.config.update(base_url=app.url)
    return schema


@pytest.fixture(scope="module")
def intake_app(fuzz_settings: Settings) -> Iterator[ServedApp]:
    yield from _served(
        ServedApp(
            "intake",
            _intake,
            fuzz_settings,
            [topics.SUBMISSIONS],
            [topics.RECEIVED, topics.NOTIFICATION_REQUESTS, topics.REJECTIONS],
            _serves_denizli,
        )
    )


@pytest.fixture(scope="module")
def routing_app(fuzz_settings: Settings) -> Iterator[ServedApp]:
    yield from _served(
        ServedApp("routing", _routing, fuzz_settings, [topics.RECEIVED, topics.STATUS], [])
    )


@pytest.fixture(scope="module")
def tracking_app(fuzz_settings: Settings) -> Iterator[ServedApp]:
    yield from _served(
        ServedApp(
            "tracking",
            _tracking,
            fuzz_settings,
            [topics.RECEIVED, topics.ROUTED, topics.RESPONSES, topics.NOTIFICATION_RESULTS],
            [topics.STATUS, topics.DEADLINES, topics.NOTIFICATION_REQUESTS],
        )
    )


@pytest.fixture(scope="module")
def notification_app(fuzz_settings: Settings) -> Iterator[ServedApp]:
    port = _free_port()
    own = fuzz_settings.model_copy(
        update={
            "sms_dlr_base_url": f"http://127.0.0.1:{port}",
            "notification_public_url": f"http://127.0.0.1:{port}",
        }
    )
    app = ServedApp(
        "notification",
        _notification,
        own,
        [topics.NOTIFICATION_REQUESTS],
        [topics.NOTIFICATION_RESULTS],
    )
    app.port = port
    yield from _served(app)


@pytest.fixture(scope="module")
def reporting_app(fuzz_settings: Settings) -> Iterator[ServedApp]:
    yield from _served(
        ServedApp(
            "reporting",
            _reporting,
            fuzz_settings,
            [topics.RECEIVED, topics.ROUTED, topics.STATUS, topics.DEADLINES],
            [],
        )
    )


@pytest.fixture(scope="module")
def intake_schema(intake_app: ServedApp) -> Any:
    return _schema(intake_app)


@pytest.fixture(scope="module")
def routing_schema(routing_app: ServedApp) -> Any:
    return _schema(routing_app)


@pytest.fixture(scope="module")
def tracking_schema(tracking_app: ServedApp) -> Any:
    return _schema(tracking_app)


@pytest.fixture(scope="module")
def notification_schema(notification_app: ServedApp) -> Any:
    return _schema(notification_app)


@pytest.fixture(scope="module")
def reporting_schema(reporting_app: ServedApp) -> Any:
    return _schema(reporting_app)


def _changes_shared_state(case: Any) -> bool:
    path, method = str(case.operation.path), str(case.method).upper()
    if (path, method) in SHARED_STATE_WRITES:
        return True
    return path.startswith(SHARED_STATE_PREFIX) and method != "GET"


def exercise(service: str, case: Any, settings: Settings, session: requests.Session) -> None:
    """Send `case` as an admin (or, for shared-state writes, as a governor) and without a token;
    each response must pass CHECKS."""
    role = Role.governor if _changes_shared_state(case) else Role.admin
    for headers in (bearer(settings, role, province=20), {}):
        case.call_and_validate(session=session, headers=headers, checks=CHECKS, timeout=30)
        CASES[service] += 1


HYPOTHESIS = hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


intake = schemathesis.pytest.from_fixture("intake_schema")
routing = schemathesis.pytest.from_fixture("routing_schema")
tracking = schemathesis.pytest.from_fixture("tracking_schema")
notification = schemathesis.pytest.from_fixture("notification_schema")
reporting = schemathesis.pytest.from_fixture("reporting_schema")


@intake.parametrize()
@HYPOTHESIS
def test_intake_api(case: Any, fuzz_settings: Settings, session: requests.Session) -> None:
    exercise("intake", case, fuzz_settings, session)


@routing.parametrize()
@HYPOTHESIS
def test_routing_api(case: Any, fuzz_settings: Settings, session: requests.Session) -> None:
    exercise("routing", case, fuzz_settings, session)


@tracking.parametrize()
@HYPOTHESIS
def test_tracking_api(case: Any, fuzz_settings: Settings, session: requests.Session) -> None:
    exercise("tracking", case, fuzz_settings, session)


@notification.parametrize()
@HYPOTHESIS
def test_notification_api(case: Any, fuzz_settings: Settings, session: requests.Session) -> None:
    exercise("notification", case, fuzz_settings, session)


@reporting.parametrize()
@HYPOTHESIS
def test_reporting_api(case: Any, fuzz_settings: Settings, session: requests.Session) -> None:
    exercise("reporting", case, fuzz_settings, session)


def test_every_service_was_exercised() -> None:
    """Runs last in this module: every service answered cases, and the counts are kept."""
    counts = {name: CASES[name] for name in ("intake", "routing", "tracking", "notification")}
    counts["reporting"] = CASES["reporting"]
    out = Path(os.environ.get("AK_DATA_DIR", ".ak/test")) / "schemathesis-cases.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    undocumented = {op: sorted(codes) for op, codes in sorted(UNDOCUMENTED.items())}
    summary = {**counts, "total": sum(counts.values()), "undocumented_errors": undocumented}
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    assert all(counts.values()), counts
