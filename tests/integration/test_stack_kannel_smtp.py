"""The local stack's SMS and e-mail ends are real: Kannel hands a Turkish SMS to the fake SMSC
intact, and the SMTP sink keeps a Turkish e-mail where a reader finds it decoded."""

from __future__ import annotations

import asyncio
import os
import secrets
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from services.common.settings import Settings
from tests.support import FakeSms, read_fakesmsc, read_maildir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_dir() -> Path:
    value = os.environ.get("AK_DATA_DIR")
    if not value:
        pytest.skip("needs the local stack's AK_DATA_DIR (run through `make test`)")
    return Path(value)


async def send_sms(settings: Settings, receiver: str, text: str) -> httpx.Response:
    params = {
        "username": settings.sms_username,
        "password": settings.sms_password,
        "from": settings.sms_sender,
        "to": receiver,
        "charset": "UTF-8",
        "coding": "2",
        "text": text,
    }
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(settings.sms_gateway_url, params=params)


async def wait_for_sms(out_file: Path, receiver: str) -> FakeSms:
    async with asyncio.timeout(15):
        while True:
            for message in read_fakesmsc(out_file):
                if message.receiver == receiver:
                    return message
            await asyncio.sleep(0.1)


def a_receiver() -> str:
    return f"90555{secrets.randbelow(10**7):07d}"


async def test_sendsms_reaches_the_fake_smsc_with_turkish_text_intact(
    settings: Settings, data_dir: Path
) -> None:
    receiver = a_receiver()
    text = f"Başvurunuz alındı: İĞDIR ışık çğöşü ÇĞÖŞÜ {secrets.token_hex(3)}"
    response = await send_sms(settings, receiver, text)
    assert response.status_code == 202, response.text
    assert response.text.startswith("0: Accepted"), response.text

    received = await wait_for_sms(data_dir / "fakesmsc.out", receiver)
    assert received.text == text
    assert (received.sender, received.parts) == (settings.sms_sender, 1)


async def test_a_long_turkish_sms_goes_out_as_concatenated_segments(
    settings: Settings, data_dir: Path
) -> None:
    receiver = a_receiver()
    # 150 UCS-2 characters: 3 segments of at most 67 once the concatenation header is in.
    text = (f"{secrets.token_hex(3)} Başvurunuz ilgili kuruma iletildi. " * 4)[:150]
    response = await send_sms(settings, receiver, text)
    assert response.status_code == 202, response.text

    received = await wait_for_sms(data_dir / "fakesmsc.out", receiver)
    assert received.text == text
    assert received.parts == 3


async def test_sendsms_with_a_wrong_password_is_refused(settings: Settings) -> None:
    params = {"username": settings.sms_username, "password": "wrong", "to": "905550000000"}
    params["text"] = "x"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(settings.sms_gateway_url, params=params)
    assert response.status_code == 403, response.text


def mails_to(maildir: Path, recipient: str) -> list[EmailMessage]:
    return [m for m in read_maildir(maildir) if recipient in m.get_all("X-Envelope-To", [])]


async def test_smtp_sink_keeps_the_mail_with_its_turkish_subject(
    settings: Settings, data_dir: Path
) -> None:
    recipient = f"kurum-{secrets.token_hex(4)}@denizli.gov.tr"
    subject = f"Yeni başvuru: Çığ düşmüş yol, İşçi Ağırlığı {secrets.token_hex(3)}"
    body = "Sayın yetkili,\nBaşvuru no 20-2026-000001 size yönlendirildi. Süre: 30 gün.\n"
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(body)
    await aiosmtplib.send(message, hostname=settings.smtp_host, port=settings.smtp_port)

    async with asyncio.timeout(10):
        while not (found := mails_to(data_dir / "mail", recipient)):
            await asyncio.sleep(0.1)
    assert len(found) == 1
    stored = found[0]
    assert stored["Subject"] == subject
    assert stored["From"] == settings.smtp_sender
    assert stored.get_content() == body
