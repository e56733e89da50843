"""`python -m services.reporting rebuild` against the real broker and nx-27017: the read model
built again from the topics gives the same report as the one the live consumers folded, and the
command's closing count matches."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import datetime, time, timedelta

import httpx
import pytest

from services.common import topics
from services.common.mongo import make_client, service_database
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.reporting.app import make_reporting
from services.reporting.cells import Scope
from services.reporting.query import Period
from services.reporting.rebuild import rebuild
from tests.integration.test_reporting_service import (
    a_unique_monday,
    answered,
    poll_summary,
    received,
    reporting,  # noqa: F401 - the module's live service, a fixture
    routed,
    send,
    staff,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.integration


async def test_a_rebuild_from_the_topics_gives_the_live_report(
    reporting: httpx.AsyncClient,  # noqa: F811
    staff: dict[str, str],  # noqa: F811
    settings: Settings,
):
    monday = a_unique_monday()
    t0 = datetime.combine(monday, time(9, 30), tzinfo=ISTANBUL)
    deadline = t0 + timedelta(days=9)
    tag = uuid.uuid4().hex[:8]
    ids = [f"reb-{tag}-{i}" for i in range(5)]
    items = []
    for i, app in enumerate(ids):
        items.append((topics.RECEIVED, received(app, t0 + timedelta(hours=i), "web"), app))
        items.append(
            (topics.ROUTED, routed(app, t0 + timedelta(hours=i, minutes=1), "REB", deadline), app)
        )
        if i % 2 == 0:
            items.append((topics.STATUS, answered(app, t0 + timedelta(days=2), "olumlu", t0), app))
    await send(settings.kafka_bootstrap, items)
    params = {"from": monday.isoformat(), "to": (monday + timedelta(days=6)).isoformat()}
    live = await poll_summary(
        reporting, params, staff, lambda s: s["total"] == 5 and s["answered"] == 3
    )

    fresh = settings.model_copy(update={"db_prefix": f"r{uuid.uuid4().hex[:8]}"})
    result = await rebuild(fresh, show_progress=False)
    assert result.matches, result
    assert result.replay.events >= len(items)
    assert result.applications >= 5

    client = make_client(fresh, "reporting")
    try:
        rebuilt = await make_reporting(service_database(client, fresh, "reporting"), fresh).report(
            Scope(20), Period(monday, monday + timedelta(days=6))
        )
    finally:
        await client.drop_database(fresh.database_name("reporting"))
        await client.close()
    for key in ("total", "answered", "outcomes", "open", "overdue", "on_time_ratio"):
        assert rebuilt[key] == live[key], key
    assert rebuilt["by_institution"] == live["by_institution"]


async def test_the_command_shows_progress_and_ends_with_a_matching_count(settings: Settings):
    prefix = f"r{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, AK_DB_PREFIX=prefix, PYTHONUNBUFFERED="1")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.reporting",
        "rebuild",
        "--yes",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    text = out.decode()
    assert process.returncode == 0, text + err.decode()[-2000:]
    assert "Olaylar yeniden okunuyor" in err.decode()  # tqdm's bar, on stderr
    assert "Günler hücrelere toplanıyor" in err.decode()
    assert "Sayılar tutuyor" in text
    assert "Okuma modelindeki başvuru" in text

    # Without --yes it asks first, and a "no" leaves everything as it was.
    asking = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.reporting",
        "rebuild",
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    answer, _ = await asyncio.wait_for(asking.communicate("hayır\n".encode()), 60)
    assert asking.returncode == 1 and "Vazgeçildi" in answer.decode()
    client_settings = Settings(db_prefix=prefix)
    client = make_client(client_settings, "reporting")
    await client.drop_database(client_settings.database_name("reporting"))
    await client.close()
