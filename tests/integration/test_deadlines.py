"""Deadlines against the real broker and database: a supervisor's one extension, the e-mails a
warning, a miss and an escalation send (to the institution's and the governorship's addresses in
the taxonomy), and each institution's morning list."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import pytest

from services.common import business_days, topics
from services.common.application_number import format_number
from services.common.auth import Role
from services.common.events import ApplicantContact, ApplicationReceived, ApplicationRouted
from services.common.pii import unseal
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy import default_registry
from services.tracking import domain
from services.tracking.app import build_app
from tests.conftest import Tap, fresh_consumer_group, produce
from tests.support import bearer

pytestmark = pytest.mark.integration

INPUTS = [topics.RECEIVED, topics.ROUTED, topics.RESPONSES, topics.NOTIFICATION_RESULTS]
OUTPUTS = [topics.STATUS, topics.DEADLINES, topics.NOTIFICATION_REQUESTS]
WAIT = 40.0
DESKI_MAIL = "deski@acikkapi.local"
GOVERNORSHIP_MAIL = "denizli.valilik@acikkapi.local"


@pytest.fixture(scope="module")
async def tracking(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    group = await fresh_consumer_group(settings.kafka_bootstrap, "tracking", INPUTS, OUTPUTS)
    # Denizli as routing announces it: the institutions' addresses come from there.
    denizli = taxonomy_published(default_registry().for_province(20))
    await produce(settings.kafka_bootstrap, topics.TAXONOMY, denizli.to_bytes(), "20")
    app = build_app(settings, consumer_group=group, watch_interval=0.5)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        directory = app.state.tracking.directory
        async with asyncio.timeout(WAIT):
            while directory.province(20) is None:
                await asyncio.sleep(0.2)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracking") as http:
            yield app, http


async def register(
    settings: Settings, received_at: datetime, *, institution: str = "DESKI", email: bool = True
) -> tuple[str, str]:
    application_id = str(uuid.uuid4())
    number = format_number(20, 2026, random.randint(1, 9_999_999))
    received = ApplicationReceived(
        application_id=application_id,
        application_number=number,
        producer="test-intake",
        channel="web",
        application_type="sikayet",
        province_code=20,
        district="Pamukkale",
        subject="Şebeke suyu kesik",
        text="Mahallemizde üç gündür şebeke suyu yok.",
        applicant=ApplicantContact(
            tckn_masked="38*******26",
            first_name="Zeynep",
            last_name="Karaağaçlı",
            phone=f"+90532{random.randint(0, 9_999_999):07d}",
            email="zeynep@example.org" if email else None,
        ),
        received_at=received_at,
    )
    routed = ApplicationRouted(
        application_id=application_id,
        application_number=number,
        producer="test-routing",
        category_code="SU-KESINTI",
        heading_code="ALTYAPI",
        institution_code=institution,
        institution_kind="SU_IDARESI",
        institution_name="Denizli Su ve Kanalizasyon İdaresi",
        routed_by="auto",
        deadline_at=business_days.answer_deadline(received_at),
    )
    # Routing's event first: the watcher may find the warning due before intake's event is in,
    # and the institution must already hold the application then.
    for topic, event in [(topics.ROUTED, routed), (topics.RECEIVED, received)]:
        await produce(settings.kafka_bootstrap, topic, event.to_bytes(), key=application_id)
    return application_id, number


async def held(app: Any, application_id: str) -> domain.Application:
    async with asyncio.timeout(WAIT):
        while True:
            state = await app.state.tracking.store.get(application_id)
            if state is not None and state.received_seen and state.institution_code:
                return state  # type: ignore[no-any-return]
            await asyncio.sleep(0.2)


def warned_now() -> datetime:
    """A receipt time whose warning is due now and whose deadline is still ahead."""
    now = datetime.now(UTC)
    for days in range(1, 30):
        received = now - timedelta(days=days)
        deadline = business_days.answer_deadline(received)
        if domain.warning_time(deadline) <= now < deadline:
            return received
    raise AssertionError("no receipt time puts the warning now")  # pragma: no cover


async def test_a_supervisor_extends_the_deadline_once(tracking, settings: Settings):
    app, http = tracking
    received_at = datetime.now(UTC) - timedelta(hours=1)
    application_id, _ = await register(settings, received_at)
    before = (await held(app, application_id)).deadline_at
    url = f"/api/v1/applications/{application_id}/extension"
    body = {"business_days": 5, "reason": "Saha ekibinin incelemesi gerekiyor."}
    async with Tap(settings.kafka_bootstrap, [topics.DEADLINES]) as tap:
        refused = await http.post(
            url, json=body, headers=bearer(settings, Role.institution, institution="DESKI")
        )
        assert refused.status_code == 403
        supervisor = bearer(settings, Role.supervisor, province=20)
        reply = await http.post(url, json=body, headers=supervisor)
        assert reply.status_code == 200, reply.text
        expected = business_days.answer_deadline(received_at, 7 + 5)
        assert datetime.fromisoformat(reply.json()["deadline_at"]) == expected
        assert reply.json()["extension_days"] == 5
        _, changed = await tap.wait_for(
            topics.DEADLINES,
            lambda b: b["application_id"] == application_id and b["kind"] == "changed",
            WAIT,
        )
    assert changed["reason"] == "extension"
    assert datetime.fromisoformat(changed["deadline_at"]) == expected
    assert before is not None
    assert datetime.fromisoformat(changed["previous_deadline_at"]) == before
    again = await http.post(url, json={**body, "business_days": 3}, headers=supervisor)
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "already_extended"
    assert "bir kez" in again.json()["errors"][0]["message"]
    too_long = await http.post(url, json={**body, "business_days": 40}, headers=supervisor)
    assert too_long.status_code == 422


async def test_the_warning_emails_the_institution_once(tracking, settings: Settings):
    app, _ = tracking
    async with Tap(
        settings.kafka_bootstrap, [topics.DEADLINES, topics.NOTIFICATION_REQUESTS]
    ) as tap:
        application_id, number = await register(settings, warned_now())
        _, warning = await tap.wait_for(
            topics.DEADLINES, lambda b: b["application_id"] == application_id, WAIT
        )
        assert warning["kind"] == "warning" and warning["institution_code"] == "DESKI"
        _, mail = await tap.wait_for(
            topics.NOTIFICATION_REQUESTS,
            lambda b: (
                b.get("application_id") == application_id and b["template"] == "deadline_warning"
            ),
            WAIT,
        )
        assert unseal(mail["to"]) == DESKI_MAIL and mail["channel"] == "email"
        assert mail["params"]["application_number"] == number
        # Further watcher rounds give no second warning.
        await asyncio.sleep(2)
        await app.state.tracking.check_deadlines(datetime.now(UTC))
    assert tap.count(topics.DEADLINES, lambda b: b["application_id"] == application_id) == 1


async def test_a_miss_flags_emails_the_institution_and_escalates(tracking, settings: Settings):
    app, _ = tracking
    async with Tap(
        settings.kafka_bootstrap, [topics.DEADLINES, topics.NOTIFICATION_REQUESTS]
    ) as tap:
        received_at = datetime.now(UTC) - timedelta(days=20)
        application_id, _ = await register(settings, received_at)

        def requested(template: str) -> Any:
            return lambda b: (
                b.get("application_id") == application_id and (b["template"] == template)
            )

        _, missed = await tap.wait_for(
            topics.NOTIFICATION_REQUESTS, requested("deadline_missed"), WAIT
        )
        _, escalated = await tap.wait_for(
            topics.NOTIFICATION_REQUESTS, requested("deadline_escalated"), WAIT
        )
    assert unseal(missed["to"]) == DESKI_MAIL
    assert unseal(escalated["to"]) == GOVERNORSHIP_MAIL
    assert escalated["params"]["institution_name"].startswith("Denizli Su")
    kinds = [
        b["kind"]
        for t, _, b in tap.seen
        if t == topics.DEADLINES and b["application_id"] == application_id
    ]
    assert kinds == ["missed", "escalated"]
    state = await app.state.tracking.store.get(application_id)
    assert state.overdue


async def test_each_institution_gets_one_morning_list(tracking, settings: Settings):
    app, _ = tracking
    application_id, number = await register(
        settings, datetime.now(UTC) - timedelta(days=40), email=False
    )
    state = await held(app, application_id)
    async with asyncio.timeout(WAIT):
        while not state.overdue:
            await asyncio.sleep(0.3)
            state = await app.state.tracking.store.get(application_id)
    # A business day of its own far ahead: the day's claim is this test's alone.
    day = date(2031, 1, 6) + timedelta(weeks=random.randint(0, 2_000))
    while not business_days.PUBLIC.is_business_day(day):
        day += timedelta(days=1)
    early = datetime.combine(day, time(7, 0), tzinfo=ISTANBUL)
    morning = datetime.combine(day, time(8, 31), tzinfo=ISTANBUL)
    lists = app.state.morning_lists
    async with Tap(settings.kafka_bootstrap, [topics.NOTIFICATION_REQUESTS]) as tap:
        assert await lists.run(early) == 0
        sent = await lists.run(morning)
        assert sent >= 1
        assert await lists.run(morning + timedelta(minutes=1)) == 0  # once a day
        key = f"digest:DESKI:{day.isoformat()}:email"
        _, mail = await tap.wait_for(
            topics.NOTIFICATION_REQUESTS, lambda b: b.get("idempotency_key") == key, WAIT
        )
    assert unseal(mail["to"]) == DESKI_MAIL and mail["template"] == "institution_digest"
    assert mail["params"]["overdue_count"] >= 1
    assert number in [line["application_number"] for line in mail["params"]["overdue"]]
    assert tap.count(topics.NOTIFICATION_REQUESTS, lambda b: b.get("idempotency_key") == key) == 1
