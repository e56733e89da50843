"""KVKK by design in intake, against the real broker and database: personal data sealed at rest
(and older clear documents still read), the identity consent of şikâyet and ihbar on the bus,
the counter officer's district, the citizen's data export (art. 11), and the retention job."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from services.common import topics
from services.common.auth import Role
from services.common.devtoken import edevlet_assertion
from services.common.events import Status, StatusChanged
from services.common.retention import RetentionJob, RetentionRule
from services.common.settings import Settings
from services.intake.store import ANONYMISED_TEXT
from tests.conftest import ServiceUnderTest, Tap, fresh_consumer_group, running_intake
from tests.support import bearer, valid_tckn
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_rng = random.Random()


@dataclass
class Service(ServiceUnderTest):
    app: FastAPI
    tap: Tap
    mongo: AsyncMongoClient

    @property
    def db(self) -> Any:
        return self.mongo[self.settings.database_name("intake")]

    @property
    def applications(self) -> Any:
        return self.db["intake_applications"]


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[Service]:
    bootstrap = settings.kafka_bootstrap
    group = await fresh_consumer_group(bootstrap, "intake", [topics.SUBMISSIONS], [topics.RECEIVED])
    tap = Tap(bootstrap, [topics.RECEIVED])
    await tap.start()
    mongo: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        async with running_intake(settings, group) as (app, http):
            yield Service(http, settings, app, tap, mongo)
    finally:
        await tap.stop()
        await mongo.close()


def person() -> dict[str, Any]:
    """A person of their own (a TC Kimlik No no other test uses), with a phone and e-mail."""
    digits = "".join(str(_rng.randrange(10)) for _ in range(7))
    return {
        "applicant_tckn": valid_tckn(_rng),
        "applicant_first_name": "Gülşen",
        "applicant_last_name": "Karaçoban",
        "applicant_phone": f"0533 {digits[:3]} {digits[3:5]} {digits[5:]}",
        "applicant_email": f"gulsen.{digits}@ornek.com.tr",
    }


async def backdate(service: Service, application_id: str, days: int) -> None:
    """Make an application `days` older. The document is written whole: nx-27017 0.8.1 turns
    a date written by `$set` into text."""
    doc = await service.applications.find_one({"_id": application_id})
    doc["received_at"] = datetime.now(UTC) - timedelta(days=days)
    await service.applications.replace_one({"_id": application_id}, doc)


async def register(service: Service, who: dict[str, Any], **changes: Any) -> dict[str, Any]:
    response = await service.http.post("/api/v1/applications", json=body(**who, **changes))
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def phone_digits(who: dict[str, Any]) -> str:
    return str(who["applicant_phone"]).replace(" ", "")[1:]  # 533…, as E.164 ends


def clear_values(who: dict[str, Any]) -> list[str]:
    return [
        who["applicant_tckn"],
        who["applicant_first_name"],
        who["applicant_last_name"],
        phone_digits(who),
        who["applicant_email"],
    ]


# --- at rest ----------------------------------------------------------------------------------


async def test_no_personal_value_is_stored_in_clear_and_staff_still_read_it(
    service: Service,
) -> None:
    who = person()
    answer = await register(service, who, identity_consent=True)
    raw = await service.applications.find_one({"_id": answer["application_id"]})
    stored = json.dumps(raw, default=str, ensure_ascii=False)
    for value in clear_values(who):
        assert value not in stored, value
    applicant = raw["applicant"]
    assert {"first_name", "last_name", "email"}.isdisjoint(applicant)
    assert {"tckn_bidx", "phone_bidx", "first_name_enc", "last_name_enc", "email_enc"} <= set(
        applicant
    )
    assert raw["identity_consent"] is True

    shown = await service.http.get(
        f"/api/v1/applications/{answer['application_id']}", headers=service.token(Role.officer)
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["applicant"]["first_name"] == "Gülşen"
    assert shown.json()["applicant"]["email"] == who["applicant_email"]
    receipt = await service.http.get(
        f"/api/v1/applications/{answer['application_id']}/receipt.pdf",
        headers=service.token(Role.officer),
    )
    assert receipt.status_code == 200, receipt.text  # the receipt decrypts the names too


async def test_a_document_written_with_clear_names_still_reads_and_is_sealed_once(
    service: Service,
) -> None:
    who = person()
    answer = await register(service, who)
    raw = await service.applications.find_one({"_id": answer["application_id"]})
    old = dict(raw)
    old["_id"] = str(uuid.uuid4())
    old["application_number"] = f"{raw['application_number']}-eski"
    applicant = {
        k: v
        for k, v in raw["applicant"].items()
        if k not in ("first_name_enc", "last_name_enc", "email_enc")
    }
    old["applicant"] = applicant | {
        "first_name": "Eski",
        "last_name": "Kayıt",
        "email": "eski@ornek.com",
    }
    for key in ("idempotency_key", "submission_id", "identity_consent"):
        old.pop(key, None)
    await service.applications.insert_one(old)

    store = service.app.state.store
    before = await store.get(old["_id"])
    assert (before.applicant.first_name, before.applicant.email) == ("Eski", "eski@ornek.com")
    assert before.identity_consent is False

    assert await store.seal_clear_applicants() >= 1
    sealed = await service.applications.find_one({"_id": old["_id"]})
    assert "Eski" not in json.dumps(sealed, default=str, ensure_ascii=False)
    assert "eski@ornek.com" not in json.dumps(sealed, default=str)
    after = await store.get(old["_id"])
    assert (after.applicant.first_name, after.applicant.last_name) == ("Eski", "Kayıt")
    assert after.applicant.email == "eski@ornek.com"
    assert await store.seal_clear_applicants() == 0  # idempotent


# --- consent ----------------------------------------------------------------------------------


async def test_the_identity_consent_travels_on_the_received_event(service: Service) -> None:
    consenting = await register(service, person(), application_type="ihbar", identity_consent=True)
    silent = await register(service, person(), application_type="sikayet")
    _, first = await service.tap.wait_for(
        topics.RECEIVED, lambda e: e.get("application_id") == consenting["application_id"]
    )
    _, second = await service.tap.wait_for(
        topics.RECEIVED, lambda e: e.get("application_id") == silent["application_id"]
    )
    assert first["identity_consent"] is True
    assert second["identity_consent"] is False

    odd = await service.http.post(
        "/api/v1/applications", json=body(**person(), identity_consent="evet")
    )
    assert odd.status_code == 422, odd.text
    assert odd.json()["errors"][0]["field"] == "identity_consent"


# --- the counter officer's scope --------------------------------------------------------------


async def test_a_counter_officer_records_only_in_their_province_and_district(
    service: Service,
) -> None:
    settings = service.settings

    async def at_counter(where: str, **claims: Any) -> Any:
        return await service.http.post(
            "/api/v1/applications",
            json=body(**person(), channel="counter", district=where),
            headers=bearer(settings, Role.counter_officer, **claims),
        )

    mine = await at_counter("Merkezefendi", province=20, district="Merkezefendi")
    assert mine.status_code == 201, mine.text
    provincial = await at_counter("Pamukkale", province=20)
    assert provincial.status_code == 201, provincial.text
    # The receipt too: of their own district only.
    district_officer = bearer(settings, Role.counter_officer, province=20, district="MERKEZEFENDİ")
    receipt = "/api/v1/applications/{}/receipt.pdf"
    own = await service.http.get(
        receipt.format(mine.json()["application_id"]), headers=district_officer
    )
    assert own.status_code == 200, own.text
    other = await service.http.get(
        receipt.format(provincial.json()["application_id"]), headers=district_officer
    )
    assert other.status_code == 403
    elsewhere = await at_counter("Pamukkale", province=20, district="Merkezefendi")
    assert elsewhere.status_code == 403, elsewhere.text
    assert elsewhere.json()["errors"][0]["field"] == "district"
    assert "Merkezefendi" in elsewhere.json()["errors"][0]["message"]
    other_province = await at_counter("Pamukkale", province=35)
    assert other_province.status_code == 403
    assert "İzmir" in other_province.json()["errors"][0]["message"]
    assert (await at_counter("Pamukkale")).status_code == 403  # no province in the token
    # A counter officer does not answer the call centre's phone; an officer still does both.
    call = await service.http.post(
        "/api/v1/applications",
        json=body(**person(), channel="call_center", caller_number="0258 212 34 56"),
        headers=bearer(settings, Role.counter_officer, province=20),
    )
    assert call.status_code == 403
    officer = await service.http.post(
        "/api/v1/applications",
        json=body(**person(), channel="counter", district="Pamukkale"),
        headers=service.token(Role.officer),
    )
    assert officer.status_code == 201


# --- the export (KVKK art. 11) ----------------------------------------------------------------


async def test_a_citizen_exports_their_own_applications_and_nobody_elses(
    service: Service,
) -> None:
    me, stranger = person(), person()
    first = await register(service, me, application_type="istek")
    second = await register(service, me, application_type="sikayet", identity_consent=False)
    theirs = await register(service, stranger)
    # Tracking says the first went to DESKİ.
    status = StatusChanged(
        producer="tracking",
        application_id=first["application_id"],
        application_number=first["application_number"],
        status=Status.routed,
        at=datetime.now(UTC),
        institution_code="DESKI",
        category_code="ALT-001",
    )
    await service.app.state.progress.handle_status([status])

    assertion = edevlet_assertion(
        service.settings, tckn=me["applicant_tckn"], first_name="Gülşen", last_name="Karaçoban"
    )
    response = await service.http.post(
        "/api/v1/kvkk/verilerim", json={"edevlet_assertion": assertion}
    )
    assert response.status_code == 200, response.text
    export = response.json()
    numbers = [a["application_number"] for a in export["applications"]]
    assert numbers == [first["application_number"], second["application_number"]]
    assert theirs["application_number"] not in response.text
    assert stranger["applicant_email"] not in response.text
    assert me["applicant_tckn"] not in response.text  # masked only
    held = export["personal_data"]
    assert held["names"] == [{"first_name": "Gülşen", "last_name": "Karaçoban"}]
    assert held["emails"] == [me["applicant_email"]]
    assert held["phones"] == [f"+90{phone_digits(me)}"]
    assert held["tckn_masked"] == me["applicant_tckn"][:2] + "*******" + me["applicant_tckn"][-2:]
    routed = export["applications"][0]
    assert (routed["status"], routed["institution_code"]) == ("routed", "DESKI")
    assert export["applications"][1]["identity_shielded_from_institution"] is True
    assert export["recipients"]["institutions"][0]["applications"] == [first["application_number"]]
    assert export["processing"]["retention_days"] == service.settings.personal_data_retention_days
    assert export["processing"]["purposes"]

    # The same assertion again is refused: each e-Devlet login is good for one act.
    again = await service.http.post("/api/v1/kvkk/verilerim", json={"edevlet_assertion": assertion})
    assert again.status_code == 401
    assert again.json()["errors"][0]["code"] == "replayed"

    # A citizen token whose subject is the number works as well, and finds the same.
    token = bearer(service.settings, Role.citizen, subject=me["applicant_tckn"])
    by_token = await service.http.post("/api/v1/kvkk/verilerim", json={}, headers=token)
    assert by_token.status_code == 200, by_token.text
    assert [a["application_number"] for a in by_token.json()["applications"]] == numbers

    audit = service.db["intake_audit_log"]
    records = [r async for r in audit.find({"action": "export_personal"})]
    assert len(records) >= 2
    assert all(me["applicant_tckn"] not in json.dumps(r, default=str) for r in records)
    assert {r["actor"]["role"] for r in records} == {"citizen"}


async def test_an_export_without_a_valid_proof_is_refused(service: Service) -> None:
    settings = service.settings
    who = person()
    await register(service, who)
    url = "/api/v1/kvkk/verilerim"

    nothing = await service.http.post(url, json={})
    assert nothing.status_code == 401
    assert nothing.json()["errors"][0]["field"] == "Authorization"
    assert (await service.http.post(url)).status_code == 401  # no body at all

    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = forged_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    forged = edevlet_assertion(
        settings, tckn=who["applicant_tckn"], first_name="A", last_name="B", private_key=pem
    )
    expired = edevlet_assertion(
        settings,
        tckn=who["applicant_tckn"],
        first_name="A",
        last_name="B",
        ttl=timedelta(minutes=-10),
    )
    for assertion in (forged, expired, "bir.şey.değil"):
        refused = await service.http.post(url, json={"edevlet_assertion": assertion})
        assert refused.status_code == 401, refused.text
        assert refused.json()["errors"][0]["code"] == "invalid_assertion"
        assert who["applicant_email"] not in refused.text

    staff = await service.http.post(url, json={}, headers=service.token(Role.officer))
    assert staff.status_code == 403
    admin = await service.http.post(url, json={}, headers=service.token(Role.admin))
    assert admin.status_code == 403
    bad_subject = bearer(settings, Role.citizen, subject="12345678901")  # check digits wrong
    assert (await service.http.post(url, json={}, headers=bad_subject)).status_code == 401
    garbage = {"Authorization": "Bearer a.b.c"}
    assert (await service.http.post(url, json={}, headers=garbage)).status_code == 401


# --- retention --------------------------------------------------------------------------------


async def test_retention_anonymises_old_applications_and_leaves_new_ones(
    service: Service,
) -> None:
    old_person, new_person = person(), person()
    old = await register(
        service,
        old_person,
        location={"lat": 37.77, "lon": 29.08, "address": "Çınar Mah. 12. Sok. No 3"},
    )
    new = await register(service, new_person)
    days = service.settings.personal_data_retention_days
    await backdate(service, old["application_id"], days + 5)
    job = service.app.state.retention
    dry = await job.run(dry_run=True)
    assert dry.counts["intake_applications"] >= 1
    untouched = await service.applications.find_one({"_id": old["application_id"]})
    assert "anonymised_at" not in untouched

    report = await job.run(batch=2)
    assert report.counts["intake_applications"] >= 1
    anonymised = await service.applications.find_one({"_id": old["application_id"]})
    assert "anonymised_at" in anonymised
    stored = json.dumps(anonymised, default=str, ensure_ascii=False)
    assert not {k for k in anonymised["applicant"] if k.endswith(("_enc", "_bidx"))}
    assert "Çınar" not in stored
    assert anonymised["text"] == ANONYMISED_TEXT
    assert anonymised["applicant"]["tckn_masked"] == "***********"
    # The facts stay, for the statistics.
    assert (anonymised["application_type"], anonymised["district"]) == ("sikayet", "Merkezefendi")
    assert anonymised["location"]["lat"] == 37.77
    # Staff still read the document; the person's export no longer finds it.
    read = await service.app.state.store.get(old["application_id"])
    assert read.applicant.first_name == "" and read.applicant.phone == ""
    token = bearer(service.settings, Role.citizen, subject=old_person["applicant_tckn"])
    export = await service.http.post("/api/v1/kvkk/verilerim", json={}, headers=token)
    assert export.json()["applications"] == []

    fresh = await service.applications.find_one({"_id": new["application_id"]})
    assert "anonymised_at" not in fresh
    assert "first_name_enc" in fresh["applicant"]

    assert (await job.run()).total == 0  # idempotent
    audit = service.db["intake_audit_log"]
    assert await audit.count_documents({"action": "anonymise"}) >= 1


async def test_the_retention_job_works_in_batches_on_any_collection(service: Service) -> None:
    collection = service.db[f"retention_probe_{uuid.uuid4().hex[:8]}"]
    now = datetime.now(UTC)
    old = [
        {
            "_id": f"old-{i}",
            "at": now - timedelta(days=40),
            "state": "sent" if i % 4 else "queued",
            "who": {"phone_enc": "v2:x", "masked": "+90 5** *** ** 67"},
            "recipient_enc": "v2:y",
            "kind": "sms",
        }
        for i in range(9)
    ]
    new = [{**old[0], "_id": "new-0", "at": now - timedelta(days=1)}]
    await collection.insert_many([*old, *new])
    rule = RetentionRule(
        collection=collection.name,
        time_field="at",
        remove=("who.phone_enc",),
        replace={"recipient_enc": "gone"},
        only={"state": "sent"},
    )
    seen: list[int] = []
    job = RetentionJob("probe", service.db, [rule], days=30)
    report = await job.run(batch=2, progress=lambda _, count: seen.append(count))
    assert report.counts == {collection.name: 6}  # the 3 still queued wait for their end
    assert seen == [2, 4, 6]
    async for doc in collection.find({"anonymised_at": {"$exists": True}}):
        assert doc["recipient_enc"] == "gone" and "phone_enc" not in doc["who"]
        assert doc["who"]["masked"] and doc["kind"] == "sms"
    assert await collection.count_documents({"anonymised_at": {"$exists": False}}) == 4
    assert (await job.run()).total == 0


async def test_the_anonymise_command_reports_its_progress(service: Service) -> None:
    who = person()
    answer = await register(service, who)
    await backdate(
        service, answer["application_id"], service.settings.personal_data_retention_days + 1
    )
    env = {**os.environ, "AK_DB_PREFIX": service.settings.db_prefix}

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.intake", "anonymise", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = await asyncio.to_thread(command, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "intake_applications: 1 belge anonimleştirilecek" in dry.stdout
    assert "anonimleştirildi" not in dry.stdout
    done = await asyncio.to_thread(command)
    assert done.returncode == 0, done.stderr
    assert "Toplam: 1 belge anonimleştirildi." in done.stdout
    assert "anonymised_at" in await service.applications.find_one({"_id": answer["application_id"]})
