"""Leave days on the real broker and store: an administrator adds an idari izin day over tracking's
HTTP API; another tracking process and a routing process compute with it within seconds (the
answer deadline moves by one business day), and a process that starts afterwards has it before
it is ready. A stale version is 409, no version 428, a non-admin 403, a weekend 422 in Turkish;
`python -m services.tracking.calendar_admin` adds and removes a day as tracking's own Kafka user.

The day is chosen about 600 days ahead, so no deadline another test computes meanwhile moves. At
the end the day is removed, the versions deleted and the topic's key withdrawn (a tombstone), so
every later test finds the public calendar.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.common import kafka_auth, topics
from services.common.auth import Role
from services.common.business_days import PUBLIC
from services.common.calendar_live import KEY, LiveCalendar
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.routing.app import build_app as build_routing
from services.tracking.app import build_app as build_tracking
from services.tracking.calendar_store import COLLECTION
from tests.conftest import Tap, fresh_consumer_group
from tests.support import bearer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CALENDAR = "/api/v1/calendar"
LEAVE_DAYS = f"{CALENDAR}/leave-days"
REASON = "Test: Cumhurbaşkanlığı Genelgesi ile idari izin"
TRACKING_TOPICS = [
    topics.RECEIVED,
    topics.ROUTED,
    topics.RESPONSES,
    topics.NOTIFICATION_RESULTS,
]


def far_business_days() -> tuple[dt.date, dt.date]:
    """A day about 600 days ahead that opens a run of ordinary business days, and the one
    before it on which an application is received."""
    day = dt.datetime.now(ISTANBUL).date() + dt.timedelta(days=600)
    while not all(PUBLIC.is_business_day(day + dt.timedelta(days=n)) for n in range(-1, 2)):
        day += dt.timedelta(days=1)
    return day - dt.timedelta(days=1), day


RECEIVED_ON, LEAVE_DAY = far_business_days()
CLI_DAY = LEAVE_DAY + dt.timedelta(days=1)


@dataclass
class Stack:
    settings: Settings
    a: FastAPI  # the tracking process the administrator talks to
    b: FastAPI  # another tracking process, with a consumer group of its own
    routing: FastAPI
    http_a: httpx.AsyncClient
    http_b: httpx.AsyncClient
    tap: Tap
    admin: dict[str, str]


def client(app: FastAPI, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")


async def tombstone(settings: Settings) -> None:
    producer = AIOKafkaProducer(**kafka_auth.client_options(settings, kafka_auth.ADMIN))
    await producer.start()
    try:
        await producer.send_and_wait(topics.CALENDAR, None, key=KEY.encode())
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    bootstrap = settings.kafka_bootstrap
    group_a = await fresh_consumer_group(bootstrap, "tracking", TRACKING_TOPICS)
    group_b = await fresh_consumer_group(bootstrap, "tracking", TRACKING_TOPICS)
    group_r = await fresh_consumer_group(bootstrap, "routing", [topics.RECEIVED, topics.STATUS])
    a = build_tracking(settings, consumer_group=group_a)
    b = build_tracking(settings, consumer_group=group_b)
    routing = build_routing(settings, consumer_group=group_r)
    tap = Tap(bootstrap, [topics.CALENDAR])
    await tap.start()
    versions = a.state.runtime.mongo[settings.database_name("tracking")][COLLECTION]
    try:
        async with (
            a.router.lifespan_context(a),
            b.router.lifespan_context(b),
            routing.router.lifespan_context(routing),
        ):
            for app in (a, b, routing):
                await asyncio.wait_for(app.state.runtime.started.wait(), 60)
            async with client(a, "tracking-a") as http_a, client(b, "tracking-b") as http_b:
                admin = bearer(settings, Role.admin, subject="zeynep.yonetici")
                yield Stack(settings, a, b, routing, http_a, http_b, tap, admin)
                # Leave the calendar as it was found.
                for day in (LEAVE_DAY, CLI_DAY):
                    current = await http_a.get(CALENDAR)
                    await http_a.delete(
                        f"{LEAVE_DAYS}/{day}",
                        params={"reason": "Test bitti"},
                        headers={**admin, "If-Match": current.headers["ETag"]},
                    )
            await versions.delete_many({})
    finally:
        await tap.stop()
        await tombstone(settings)


async def until(check: Callable[[], Any], timeout: float = 20, every: float = 0.01) -> float:
    """Seconds until `check()` is true."""
    start = time.perf_counter()
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(every)
    return time.perf_counter() - start


async def version_of(http: httpx.AsyncClient) -> str:
    response = await http.get(CALENDAR)
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


async def test_a_leave_day_reaches_every_process_and_moves_the_deadline(stack: Stack) -> None:
    received = dt.datetime.combine(RECEIVED_ON, dt.time(10, 0), tzinfo=ISTANBUL)
    before = stack.b.state.calendar.current.answer_deadline(received)
    etag = await version_of(stack.http_a)

    response = await stack.http_a.post(
        LEAVE_DAYS,
        json={"date": LEAVE_DAY.isoformat(), "reason": REASON, "kind": "kopru"},
        headers={**stack.admin, "If-Match": etag},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["published"] is True
    assert body["author"] == "zeynep.yonetici"
    assert response.headers["ETag"] == f'"{body["version"]}"'
    # The other tracking process and routing compute with it within seconds.
    seconds_b, seconds_r = await asyncio.gather(
        until(lambda: LEAVE_DAY in stack.b.state.calendar.current.leave_days, timeout=10),
        until(lambda: LEAVE_DAY in stack.routing.state.calendar.current.leave_days, timeout=10),
    )
    print(
        f"\nleave day seen by tracking B after {seconds_b:.3f} s, routing after {seconds_r:.3f} s"
    )
    assert stack.b.state.calendar.current.version == body["version"]
    after = stack.b.state.calendar.current.answer_deadline(received)
    assert after.date() == PUBLIC.add_business_days(RECEIVED_ON, 8)
    assert before.date() == PUBLIC.add_business_days(RECEIVED_ON, 7)
    # The whole calendar was announced once, under the national key.
    key, event = await stack.tap.wait_for(
        topics.CALENDAR, lambda e: e["version"] == body["version"]
    )
    assert key == KEY
    assert [d["day"] for d in event["leave_days"]] == [LEAVE_DAY.isoformat()]
    # Any process reads the year with it.
    year = await stack.http_b.get(CALENDAR, params={"year": LEAVE_DAY.year})
    assert year.json()["in_effect_version"] == body["version"]
    [leave] = [d for d in year.json()["leave_days"] if d["date"] == LEAVE_DAY.isoformat()]
    assert (leave["kind"], leave["reason"]) == ("kopru", REASON)


async def test_a_process_that_starts_later_has_the_day_before_it_is_ready(stack: Stack) -> None:
    await until(lambda: LEAVE_DAY in stack.b.state.calendar.current.leave_days)
    late = LiveCalendar(stack.settings, "routing")
    try:
        started = time.perf_counter()
        await late.start()
        print(f"\ncalendar read to its end in {time.perf_counter() - started:.3f} s")
        assert LEAVE_DAY in late.current.leave_days
    finally:
        await late.stop()


async def test_a_stale_version_is_409_and_none_is_428(stack: Stack) -> None:
    etag = await version_of(stack.http_a)
    stale = int(etag.strip('"')) - 1
    day = (LEAVE_DAY + dt.timedelta(days=7)).isoformat()

    conflict = await stack.http_a.post(
        LEAVE_DAYS,
        json={"date": day, "reason": REASON},
        headers={**stack.admin, "If-Match": f'"{stale}"'},
    )
    assert conflict.status_code == 409, conflict.text
    assert conflict.headers["ETag"] == etag
    assert "başka biri tarafından değiştirildi" in conflict.json()["errors"][0]["message"]

    missing = await stack.http_a.post(
        LEAVE_DAYS, json={"date": day, "reason": REASON}, headers=stack.admin
    )
    assert missing.status_code == 428
    assert await version_of(stack.http_a) == etag


async def test_only_an_admin_may_change_the_calendar(stack: Stack) -> None:
    etag = await version_of(stack.http_a)
    for role in (Role.officer, Role.institution, Role.supervisor):
        claims = {"institution": "DESKI"} if role is Role.institution else {}
        response = await stack.http_a.post(
            LEAVE_DAYS,
            json={"date": (LEAVE_DAY + dt.timedelta(days=7)).isoformat(), "reason": REASON},
            headers={**bearer(stack.settings, role, **claims), "If-Match": etag},
        )
        assert response.status_code == 403, (role, response.text)
    assert await version_of(stack.http_a) == etag


async def test_a_weekend_is_refused_in_turkish(stack: Stack) -> None:
    saturday = LEAVE_DAY + dt.timedelta(days=(5 - LEAVE_DAY.weekday()) % 7)
    response = await stack.http_a.post(
        LEAVE_DAYS,
        json={"date": saturday.isoformat(), "reason": REASON},
        headers={**stack.admin, "If-Match": await version_of(stack.http_a)},
    )
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["field"], error["code"]) == ("date", "weekend")
    assert "Cumartesi hafta sonudur" in error["message"]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line as an operator runs it, as tracking's own Kafka user."""
    env = {
        **os.environ,
        "AK_DB_PREFIX": settings.db_prefix,
        "AK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "AK_MONGO_URI": settings.mongo_uri,
    }
    env.pop("AK_KAFKA_USERNAME", None)
    return subprocess.run(
        [sys.executable, "-m", "services.tracking.calendar_admin", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_command_line_adds_lists_and_removes_a_day(stack: Stack) -> None:
    added = await asyncio.to_thread(
        cli, stack.settings, "add", CLI_DAY.isoformat(), "--reason", REASON, "--author", "operatör"
    )
    assert added.returncode == 0, added.stderr
    assert "kaydedildi" in added.stdout
    assert "Kafka" not in added.stderr  # announced by the command itself, as tracking's user
    await until(lambda: CLI_DAY in stack.b.state.calendar.current.leave_days)
    await until(lambda: CLI_DAY in stack.routing.state.calendar.current.leave_days)

    listed = await asyncio.to_thread(cli, stack.settings, "list", "--year", str(CLI_DAY.year))
    assert listed.returncode == 0, listed.stderr
    assert f"{CLI_DAY:%d.%m.%Y}" in listed.stdout and REASON in listed.stdout

    weekend = CLI_DAY + dt.timedelta(days=(6 - CLI_DAY.weekday()) % 7)
    refused = await asyncio.to_thread(
        cli, stack.settings, "add", weekend.isoformat(), "--reason", "x"
    )
    assert refused.returncode == 2
    assert "hafta sonudur" in refused.stderr

    removed = await asyncio.to_thread(
        cli, stack.settings, "remove", CLI_DAY.isoformat(), "--reason", "Genelge geri alındı"
    )
    assert removed.returncode == 0, removed.stderr
    await until(lambda: CLI_DAY not in stack.a.state.calendar.current.leave_days)
    await until(lambda: CLI_DAY not in stack.routing.state.calendar.current.leave_days)
    log = await stack.http_a.get(f"{CALENDAR}/versions", headers=stack.admin)
    newest = log.json()["items"][0]
    assert (newest["action"], newest["author"], newest["reason"]) == (
        "leave_day.remove",
        f"cli:{getpass.getuser()}",
        "Genelge geri alındı",
    )
