"""Notification's audit call against the real stack: a supervisor who looks at a message's
state (its recipient, masked) is recorded before the answer, in notification's own log."""

from __future__ import annotations

import pytest

from services.common.auth import Role
from tests.integration.test_notification_flow import (  # noqa: F401 (the fixture)
    PHONE,
    ServiceUnderTest,
    result,
    send,
    service,
    sms_request,
    unique_number,
)
from tests.support import bearer

pytestmark = pytest.mark.integration


async def test_reading_a_message_state_is_audited(service: ServiceUnderTest) -> None:  # noqa: F811
    settings = service.settings
    request = sms_request(unique_number())
    await send(settings, request)
    await result(settings, request.idempotency_key, "sent")

    headers = bearer(settings, Role.supervisor, subject="audit-supervisor", province=20)
    shown = await service.http.get(
        f"/api/v1/notifications/{request.idempotency_key}", headers=headers
    )
    assert shown.status_code == 200

    page = await service.http.get(
        "/api/v1/audit",
        params={"application_id": request.application_id},
        headers=bearer(settings, Role.auditor),
    )
    assert page.status_code == 200, page.text
    [record] = page.json()["records"]
    assert record["service"] == "notification"
    assert record["action"] == "read_personal"
    assert record["fields"] == ["recipient_masked"]
    assert record["application_number"] == request.application_number
    assert record["actor"]["subject"] == "audit-supervisor"
    assert record["detail"]["operation"] == "notification_state"
    assert PHONE not in page.text and PHONE[3:] not in page.text
