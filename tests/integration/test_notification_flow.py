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
RECEIVED_AT = "2026-03-02T07:15:00+00:00"
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
    service_settings = settings.model_copy(
        update={
            "sms_dlr_base_url": f"http://127.0.0.1:{port}",
            "notification_public_url": f"http://127.0.0.1:{port}",
            # Whatever the hour of the run: quiet hours have tests of their own.
            "sms_quiet_hours": "",
        }
    )
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
    # One SMS in GSM 7-bit with the Turkish locking shift table (it was two as UCS-2).
    assert sent["segments"] == 1 and sent["application_id"] == request.application_id
    sms = await wait_for_sms(lambda m: number in m.text)
    assert sms.text == f"Açık Kapı: Başvurunuz alındı. Başvuru no: {number}. Takip: {TRACKING_URL}"
    assert (sms.sender, sms.receiver, sms.parts) == (settings.sms_sender, "905321234567", 1)

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
    assert (body["encoding"], body["segments"]) == ("gsm7_tr_locking", 1)
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
    secret = domain.dlr_secret(service.settings.sms_dlr_secret or service.settings.jwt_secret)
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


def email_request(template: str, number: str, to: str, **params: Any) -> NotificationRequest:
    application_id = str(uuid.uuid4())
    kind = "received" if template == "application_received" else "answered"
    return NotificationRequest(
        application_id=application_id,
        application_number=number,
        producer="test",
        idempotency_key=f"{application_id}:{kind}:email",
        channel="email",
        to=to,
        template=template,
        params={"application_number": number, "tracking_url": TRACKING_URL, **params},
    )


async def wait_for_mail(number: str, timeout: float = 20) -> list[Any]:
    async with asyncio.timeout(timeout):
        while True:
            found = [m for m in read_maildir(MAILDIR) if number in str(m["Subject"])]
            if found:
                return found
            await asyncio.sleep(0.2)


async def test_receipt_email_unsubscribe_link_and_the_answer_that_still_comes(
    service: ServiceUnderTest,
):
    settings = service.settings
    address = f"vatandas.{uuid.uuid4().hex[:8]}@ornek.com.tr"
    number = unique_number()
    receipt = email_request("application_received", number, address, received_at=RECEIVED_AT)
    await send(settings, receipt)
    await result(settings, receipt.idempotency_key, "sent")
    [mail] = await wait_for_mail(number)
    assert mail["Subject"] == f"Açık Kapı: Başvurunuz alındı ({number})"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(mail["List-Unsubscribe"]).strip().strip("<>")
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    assert number in text and TRACKING_URL in text and link in text
    assert "02.03.2026 10:15" in text  # the moment it was received, on Istanbul's clock
    assert "T.C." not in text and "Kimlik" not in text
    assert link.replace("&", "&amp;") in html.get_content() or link in html.get_content()
    assert address not in link

    path = link.removeprefix(str(service.http.base_url).rstrip("/"))
    page = await service.http.get(path)
    assert page.status_code == 200 and "E-postalardan ayrıl" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    forged = await service.http.post(path[:-3] + "abc")
    assert forged.status_code == 400 and "geçersiz" in forged.text
    one_click = await service.http.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200 and "ayrıldınız" in one_click.text

    # A later receipt to the same address (its case aside) is not sent; the answer still is.
    second_number = unique_number()
    second = email_request("application_received", second_number, address.upper())
    await send(settings, second)
    skipped = await result(settings, second.idempotency_key, "skipped_optout")
    assert skipped["channel"] == "email"
    answer = email_request(
        "application_answered",
        second_number,
        address,
        outcome_label="kısmen olumlu",
        answer="Birinci satır.\n<b>ikinci</b> satır & son.",
    )
    await send(settings, answer)
    await result(settings, answer.idempotency_key, "sent")
    [answered] = await wait_for_mail(second_number)
    assert answered["Subject"] == f"Açık Kapı: {second_number} numaralı başvurunuz yanıtlandı"
    assert answered["List-Unsubscribe"] is None  # a legal reply: no opting out
    answer_html = answered.get_body(("html",))
    assert answer_html is not None
    body = answer_html.get_content()
    assert "Birinci satır.<br>\n&lt;b&gt;ikinci&lt;/b&gt; satır &amp; son." in body
    assert "3071" in body and "4982" in body
    assert len([m for m in read_maildir(MAILDIR) if second_number in str(m["Subject"])]) == 1


async def test_templates_are_listed_with_versions_and_previewed(service: ServiceUnderTest):
    http = service.http
    assert (await http.get("/api/v1/templates")).status_code == 401
    officer = service.token(Role.officer)
    assert (await http.get("/api/v1/templates", headers=officer)).status_code == 403
    supervisor = service.token(Role.supervisor)
    listed = await http.get("/api/v1/templates", headers=supervisor)
    assert listed.status_code == 200, listed.text
    by_key = {(t["name"], t["channel"]): t for t in listed.json()}
    receipt = by_key[("application_received", "email")]
    assert receipt["version"] >= 1 and receipt["opt_out_allowed"] is True
    assert by_key[("application_answered", "email")]["opt_out_allowed"] is False

    sms = await http.get("/api/v1/templates/application_received/sms/preview", headers=supervisor)
    assert sms.status_code == 200, sms.text
    body = sms.json()
    shape = domain.sms_shape(body["text"])
    assert body["sms"] == {
        "encoding": shape.encoding.value,
        "units": shape.units,
        "segments": shape.segments,
    }
    assert body["template"]["version"] == by_key[("application_received", "sms")]["version"]

    mail = await http.post(
        "/api/v1/templates/application_received/email/preview",
        headers=supervisor,
        json={"params": {"application_number": "20-2026-0000001-1", "tracking_url": "https://x"}},
    )
    assert mail.status_code == 200, mail.text
    assert mail.json()["subject"] == "Açık Kapı: Başvurunuz alındı (20-2026-0000001-1)"
    assert "/eposta/ayril?t=" in mail.json()["html"] and mail.json()["sms"] is None

    missing = await http.post(
        "/api/v1/templates/application_received/sms/preview", headers=supervisor, json={}
    )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "params"
    assert "Eksik şablon parametresi" in missing.json()["errors"][0]["message"]
    unknown = await http.get("/api/v1/templates/yok_boyle/sms/preview", headers=supervisor)
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["code"] == "unknown_template"


async def test_only_an_administrator_resends_and_only_what_failed(service: ServiceUnderTest):
    settings = service.settings
    request = sms_request(unique_number())
    await send(settings, request)
    await result(settings, request.idempotency_key, "sent")
    path = f"/api/v1/notifications/{request.idempotency_key}/resend"
    supervisor = service.token(Role.supervisor)
    assert (await service.http.post(path, headers=supervisor)).status_code == 403
    refused = await service.http.post(path, headers=service.token(Role.admin))
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["code"] == "not_resendable"
    state = await service.http.get(
        f"/api/v1/notifications/{request.idempotency_key}", headers=supervisor
    )
    assert [a["outcome"] for a in state.json()["history"]] == ["accepted"]
    assert state.json()["template_version"] >= 1
