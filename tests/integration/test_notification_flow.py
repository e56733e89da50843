"""Notification end to end on real infrastructure: requests on Kafka, records in MongoDB, SMS
through Kannel to the fake SMSC (whose delivery reports Kannel calls back), e-mail through SMTP
into a Maildir, and results / dead letters back on Kafka.

Endpoints come from the environment, as the local stack exports them: AK_KAFKA_BOOTSTRAP,
AK_MONGO_URI, AK_SMS_GATEWAY_URL, AK_SMTP_HOST, AK_SMTP_PORT, and AK_DATA_DIR (the fake SMSC's
log at `$AK_DATA_DIR/fakesmsc.out`, the SMTP sink's Maildir at `$AK_DATA_DIR/mail`).
The service runs in-process on a real port so Kannel can reach its dlr-url; it consumes in a
group of its own, parked at the end of the requests topic so old requests are not resent.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from services.common import topics
from services.common.application_number import format_number
from services.common.auth import Role
from services.common.events import NotificationRequest
from services.common.settings import Settings
from services.notification import domain
from services.notification.app import build_app
from tests.conftest import ServiceUnderTest, consume_until, fresh_consumer_group, produce
from tests.support import FakeSms, read_fakesmsc, read_maildir

pytestmark = pytest.mark.integration

DATA_DIR = os.environ.get("AK_DATA_DIR")
if not DATA_DIR:
    pytest.skip(
        "AK_DATA_DIR is not set: it must point at the stack's fakesmsc.out and mail/ "
        "(see deploy/local/stack.py)",
        allow_module_level=True,
    )
FAKESMSC_OUT = Path(DATA_DIR) / "fakesmsc.out"
MAILDIR = Path(DATA_DIR) / "mail"
TRACKING_URL = "http://127.0.0.1:8003/takip"
PHONE = "+905321234567"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[ServiceUnderTest]:
    group = await fresh_consumer_group(
        settings.kafka_bootstrap,
        "notification",
        [topics.NOTIFICATION_REQUESTS],
        [topics.NOTIFICATION_RESULTS],
    )

    port = free_port()
    service_settings = settings.model_copy(update={"sms_dlr_base_url": f"http://127.0.0.1:{port}"})
    app = build_app(service_settings, consumer_group=group)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not (server.started and app.state.runtime.started.is_set()):
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield ServiceUnderTest(client, service_settings)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def unique_number() -> str:
    return format_number(20, 2026, random.randint(1, 9_999_999))


def sms_request(number: str) -> NotificationRequest:
    application_id = str(uuid.uuid4())
    return NotificationRequest(
        application_id=application_id,
        application_number=number,
        producer="test",
        idempotency_key=f"{application_id}:received:sms",
        channel="sms",
        to=PHONE,
        template="application_received",
        params={"application_number": number, "tracking_url": TRACKING_URL},
    )


async def send(settings: Settings, request: NotificationRequest) -> None:
    await produce(
        settings.kafka_bootstrap,
        topics.NOTIFICATION_REQUESTS,
        request.to_bytes(),
        key=request.idempotency_key,
    )


async def result(settings: Settings, key: str, status: str) -> dict[str, Any]:
    return await consume_until(
        settings.kafka_bootstrap,
        topics.NOTIFICATION_RESULTS,
        lambda body: body.get("idempotency_key") == key and body.get("status") == status,
        timeout=30,
    )


async def wait_for_sms(predicate: Callable[[FakeSms], bool], timeout: float = 20) -> FakeSms:
    async with asyncio.timeout(timeout):
        while True:
            for message in read_fakesmsc(FAKESMSC_OUT):
                if predicate(message):
                    return message
            await asyncio.sleep(0.2)


async def test_sms_is_sent_once_and_delivered(service: ServiceUnderTest):
    settings = service.settings
    number = unique_number()
    request = sms_request(number)
    key = request.idempotency_key
    await send(settings, request)

    sent = await result(settings, key, "sent")
    assert sent["segments"] == 2 and sent["application_id"] == request.application_id
    sms = await wait_for_sms(lambda m: number in m.text)
    assert sms.text == f"Açık Kapı: Başvurunuz alındı. Başvuru no: {number}. Takip: {TRACKING_URL}"
    assert (sms.sender, sms.receiver, sms.parts) == (settings.sms_sender, "905321234567", 2)

    # Kannel reports the fake SMSC's delivery on our dlr-url.
    delivered = await result(settings, key, "delivered")
    assert delivered["application_number"] == number

    response = await service.http.get(
        f"/api/v1/notifications/{key}", headers=service.token(Role.supervisor)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "delivered"
    assert body["recipient"] == "+90 5** *** ** 67" and "5321234567" not in response.text
    assert (body["encoding"], body["segments"]) == ("ucs2", 2)
    assert 1 in {report["status"] for report in body["delivery_reports"]}

    # The same request again, as a producer retry would send it: announced, never sent.
    await send(settings, request.model_copy(update={"event_id": uuid.uuid4()}))
    await result(settings, key, "skipped_duplicate")
    # A later message through the same path shows Kannel has passed on everything before it.
    marker_number = unique_number()
    await send(settings, sms_request(marker_number))
    await wait_for_sms(lambda m: marker_number in m.text)
    assert len([m for m in read_fakesmsc(FAKESMSC_OUT) if number in m.text]) == 1


async def test_email_arrives_with_its_turkish_subject(service: ServiceUnderTest):
    settings = service.settings
    number = unique_number()
    application_id = str(uuid.uuid4())
    key = f"{application_id}:routed:PAMUKKALE_BLD:email"
    await send(
        settings,
        NotificationRequest(
            application_id=application_id,
            application_number=number,
            producer="test",
            idempotency_key=key,
            channel="email",
            to="yazi.isleri@pamukkale.bel.tr",
            template="institution_assignment",
            params={
                "application_number": number,
                "institution_name": "Pamukkale Belediyesi",
                "category_name": "Yol ve kaldırım",
                "subject": "Kaldırım çöktü, ışıklar yanmıyor",
                "district": "Pamukkale",
                "deadline_at": "2026-03-02T09:30:00+00:00",
            },
        ),
    )
    sent = await result(settings, key, "sent")
    assert sent["channel"] == "email" and sent["segments"] is None

    async with asyncio.timeout(20):
        while True:
            found = [m for m in read_maildir(MAILDIR) if number in str(m["Subject"])]
            if found:
                break
            await asyncio.sleep(0.2)
    [message] = found
    assert message["Subject"] == f"Açık Kapı: {number} numaralı başvuru kurumunuza yönlendirildi"
    assert message["To"] == "yazi.isleri@pamukkale.bel.tr"
    assert message["From"].addresses[0].display_name == "Açık Kapı"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    assert "Son yanıt    : 02.03.2026 12:30" in plain.get_content()
    assert "Kaldırım çöktü, ışıklar yanmıyor" in plain.get_content()
    assert "<strong>02.03.2026 12:30</strong>" in html.get_content()


async def test_unknown_template_goes_to_the_dead_letter_topic(service: ServiceUnderTest):
    settings = service.settings
    request = sms_request(unique_number()).model_copy(update={"template": "no_such_template"})
    await send(settings, request)
    letter = await consume_until(
        settings.kafka_bootstrap,
        topics.dlq(topics.NOTIFICATION_REQUESTS),
        lambda body: body.get("key") == request.idempotency_key,
        timeout=30,
    )
    assert letter["error_type"] == "unprocessable"
    assert "Bilinmeyen şablon" in letter["reason"] and "no_such_template" in letter["reason"]
    response = await service.http.get(
        f"/api/v1/notifications/{request.idempotency_key}", headers=service.token(Role.admin)
    )
    assert response.status_code == 404


async def test_callbacks_and_state_are_guarded(service: ServiceUnderTest):
    key = "no-such-notification:received:sms"
    secret = domain.dlr_secret(service.settings.jwt_secret)
    dlr = "/api/v1/sms/dlr"
    unsigned = await service.http.get(dlr, params={"key": key, "status": 1})
    assert unsigned.status_code == 403
    assert unsigned.json()["errors"][0]["code"] == "forbidden"
    wrong = domain.dlr_signature(secret, "another-key")
    forged = await service.http.get(dlr, params={"key": key, "status": 1, "sig": wrong})
    assert forged.status_code == 403
    signed = {"key": key, "status": 1, "sig": domain.dlr_signature(secret, key)}
    assert (await service.http.get(dlr, params=signed)).status_code == 404
    bad_status = await service.http.get(dlr, params={**signed, "status": "teslim"})
    assert bad_status.status_code == 422

    state = f"/api/v1/notifications/{key}"
    assert (await service.http.get(state)).status_code == 401
    institution = service.token(Role.institution, institution="PAMUKKALE_BLD")
    assert (await service.http.get(state, headers=institution)).status_code == 403
