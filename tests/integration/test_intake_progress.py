"""Intake follows each application it registered on the real bus: tracking's status events and
the institutions' answers land on intake's own document, only ever forward."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from services.common import topics
from services.common.events import (
    ApplicationResponse,
    Envelope,
    Outcome,
    Status,
    StatusChanged,
)
from services.common.settings import Settings
from services.intake.messaging import progress_groups
from services.intake.progress import Progress, ProgressStore
from tests.conftest import (
    fresh_consumer_group,
    produce,
    running_intake,
    start_group_at_end,
)
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

FOLLOWED = [topics.STATUS, topics.RESPONSES]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class Intake:
    http: httpx.AsyncClient
    settings: Settings
    progress: ProgressStore
    mongo: AsyncMongoClient[dict[str, Any]]

    async def register(self) -> tuple[str, str]:
        response = await self.http.post("/api/v1/applications", json=body())
        assert response.status_code == 201, response.text
        answer = response.json()
        return answer["application_id"], answer["application_number"]

    async def send(self, event: Envelope, key: str) -> None:
        topic = topics.RESPONSES if isinstance(event, ApplicationResponse) else topics.STATUS
        await produce(self.settings.kafka_bootstrap, topic, event.to_bytes(), key)

    async def progress_until(self, application_id: str, status: Status) -> Progress:
        return await self.until(application_id, lambda found: found.status is status)

    async def until(self, application_id: str, check: Callable[[Progress], bool]) -> Progress:
        async with asyncio.timeout(30):
            while True:
                found = await self.progress.progress(application_id)
                if found is not None and check(found):
                    return found
                await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def intake(settings: Settings) -> AsyncIterator[Intake]:
    bootstrap = settings.kafka_bootstrap
    group = await fresh_consumer_group(
        bootstrap, "intake", [topics.SUBMISSIONS, *FOLLOWED], [topics.RECEIVED]
    )
    # The progress consumers' groups (messaging.wire) start at the end too.
    for progress_group, topic in zip(progress_groups(group), FOLLOWED, strict=True):
        await start_group_at_end(bootstrap, progress_group, [topic])
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        async with running_intake(settings, group) as (app, http):
            yield Intake(http, settings, app.state.progress, mongo)
    finally:
        await mongo.close()


def status(
    application_id: str,
    number: str,
    new: Status,
    at: datetime,
    *,
    institution: str | None = "DESKI",
    outcome: Outcome | None = None,
) -> StatusChanged:
    return StatusChanged(
        producer="tracking",
        application_id=application_id,
        application_number=number,
        status=new,
        at=at,
        institution_code=institution if new is not Status.received else None,
        outcome=outcome,
        deadline_at=T0 + timedelta(days=30),
        category_code="SU-001",
    )


def at(moment: datetime) -> Callable[[Progress], bool]:
    return lambda found: found.at == moment


def response(application_id: str, institution: str, text: str, at: datetime) -> ApplicationResponse:
    return ApplicationResponse(
        application_id=application_id,
        institution_code=institution,
        outcome=Outcome.olumlu,
        text=text,
        responded_at=at,
    )


async def test_a_status_event_lands_on_intakes_document(intake: Intake) -> None:
    application_id, number = await intake.register()
    assert await intake.progress.progress(application_id) is None
    assert await intake.progress.institution_of(application_id) is None

    await intake.send(status(application_id, number, Status.routed, T0), application_id)
    found = await intake.progress_until(application_id, Status.routed)
    assert found.institution_code == "DESKI"
    assert found.at == T0
    assert found.deadline_at == T0 + timedelta(days=30)
    assert found.category_code == "SU-001"
    assert found.answer_text is None
    assert await intake.progress.institution_of(application_id) == "DESKI"

    raw = await intake.mongo[intake.settings.database_name("intake")][
        "intake_applications"
    ].find_one({"_id": application_id})
    assert raw is not None
    assert raw["progress"]["status"] == "routed"
    assert isinstance(raw["progress"]["at"], datetime)  # a date, not text (see progress.py)
    assert raw["application_number"] == number  # the registration itself is untouched


async def test_an_older_event_never_overwrites_a_newer_one(intake: Intake) -> None:
    application_id, number = await intake.register()
    sentinel_id, sentinel_number = await intake.register()
    opened = status(application_id, number, Status.opened, T0 + timedelta(hours=2))
    await intake.send(opened, application_id)
    await intake.progress_until(application_id, Status.opened)

    # Each older event alone after the newer one (a replay, or an overtaken message), then, on
    # the same partition (same key), an event of another application: once that one has
    # landed, the older one before it has been handled too. Alone, so that no newer event of
    # the same batch hides it: it must lose against the stored one.
    older = [
        status(application_id, number, Status.routed, T0 + timedelta(hours=1)),
        status(application_id, number, Status.received, T0),
        opened,  # the same event again
    ]
    for step, event in enumerate(older):
        await intake.send(event, application_id)
        mark = status(sentinel_id, sentinel_number, Status.routed, T0 + timedelta(minutes=step))
        await intake.send(mark, application_id)
        await intake.until(sentinel_id, at(mark.at))
        found = await intake.progress.progress(application_id)
        assert found is not None
        assert (found.status, found.at) == (Status.opened, T0 + timedelta(hours=2)), event.status


async def test_the_answer_text_is_the_answering_institutions(intake: Intake) -> None:
    application_id, number = await intake.register()
    # DESKI held it, gave it back; the belediye answered. DESKI's late answer (which tracking
    # refuses) must not become the text shown, whatever the order of arrival.
    events: list[tuple[Envelope, str]] = [
        (status(application_id, number, Status.routed, T0), application_id),
        (
            response(application_id, "DESKI", "Kurumumuzun görev alanında değil.", T0),
            application_id,
        ),
        (
            response(
                application_id, "MERKEZEFENDI-BLD", "Çukur onarıldı.", T0 + timedelta(hours=3)
            ),
            application_id,
        ),
        (
            response(application_id, "MERKEZEFENDI-BLD", "İkinci yanıt.", T0 + timedelta(hours=5)),
            application_id,
        ),
    ]
    for event, key in events:
        await intake.send(event, key)
    answered = status(
        application_id,
        number,
        Status.answered,
        T0 + timedelta(hours=3),
        institution="MERKEZEFENDI-BLD",
        outcome=Outcome.olumlu,
    )
    await intake.send(answered, application_id)
    found = await intake.progress_until(application_id, Status.answered)
    assert found.outcome is Outcome.olumlu
    assert found.institution_code == "MERKEZEFENDI-BLD"
    found = await intake.until(application_id, lambda found: found.answer_text is not None)
    assert found.answer_text == "Çukur onarıldı."  # the first answer, the accepted one


async def test_a_batch_with_several_events_of_one_application_keeps_the_newest(
    intake: Intake,
) -> None:
    application_id, number = await intake.register()
    events = [
        status(application_id, number, Status.closed, T0 + timedelta(days=2)),
        status(application_id, number, Status.routed, T0),
        status(application_id, number, Status.answered, T0 + timedelta(days=1)),
    ]
    # Straight into the handler as one batch, as the consumer would hand it over.
    await intake.progress.handle_status(events)
    found = await intake.progress.progress(application_id)
    assert found is not None and found.status is Status.closed
    await intake.progress.handle_status(events[1:])
    found = await intake.progress.progress(application_id)
    assert found is not None and found.status is Status.closed


async def test_events_of_an_application_intake_does_not_hold_create_nothing(
    intake: Intake,
) -> None:
    stranger = str(uuid.uuid4())
    await intake.progress.handle_status([status(stranger, "20-2026-0000001-0", Status.routed, T0)])
    await intake.progress.handle_responses([response(stranger, "DESKI", "Yanıt metni.", T0)])
    assert await intake.progress.progress(stranger) is None
    collection = intake.mongo[intake.settings.database_name("intake")]["intake_applications"]
    assert await collection.count_documents({"_id": stranger}) == 0
