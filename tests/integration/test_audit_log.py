"""The audit log against the test stack's MongoDB (nx-27017): records are appended in one
hash chain even with several writers and several processes, tampering in the database is
found by the verify endpoint, and only auditors (and admins) read the log, which is itself
recorded."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.common.audit import AUDIT_RECORDS, AuditLog, AuditUnavailable
from services.common.auth import Principal, Role
from services.common.mongo import Client, make_client
from services.common.service import Service
from services.common.settings import Settings
from tests.support import bearer

pytestmark = pytest.mark.integration

OFFICER = Principal(subject="officer-7", role=Role.routing_officer, province=20)


def fresh_log(mongo: Client, settings: Settings) -> AuditLog:
    """An audit log of its own (its own collection), so tampering here breaks no one else's."""
    return AuditLog(mongo[settings.database_name("reporting")], f"audit{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = Service("reporting", settings).app(title="Denetim", description="Denetim kaydı testi")
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        yield app


@pytest.fixture
async def audit(app: FastAPI, mongo: Client, settings: Settings) -> AsyncIterator[AuditLog]:
    """The app's audit log, swapped for a fresh one for the test."""
    own = app.state.audit
    log = fresh_log(mongo, settings)
    await log.ensure_indexes()
    app.state.audit = log
    yield log
    app.state.audit = own


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reporting") as client:
        yield client


def raw(log: AuditLog) -> Any:
    return log._records  # the test tampers with the collection as an intruder would


async def test_records_are_appended_in_order_with_who_what_and_where(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings
) -> None:
    for n in range(3):
        await audit.record(
            actor=OFFICER,
            action="read_personal",
            application_id=f"app-{n}",
            application_number=f"2026-20-0000{n}",
            fields=["first_name", "phone"],
        )
    answer = await http.get("/api/v1/audit", headers=bearer(settings, Role.auditor))
    assert answer.status_code == 200, answer.text
    records = answer.json()["records"]
    # Newest first: the auditor's own read, then the three reads of personal data.
    assert [r["action"] for r in records] == ["read_audit", *["read_personal"] * 3]
    assert [r["seq"] for r in records] == [4, 3, 2, 1]
    third = records[1]
    assert third["application_id"] == "app-2"
    assert third["fields"] == ["first_name", "phone"]
    assert third["actor"] == {
        "subject": "officer-7",
        "role": "routing_officer",
        "institution": None,
        "unit": None,
        "province": 20,
        "district": None,
    }
    assert records[0]["prev"] == third["hash"]


async def test_the_request_is_recorded_without_its_query_string(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings
) -> None:
    headers = {**bearer(settings, Role.auditor), "X-Request-ID": "req-42"}
    answer = await http.get("/api/v1/audit?actor=05321234567", headers=headers)
    assert answer.status_code == 200
    [mine] = await audit.query(action="read_audit")
    assert mine["request"] == {
        "method": "GET",
        "path": "/api/v1/audit",
        "client": "127.0.0.1",
        "request_id": "req-42",
    }
    assert mine["actor"]["subject"] == "test-auditor"


async def test_a_subject_that_looks_like_a_tckn_is_masked(audit: AuditLog) -> None:
    citizen = Principal(subject="10000000146", role=Role.citizen)
    await audit.record(actor=citizen, action="export_personal")
    [stored] = await audit.query()
    assert stored["actor"]["subject"] == "***********"


async def test_filters_and_cursor_pages(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings
) -> None:
    for n in range(5):
        await audit.record(actor=OFFICER, action="change", application_id="A" if n % 2 else "B")
    auditor = bearer(settings, Role.auditor)
    first = (await http.get("/api/v1/audit?application_id=B&limit=2", headers=auditor)).json()
    assert [r["seq"] for r in first["records"]] == [5, 3]
    cursor = first["next_cursor"]
    second = await http.get(
        f"/api/v1/audit?application_id=B&limit=2&cursor={cursor}", headers=auditor
    )
    assert [r["seq"] for r in second.json()["records"]] == [1]
    assert second.json()["next_cursor"] is None
    bad = await http.get("/api/v1/audit?cursor=bm9wZQ", headers=auditor)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["code"] == "invalid_cursor"
    by_actor = await http.get("/api/v1/audit?actor=officer-7&action=change", headers=auditor)
    assert len(by_actor.json()["records"]) == 5


async def test_concurrent_writers_in_several_clients_keep_one_valid_chain(
    mongo: Client, settings: Settings
) -> None:
    first = fresh_log(mongo, settings)
    await first.ensure_indexes()
    clients = [make_client(settings) for _ in range(3)]
    try:
        name = first.service
        writers = [first] + [
            AuditLog(c[settings.database_name("reporting")], name) for c in clients
        ]
        await asyncio.gather(
            *(
                writers[n % 4].record(actor=OFFICER, action="change", application_id=str(n))
                for n in range(400)
            )
        )
    finally:
        for client in clients:
            await client.close()
    walk, head = await first.verify()
    assert walk.first_break is None
    assert (walk.checked, head) == (400, 400)
    ids = {doc["application_id"] async for doc in raw(first).find({})}
    assert ids == {str(n) for n in range(400)}


async def test_concurrent_processes_keep_one_valid_chain(mongo: Client, settings: Settings) -> None:
    log = fresh_log(mongo, settings)
    await log.ensure_indexes()
    env = {**os.environ, "AK_MONGO_URI": settings.mongo_uri}
    database = settings.database_name("reporting")
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.audit_writer_probe",
            database,
            log.service,
            "150",
            env=env,
        )
        for _ in range(4)
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 120)
    assert codes == [0, 0, 0, 0]
    walk, head = await log.verify()
    assert walk.first_break is None
    assert (walk.checked, head) == (600, 600)
    writers = await raw(log).distinct("actor.subject")
    assert len(writers) == 4


async def test_a_record_changed_in_the_database_is_found_by_verify(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings
) -> None:
    for n in range(5):
        await audit.record(actor=OFFICER, action="read_personal", application_id=f"x{n}")
    auditor = bearer(settings, Role.auditor)
    clean = (await http.get("/api/v1/audit/verify", headers=auditor)).json()
    assert clean["valid"] is True
    assert clean["checked"] == 6  # the five, and the verify's own record, written first
    await raw(audit).update_one({"seq": 3}, {"$set": {"actor.subject": "someone-else"}})
    broken = (await http.get("/api/v1/audit/verify", headers=auditor)).json()
    assert broken["valid"] is False
    assert broken["first_break"]["seq"] == 3
    assert broken["first_break"]["problem"] == "altered"
    assert "değiştirilmiş" in broken["first_break"]["message"]


async def test_a_record_removed_from_the_database_is_found_by_verify(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings
) -> None:
    for n in range(4):
        await audit.record(actor=OFFICER, action="change", application_id=f"y{n}")
    await raw(audit).delete_one({"seq": 2})
    answer = await http.get("/api/v1/audit/verify", headers=bearer(settings, Role.auditor))
    body = answer.json()
    assert body["valid"] is False
    assert body["first_break"] == {
        "seq": 2,
        "problem": "missing",
        "message": "2 sıra numaralı denetim kaydı yok; kayıt silinmiş olabilir.",
    }


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
@pytest.mark.parametrize("role", [Role.auditor, Role.admin])
async def test_auditors_and_admins_read(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings, path: str, role: Role
) -> None:
    answer = await http.get(path, headers=bearer(settings, role))
    assert answer.status_code == 200, answer.text
    [read] = await audit.query(action="read_audit")
    assert read["actor"]["role"] == role.value


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
@pytest.mark.parametrize(
    ("role", "claims"),
    [
        (Role.officer, {}),
        (Role.counter_officer, {"province": 20}),
        (Role.routing_officer, {"province": 20}),
        (Role.institution, {"institution": "DESKI"}),
        (Role.supervisor, {"province": 20}),
        (Role.governor, {"province": 20}),
        (Role.citizen, {}),
    ],
)
async def test_every_other_role_is_refused_and_nothing_is_recorded(
    audit: AuditLog,
    http: httpx.AsyncClient,
    settings: Settings,
    path: str,
    role: Role,
    claims: dict[str, Any],
) -> None:
    answer = await http.get(path, headers=bearer(settings, role, **claims))
    assert answer.status_code == 403
    assert answer.json()["errors"][0]["code"] == "forbidden"
    assert await audit.query() == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YTpi"}],
)
async def test_without_a_valid_token_it_is_401(
    audit: AuditLog, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    answer = await http.get("/api/v1/audit", headers=headers)
    assert answer.status_code == 401
    assert await audit.query() == []


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_nobody_writes_the_log_over_http(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings, method: str
) -> None:
    answer = await http.request(
        method, "/api/v1/audit", headers=bearer(settings, Role.admin), json={"action": "x"}
    )
    assert answer.status_code == 405
    assert await audit.query() == []


async def test_the_openapi_describes_the_log_in_turkish(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    assert set(schema["paths"]["/api/v1/audit"]) == {"get"}
    record = schema["components"]["schemas"]["AuditRecord"]["properties"]
    assert record["fields"]["description"] == "Gösterilen kişisel veri alanları."


async def test_when_the_log_cannot_be_written_the_read_fails_closed_with_503(
    app: FastAPI, http: httpx.AsyncClient, settings: Settings
) -> None:
    down = make_client(settings.model_copy(update={"mongo_uri": "mongodb://127.0.0.1:9"}))
    own = app.state.audit
    app.state.audit = AuditLog(down[settings.database_name("reporting")], "reporting")
    try:
        answer = await http.get("/api/v1/audit", headers=bearer(settings, Role.auditor))
    finally:
        app.state.audit = own
        await down.close()
    assert answer.status_code == 503
    [error] = answer.json()["errors"]
    assert error["code"] == "audit_unavailable"
    assert "gösterilmedi" in error["message"]
    assert "records" not in answer.json()


async def test_a_failed_change_record_says_the_change_was_made(settings: Settings) -> None:
    down = make_client(settings.model_copy(update={"mongo_uri": "mongodb://127.0.0.1:9"}))
    log = AuditLog(down["x"], "reporting")
    try:
        with pytest.raises(AuditUnavailable) as raised:
            await log.record(actor=OFFICER, action="change", detail={"operation": "route"})
    finally:
        await down.close()
    assert raised.value.status_code == 503
    assert "İşlem yapıldı" in raised.value.detail[0]["message"]


async def test_record_cost_against_the_test_stack(mongo: Client, settings: Settings) -> None:
    """Measured, not asserted tightly: one awaited record at a time, and 500 at once."""
    log = fresh_log(mongo, settings)
    await log.ensure_indexes()
    started = time.perf_counter()
    for n in range(200):
        await log.record(actor=OFFICER, action="read_personal", application_id=str(n))
    serial_ms = (time.perf_counter() - started) / 200 * 1000
    started = time.perf_counter()
    await asyncio.gather(
        *(
            log.record(actor=OFFICER, action="read_personal", application_id=str(n))
            for n in range(500)
        )
    )
    batched_ms = (time.perf_counter() - started) / 500 * 1000
    print(f"audit record: {serial_ms:.2f} ms serial, {batched_ms:.3f} ms each of 500 at once")
    assert serial_ms < 50
    walk, _ = await log.verify()
    assert walk.checked == 700


async def test_the_newest_records_removed_are_found_by_the_witness(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings
) -> None:
    for n in range(4):
        await audit.record(
            actor=OFFICER, action="unmask", reason="Soruşturma", application_id=f"z{n}"
        )
    await raw(audit).delete_many({"seq": {"$gte": 3}})
    walk, head = await audit.verify()
    assert head == 2
    assert walk.first_break is not None
    assert (walk.first_break.seq, walk.first_break.problem) == (3, "missing")
    assert walk.first_break.message == "Son denetim kayıtları (3–4) yok; silinmiş olabilir."


async def test_time_filters_and_odd_input_are_answered_never_a_500(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings
) -> None:
    await audit.record(actor=OFFICER, action="change", application_id="t1")
    auditor = bearer(settings, Role.auditor)
    [stored] = await audit.query(application_id="t1")
    at = stored["at"].isoformat()
    inside = await http.get(
        "/api/v1/audit", params={"from": at, "application_id": "t1"}, headers=auditor
    )
    assert [r["application_id"] for r in inside.json()["records"]] == ["t1"]
    before = await http.get(
        "/api/v1/audit", params={"to": at, "application_id": "t1"}, headers=auditor
    )
    assert before.json()["records"] == []
    huge = base64.urlsafe_b64encode(b"seq:" + b"9" * 30).decode()
    for params, field in [
        ({"from": "0001-01-01T00:00:00+03:00"}, "from"),
        ({"cursor": huge}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"to": "dün"}, "to"),
    ]:
        answer = await http.get("/api/v1/audit", params=params, headers=auditor)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["errors"][0]["field"] == field


async def test_each_record_counts_in_the_metric(audit: AuditLog, http: httpx.AsyncClient) -> None:
    def written() -> float:
        return AUDIT_RECORDS.labels(audit.service, "unmask")._value.get()

    before = written()
    await audit.record(actor=OFFICER, action="unmask", reason="Müfettiş talebi")
    assert written() == before + 1
    metrics = (await http.get("/metrics")).text
    assert f'acikkapi_audit_records_total{{action="unmask",service="{audit.service}"}} ' in metrics


async def test_a_tckn_searched_for_is_not_kept_in_the_record_of_the_search(
    audit: AuditLog, http: httpx.AsyncClient, settings: Settings
) -> None:
    answer = await http.get(
        "/api/v1/audit", params={"actor": "10000000146"}, headers=bearer(settings, Role.auditor)
    )
    assert answer.status_code == 200
    [read] = await audit.query(action="read_audit")
    assert read["detail"] == {"operation": "query", "actor": "***********", "limit": 100}
