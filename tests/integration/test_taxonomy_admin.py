"""Taxonomy administration on the real broker and store: an administrator loads a province, renames
a category and adds one; each change is a version with its author, announced on
`acikkapi.taxonomy`; a second routing process and intake's form lists follow it, and a new
application in the new category reaches its institution's topic. A stale version is 409, a
non-admin token 403, and `python -m services.routing load-taxonomy` reaches running processes.

The province is Bartın (74), loaded by the test, so Denizli stays as every other test finds it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.common import kafka_auth, topics
from services.common.auth import Role
from services.common.settings import Settings
from services.intake.app import build_app as build_intake
from services.routing.app import build_app as build_routing
from tests.conftest import Tap, fresh_consumer_group, intake_takes, topic_partitions
from tests.support import bearer
from tests.unit.test_intake_rules import body
from tests.unit.test_routing_taxonomy_admin import small

pytestmark = pytest.mark.integration

PROVINCE = 74
BASE = f"/api/v1/admin/taxonomy/{PROVINCE}"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    settings: Settings
    a: FastAPI  # the routing process the administrator talks to
    b: FastAPI  # another routing process of the same service
    intake: FastAPI
    http_a: httpx.AsyncClient
    http_b: httpx.AsyncClient
    http_intake: httpx.AsyncClient
    tap: Tap
    admin: dict[str, str]


def client(app: FastAPI, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")


@pytest.fixture(scope="module")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    bootstrap = settings.kafka_bootstrap
    # Two processes of routing in one consumer group, as `AK_WORKERS=2` runs them.
    group = await fresh_consumer_group(bootstrap, "routing", [topics.RECEIVED, topics.STATUS])
    a = build_routing(settings, consumer_group=group)
    b = build_routing(settings, consumer_group=group)
    intake = build_intake(settings, consumer_group=f"test-taxadmin-{uuid.uuid4().hex[:8]}")
    tap = Tap(bootstrap, [topics.TAXONOMY])
    await tap.start()
    try:
        async with (
            a.router.lifespan_context(a),
            b.router.lifespan_context(b),
            intake.router.lifespan_context(intake),
        ):
            for app in (a, b, intake):
                await asyncio.wait_for(app.state.runtime.started.wait(), 60)
            async with (
                client(a, "routing-a") as http_a,
                client(b, "routing-b") as http_b,
                client(intake, "intake") as http_intake,
            ):
                yield Stack(
                    settings,
                    a,
                    b,
                    intake,
                    http_a,
                    http_b,
                    http_intake,
                    tap,
                    bearer(settings, Role.admin, subject="zeynep.yonetici"),
                )
            versions = a.state.runtime.mongo[settings.database_name("routing")][
                "routing_taxonomy_versions"
            ]
            await versions.delete_many({"province_code": PROVINCE})
    finally:
        await tap.stop()
    # Leave the shared topic as it was found: Bartın is this module's own (a tombstone).
    producer = AIOKafkaProducer(**kafka_auth.client_options(settings, kafka_auth.ADMIN))
    await producer.start()
    try:
        await producer.send_and_wait(topics.TAXONOMY, None, key=str(PROVINCE).encode())
    finally:
        await producer.stop()


async def until(check: Callable[[], Any], timeout: float = 20, every: float = 0.01) -> float:
    """Seconds until `check()` (sync or async) is true."""
    start = time.perf_counter()
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return time.perf_counter() - start
            await asyncio.sleep(every)


def with_version(headers: dict[str, str], version: int) -> dict[str, str]:
    return {**headers, "If-Match": f'"{version}"'}


async def catalogue(stack: Stack) -> dict[str, Any]:
    response = await stack.http_intake.get("/api/v1/catalogue", params={"province_code": PROVINCE})
    return response.json() if response.status_code == 200 else {}


def category_names(view: dict[str, Any]) -> dict[str, str]:
    return {c["code"]: c["name"] for h in view.get("headings", []) for c in h["categories"]}


async def test_a_province_loaded_through_the_api_is_served(stack: Stack) -> None:
    response = await stack.http_a.put(BASE, json=small(), headers=stack.admin)

    assert response.status_code == 201, response.text
    loaded = response.json()
    assert (loaded["version"], loaded["author"], loaded["action"]) == (1, "zeynep.yonetici", "load")
    assert response.headers["ETag"] == '"1"'
    await intake_takes(stack.intake, [PROVINCE])
    held = stack.a.state.taxonomies.held[PROVINCE].event.event_id
    await until(lambda: stack.intake.state.served.taxonomy(PROVINCE).event_id == held)
    # The other routing process serves it too, having read the store on the announcement.
    # (Within the 30 s poll at the latest, if the announcement's wake-up was missed.)
    await until(lambda: stack.b.state.taxonomies.version(PROVINCE) == 1, timeout=40)
    other = await stack.http_b.get("/api/v1/taxonomy", params={"province_code": PROVINCE})
    assert other.status_code == 200, other.text
    assert other.json()["province"] == "Bartın"


async def test_a_rename_and_a_new_category_reach_every_service(stack: Stack) -> None:
    current = await stack.http_a.get(BASE, headers=stack.admin)
    assert current.status_code == 200, current.text
    version = int(current.headers["ETag"].strip('"'))

    renamed = await stack.http_a.patch(
        f"{BASE}/categories/ALT-001",
        json={"name": "Şebeke suyu kesintisi"},
        headers=with_version(stack.admin, version),
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["changes"][0]["fields"]["name"] == {
        "before": "Su kesintisi",
        "after": "Şebeke suyu kesintisi",
    }
    institution = await stack.http_a.post(
        f"{BASE}/institutions",
        json={
            "code": "BARTIN-ISM",
            "name": "Bartın İl Sağlık Müdürlüğü",
            "kind": "SAGLIK",
            "email": "bartin.saglik@acikkapi.local",
            "expected_version": version + 1,
        },
        headers=stack.admin,
    )
    assert institution.status_code == 201, institution.text
    added = await stack.http_a.post(
        f"{BASE}/categories",
        json={
            "heading_code": "GEN",
            "name": "Hastane randevusu alınamıyor",
            "keywords": ["hastane", "randevu", "MHRS"],
            "institution_code": "BARTIN-ISM",
        },
        headers=with_version(stack.admin, version + 2),
    )
    assert added.status_code == 201, added.text
    result = added.json()
    assert (result["version"], result["target"], result["published"]) == (
        version + 3,
        "GEN-002",
        True,
    )

    # Intake's form lists show the new name and the new category, and the other routing
    # process decides with them (both measured from the edit's answer).
    to_intake, to_b = await asyncio.gather(
        until(
            lambda: _shows(catalogue(stack), {"ALT-001": "Şebeke suyu kesintisi", "GEN-002": None})
        ),
        until(lambda: _routes(stack.b, "GEN-002", "BARTIN-ISM")),
    )
    print(f"\nedit → intake catalogue {1000 * to_intake:.0f} ms, → routing B {1000 * to_b:.0f} ms")
    # ...and the announcement is on the topic, keyed by the province.
    key, event = await stack.tap.wait_for(
        topics.TAXONOMY, lambda e: e.get("province_code") == PROVINCE and e["version"] == "4"
    )
    assert key == str(PROVINCE)
    assert event["event_type"] == "taxonomy.published"
    names = {c["code"]: c["name"] for h in event["headings"] for c in h["categories"]}
    assert names["GEN-002"] == "Hastane randevusu alınamıyor"
    assert {"code": "BARTIN-ISM", "name": "Bartın İl Sağlık Müdürlüğü", "kind": "SAGLIK"} in [
        {k: i[k] for k in ("code", "name", "kind")} for i in event["institutions"]
    ]


async def _shows(view: Any, expected: dict[str, str | None]) -> bool:
    names = category_names(await view)
    return all(
        code in names and (name is None or names[code] == name) for code, name in expected.items()
    )


def _routes(app: FastAPI, category: str, institution: str) -> bool:
    taxonomy = app.state.taxonomies.registry.for_province(PROVINCE)
    return taxonomy.category(category) is not None and (
        taxonomy.decide(category, "Amasra").institution_code == institution
    )


async def test_the_change_log_names_who_changed_what(stack: Stack) -> None:
    log = await stack.http_a.get(f"{BASE}/versions", headers=stack.admin)
    assert log.status_code == 200, log.text
    items = log.json()["items"]
    assert [i["version"] for i in items] == [4, 3, 2, 1]
    assert {i["author"] for i in items} == {"zeynep.yonetici"}
    assert [i["action"] for i in items] == [
        "category.create",
        "institution.create",
        "category.update",
        "load",
    ]
    detail = await stack.http_b.get(f"{BASE}/versions/2", headers=stack.admin)
    assert detail.status_code == 200, detail.text
    assert detail.json()["summary"] == "1 kategori değişti (ALT-001)."
    assert detail.json()["taxonomy"]["headings"][0]["categories"][0]["name"] == (
        "Şebeke suyu kesintisi"
    )


async def test_a_new_application_in_the_new_category_reaches_its_institution(
    stack: Stack,
) -> None:
    institution_topic = topics.institution_topic("BARTIN-ISM")
    await until(lambda: _topic_exists(stack.settings, institution_topic), timeout=30, every=0.2)
    async with Tap(stack.settings.kafka_bootstrap, [institution_topic]) as tap:
        posted = await stack.http_intake.post(
            "/api/v1/applications",
            json=body(
                province_code=PROVINCE,
                district="Amasra",
                category_code="GEN-002",
                subject="Hastane randevusu",
                text="Bir haftadır hastaneden randevu alamıyorum, sistem hep dolu diyor.",
            ),
        )
        assert posted.status_code == 201, posted.text
        application_id = posted.json()["application_id"]

        _, assignment = await tap.wait_for(
            institution_topic, lambda e: e.get("application_id") == application_id
        )
    assert assignment["category_code"] == "GEN-002"
    assert assignment["category_name"] == "Hastane randevusu alınamıyor"


async def _topic_exists(settings: Settings, name: str) -> bool:
    try:
        await topic_partitions(settings.kafka_bootstrap, [name])
    except AssertionError:
        return False
    return True


async def test_an_edit_on_a_stale_version_is_409(stack: Stack) -> None:
    response = await stack.http_b.patch(
        f"{BASE}/categories/ALT-002",
        json={"name": "Yol ve kaldırım bozukluğu"},
        headers=with_version(stack.admin, 1),
    )

    assert response.status_code == 409, response.text
    assert response.headers["ETag"] == '"4"'
    [error] = response.json()["errors"]
    assert error["code"] == "version_conflict"
    assert "değişikliğiniz kaydedilmedi. Güncel sürüm 4: zeynep.yonetici" in error["message"]
    current = await stack.http_a.get(BASE, headers=stack.admin)
    names = category_names(current.json()["taxonomy"])
    assert names["ALT-002"] == "Yol bozukluğu"


@pytest.mark.parametrize("role", [Role.officer, Role.supervisor, Role.institution])
async def test_only_an_administrator_may_edit(stack: Stack, role: Role) -> None:
    claims = {"institution": "BARTIN-ISM"} if role is Role.institution else {}
    headers = with_version(bearer(stack.settings, role, **claims), 4)

    edit = await stack.http_a.patch(
        f"{BASE}/categories/ALT-002", json={"name": "Başka ad"}, headers=headers
    )
    read = await stack.http_a.get(BASE, headers=headers)
    anonymous = await stack.http_a.patch(f"{BASE}/categories/ALT-002", json={"name": "Başka ad"})

    assert (edit.status_code, read.status_code, anonymous.status_code) == (403, 403, 401)
    assert edit.json()["errors"][0]["code"] == "forbidden"


async def test_a_file_loaded_with_the_command_reaches_running_processes(
    stack: Stack, tmp_path: Path
) -> None:
    current = (await stack.http_a.get(BASE, headers=stack.admin)).json()
    data = current["taxonomy"]
    data["headings"][0]["categories"][1]["name"] = "Yol ve kaldırım bozukluğu"
    path = tmp_path / "taxonomy_bartin.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "AK_DB_PREFIX": stack.settings.db_prefix}

    started = time.perf_counter()
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.routing",
        "load-taxonomy",
        str(path),
        "--author",
        "cli:test",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(command.communicate(), 60)
    assert command.returncode == 0, err.decode()
    assert "Bartın (74): 5. sürüm kaydedildi ve duyuruldu." in out.decode()
    ran = time.perf_counter() - started

    for app in (stack.a, stack.b):
        await until(lambda app=app: app.state.taxonomies.version(PROVINCE) == 5, timeout=10)
    took = time.perf_counter() - started - ran
    print(
        f"\ncommand ran {ran:.2f} s; then both routing processes on version 5 within {took:.3f} s"
    )
    log = (
        await stack.http_a.get(f"{BASE}/versions", params={"limit": 1}, headers=stack.admin)
    ).json()
    assert log["items"][0]["author"] == "cli:test"
    assert log["items"][0]["summary"] == "1 kategori değişti (ALT-002)."
