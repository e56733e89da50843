"""Two intake processes numbering at once against the real database never issue the same
number: each reserves its own blocks with one atomic increment."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pymongo import AsyncMongoClient

from services.common.application_number import parse_number
from services.common.settings import Settings
from services.intake.app import NUMBER_BLOCK_SIZE, build_app
from tests.conftest import intake_serves_denizli
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

PER_INSTANCE = 120  # more than two blocks each, so the instances interleave their reservations


@contextlib.asynccontextmanager
async def instance(settings: Settings, name: str) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, consumer_group=f"test-intake-numbers-{uuid.uuid4().hex[:8]}")
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        await intake_serves_denizli(app, settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as http:
            yield http


async def test_two_instances_allocating_concurrently_never_share_a_number(
    settings: Settings,
) -> None:
    async with instance(settings, "intake-a") as first, instance(settings, "intake-b") as second:

        async def post(name: str, http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
            response = await http.post("/api/v1/applications", json=body())
            assert response.status_code == 201, response.text
            return name, response.json()

        issued = await asyncio.gather(
            *(
                post(name, http)
                for _ in range(PER_INSTANCE)
                for name, http in (("a", first), ("b", second))
            )
        )

    answers = [answer for _, answer in issued]
    numbers = [a["application_number"] for a in answers]
    assert len(set(numbers)) == len(numbers) == 2 * PER_INSTANCE
    # A block belongs to the instance that reserved it: the two never draw from the same one.
    blocks: dict[str, set[int]] = {"a": set(), "b": set()}
    for name, answer in issued:
        sequence = parse_number(answer["application_number"])[2]
        blocks[name].add((sequence - 1) // NUMBER_BLOCK_SIZE)
    assert blocks["a"] and blocks["b"]
    assert not blocks["a"] & blocks["b"]

    mongo: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        collection = mongo[settings.database_name("intake")]["intake_applications"]
        ids = [a["application_id"] for a in answers]
        stored = await collection.find({"_id": {"$in": ids}}, {"application_number": 1}).to_list()
    finally:
        await mongo.close()
    assert sorted(d["application_number"] for d in stored) == sorted(numbers)
