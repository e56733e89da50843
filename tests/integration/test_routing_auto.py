"""Auto-routing on the real broker and store: an application without a category whose text is
clear reaches its institution's topic at once, marked as routed by the model; an unclear one
waits in the officers' queue with the model's suggestions; the officer's decision is recorded
and learnt."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.common import topics
from services.common.application_number import MAX_SEQUENCE, format_number
from services.common.auth import Role
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationType,
    Channel,
)
from services.common.settings import Settings
from services.routing.app import build_app
from services.routing.lifecycle import RoutingFile
from tests.conftest import Tap, fresh_consumer_group, produce
from tests.support import bearer

pytestmark = pytest.mark.integration

CLEAR = "Sokağımızdaki lambalar bir haftadır yanmıyor, geceleri zifiri karanlık oluyor."
UNCLEAR = "Merhaba, size daha önce yazmıştım, hâlâ bir dönüş olmadı, bilginize."


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    group = await fresh_consumer_group(
        settings.kafka_bootstrap, "routing-auto", [topics.RECEIVED, topics.STATUS]
    )
    app = build_app(settings, consumer_group=group)
    stored: list[str] = []
    add = app.state.store.add

    async def recording_add(decided: list[tuple[RoutingFile, Any]]) -> Any:
        stored.extend(file.application_id for file, _ in decided)
        return await add(decided)

    app.state.store.add = recording_add
    async with app.router.lifespan_context(app):
        # The model is trained before the consumers start: started means ready to route.
        await asyncio.wait_for(app.state.runtime.started.wait(), 90)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:
            yield app, http
        db = app.state.runtime.mongo[settings.database_name("routing")]
        for start in range(0, len(stored), 500):
            mine = {"$in": stored[start : start + 500]}
            await db["routing_applications"].delete_many({"_id": mine})
            await db["routing_decisions"].delete_many({"application_id": mine})


def application(text: str, district: str = "Merkezefendi") -> ApplicationReceived:
    return ApplicationReceived(
        application_id=str(uuid.uuid4()),
        application_number=format_number(20, 2026, random.randint(1, MAX_SEQUENCE)),
        channel=Channel.web,
        application_type=ApplicationType.sikayet,
        category_code=None,
        province_code=20,
        district=district,
        subject="Başvuru",
        text=text,
        applicant=ApplicantContact(
            tckn_masked="12*******90",
            first_name="Ayşe",
            last_name="Yıldırım",
            phone="+905321234567",
        ),
        received_at=datetime.now(UTC),
    )


def about(app_id: str, event_type: str | None = None) -> Any:
    return lambda e: (
        e.get("application_id") == app_id
        and (event_type is None or e.get("event_type") == event_type)
    )


async def test_a_clear_text_without_category_is_routed_at_once_and_marked(
    service: Any, settings: Settings
) -> None:
    event = application(CLEAR)
    app_id = event.application_id
    institution = topics.institution_topic("ADM-ELEKTRIK")
    async with Tap(settings.kafka_bootstrap, [topics.ROUTED, institution]) as tap:
        await produce(settings.kafka_bootstrap, topics.RECEIVED, event.to_bytes(), key=app_id)
        _, routed = await tap.wait_for(topics.ROUTED, about(app_id))
        _, assignment = await tap.wait_for(institution, about(app_id))

    assert routed["event_type"] == "application.routed"
    assert (routed["category_code"], routed["institution_code"]) == ("ENR-002", "ADM-ELEKTRIK")
    assert routed["routed_by"] == "auto" and routed["officer"] is None
    assert routed["auto_confidence"] >= settings.auto_route_threshold
    assert assignment["event_type"] == "institution.assignment"
    assert assignment["auto_confidence"] == routed["auto_confidence"]
    assert assignment["category_code"] == "ENR-002" and assignment["text"] == CLEAR


async def test_a_text_with_its_category_carries_no_auto_mark(
    service: Any, settings: Settings
) -> None:
    event = application(CLEAR).model_copy(update={"category_code": "ENR-002"})
    async with Tap(settings.kafka_bootstrap, [topics.ROUTED]) as tap:
        await produce(
            settings.kafka_bootstrap, topics.RECEIVED, event.to_bytes(), key=event.application_id
        )
        _, routed = await tap.wait_for(topics.ROUTED, about(event.application_id))
    assert routed["routed_by"] == "auto" and routed["auto_confidence"] is None


async def test_an_unclear_text_waits_with_suggestions_and_the_officers_decision_is_learnt(
    service: Any, settings: Settings
) -> None:
    app_, http = service
    event = application(UNCLEAR, district="Pamukkale")
    app_id = event.application_id
    officer = bearer(settings, Role.officer, province=20)
    async with Tap(settings.kafka_bootstrap, [topics.ROUTED]) as tap:
        await produce(settings.kafka_bootstrap, topics.RECEIVED, event.to_bytes(), key=app_id)
        _, waiting = await tap.wait_for(topics.ROUTED, about(app_id))
    assert waiting["event_type"] == "application.awaiting_routing"

    async with asyncio.timeout(20):
        while True:
            page = await http.get(
                "/api/v1/routing/pending",
                params={"application_number": event.application_number},
                headers=officer,
            )
            items = [i for i in page.json()["items"] if i["application_id"] == app_id]
            if items:
                break
            await asyncio.sleep(0.1)
    suggestions = items[0]["suggestions"]
    assert len(suggestions) == 5
    assert all(0 <= s["score"] <= 1 for s in suggestions)
    assert suggestions[0]["score"] < settings.auto_route_threshold

    decided = await http.post(
        f"/api/v1/routing/{app_id}/route", json={"category_code": "NUF-019"}, headers=officer
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["routed_by"] == "officer"

    recorded = [
        d for d in await app_.state.store.recent_decisions(1000) if d.application_id == app_id
    ]
    assert len(recorded) == 1
    decision = recorded[0]
    assert (decision.category_code, decision.institution_code) == ("NUF-019", "DENIZLI-VALILIK")
    assert decision.text.endswith(UNCLEAR) and decision.district == "Pamukkale"
    assert decision.suggested_category_code == suggestions[0]["category_code"]

    # Every process retrains when the store has decisions it has not learnt (here at once,
    # without waiting for the background loop's next look).
    assert await app_.state.learned.refresh()
    body = {"text": f"Başvuru\n{UNCLEAR}", "province_code": 20, "district": "Pamukkale"}
    ranked = (await http.post("/api/v1/routing/suggest", json=body)).json()
    assert ranked[0]["category_code"] == "NUF-019"
