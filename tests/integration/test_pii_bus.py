"""Personal data on the real bus and in a real database: sealed fields on the topics, the
complainant shield on an institution's topic, and an online key rotation of routing's store.

The keys are made for this run: nothing another run (or another test on the shared stack)
wrote is under them, so the rotation below touches only what this module wrote."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from services.common import pii, topics
from services.common.application_number import MAX_SEQUENCE, format_number
from services.common.auth import Role
from services.common.events import ApplicantContact, ApplicationReceived
from services.common.messaging import Outgoing
from services.common.mongo import make_client
from services.common.outbox import DUE, FIELD, Outbox
from services.common.pii import PiiCipher, ciphertext_kid
from services.common.settings import Settings
from services.routing.app import build_app
from tests.conftest import fresh_consumer_group, kafka, produce, running_intake, topic_partitions
from tests.support import bearer
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY_A = f"pii-bus-test-a-{uuid.uuid4().hex}"
KEY_B = f"pii-bus-test-b-{uuid.uuid4().hex}"
PHONE = "+905321234567"
# What must not be on a topic in clear: the names (as UTF-8 and as JSON escapes) and the phone.
TRACES = ("Ayşe".encode(), "Yıldırım".encode(), b"Ay\\u015fe", b"Y\\u0131ld", b"5321234567")


def under_a(settings: Settings) -> Settings:
    return settings.model_copy(update={"pii_key": KEY_A, "auto_route_threshold": 1.0})


def under_b(settings: Settings) -> Settings:
    """After the rotation: B encrypts, A only decrypts, the blind indexes keep A's key."""
    return under_a(settings).model_copy(
        update={"pii_key": KEY_B, "pii_old_keys": KEY_A, "pii_index_key": KEY_A}
    )


@pytest.fixture(autouse=True, scope="module")
def _restore_transport() -> Any:
    """The services built here set the process's transport keyring: put it back after."""
    saved = pii._transport
    yield
    pii._transport = saved


class RawTap:
    """The raw bytes of every message on some topics from now on (no decoding at all)."""

    def __init__(self, bootstrap: str, names: list[str]) -> None:
        self._bootstrap, self._names = bootstrap, names
        self._consumer = AIOKafkaConsumer(**kafka(bootstrap), group_id=None)
        self.seen: list[tuple[str, bytes | None, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawTap:
        partitions = await topic_partitions(self._bootstrap, self._names)
        await self._consumer.start()
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()

    async def _run(self) -> None:
        async for record in self._consumer:
            self.seen.append((record.topic, record.key, record.value or b""))

    async def wait_for(self, topic: str, key: str, timeout: float = 20) -> bytes:
        async with asyncio.timeout(timeout):
            while True:
                for t, k, value in self.seen:
                    if t == topic and k == key.encode():
                        return value
                await asyncio.sleep(0.05)


@asynccontextmanager
async def running_routing(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    group = await fresh_consumer_group(
        settings.kafka_bootstrap, "routing", [topics.RECEIVED, topics.STATUS]
    )
    app = build_app(settings, consumer_group=group)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:
            yield app, http


def application(kind: str, category: str | None, **fields: Any) -> ApplicationReceived:
    return ApplicationReceived.model_validate(
        {
            "application_id": str(uuid.uuid4()),
            "application_number": format_number(20, 2026, random.randint(1, MAX_SEQUENCE)),
            "channel": "web",
            "application_type": kind,
            "category_code": category,
            "province_code": 20,
            "district": "Merkezefendi",
            "subject": "Su kesintisi",
            "text": "Mahallemizde iki gündür sular akmıyor, ilgilenilmesini rica ederim.",
            "applicant": ApplicantContact(
                tckn_masked="12*******90", first_name="Ayşe", last_name="Yıldırım", phone=PHONE
            ),
            "received_at": datetime.now(UTC),
        }
        | fields
    )


def clear_of(raw: bytes) -> list[bytes]:
    return [t for t in TRACES if t in raw]


@pytest.fixture(scope="module")
async def routing_docs(settings: Settings) -> AsyncIterator[list[str]]:
    """The ids of the routing documents this module made, removed at the end (nx-27017 shares
    routing's table between database names, hence between runs)."""
    ids: list[str] = []
    yield ids
    client = make_client(settings)
    try:
        table = client[settings.database_name("routing")]["routing_applications"]
        await table.delete_many({"_id": {"$in": ids}})
    finally:
        await client.close()


async def test_names_and_phone_are_not_in_clear_on_the_received_topic(settings: Settings):
    own = under_a(settings)
    group = await fresh_consumer_group(
        own.kafka_bootstrap, "intake", [topics.SUBMISSIONS, topics.TAXONOMY]
    )
    watched = [topics.RECEIVED, topics.NOTIFICATION_REQUESTS]
    async with running_intake(own, group) as (_, http), RawTap(own.kafka_bootstrap, watched) as tap:
        created = await http.post("/api/v1/applications", json=body())
        assert created.status_code == 201, created.text
        app_id = created.json()["application_id"]
        raw = await tap.wait_for(topics.RECEIVED, app_id)
        sms = await tap.wait_for(topics.NOTIFICATION_REQUESTS, f"{app_id}:received:sms")
    for wire in (raw, sms):
        assert not [t for t in (b"Yilmaz", "Yılmaz".encode(), b"5321234567") if t in wire]
    applicant = json.loads(raw)["applicant"]
    assert pii.is_ciphertext(applicant["first_name"]) and pii.is_ciphertext(applicant["phone"])
    # What the services read: the clear values, with the same keyring.
    event = ApplicationReceived.model_validate_json(raw)
    assert (event.applicant.first_name, event.applicant.phone) == ("Ayşe", PHONE)


@pytest.mark.parametrize(
    ("kind", "consent", "shown"),
    [("sikayet", False, False), ("ihbar", False, False), ("sikayet", True, True)],
)
async def test_the_institution_topic_shows_the_applicant_only_when_allowed(
    settings: Settings, routing_docs: list[str], kind: str, consent: bool, shown: bool
):
    own = under_a(settings)
    institution = topics.institution_topic("DESKI")
    async with running_routing(own), RawTap(own.kafka_bootstrap, [institution]) as tap:
        event = application(kind, "ALT-001", identity_consent=consent)
        routing_docs.append(event.application_id)
        await produce(own.kafka_bootstrap, topics.RECEIVED, event.to_bytes(), event.application_id)
        raw = await tap.wait_for(institution, event.application_id)
    # The institution reads its topic without any key: plain JSON.
    assignment = json.loads(raw)
    assert assignment["identity_shielded"] is not shown
    if shown:
        assert assignment["applicant"]["first_name"] == "Ayşe"
        assert assignment["applicant"]["last_name"] == "Yıldırım"
        assert assignment["applicant"]["phone"] == PHONE
    else:
        assert assignment["applicant"] is None
        assert clear_of(raw) == [], "a shielded applicant's name or phone reached the institution"


async def test_the_consent_given_at_intake_reaches_the_institution_through_routing(
    settings: Settings, routing_docs: list[str]
):
    own = under_a(settings)
    group = await fresh_consumer_group(
        own.kafka_bootstrap, "intake", [topics.SUBMISSIONS, topics.TAXONOMY]
    )
    institution = topics.institution_topic("DESKI")
    async with (
        running_routing(own),
        running_intake(own, group) as (_, http),
        RawTap(own.kafka_bootstrap, [institution]) as tap,
    ):
        shown: dict[str, bool] = {}
        for consent in (False, True):
            created = await http.post(
                "/api/v1/applications",
                json=body(category_code="ALT-001", identity_consent=consent),
            )
            assert created.status_code == 201, created.text
            app_id = created.json()["application_id"]
            routing_docs.append(app_id)
            raw = await tap.wait_for(institution, app_id)
            assignment = json.loads(raw)
            assert assignment["identity_shielded"] is not consent
            shown[app_id] = assignment["applicant"] is not None
            if consent:
                assert assignment["applicant"]["last_name"] == "Yılmaz"
                assert assignment["applicant"]["phone"] == PHONE
            else:
                assert not [t for t in ("Yılmaz".encode(), b"5321234567") if t in raw]
    assert sorted(shown.values()) == [False, True]


def rotate_command(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | {
        "AK_DB_PREFIX": settings.db_prefix,
        "AK_MONGO_URI": settings.mongo_uri,
        "AK_PII_KEY": KEY_B,
        "AK_PII_OLD_KEYS": KEY_A,
        "AK_PII_INDEX_KEY": KEY_A,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.common.rotate_keys", "--service", "routing", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def counted(output: str, pattern: str) -> int:
    match = re.search(pattern, output)
    assert match, output
    return int(match.group(1))


async def wait_stored(table: Any, app_id: str, ready: Callable[[dict[str, Any]], bool]) -> dict:
    async with asyncio.timeout(20):
        while True:
            doc = await table.find_one({"_id": app_id})
            if doc is not None and ready(doc):
                return doc
            await asyncio.sleep(0.1)


async def test_an_online_rotation_re_encrypts_and_the_service_still_reads(
    settings: Settings, routing_docs: list[str]
):
    before, after = under_a(settings), under_b(settings)
    old, new = PiiCipher.from_settings(before), PiiCipher.from_settings(after)
    client = make_client(settings)
    db = client[settings.database_name("routing")]
    table = db["routing_applications"]
    # Events waiting in an outbox, sealed (and their sealed fields) under the old key; due far
    # in the future so no relay publishes them meanwhile. A collection of the test's own.
    probe = db[f"routing_rotation_probe_{uuid.uuid4().hex[:8]}"]
    try:
        # 1. Stored under A: an application waiting for an officer (no category).
        event = application("sikayet", None, identity_consent=True)
        routing_docs.append(event.application_id)
        async with running_routing(before):
            await produce(
                before.kafka_bootstrap, topics.RECEIVED, event.to_bytes(), event.application_id
            )
            stored = await wait_stored(table, event.application_id, lambda d: "applicant" in d)
        assert ciphertext_kid(stored["applicant"]) == old.kid

        pii.configure_transport(old)
        sealed = Outbox(probe, None, old)  # type: ignore[arg-type]
        entries = [
            sealed.seal(Outgoing.of(topics.RECEIVED, application("istek", "ALT-001"), str(n)))
            for n in range(3)
        ]
        documents = 2000
        await probe.insert_many(
            [
                {"_id": f"d{n}", FIELD: entries if n == 0 else [], DUE: time.time() + 3600}
                | {f"f{i}": old.encrypt(f"+9053200{n:05d}") for i in range(3)}
                | {"nested": {"phone_enc": old.encrypt(PHONE), "bidx": old.blind_index(PHONE)}}
                for n in range(documents)
            ]
        )

        # 2. Every process restarts with B current and A old; the command runs while routing
        # does, and the officer routes the application afterwards: routing reads it.
        async with running_routing(after) as (_, http):
            dry = rotate_command(settings)
            assert dry.returncode == 0, dry.stderr
            assert counted(dry.stdout, r"(\d+) değer") >= 1 + 4 * documents + 1
            untouched = await probe.find_one({"_id": "d1"})
            assert ciphertext_kid(untouched["f0"]) == old.kid  # a dry run writes nothing

            started = time.monotonic()
            run = rotate_command(settings, "--yes")
            took = time.monotonic() - started
            assert run.returncode == 0, run.stdout + run.stderr
            assert "Anahtar yenileniyor" in run.stderr  # the progress bar, in Turkish
            values = counted(run.stdout, r"(\d+) değer")
            assert values >= 1 + 4 * documents + 1
            scanned = counted(run.stdout, r"(\d+) belge tarandı")
            print(
                f"\nrotation: {values} values, {scanned} documents in {took:.1f} s "
                f"(command total; {run.stdout.splitlines()[0]})"
            )

            audited = await db["routing_audit_log"].find_one(
                {"action": "key_rotation", "detail.key_id": new.kid}
            )
            assert audited is not None and audited["detail"]["values"] == values
            rotated = await table.find_one({"_id": event.application_id})
            assert ciphertext_kid(rotated["applicant"]) == new.kid
            officer = bearer(after, Role.officer)
            institution = topics.institution_topic("DESKI")
            async with RawTap(after.kafka_bootstrap, [institution]) as tap:
                routed = await http.post(
                    f"/api/v1/routing/{event.application_id}/route",
                    json={"category_code": "ALT-001"},
                    headers=officer,
                )
                assert routed.status_code == 200, routed.text
                raw = await tap.wait_for(institution, event.application_id)
            assert json.loads(raw)["applicant"]["phone"] == PHONE  # consented: shown

        # 3. Everything of the probe is under B now, blind indexes untouched, outbox readable.
        first = await probe.find_one({"_id": "d0"})
        assert {ciphertext_kid(first[f"f{i}"]) for i in range(3)} == {new.kid}
        assert ciphertext_kid(first["nested"]["phone_enc"]) == new.kid
        assert first["nested"]["bidx"] == new.blind_index(PHONE)
        assert [ciphertext_kid(e) for e in first[FIELD]] == [new.kid] * 3
        pii.configure_transport(new)
        opened = Outbox(probe, None, new).open(first[FIELD][0])  # type: ignore[arg-type]
        inner = json.loads(opened.value)["applicant"]["phone"]
        assert ciphertext_kid(inner) == new.derive(pii.BUS_LABEL).kid
        assert ApplicationReceived.model_validate_json(opened.value).applicant.phone == PHONE
        assert new.decrypt(first["f0"]) == "+905320000000"

        # 4. Idempotent: a second run finds nothing left under A.
        again = rotate_command(settings, "--yes", "--quiet")
        assert again.returncode == 0, again.stderr
        assert counted(again.stdout, r"(\d+) değer") == 0
    finally:
        await probe.drop()
        await client.close()
