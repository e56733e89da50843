"""Open311 GeoReport v2 against the real broker and database: a reporting app lists the
services, posts a request form-encoded with its key, and follows it until the institution's
answer closes it, in JSON and in XML."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
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
from services.common.turkish_time import ISTANBUL
from services.intake.identity import demo_persons
from services.intake.messaging import progress_groups
from tests.conftest import (
    Tap,
    fresh_consumer_group,
    produce,
    running_intake,
    start_group_at_end,
)

pytestmark = pytest.mark.integration

REGISTRY = demo_persons()
KEY, OTHER_KEY = "cepte-anahtar-1", "baska-anahtar-2"
FOLLOWED = [topics.STATUS, topics.RESPONSES]
SERVICE = "ULS-006"  # Mahalle sokakları ve asfalt


@dataclass
class Open311:
    http: httpx.AsyncClient
    settings: Settings
    mongo: AsyncMongoClient[dict[str, Any]]
    tap: Tap

    @property
    def applications(self) -> Any:
        return self.mongo[self.settings.database_name("intake")]["intake_applications"]

    async def post(self, fmt: str = "json", /, **changes: str | None) -> httpx.Response:
        fields = {**request_form(), **changes}
        return await self.http.post(
            f"/open311/v2/requests.{fmt}",
            data={k: v for k, v in fields.items() if v is not None},
        )

    async def posted(self, **changes: str | None) -> str:
        response = await self.post(**changes)
        assert response.status_code == 200, response.text
        return str(response.json()[0]["service_request_id"])

    async def request(self, number: str, **params: str) -> dict[str, Any]:
        response = await self.http.get(f"/open311/v2/requests/{number}.json", params=params)
        assert response.status_code == 200, response.text
        found = response.json()
        assert len(found) == 1
        return dict(found[0])

    async def send(self, event: Envelope, key: str) -> None:
        topic = topics.RESPONSES if isinstance(event, ApplicationResponse) else topics.STATUS
        await produce(self.settings.kafka_bootstrap, topic, event.to_bytes(), key)


def request_form() -> dict[str, str | None]:
    return {
        "api_key": KEY,
        "service_code": SERVICE,
        "lat": "37.776524",
        "long": "29.086419",
        "address_string": "Çamlık Mah. 1234. Sk. No 4",
        "description": "Evimin önündeki yolda büyük bir çukur var, araçlar zarar görüyor.",
        "first_name": "Ayşe",
        "last_name": "Yılmaz",
        "phone": "0532 123 45 67",
        "email": "ayse@ornek.com",
        "device_id": "cihaz-42",
        "account_id": "hesap-7",
        "attribute[tckn]": "10000000146",
        "attribute[anne_kizlik_harfleri]": "YZ",
        "attribute[ilce]": "MERKEZEFENDİ",
        "attribute[basvuru_turu]": "Şikâyet",
        "attribute[konu]": "Yolda çukur",
    }


@pytest.fixture(scope="module")
async def open311(settings: Settings) -> AsyncIterator[Open311]:
    settings = settings.model_copy(update={"open311_api_keys": f"cepte:{KEY},baska:{OTHER_KEY}"})
    bootstrap = settings.kafka_bootstrap
    group = await fresh_consumer_group(
        bootstrap, "intake", [topics.SUBMISSIONS, *FOLLOWED], [topics.RECEIVED]
    )
    for progress_group, topic in zip(progress_groups(group), FOLLOWED, strict=True):
        await start_group_at_end(bootstrap, progress_group, [topic])
    tap = Tap(bootstrap, [topics.RECEIVED])
    await tap.start()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        async with running_intake(settings, group) as (_app, http):
            yield Open311(http, settings, mongo, tap)
    finally:
        await tap.stop()
        await mongo.close()


async def test_the_service_list_is_the_live_taxonomy(open311: Open311) -> None:
    as_json = await open311.http.get("/open311/v2/services.json")
    assert as_json.status_code == 200
    assert as_json.headers["content-type"] == "application/json; charset=utf-8"
    services = {s["service_code"]: s for s in as_json.json()}
    assert SERVICE in services
    road = services[SERVICE]
    assert (road["metadata"], road["type"]) == (True, "realtime")
    assert road["service_name"] and road["group"] and road["keywords"]

    as_xml = await open311.http.get("/open311/v2/services.xml")
    assert as_xml.headers["content-type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(as_xml.content)
    assert root.tag == "services"
    assert [s.findtext("service_code") for s in root.findall("service")] == list(services)

    definition = (await open311.http.get(f"/open311/v2/services/{SERVICE}.json")).json()
    districts = next(a for a in definition["attributes"] if a["code"] == "ilce")
    assert {"key": "Merkezefendi", "name": "Merkezefendi"} in districts["values"]
    missing = await open311.http.get("/open311/v2/services/YOK-999.xml")
    assert missing.status_code == 404
    assert ET.fromstring(missing.content).findtext("error/code") == "404"


async def test_a_request_posted_with_a_key_is_registered_as_an_application(
    open311: Open311,
) -> None:
    response = await open311.post("xml")
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    number = root.findtext("request/service_request_id")
    assert number and number.startswith("20-")
    assert "SMS" in (root.findtext("request/service_notice") or "")
    assert root.find("request/account_id") is not None

    stored = await open311.applications.find_one({"application_number": number})
    assert stored is not None
    assert stored["channel"] == "open311"
    assert stored["recorded_by"] == "open311:cepte"
    assert stored["district"] == "Merkezefendi"
    assert (stored["category_code"], stored["application_type"]) == (SERVICE, "sikayet")
    assert stored["subject"] == "Yolda çukur"
    assert stored["location"]["address"] == "Çamlık Mah. 1234. Sk. No 4"
    assert "10000000146" not in json.dumps(stored, default=str)  # sealed as over HTTP
    # By id: other runs on the same broker hand out the same numbers in their own databases.
    _, received = await open311.tap.wait_for(
        topics.RECEIVED, lambda e: e.get("application_id") == stored["_id"]
    )
    assert received["channel"] == "open311"


async def test_the_public_view_shows_no_personal_data(open311: Open311) -> None:
    number = await open311.posted()
    shown = await open311.request(number)
    assert shown["service_request_id"] == number
    assert shown["status"] == "open"
    assert shown["service_code"] == SERVICE
    assert shown["address"] == "Merkezefendi, Denizli"
    assert (shown["lat"], shown["long"]) == (37.777, 29.086)
    public = json.dumps(shown, ensure_ascii=False)
    for private in ("Ayşe", "Yılmaz", "10000000146", "4567", "Çamlık", "Evimin", "ayse@"):
        assert private not in public

    as_xml = await open311.http.get(f"/open311/v2/requests/{number}.xml")
    assert as_xml.status_code == 200
    request = ET.fromstring(as_xml.content).find("request")
    assert request is not None
    assert {child.tag: child.text for child in request}["service_request_id"] == number
    assert [child.tag for child in request][:3] == ["service_request_id", "status", "status_notes"]

    unknown = await open311.http.get("/open311/v2/requests/20-2026-9999999-0.json")
    assert unknown.status_code in (400, 404)  # a wrong check digit is 400, a free number 404


async def test_a_missing_or_wrong_key_is_403_and_registers_nothing(open311: Open311) -> None:
    before = await open311.applications.count_documents({"channel": "open311"})
    for key in ("yanlis-anahtar", None):
        response = await open311.post(api_key=key)
        assert response.status_code == 403
        assert response.json() == [
            {"code": 403, "description": "api_key eksik veya geçersiz; başvuru kaydedilmedi."}
        ]
    as_xml = await open311.post("xml", api_key="yanlis-anahtar")
    assert as_xml.status_code == 403
    assert ET.fromstring(as_xml.content).findtext("error/code") == "403"
    assert await open311.applications.count_documents({"channel": "open311"}) == before


async def test_bad_fields_are_400_named_as_the_client_sent_them(open311: Open311) -> None:
    response = await open311.post(
        **{
            "attribute[tckn]": "10000000147",
            "phone": "0258 212 34 56",
            "attribute[ilce]": "Bornova",
        }
    )
    assert response.status_code == 400
    descriptions = {e["description"].split(":")[0]: e for e in response.json()}
    assert set(descriptions) == {"attribute[tckn]", "phone", "attribute[ilce]"}
    assert descriptions["attribute[tckn]"] == {
        "code": 400,
        "description": "attribute[tckn]: TC Kimlik No geçersiz: kontrol haneleri tutmuyor.",
    }
    unknown = await open311.post(service_code="YOK-999")
    assert unknown.status_code == 404
    json_body = await open311.http.post(
        "/open311/v2/requests.json",
        json=request_form(),
        headers={"Content-Type": "application/json"},
    )
    assert json_body.status_code == 415
    assert json_body.json()[0]["code"] == 415


async def test_a_repeated_idempotency_key_registers_once(open311: Open311) -> None:
    headers = {"Idempotency-Key": f"o311-{uuid.uuid4()}"}
    form = {k: v for k, v in request_form().items() if v is not None}
    first = await open311.http.post("/open311/v2/requests.json", data=form, headers=headers)
    again = await open311.http.post("/open311/v2/requests.json", data=form, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()[0]["service_request_id"] == again.json()[0]["service_request_id"]


async def test_the_answer_closes_the_request(open311: Open311) -> None:
    number = await open311.posted()
    stored = await open311.applications.find_one({"application_number": number})
    assert stored is not None
    application_id = stored["_id"]
    at = datetime.now(UTC).replace(microsecond=0)
    answer = "Çukur 3 Mart'ta onarıldı; ilginiz için teşekkür ederiz."
    await open311.send(
        ApplicationResponse(
            application_id=application_id,
            institution_code="MERKEZEFENDI-BLD",
            outcome=Outcome.olumlu,
            text=answer,
            responded_at=at,
        ),
        application_id,
    )
    await open311.send(
        StatusChanged(
            producer="tracking",
            application_id=application_id,
            application_number=number,
            status=Status.answered,
            previous_status=Status.opened,
            at=at,
            institution_code="MERKEZEFENDI-BLD",
            outcome=Outcome.olumlu,
            category_code=SERVICE,
            deadline_at=at + timedelta(days=20),
            answered_at=at,
        ),
        application_id,
    )
    async with asyncio.timeout(30):
        while (shown := await open311.request(number))["status"] != "closed":
            await asyncio.sleep(0.2)
    assert shown["agency_responsible"] == "MERKEZEFENDI-BLD"
    assert "yanıtlandı" in shown["status_notes"] and "Sonuç: olumlu." in shown["status_notes"]
    assert answer not in shown["status_notes"]  # the public does not read the answer
    assert shown["updated_datetime"] == at.astimezone(ISTANBUL).isoformat()

    # The response may land after the status (another topic, another consumer).
    for _ in range(150):
        if answer in (await open311.request(number, api_key=KEY))["status_notes"]:
            break
        await asyncio.sleep(0.2)
    else:
        raw = await open311.applications.find_one(
            {"_id": application_id}, {"progress": 1, "progress_answers": 1}
        )
        raise AssertionError(f"the answer never showed to its client; stored: {raw}")
    other = await open311.request(number, api_key=OTHER_KEY)
    assert answer not in other["status_notes"]  # another client's key does not open it
    wrong = await open311.http.get(f"/open311/v2/requests/{number}.json?api_key=yanlis")
    assert wrong.status_code == 403

    closed = await open311.http.get(
        "/open311/v2/requests.json", params={"status": "closed", "service_code": SERVICE}
    )
    assert number in {r["service_request_id"] for r in closed.json()}
    still_open = await open311.http.get("/open311/v2/requests.json", params={"status": "open"})
    assert number not in {r["service_request_id"] for r in still_open.json()}
    as_xml = await open311.http.get(f"/open311/v2/requests/{number}.xml")
    assert ET.fromstring(as_xml.content).findtext("request/status") == "closed"


async def test_requests_are_filtered_as_the_standard_says(open311: Open311) -> None:
    first, second = await open311.posted(), await open311.posted()
    both = await open311.http.get(
        "/open311/v2/requests.xml", params={"service_request_id": f"{first},{second}"}
    )
    root = ET.fromstring(both.content)
    assert root.tag == "service_requests"
    assert {r.findtext("service_request_id") for r in root.findall("request")} == {first, second}

    recent = await open311.http.get("/open311/v2/requests.json", params={"service_code": SERVICE})
    numbers = [r["service_request_id"] for r in recent.json()]
    assert {first, second} <= set(numbers)
    assert len(numbers) <= 1000
    other_service = await open311.http.get(
        "/open311/v2/requests.json", params={"service_code": "ALT-001"}
    )
    assert first not in {r["service_request_id"] for r in other_service.json()}
    old = await open311.http.get(
        "/open311/v2/requests.json",
        params={"start_date": "2020-01-01T00:00:00Z", "end_date": "2020-02-01T00:00:00Z"},
    )
    assert old.status_code == 200 and first not in {r["service_request_id"] for r in old.json()}
    too_long = await open311.http.get(
        "/open311/v2/requests.json",
        params={"start_date": "2020-01-01T00:00:00Z", "end_date": "2021-01-01T00:00:00Z"},
    )
    assert too_long.status_code == 400
    assert too_long.json()[0]["code"] == 400


async def test_the_citizen_checks_apply_to_an_open311_client_too(settings: Settings) -> None:
    """The client passes the citizen on; it does not vouch for them: the registry check and the
    daily limit apply as on the web form (no phone code: the client has no way to ask one)."""
    checked = settings.model_copy(
        update={
            "open311_api_keys": f"cepte:{KEY}",
            "identity_verifier": "registry_file",
            "daily_limit_per_tckn": 1,
        }
    )
    group = await fresh_consumer_group(checked.kafka_bootstrap, "intake", [topics.SUBMISSIONS], [])
    (person,) = random.Random(uuid.uuid4().hex).sample(REGISTRY, 1)
    citizen = {
        "first_name": person["first_name"],
        "last_name": person["last_name"],
        "phone": person["phone"],
        "attribute[tckn]": person["tckn"],
        "attribute[anne_kizlik_harfleri]": person["mother_maiden_initials"],
    }
    async with running_intake(checked, group) as (_app, http):

        async def post(**changes: str) -> httpx.Response:
            fields = {**request_form(), **citizen, **changes}
            return await http.post("/open311/v2/requests.json", data=fields)

        stranger = await post(last_name="Başkası")
        letters = "ÇŞ" if person["mother_maiden_initials"] != "ÇŞ" else "ĞÜ"
        wrong_letters = await post(**{"attribute[anne_kizlik_harfleri]": letters})
        first = await post()
        second = await post(description="Aynı gün ikinci başvuru: sokak lambası yanmıyor.")
    assert stranger.status_code == 400
    (error,) = stranger.json()
    assert "doğrulanamadı" in error["description"]
    # The same words whichever field is wrong: the answer does not tell which.
    assert wrong_letters.json() == stranger.json()
    assert first.status_code == 200, first.text
    assert second.status_code == 429
    assert 0 < int(second.headers["Retry-After"]) <= 86400
    assert "bugün en çok 1 başvuru" in second.json()[0]["description"]
