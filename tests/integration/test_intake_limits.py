"""Daily limits on the real database: the sixth application of a person is refused with 429,
`Retry-After` and a Turkish reason; a retry of an earlier one is still answered; two intake
processes never both take the last place."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from services.common.auth import Role
from services.common.settings import Settings
from services.intake.app import build_app
from tests.conftest import intake_serves_denizli
from tests.support import bearer, valid_tckn
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

LIMIT = 3


@pytest.fixture(scope="module")
async def intakes(settings: Settings) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two intake apps with the limits on, sharing one database."""
    limited = settings.model_copy(
        update={"daily_limit_per_tckn": LIMIT, "daily_limit_per_phone": LIMIT}
    )
    apps = [
        build_app(limited, consumer_group=f"test-limits-{uuid.uuid4().hex[:8]}") for _ in range(2)
    ]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        for app in apps:
            await asyncio.wait_for(app.state.runtime.started.wait(), 60)
            await intake_serves_denizli(app, settings)
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
            for app in apps
        ]
        yield clients
        for client in clients:
            await client.aclose()


def citizen() -> dict[str, str]:
    rng = random.Random()
    return {
        "applicant_tckn": valid_tckn(rng),
        "applicant_phone": f"+90532{rng.randint(0, 9_999_999):07d}",
    }


async def test_the_day_fills_up_and_a_retry_is_still_answered(
    intakes: list[httpx.AsyncClient], settings: Settings
) -> None:
    who = citizen()
    first_key = {"Idempotency-Key": f"limit-{uuid.uuid4()}"}
    answers = [
        await intakes[n % 2].post("/api/v1/applications", json=body(**who), headers=first_key)
        if n == 0
        else await intakes[n % 2].post("/api/v1/applications", json=body(**who))
        for n in range(LIMIT)
    ]
    over = await intakes[0].post("/api/v1/applications", json=body(**who))
    retry = await intakes[1].post("/api/v1/applications", json=body(**who), headers=first_key)
    at_the_counter = await intakes[0].post(
        "/api/v1/applications",
        json=body(channel="counter", **who),
        headers=bearer(settings, Role.officer),
    )

    assert [a.status_code for a in answers] == [201] * LIMIT
    assert over.status_code == 429
    assert 0 < int(over.headers["Retry-After"]) <= 86_400
    (error,) = over.json()["errors"]
    assert (error["field"], error["code"]) == ("applicant.tckn", "daily_limit")
    assert "bugün 3 başvuru yapıldı" in error["message"]
    assert retry.status_code == 201 and retry.json() == answers[0].json()
    assert at_the_counter.status_code == 201


async def test_two_processes_never_both_take_the_last_place(
    intakes: list[httpx.AsyncClient],
) -> None:
    who = citizen()
    answers = await asyncio.gather(
        *(intakes[n % 2].post("/api/v1/applications", json=body(**who)) for n in range(8))
    )
    assert sorted(a.status_code for a in answers) == [201] * LIMIT + [429] * (8 - LIMIT)
