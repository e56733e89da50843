"""Routing against the real broker and database: applications on the received topic reach their
institution's own topic, wait for an officer when they have no category, come back when an
institution returns them; bad input is dead-lettered and repeats are not re-announced."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.common import topics
from services.common.application_number import MAX_SEQUENCE, format_number
from services.common.auth import Role
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    NotificationRequest,
    Status,
    StatusChanged,
)
from services.common.settings import Settings
from services.routing.app import build_app
from services.routing.lifecycle import RoutingFile
from tests.conftest import Tap, fresh_consumer_group, produce, topic_partitions
from tests.support import bearer

pytestmark = pytest.mark.integration

SOURCES = [topics.RECEIVED, topics.STATUS]


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    group = await fresh_consumer_group(settings.kafka_bootstrap, "routing", SOURCES)
    # These tests are about the officers' queue, so clear texts without a category must wait:
    # automatic routing is off here (tests/integration/test_routing_auto.py tests it).
    manual = settings.model_copy(update={"auto_route_threshold": 1.0})
    app = build_app(manual, consumer_group=group)
    # Everything this instance stores is removed at the end: nx-27017 in single-file mode shares
    # one `routing_applications` table between all database names, hence between test runs, and
    # on a shared broker the instance also queues whatever others publish meanwhile.
    stored: list[str] = []
    add = app.state.store.add

    async def recording_add(decided: list[tuple[RoutingFile, Any]]) -> Any:
        stored.extend(file.application_id for file, _ in decided)
        return await add(decided)

    app.state.store.add = recording_add
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:
            yield app, http
        table = app.state.runtime.mongo[settings.database_name("routing")]["routing_applications"]
        for start in range(0, len(stored), 500):
            await table.delete_many({"_id": {"$in": stored[start : start + 500]}})


@pytest.fixture
def http(service) -> httpx.AsyncClient:
    return service[1]


def application(
    category: str | None, district: str = "Merkezefendi", **fields: Any
) -> ApplicationReceived:
    values: dict[str, Any] = {
        "application_id": str(uuid.uuid4()),
        "application_number": format_number(20, 2026, random.randint(1, MAX_SEQUENCE)),
        "channel": "web",
        "application_type": "sikayet",
        "category_code": category,
        "province_code": 20,
        "district": district,
        "subject": "Su kesintisi",
        "text": "Mahallemizde iki gündür sular akmıyor, ilgilenilmesini rica ederim.",
        "applicant": ApplicantContact(
            tckn_masked="12*******90",
            first_name="Ayşe",
            last_name="Yıldırım",
            phone="+905321234567",
        ),
        "received_at": datetime.now(UTC),
    }
    return ApplicationReceived(**(values | fields))


async def send(settings: Settings, topic: str, event: Any, key: str) -> None:
    body = event if isinstance(event, bytes) else event.to_bytes()
    await produce(settings.kafka_bootstrap, topic, body, key=key)


def about(app_id: str) -> Callable[[dict], bool]:
    return lambda body: body.get("application_id") == app_id


async def poll_pending(
    http: httpx.AsyncClient, headers: dict[str, str], event: ApplicationReceived
) -> dict:
    """Wait until the application shows in the queue, found by its number as an officer would
    (the local nx-27017 queue also holds whatever other runs left there)."""
    async with asyncio.timeout(20):
        while True:
            page = await http.get(
                "/api/v1/routing/pending",
                params={"application_number": event.application_number},
                headers=headers,
            )
            assert page.status_code == 200, page.text
            for item in page.json()["items"]:
                if item["application_id"] == event.application_id:
                    return item
            await asyncio.sleep(0.1)


async def test_application_with_category_reaches_its_institution(service, settings: Settings):
    app_, _ = service
    b = settings.kafka_bootstrap
    event = application("ALT-001", identity_consent=True)
    app_id = event.application_id
    institution = topics.institution_topic("DESKI")
    async with Tap(b, [topics.ROUTED, institution, topics.NOTIFICATION_REQUESTS]) as tap:
        await send(settings, topics.RECEIVED, event, app_id)
        _, routed = await tap.wait_for(topics.ROUTED, about(app_id))
        _, assignment = await tap.wait_for(institution, about(app_id))
        _, email = await tap.wait_for(topics.NOTIFICATION_REQUESTS, about(app_id))

    assert routed["event_type"] == "application.routed"
    assert (routed["institution_code"], routed["institution_kind"]) == ("DESKI", "SU_IDARESI")
    assert routed["routed_by"] == "auto" and routed["producer"] == "routing"
    assert assignment["event_type"] == "institution.assignment"
    assert assignment["application_number"] == event.application_number
    assert assignment["text"] == event.text and assignment["district"] == "Merkezefendi"
    assert assignment["applicant"]["tckn_masked"] == "12*******90"
    assert assignment["deadline_at"] == routed["deadline_at"]
    assert email["idempotency_key"] == f"{app_id}:routed:DESKI:email"
    assert (email["channel"], email["template"]) == ("email", "institution_assignment")
    # The address is sealed on the wire; every service of the system opens it.
    assert email["to"] != "deski@acikkapi.local"
    assert NotificationRequest.model_validate(email).to == "deski@acikkapi.local"
    assert email["params"]["category_name"] == "İçme suyu kesintisi"

    # Stored with the applicant's name and phone sealed, and read back whole.
    store = app_.state.store
    table = app_.state.runtime.mongo[settings.database_name("routing")]["routing_applications"]
    document = await table.find_one({"_id": app_id})
    assert "+905321234567" not in repr(document) and "Yıldırım" not in repr(document)
    file = store.from_document(document)
    assert file.application.applicant == event.applicant
    assert file.state == "routed" and file.routing.institution_code == "DESKI"


async def test_escorted_applicants_head_the_officers_queue(http, settings: Settings):
    plain = application(None, district="Babadağ")  # no category: both wait for an officer
    escorted = application(None, district="Babadağ", priority="yasli")
    for event in (plain, escorted):  # the plain one first: it has waited longer
        await send(settings, topics.RECEIVED, event, event.application_id)
    officer = bearer(settings, Role.officer, province=20)
    mine = {plain.application_id, escorted.application_id}

    async def both() -> list[dict]:
        async with asyncio.timeout(20):
            while True:
                page = await http.get(
                    "/api/v1/routing/pending",
                    params={"district": "Babadağ", "limit": 200},
                    headers=officer,
                )
                items = [i for i in page.json()["items"] if i["application_id"] in mine]
                if len(items) == 2:
                    return items
                await asyncio.sleep(0.1)

    items = await both()
    assert [i["application_id"] for i in items] == [
        escorted.application_id,
        plain.application_id,
    ]
    assert items[0]["priority"] == "yasli" and items[1]["priority"] is None


async def test_without_category_an_officer_routes_it(http, settings: Settings):
    b = settings.kafka_bootstrap
    officer = bearer(settings, Role.officer, province=20)
    event = application(
        None,
        district="Pamukkale",
        subject="Muhtarlık",
        text="Muhtarımız mahallemizin sorunlarıyla hiç ilgilenmiyor.",
        identity_consent=True,
    )
    app_id = event.application_id
    institution_topic = topics.institution_topic("PAMUKKALE-KYM")
    async with Tap(b, [topics.ROUTED, institution_topic]) as tap:
        await send(settings, topics.RECEIVED, event, app_id)
        _, waiting = await tap.wait_for(topics.ROUTED, about(app_id))
        assert waiting["event_type"] == "application.awaiting_routing"
        assert "kategori belirtilmemiş" in waiting["reason"]

        item = await poll_pending(http, officer, event)
        assert item["application_number"] == event.application_number
        by_district = await http.get(
            "/api/v1/routing/pending",
            params={"district": "PAMUKKALE", "application_number": event.application_number},
            headers=officer,
        )
        assert [i["application_id"] for i in by_district.json()["items"]] == [app_id]
        elsewhere = await http.get(
            "/api/v1/routing/pending",
            params={"district": "Tavas", "application_number": event.application_number},
            headers=officer,
        )
        assert elsewhere.json()["total"] == 0
        number = event.application_number
        wrong_digit = number[:-1] + str((int(number[-1]) + 1) % 10)
        bad = await http.get(
            "/api/v1/routing/pending", params={"application_number": wrong_digit}, headers=officer
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "application_number"
        assert item["district"] == "Pamukkale" and item["excerpt"] == event.text
        assert item["suggestions"][0]["institution_code"] == "PAMUKKALE-KYM"
        assert item["waiting_since"]
        assert "Yıldırım" not in json.dumps(item) and "+90532" not in json.dumps(item)

        institution = bearer(settings, Role.institution, institution="PAMUKKALE-KYM")
        refused = await http.get("/api/v1/routing/pending", headers=institution)
        assert refused.status_code == 403
        assert refused.json()["errors"][0]["code"] == "forbidden"
        assert (await http.get("/api/v1/routing/pending")).status_code == 401

        url = f"/api/v1/routing/{app_id}/route"
        unknown = await http.post(url, json={"category_code": "XYZ-999"}, headers=officer)
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["field"] == "category_code"
        missing = await http.post(
            "/api/v1/routing/nope/route", json={"category_code": "NUF-012"}, headers=officer
        )
        assert missing.status_code == 404

        decided = await http.post(url, json={"category_code": "NUF-012"}, headers=officer)
        assert decided.status_code == 200, decided.text
        record = decided.json()
        assert record["institution_code"] == "PAMUKKALE-KYM"
        assert (record["routed_by"], record["officer"]) == ("officer", "test-officer")

        _, routed = await tap.wait_for(
            topics.ROUTED, lambda e: about(app_id)(e) and e["event_type"] == "application.routed"
        )
        _, assignment = await tap.wait_for(institution_topic, about(app_id))
    assert routed["officer"] == "test-officer"
    assert assignment["category_code"] == "NUF-012"
    assert assignment["applicant"]["phone"] == "+905321234567"
    again = await http.post(url, json={"category_code": "NUF-013"}, headers=officer)
    assert again.status_code == 409


async def test_returned_application_comes_back_to_the_queue(http, settings: Settings):
    b = settings.kafka_bootstrap
    officer = bearer(settings, Role.officer)
    event = application("ALT-002", district="Tavas")
    app_id = event.application_id
    async with Tap(b, [topics.ROUTED]) as tap:
        await send(settings, topics.RECEIVED, event, app_id)
        _, first = await tap.wait_for(topics.ROUTED, about(app_id))
        back = StatusChanged(
            application_id=app_id,
            application_number=event.application_number,
            status=Status.returned,
            previous_status=Status.opened,
            at=datetime.now(UTC) + timedelta(milliseconds=50),
            institution_code=first["institution_code"],
            reason="Sokak lambaları elektrik dağıtım şirketinin görevidir.",
        )
        await send(settings, topics.STATUS, back, app_id)
        _, waiting = await tap.wait_for(
            topics.ROUTED,
            lambda e: about(app_id)(e) and e["event_type"] == "application.awaiting_routing",
        )
    assert "iade etti" in waiting["reason"] and "elektrik dağıtım şirketinin" in waiting["reason"]
    item = await poll_pending(http, officer, event)
    assert item["returned_by"] == "DESKI"
    decided = await http.post(
        f"/api/v1/routing/{app_id}/route", json={"category_code": "BEL-001"}, headers=officer
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["institution_code"] == "TAVAS-BLD"


async def test_malformed_message_is_dead_lettered_and_the_consumer_carries_on(
    service, settings: Settings
):
    b = settings.kafka_bootstrap
    bad_key = f"bad-{uuid.uuid4()}"
    event = application("BEL-001", district="Honaz")
    dlq, institution = topics.dlq(topics.RECEIVED), topics.institution_topic("HONAZ-BLD")
    async with Tap(b, [dlq, institution]) as tap:
        await send(settings, topics.RECEIVED, b'{"application_id": "x", "broken', bad_key)
        await send(settings, topics.RECEIVED, event, bad_key)  # same partition, after it
        # Every consumer of the received topic dead-letters it; routing's own letter counts.
        _, letter = await tap.wait_for(
            dlq, lambda e: e.get("key") == bad_key and e.get("consumer", "").startswith("routing.")
        )
        _, assignment = await tap.wait_for(institution, about(event.application_id))
    assert letter["error_type"] == "invalid_message"
    assert letter["source_topic"] == topics.RECEIVED
    assert assignment["category_code"] == "BEL-001"


async def test_redelivered_event_is_not_assigned_twice(service, settings: Settings):
    b = settings.kafka_bootstrap
    event = application("ENR-002", district="Çivril", subject="Sokak lambası")
    marker = application("ENR-002", district="Çivril", subject="Ölçüt")
    institution = topics.institution_topic("ADM-ELEKTRIK")
    async with Tap(b, [institution]) as tap:
        # Same key: same partition, so the marker is handled after both copies.
        for copy in (event, event, marker):
            await send(settings, topics.RECEIVED, copy, event.application_id)
        await tap.wait_for(institution, about(marker.application_id))
        await tap.caught_up()
        assert tap.count(institution, about(event.application_id)) == 1


async def test_taxonomy_and_suggestions_over_http(http):
    taxonomy = (await http.get("/api/v1/taxonomy")).json()
    assert len(taxonomy["headings"]) == 17
    assert sum(len(h["categories"]) for h in taxonomy["headings"]) == 327
    assert len(taxonomy["institutions"]) == 83
    first = taxonomy["headings"][0]["categories"][0]
    assert first["institution"] == {
        "code": "DESKI",
        "name": "Denizli Su ve Kanalizasyon İdaresi (DESKİ)",
        "kind": "SU_IDARESI",
    }
    local = (await http.get("/api/v1/taxonomy", params={"district": "Pamukkale"})).json()
    muhtar = next(c for h in local["headings"] for c in h["categories"] if c["code"] == "NUF-012")
    assert muhtar["institution"]["code"] == "PAMUKKALE-KYM"

    body = {"text": "Okulun çatısı akıyor", "province_code": 20, "district": "Merkezefendi"}
    ranked = await http.post("/api/v1/routing/suggest", json=body)
    assert ranked.status_code == 200
    best = ranked.json()[0]
    assert (best["category_code"], best["institution_code"]) == ("EGT-001", "MERKEZEFENDI-MEM")
    assert best["institution_kind"] == "MEB" and best["score"] > 0


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"text": "ab", "province_code": 20}, "text", "string_too_short"),
        ({"text": "x" * 5001, "province_code": 20}, "text", "string_too_long"),
        ({"text": "Sular akmıyor", "province_code": 0}, "province_code", "greater_than_equal"),
        ({"text": "Sular akmıyor", "province_code": 82}, "province_code", "less_than_equal"),
        ({"text": "Sular akmıyor", "province_code": 35}, "province_code", "province_not_supported"),
        ({"text": "Sular akmıyor", "province_code": 20, "district": "Bornova"}, "district",
         "unknown_district"),
        ({"province_code": 20}, "text", "missing"),
    ],
)  # fmt: skip
async def test_suggest_refuses_bad_input_in_turkish(http, body, field, code):
    answer = await http.post("/api/v1/routing/suggest", json=body)
    assert answer.status_code == 422
    error = answer.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)
    assert error["message"]
    if code == "unknown_district":
        assert "Denizli ilçeleri arasında yok" in error["message"] and "Çivril" in error["message"]


async def test_a_huge_pending_offset_is_refused_not_a_500(http, settings: Settings):
    officer = bearer(settings, Role.officer, province=20)
    # Past 64 bits MongoDB's skip overflowed (OverflowError, 500).
    answer = await http.get("/api/v1/routing/pending", params={"offset": 10**20}, headers=officer)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "offset"


async def test_ready_with_every_institution_topic_created(http, settings: Settings):
    assert (await http.get("/readyz")).status_code == 200
    # Only routing writes to a small district's kaymakamlık topic: start-up created it.
    quiet = topics.institution_topic("BEKILLI-KYM")
    partitions = await topic_partitions(settings.kafka_bootstrap, [quiet])
    assert len(partitions) == topics.INSTITUTION_PARTITIONS
    asyncapi = (await http.get("/asyncapi")).json()
    assert any("acikkapi.applications.received" in name for name in asyncapi["channels"])
