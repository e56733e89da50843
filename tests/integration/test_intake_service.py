"""Intake against the real broker and database: what citizens post over HTTP and channel adapters
put on Kafka is checked, stored sealed, numbered, and announced on the real topics."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.common import topics
from services.common.application_number import format_number, parse_number
from services.common.auth import Role
from services.common.devtoken import edevlet_assertion
from services.common.events import ApplicantContact, ApplicationReceived, NotificationRequest
from services.common.pii import is_ciphertext
from services.common.settings import Settings
from services.intake.domain import RegisteredApplication
from services.intake.handlers import Intake, received_messages
from services.intake.store import ApplicationStore
from tests.conftest import (
    ServiceUnderTest,
    Tap,
    fresh_consumer_group,
    produce,
    running_intake,
)
from tests.support import bearer
from tests.unit.test_intake_rules import VALID_TCKN, body

pytestmark = pytest.mark.integration

OUTPUTS = [topics.RECEIVED, topics.NOTIFICATION_REQUESTS, topics.REJECTIONS]
DLQ = topics.dlq(topics.SUBMISSIONS)


@dataclass
class Service(ServiceUnderTest):
    tap: Tap
    intake: Intake
    store: ApplicationStore
    mongo: AsyncMongoClient

    @property
    def applications(self) -> Any:
        return self.mongo[self.settings.database_name("intake")]["intake_applications"]


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[Service]:
    bootstrap = settings.kafka_bootstrap
    group = await fresh_consumer_group(bootstrap, "intake", [topics.SUBMISSIONS], OUTPUTS)
    tap = Tap(bootstrap, [*OUTPUTS, DLQ])
    await tap.start()
    mongo: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        async with running_intake(settings, group) as (app, http):
            yield Service(http, settings, tap, app.state.intake, app.state.store, mongo)
    finally:
        await tap.stop()
        await mongo.close()


def of_application(application_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("application_id") == application_id


async def a_follow_up_is_registered(service: Service, key: str) -> None:
    """Submit a valid application under `key` (so on the same partition, after whatever went
    before with that key) and wait until it is announced as received."""
    follow_up = f"sub-{uuid.uuid4()}"
    message = {**body(), "submission_id": follow_up}
    await produce(service.settings.kafka_bootstrap, topics.SUBMISSIONS, message, key)
    await service.tap.wait_for(topics.RECEIVED, lambda e: e.get("submission_id") == follow_up)


async def test_an_application_is_registered_and_announced(service: Service) -> None:
    response = await service.http.post(
        "/api/v1/applications", json=body(district="MERKEZEFENDİ", applicant_email="a@ornek.com")
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) == {"application_id", "application_number", "status", "received_at"}
    assert answer["status"] == "received"
    province, year, _ = parse_number(answer["application_number"])
    assert (province, year) == (20, datetime.fromisoformat(answer["received_at"]).year)

    key, received = await service.tap.wait_for(
        topics.RECEIVED, of_application(answer["application_id"])
    )
    assert key == answer["application_id"]
    assert received["event_type"] == "application.received"
    assert received["application_number"] == answer["application_number"]
    assert received["district"] == "Merkezefendi"
    # Names, phone and e-mail are sealed on the wire; the system's services open them.
    assert "Yılmaz" not in json.dumps(received, ensure_ascii=False)
    assert "5321234567" not in json.dumps(received)
    assert ApplicationReceived.model_validate(received).applicant.model_dump() == {
        "tckn_masked": "10*******46",
        "first_name": "Ayşe",
        "last_name": "Yılmaz",
        "phone": "+905321234567",
        "email": "a@ornek.com",
    }
    assert VALID_TCKN not in json.dumps(received)

    sms_key = f"{answer['application_id']}:received:sms"
    key, sms = await service.tap.wait_for(
        topics.NOTIFICATION_REQUESTS, lambda e: e.get("idempotency_key") == sms_key
    )
    assert key == sms_key
    assert sms["channel"] == "sms"
    assert NotificationRequest.model_validate(sms).to == "+905321234567" != sms["to"]
    assert sms["template"] == "application_received"
    assert sms["params"] == {
        "application_number": answer["application_number"],
        "tracking_url": service.settings.public_tracking_url,
    }

    # The outbox is cleared in the background once both events are on the bus.
    async with asyncio.timeout(10):
        while (await service.applications.find_one({"_id": answer["application_id"]}))["outbox"]:
            await asyncio.sleep(0.1)


async def test_the_tckn_is_stored_sealed(service: Service) -> None:
    response = await service.http.post("/api/v1/applications", json=body())
    assert response.status_code == 201
    raw = await service.applications.find_one({"_id": response.json()["application_id"]})
    assert raw is not None
    dumped = json.dumps(raw, default=str, ensure_ascii=False)
    assert VALID_TCKN not in dumped
    assert "5321234567" not in dumped  # the phone is sealed too
    applicant = raw["applicant"]
    assert applicant["tckn_masked"] == "10*******46"
    assert applicant["phone_last4"] == "4567"
    assert is_ciphertext(applicant["tckn_enc"])


async def test_a_repeated_idempotency_key_answers_the_same_and_stores_once(
    service: Service,
) -> None:
    headers = {"Idempotency-Key": f"test-{uuid.uuid4()}"}
    first = await service.http.post("/api/v1/applications", json=body(), headers=headers)
    again = await service.http.post("/api/v1/applications", json=body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert await service.applications.count_documents(headers_key(headers)) == 1

    other = await service.http.post(
        "/api/v1/applications", json=body(subject="Başka bir konu"), headers=headers
    )
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await service.applications.count_documents(headers_key(headers)) == 1


def headers_key(headers: dict[str, str]) -> dict[str, str]:
    return {"idempotency_key": headers["Idempotency-Key"]}


async def test_bad_fields_come_back_together_in_turkish(service: Service) -> None:
    response = await service.http.post(
        "/api/v1/applications",
        json=body(
            applicant_tckn="10000000147", applicant_phone="0258 212 34 56", district="Bornova"
        ),
    )
    assert response.status_code == 422
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert set(errors) == {"applicant.tckn", "applicant.phone", "district"}
    assert errors["applicant.tckn"] == {
        "field": "applicant.tckn",
        "code": "invalid_tckn",
        "message": "TC Kimlik No geçersiz: kontrol haneleri tutmuyor.",
    }
    assert "cep telefonu" in errors["applicant.phone"]["message"]
    assert errors["district"]["message"] == "Denizli iline bağlı böyle bir ilçe bulunamadı."


async def test_a_counter_application_needs_an_officer(service: Service) -> None:
    counter = body(channel="counter")
    anonymous = await service.http.post("/api/v1/applications", json=counter)
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["code"] == "unauthorized"
    wrong_role = await service.http.post(
        "/api/v1/applications", json=counter, headers=service.token(Role.institution, "DESKI")
    )
    assert wrong_role.status_code == 403
    officer = await service.http.post(
        "/api/v1/applications", json=counter, headers=service.token(Role.officer)
    )
    assert officer.status_code == 201
    raw = await service.applications.find_one({"_id": officer.json()["application_id"]})
    assert raw["recorded_by"] == "test-officer"
    # A retry of a registered application is answered as such, even once the token has expired.
    key = {"Idempotency-Key": f"masa-{uuid.uuid4()}"}
    first = await service.http.post(
        "/api/v1/applications", json=counter, headers={**key, **service.token(Role.officer)}
    )
    retry = await service.http.post(
        "/api/v1/applications", json=counter, headers={**key, "Authorization": "Bearer x.y.z"}
    )
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json() and retry.headers["Idempotent-Replayed"] == "true"
    stranger = await service.http.post(
        "/api/v1/applications",
        json=counter,
        headers={"Idempotency-Key": f"masa-{uuid.uuid4()}", "Authorization": "Bearer x.y.z"},
    )
    assert stranger.status_code == 401
    for channel in ("web", "mobile", "kiosk", "open311"):
        response = await service.http.post("/api/v1/applications", json=body(channel=channel))
        assert response.status_code == 201, channel


async def test_the_call_centre_records_its_agent_and_the_calling_number(
    service: Service,
) -> None:
    call = body(channel="call_center")
    agent = bearer(service.settings, Role.officer, subject="cagri-temsilcisi-7")

    anonymous = await service.http.post("/api/v1/applications", json=call)
    no_number = await service.http.post("/api/v1/applications", json=call, headers=agent)
    recorded = await service.http.post(
        "/api/v1/applications", json={**call, "caller_number": "0258 212 34 56"}, headers=agent
    )

    assert anonymous.status_code == 401
    assert no_number.status_code == 422
    assert [e["field"] for e in no_number.json()["errors"]] == ["caller_number"]
    assert recorded.status_code == 201, recorded.text
    raw = await service.applications.find_one({"_id": recorded.json()["application_id"]})
    assert raw["recorded_by"] == "cagri-temsilcisi-7"
    assert "2582123456" not in str(raw) and raw["caller_enc"]
    shown = await service.http.get(
        f"/api/v1/applications/{recorded.json()['application_id']}", headers=agent
    )
    assert shown.json()["caller_masked"].endswith("56")


async def test_an_officer_can_look_an_application_up(service: Service) -> None:
    created = (await service.http.post("/api/v1/applications", json=body())).json()
    path = f"/api/v1/applications/{created['application_id']}"
    assert (await service.http.get(path)).status_code == 401
    response = await service.http.get(path, headers=service.token(Role.officer))
    assert response.status_code == 200
    shown = response.json()
    assert shown["application_number"] == created["application_number"]
    assert shown["applicant"]["tckn_masked"] == "10*******46"
    assert VALID_TCKN not in response.text
    missing = await service.http.get(
        f"/api/v1/applications/{uuid.uuid4()}", headers=service.token(Role.supervisor)
    )
    assert missing.status_code == 404


async def test_broken_and_oversized_bodies(service: Service) -> None:
    broken = await service.http.post(
        "/api/v1/applications",
        content=b'{"channel": "web",',
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["errors"][0]["code"] == "invalid_json"

    big = json.dumps({**body(), "text": "x" * 2_000_000}).encode()
    too_big = await service.http.post(
        "/api/v1/applications", content=big, headers={"Content-Type": "application/json"}
    )
    assert too_big.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit counts bytes
        for start in range(0, len(big), 65_536):
            yield big[start : start + 65_536]

    streamed = await service.http.post(
        "/api/v1/applications", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["errors"][0]["code"] == "payload_too_large"


async def test_a_lone_surrogate_is_bad_json_not_a_500(service: Service) -> None:
    # json.loads accepts "\ud800"; MongoDB and Kafka cannot encode it (and the insert batch it
    # shared with other citizens' applications failed with it).
    for extra in ({"subject": "\ud800 bozuk konu"}, {"note": "\udfff"}):
        raw = json.dumps({**body(), **extra}).encode()  # ensure_ascii: sent as an escape
        for key in (None, f"surrogate-{uuid.uuid4()}"):
            headers = {"Content-Type": "application/json"}
            if key:
                headers["Idempotency-Key"] = key
            answer = await service.http.post("/api/v1/applications", content=raw, headers=headers)
            assert answer.status_code == 400, answer.text
            assert answer.json()["errors"][0]["code"] == "invalid_json"
    # A proper pair (an emoji sent escaped) is still fine.
    raw = json.dumps({**body(), "subject": "Su kesintisi \U0001f6b0"}).encode()
    ok = await service.http.post(
        "/api/v1/applications", content=raw, headers={"Content-Type": "application/json"}
    )
    assert ok.status_code == 201, ok.text


async def test_a_submission_on_kafka_is_registered_once(service: Service) -> None:
    submission_id = f"sub-{uuid.uuid4()}"
    message = {**body(channel="kiosk"), "submission_id": submission_id}
    await produce(service.settings.kafka_bootstrap, topics.SUBMISSIONS, message, submission_id)
    _, received = await service.tap.wait_for(
        topics.RECEIVED, lambda e: e.get("submission_id") == submission_id
    )
    assert received["channel"] == "kiosk"
    assert received["applicant"]["tckn_masked"] == "10*******46"

    await produce(service.settings.kafka_bootstrap, topics.SUBMISSIONS, message, submission_id)
    # Same key, same partition: once this one is through, so is the redelivery.
    await a_follow_up_is_registered(service, submission_id)
    assert await service.applications.count_documents({"submission_id": submission_id}) == 1


async def test_a_bad_submission_is_rejected_with_its_errors(service: Service) -> None:
    submission_id = f"sub-{uuid.uuid4()}"
    message = {**body(applicant_tckn="12345678901", district="Yok"), "submission_id": submission_id}
    await produce(service.settings.kafka_bootstrap, topics.SUBMISSIONS, message, submission_id)
    key, rejection = await service.tap.wait_for(
        topics.REJECTIONS, lambda e: e.get("submission_id") == submission_id
    )
    assert key == submission_id
    assert {e["field"] for e in rejection["errors"]} == {"applicant.tckn", "district"}
    assert all(e["message"] for e in rejection["errors"])
    assert await service.applications.count_documents({"submission_id": submission_id}) == 0


async def test_an_edevlet_application_takes_its_identity_from_the_assertion_once(
    service: Service,
) -> None:
    assertion = edevlet_assertion(
        service.settings, tckn=VALID_TCKN, first_name="Zeynep", last_name="Çınar"
    )
    form = body(channel="edevlet", applicant_first_name="Başka", applicant_tckn="12345678950")
    del form["applicant"]["mother_maiden_initials"]  # not asked: e-Devlet proved who it is

    missing = await service.http.post("/api/v1/applications", json=form)
    first = await service.http.post(
        "/api/v1/applications",
        json={**form, "edevlet_assertion": assertion},
        headers={"Idempotency-Key": f"ed-{uuid.uuid4()}"},
    )
    again = await service.http.post(
        "/api/v1/applications", json={**form, "edevlet_assertion": assertion}
    )

    assert missing.status_code == 401
    assert missing.json()["errors"][0]["field"] == "edevlet_assertion"
    assert first.status_code == 201, first.text
    _, received = await service.tap.wait_for(
        topics.RECEIVED, of_application(first.json()["application_id"])
    )
    assert ApplicationReceived.model_validate(received).applicant.first_name == "Zeynep"
    assert received["applicant"]["tckn_masked"] == "10*******46"
    assert again.status_code == 401 and again.json()["errors"][0]["code"] == "replayed"

    # On Kafka alike: a replayed assertion is rejected, nothing is registered.
    submission_id = f"sub-{uuid.uuid4()}"
    message = {**form, "edevlet_assertion": assertion, "submission_id": submission_id}
    await produce(service.settings.kafka_bootstrap, topics.SUBMISSIONS, message, submission_id)
    _, rejection = await service.tap.wait_for(
        topics.REJECTIONS, lambda e: e.get("submission_id") == submission_id
    )
    assert [e["code"] for e in rejection["errors"]] == ["replayed"]


async def test_a_counter_submission_on_kafka_needs_its_officer(service: Service) -> None:
    anonymous, vouched = f"sub-{uuid.uuid4()}", f"sub-{uuid.uuid4()}"
    officer = service.token(Role.officer)["Authorization"].removeprefix("Bearer ")
    bootstrap = service.settings.kafka_bootstrap
    counter = body(channel="counter")
    await produce(bootstrap, topics.SUBMISSIONS, {**counter, "submission_id": anonymous}, anonymous)
    await produce(
        bootstrap,
        topics.SUBMISSIONS,
        {**counter, "officer_token": officer, "submission_id": vouched},
        vouched,
    )

    _, rejection = await service.tap.wait_for(
        topics.REJECTIONS, lambda e: e.get("submission_id") == anonymous
    )
    _, received = await service.tap.wait_for(
        topics.RECEIVED, lambda e: e.get("submission_id") == vouched
    )
    assert [(e["field"], e["code"]) for e in rejection["errors"]] == [
        ("officer_token", "unauthorized")
    ]
    stored = await service.applications.find_one({"_id": received["application_id"]})
    assert stored["recorded_by"] == "test-officer"
    assert officer not in str(stored)


async def test_an_undecodable_submission_goes_to_the_dead_letter_topic(service: Service) -> None:
    key = f"junk-{uuid.uuid4()}"
    await produce(service.settings.kafka_bootstrap, topics.SUBMISSIONS, b"<xml/>", key)
    _, letter = await service.tap.wait_for(DLQ, lambda e: e.get("key") == key)
    assert letter["original"] == "<xml/>"
    assert letter["error_type"] == "invalid_message"
    # ... and the consumer carries on.
    await a_follow_up_is_registered(service, key)


async def test_the_relay_publishes_what_a_crash_left_behind(service: Service) -> None:
    form = service.intake.validate(body())
    application_id = str(uuid.uuid4())
    orphan = RegisteredApplication(
        application_id=application_id,
        application_number=format_number(20, 2026, 9_000_000 + random.randrange(999_999)),
        received_at=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
        channel=form.channel,
        application_type=form.application_type,
        category_code=None,
        province_code=20,
        district=form.district,
        subject=form.subject,
        text=form.text,
        location=None,
        applicant=ApplicantContact(
            tckn_masked="10*******46", first_name="Ayşe", last_name="Yılmaz", phone="+905321234567"
        ),
    )
    # As if a process died right after its insert, before publishing anything.
    messages = received_messages(orphan, service.settings.public_tracking_url)
    await service.store.insert(
        orphan, tckn=VALID_TCKN, mother_maiden_initials="YZ", messages=messages
    )
    stored = await service.applications.find_one({"_id": application_id})
    assert len(stored["outbox"]) == 2
    assert "5321234567" not in str(stored["outbox"])  # the SMS request is sealed at rest
    async with asyncio.timeout(30):
        # Older leftovers (of other runs) may come first; each sweep takes a batch of them.
        while not service.tap.count(topics.RECEIVED, of_application(application_id)):
            await service.store.outbox.relay_once(now=stored["outbox_due"] + 1)
            await asyncio.sleep(0.2)
    await service.tap.wait_for(topics.NOTIFICATION_REQUESTS, of_application(application_id))
    assert (await service.applications.find_one({"_id": application_id}))["outbox"] == []
