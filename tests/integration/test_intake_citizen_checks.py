"""A citizen's own submission on the real stack, with every check on: the phone confirmed by a
code sent through the real SMS gateway (read back from the fake SMSC), the identity in the demo
registry, the daily limits in the real database, and the rate per client address."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pymongo import AsyncMongoClient

from services.common import topics
from services.common.auth import Role
from services.common.settings import Settings
from services.intake.app import build_app
from services.intake.identity import (
    IdentityClaim,
    IdentityUnavailable,
    RegistryServiceVerifier,
    demo_persons,
)
from services.intake.limits import DailyCounters
from services.intake.verification import phone_token_for
from tests.conftest import (
    ServiceUnderTest,
    fresh_consumer_group,
    produce,
    running_intake,
)
from tests.support import bearer, sms_texts_to
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

REGISTRY = demo_persons()


def person_body(person: dict[str, str], **changes: Any) -> dict[str, Any]:
    """An application from a person of the demo registry, from their own phone."""
    raw = body(**changes)
    raw["applicant"] = {k: person[k] for k in ("tckn", "first_name", "last_name", "phone")} | {
        "mother_maiden_initials": person["mother_maiden_initials"]
    }
    return raw


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[ServiceUnderTest]:
    checked = settings.model_copy(
        update={
            "identity_verifier": "registry_file",
            "phone_verification": True,
            "daily_limit_per_tckn": 3,
            "daily_limit_per_phone": 4,
            "client_posts_per_minute": 0,
        }
    )
    group = await fresh_consumer_group(checked.kafka_bootstrap, "intake", [topics.SUBMISSIONS], [])
    async with running_intake(checked, group) as (_app, http):
        yield ServiceUnderTest(http, checked)


def people(n: int) -> list[dict[str, str]]:
    """n people of the registry no other test in this run has used (the limits count per day)."""
    return random.Random(uuid.uuid4().hex).sample(REGISTRY, n)


async def code_sent_to(phone: str, timeout: float = 20) -> str:
    """The code in the newest SMS the fake SMSC received for `phone`."""
    data_dir = Path(os.environ["AK_DATA_DIR"])
    async with asyncio.timeout(timeout):
        while True:
            texts = await asyncio.to_thread(sms_texts_to, data_dir, phone)
            codes = [m.group(1) for t in texts if (m := re.search(r"kodu: (\d{6})", t))]
            if codes:
                return codes[-1]
            await asyncio.sleep(0.2)


async def test_a_web_application_is_registered_once_the_phone_is_confirmed_by_sms(
    service: ServiceUnderTest,
) -> None:
    (person,) = people(1)
    application = person_body(person)
    refused = await service.http.post("/api/v1/applications", json=application)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["field"] == "phone_verification"

    started = await service.http.post("/api/v1/verifications", json={"phone": person["phone"]})
    assert started.status_code == 201, started.text
    verification = started.json()
    assert verification["phone_masked"].endswith(person["phone"][-2:])
    assert person["phone"][-7:-2] not in verification["phone_masked"]
    code = await code_sent_to(person["phone"])

    # Asking again at once is refused with the wait.
    again = await service.http.post("/api/v1/verifications", json={"phone": person["phone"]})
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0

    confirm = f"/api/v1/verifications/{verification['verification_id']}/confirm"
    wrong = "000000" if code != "000000" else "111111"
    answer = await service.http.post(confirm, json={"code": wrong})
    assert answer.status_code == 422
    assert answer.json()["errors"][0] == {
        "field": "code",
        "code": "wrong_code",
        "message": "Doğrulama kodu yanlış. 4 deneme hakkınız kaldı.",
    }
    answer = await service.http.post(confirm, json={"code": code})
    assert answer.status_code == 200, answer.text
    token = answer.json()["phone_verification"]
    # A code confirms once.
    assert (await service.http.post(confirm, json={"code": code})).status_code == 410

    registered = await service.http.post(
        "/api/v1/applications", json={**application, "phone_verification": token}
    )
    assert registered.status_code == 201, registered.text
    # The code is nowhere in what intake stored.
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(service.settings.mongo_uri)
    try:
        db = mongo[service.settings.database_name("intake")]
        stored = await db["intake_applications"].find_one(
            {"_id": registered.json()["application_id"]}
        )
        codes = await db["intake_phone_codes"].find({}).to_list(None)
    finally:
        await mongo.close()
    assert code not in json.dumps(stored, default=str)
    assert code not in json.dumps(codes, default=str)


async def test_five_wrong_codes_use_the_code_up(service: ServiceUnderTest) -> None:
    (person,) = people(1)
    started = await service.http.post("/api/v1/verifications", json={"phone": person["phone"]})
    code = await code_sent_to(person["phone"])
    confirm = f"/api/v1/verifications/{started.json()['verification_id']}/confirm"
    wrong = "000000" if code != "000000" else "111111"
    # Guessed in parallel: the tries are counted atomically.
    answers = await asyncio.gather(
        *(service.http.post(confirm, json={"code": wrong}) for _ in range(8))
    )
    assert sorted(a.status_code for a in answers) == [410] * 3 + [422] * 5
    right = await service.http.post(confirm, json={"code": code})
    assert right.status_code == 410
    assert right.json()["errors"][0]["code"] == "too_many_tries"


async def test_a_mismatched_identity_is_refused_without_saying_which_field(
    service: ServiceUnderTest,
) -> None:
    first, second = people(2)
    token = phone_token_for(service.settings, first["phone"])
    for wrong in (
        {
            "first_name": second["first_name"]
            if second["first_name"] != first["first_name"]
            else "Zeynep"
        },
        {"mother_maiden_initials": "ÇŞ" if first["mother_maiden_initials"] != "ÇŞ" else "ĞÜ"},
        {"tckn": second["tckn"]},
    ):
        application = person_body(first, phone_verification=token)
        application["applicant"] |= wrong
        answer = await service.http.post("/api/v1/applications", json=application)
        assert answer.status_code == 422, answer.text
        (error,) = answer.json()["errors"]
        assert error["field"] == "applicant" and error["code"] == "identity_mismatch"
        assert "doğrulanamadı" in error["message"]


async def test_the_daily_limit_answers_429_until_midnight_and_a_keyed_retry_still_replays(
    service: ServiceUnderTest,
) -> None:
    (person,) = people(1)
    token = phone_token_for(service.settings, person["phone"])
    application = person_body(person, phone_verification=token)
    keys = [str(uuid.uuid4()) for _ in range(4)]
    answers = [
        await service.http.post(
            "/api/v1/applications",
            json={**application, "subject": f"Konu numarası {n}"},
            headers={"Idempotency-Key": key},
        )
        for n, key in enumerate(keys)
    ]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    refusal = answers[-1]
    (error,) = refusal.json()["errors"]
    assert error["code"] == "daily_limit" and "TC Kimlik No" in error["message"]
    assert 0 < int(refusal.headers["Retry-After"]) <= 86400
    # The first one, retried with its key, is answered as registered.
    retry = await service.http.post(
        "/api/v1/applications",
        json={**application, "subject": "Konu numarası 0"},
        headers={"Idempotency-Key": keys[0]},
    )
    assert retry.status_code == 201
    assert retry.json()["application_number"] == answers[0].json()["application_number"]


async def test_a_submission_on_kafka_needs_the_phone_token_too(
    service: ServiceUnderTest,
) -> None:
    (person,) = people(1)
    submission_id = f"sub-{uuid.uuid4()}"
    message = {**person_body(person), "submission_id": submission_id}
    from tests.conftest import Tap

    tap = Tap(service.settings.kafka_bootstrap, [topics.REJECTIONS])
    await tap.start()
    try:
        await produce(service.settings.kafka_bootstrap, topics.SUBMISSIONS, message, submission_id)
        _, rejection = await tap.wait_for(
            topics.REJECTIONS, lambda e: e.get("submission_id") == submission_id
        )
    finally:
        await tap.stop()
    assert rejection["errors"][0]["field"] == "phone_verification"


async def test_concurrent_takes_of_one_counter_admit_exactly_the_limit(settings: Settings) -> None:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        counters = DailyCounters(mongo[settings.database_name("intake")])
        await counters.ensure_indexes()
        key = f"tckn:{uuid.uuid4().hex}:test"
        other = f"phone:{uuid.uuid4().hex}:test"
        expires = datetime.now(UTC) + timedelta(days=1)  # a past expiry is deleted at once
        numbers = await asyncio.gather(*(counters.take([key, other], expires) for _ in range(40)))
    finally:
        await mongo.close()
    # Every take got its own number on each counter: none twice, none skipped.
    assert sorted(n[0] for n in numbers) == list(range(1, 41))
    assert sorted(n[1] for n in numbers) == list(range(1, 41))


async def test_the_address_rate_answers_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"client_posts_per_minute": 6, "client_burst": 2})
    app = build_app(limited)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        answers = [
            await http.post("/api/v1/verifications", json={"phone": "kısa"}) for _ in range(3)
        ]
        page = await http.get("/healthz")
        # A channel adapter with a staff token posts for many citizens: not counted; a forged
        # token is counted like no token.
        adapter = await http.post(
            "/api/v1/verifications", json={"phone": "kısa"}, headers=bearer(limited, Role.officer)
        )
        forged = await http.post(
            "/api/v1/verifications",
            json={"phone": "kısa"},
            headers={"Authorization": "Bearer sahte.anahtar.imza"},
        )
    assert (adapter.status_code, forged.status_code) == (422, 429)
    assert [a.status_code for a in answers] == [422, 422, 429]
    assert answers[-1].headers["Retry-After"] == "10"
    assert answers[-1].json()["errors"][0]["code"] == "rate_limited"
    assert page.status_code == 200  # reading is not limited


async def test_the_registry_service_verifier_asks_over_http() -> None:
    asked: list[dict[str, Any]] = []

    async def check(request: web.Request) -> web.Response:
        claim = await request.json()
        asked.append(claim)
        if request.headers.get("Authorization") != "Bearer kps-token":
            return web.Response(status=401)
        return web.json_response({"match": claim["first_name"] == "AYŞE"})

    server = web.Application()
    server.router.add_post("/dogrula", check)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        verifier = RegistryServiceVerifier(f"http://127.0.0.1:{port}/dogrula", "kps-token")
        assert await verifier.verify(IdentityClaim("10000000146", "Ayşe", "Yılmaz", "yz"))
        assert not await verifier.verify(IdentityClaim("10000000146", "Fatma", "Yılmaz", "YZ"))
        assert asked[0]["first_name"] == "AYŞE" and asked[0]["mother_maiden_initials"] == "YZ"
        unauthorised = RegistryServiceVerifier(f"http://127.0.0.1:{port}/dogrula", "")
        with pytest.raises(IdentityUnavailable):
            await unauthorised.verify(IdentityClaim("10000000146", "Ayşe", "Yılmaz", "YZ"))
        await verifier.aclose()
    finally:
        await runner.cleanup()
    nowhere = RegistryServiceVerifier("http://127.0.0.1:9/dogrula", "")
    with pytest.raises(IdentityUnavailable):
        await nowhere.verify(IdentityClaim("10000000146", "Ayşe", "Yılmaz", "YZ"))
