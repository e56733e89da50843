"""Routing's audit calls against the real stack: an officer's look at the pending queue is
recorded for every application it showed, and a routing decision as a change; the auditor
reads both from routing's own audit log."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from services.common import topics
from services.common.auth import Role
from services.common.settings import Settings
from tests.integration.test_routing_service import (  # noqa: F401 (fixtures)
    application,
    http,
    poll_pending,
    send,
    service,
)
from tests.support import bearer

pytestmark = pytest.mark.integration


async def test_the_queue_read_and_the_decision_are_audited(
    http: httpx.AsyncClient,  # noqa: F811
    settings: Settings,
) -> None:
    subject = f"audit-officer-{uuid.uuid4().hex[:6]}"
    officer = bearer(settings, Role.routing_officer, subject=subject, province=20)
    event = application(None, district="Pamukkale", subject="Muhtarlık", text="Muhtar gelmiyor.")
    await send(settings, topics.RECEIVED, event, event.application_id)
    await poll_pending(http, officer, event)

    decided = await http.post(
        f"/api/v1/routing/{event.application_id}/route",
        json={"category_code": "NUF-012"},
        headers=officer,
    )
    assert decided.status_code == 200, decided.text

    auditor = bearer(settings, Role.auditor)
    page = await http.get(
        "/api/v1/audit", params={"application_id": event.application_id}, headers=auditor
    )
    assert page.status_code == 200, page.text
    records = page.json()["records"]
    change, *reads = records
    assert change["action"] == "change"
    assert change["detail"] == {
        "operation": "route",
        "category_code": "NUF-012",
        "institution_code": "PAMUKKALE-KYM",
    }
    assert change["actor"]["subject"] == subject
    assert change["request"]["path"] == f"/api/v1/routing/{event.application_id}/route"
    assert reads and {r["action"] for r in reads} == {"read_personal"}
    assert reads[0]["fields"] == ["subject", "text"]
    assert reads[0]["application_number"] == event.application_number
    assert reads[0]["detail"] == {"operation": "pending"}
    # The query string of the queue (the application number asked for) is not kept.
    assert reads[0]["request"]["path"] == "/api/v1/routing/pending"
    assert "Yıldırım" not in json.dumps(records) and "+90532" not in json.dumps(records)

    verified = await http.get("/api/v1/audit/verify", headers=auditor)
    assert verified.json()["valid"] is True
    refused = await http.get("/api/v1/audit", headers=officer)
    assert refused.status_code == 403
