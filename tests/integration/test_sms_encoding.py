"""Turkish SMS go out through the real Kannel in GSM 7-bit with the Turkish locking shift table
(UDH IE 0x25), and UCS-2 only when no GSM table writes the text: fakesmsc's parts, read back
through the tables their header names, give the text exactly, in as many parts as
segment_count predicted and with the septets per part that gsm.parts computed.

Also pinned here: Kannel 1.4.5 cannot carry the single shift table (IE 0x24), so notification
never chooses it (domain.KANNEL_ENCODINGS)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from urllib.parse import unquote_to_bytes

import httpx
import pytest

from services.common.application_number import format_number
from services.common.events import NotificationChannel, NotificationRequest
from services.common.mongo import make_client, service_database
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.notification import domain, gsm
from services.notification.domain import GatewayOutcome, SmsEncoding
from services.notification.gateways import KannelGateway
from services.notification.handlers import Notifier
from services.notification.metrics import SMS_SEGMENTS
from services.notification.rendering import RenderedSms, Renderer
from services.notification.store import NotificationStore
from services.tracking.domain import OUTCOME_LABELS, Outcome
from services.tracking.rating import key_of, rating_url
from tests.support import FakeSms, read_fakesmsc

pytestmark = pytest.mark.integration

TRACKING = "https://acikkapi.denizli.gov.tr/takip"
NUMBER = format_number(20, 2026, 4_815_162)
DEAD_DLR_URL = "http://127.0.0.1:9/dlr"  # nobody listens: these tests read fakesmsc, not reports


@pytest.fixture(scope="module")
def data_dir() -> Path:
    value = os.environ.get("AK_DATA_DIR")
    if not value:
        pytest.skip("needs the local stack's Kannel and fakesmsc (AK_DATA_DIR)")
    return Path(value)


@pytest.fixture
async def kannel(settings: Settings) -> AsyncIterator[KannelGateway]:
    gateway = KannelGateway(settings)
    yield gateway
    await gateway.aclose()


def a_receiver() -> str:
    return f"90556{secrets.randbelow(10**7):07d}"


def rendered(template: str, **params: str) -> str:
    sms = Renderer().render(template, NotificationChannel.sms, params)
    assert isinstance(sms, RenderedSms)
    return sms.text


def real_texts() -> dict[str, str]:
    """The SMS citizens get, with Turkish letters, and texts at the edges of the encoder."""
    rating = rating_url(key_of("test-secret"), TRACKING, NUMBER)
    assert rating is not None
    return {
        "receipt": rendered(
            "application_received", application_number=NUMBER, tracking_url=TRACKING
        ),
        "answer": rendered(
            "application_answered",
            application_number=NUMBER,
            outcome="kismen_olumlu",
            outcome_label=OUTCOME_LABELS[Outcome.kismen_olumlu],
            tracking_url=TRACKING,
            rating_url=rating,
        ),
        "answer_without_rating": rendered(
            "application_answered",
            application_number=NUMBER,
            outcome="olumsuz",
            outcome_label=OUTCOME_LABELS[Outcome.olumsuz],
            tracking_url=TRACKING,
        ),
        "information_requested": rendered(
            "information_requested", application_number=NUMBER, tracking_url=TRACKING
        ),
        "exactly_155_septets": ("Şikâyetiniz " * 20).replace("â", "a")[:155],
        "156_septets": ("Şikâyetiniz " * 20).replace("â", "a")[:156],
        "long_with_escapes": (
            "Sayın vatandaşımız, Çığır Mahallesi'ndeki [yol] çalışması {3 gün} sürecek; "
            "ücret 0 € | İlçe Müdürlüğü ~ "
        )
        * 6,
        "plain_gsm_long": "Basvurunuz alindi; takip icin: " + "x" * 200,
        "needs_ucs2_emoji": f"Açık Kapı: Başvurunuz alındı 🙂 Başvuru no: {NUMBER}.",
        "needs_ucs2_arabic": (
            f"Açık Kapı: {NUMBER} numaralı başvurunuz alındı ve ilgili kuruma iletildi. "
            "شكرا لتواصلكم معنا"
        ),
    }


TEXTS = real_texts()

_LINE = re.compile(r"Got message \d+: <\S+ (?P<to>\d+) udh (?P<udh>\S+) data (?P<data>\S*)>")


def header_parts(out_file: Path, receiver: str) -> list[tuple[gsm.HeaderElements, bytes]]:
    """Each part fakesmsc printed for `receiver` with a header: what the header says, and the
    part's text as Kannel held it."""
    found = []
    for line in out_file.read_bytes().decode("utf-8", "replace").splitlines():
        match = _LINE.search(line)
        if match and match["to"] == receiver:
            udh = unquote_to_bytes(match["udh"].replace("+", " "))
            found.append(
                (gsm.read_user_data_header(udh), unquote_to_bytes(match["data"].replace("+", " ")))
            )
    return sorted(found, key=lambda part: part[0].sequence)


async def wait_for_sms(out_file: Path, receiver: str, timeout: float = 15) -> FakeSms:
    async with asyncio.timeout(timeout):
        while True:
            for message in read_fakesmsc(out_file):
                if message.receiver == receiver:
                    return message
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("name", list(TEXTS))
async def test_kannel_carries_the_text_in_the_predicted_parts(
    name: str, kannel: KannelGateway, data_dir: Path
):
    text = TEXTS[name]
    encoding = domain.choose_encoding(text)
    segments = domain.segment_count(text, encoding)
    receiver = a_receiver()

    reply = await kannel.send_sms(to=receiver, text=text, encoding=encoding, dlr_url=DEAD_DLR_URL)
    assert reply.outcome is GatewayOutcome.accepted, reply.detail

    out_file = data_dir / "fakesmsc.out"
    sms = await wait_for_sms(out_file, receiver)
    assert sms.text == text
    assert sms.parts == segments
    assert sms.alphabet == encoding.alphabet  # None for UCS-2

    alphabet = encoding.alphabet
    if alphabet is None or (alphabet == gsm.DEFAULT and segments == 1):
        return  # no header: nothing more to check on the parts
    printed = header_parts(out_file, receiver)
    assert [header.alphabet for header, _data in printed] == [alphabet] * segments
    # Kannel's septets per part, as its drivers map the text: exactly what gsm.parts computed.
    septets = [
        len(gsm.encode(data.decode("utf-8"), gsm.DEFAULT, unknown="?")) for _h, data in printed
    ]
    assert septets == [len(part) for part in gsm.parts(text, alphabet)]


def test_the_citizens_sms_are_cheaper_than_ucs2():
    expected = {
        "receipt": (SmsEncoding.gsm7_tr_locking, 1, 2),
        "information_requested": (SmsEncoding.gsm7_tr_locking, 1, 2),
        "answer_without_rating": (SmsEncoding.gsm7_tr_locking, 1, 2),
        "answer": (SmsEncoding.gsm7_tr_locking, 2, 3),
        "exactly_155_septets": (SmsEncoding.gsm7_tr_locking, 1, 3),
        "156_septets": (SmsEncoding.gsm7_tr_locking, 2, 3),
        "needs_ucs2_emoji": (SmsEncoding.ucs2, 1, 1),
        "needs_ucs2_arabic": (SmsEncoding.ucs2, 2, 2),
    }
    for name, (encoding, segments, as_ucs2) in expected.items():
        text = TEXTS[name]
        shape = domain.sms_shape(text)
        assert (shape.encoding, shape.segments) == (encoding, segments), name
        assert domain.segment_count(text, SmsEncoding.ucs2) == as_ucs2, name


async def test_kannel_turns_single_shift_letters_into_question_marks(
    settings: Settings, data_dir: Path
):
    """Why notification never uses the Turkish single shift table: under its header (IE 0x24)
    Kannel maps ş ğ ı İ Ş Ğ onto the default alphabet, which lacks them ("?"), and ç onto Ç;
    ESC given as U+001B becomes "?" too, so ESC 0x73 (ş) can never be asked for."""
    receiver = a_receiver()
    params = {
        "username": settings.sms_username,
        "password": settings.sms_password,
        "from": settings.sms_sender,
        "to": receiver,
        "charset": "UTF-8",
        "coding": "0",
        "udh": gsm.TURKISH_SINGLE.user_data_header().decode("ascii"),
        "text": "şğı ŞĞİ ç € \x1bs",
    }
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(settings.sms_gateway_url, params=params)
    assert response.status_code == 202, response.text
    sms = await wait_for_sms(data_dir / "fakesmsc.out", receiver)
    assert sms.alphabet == gsm.TURKISH_SINGLE
    assert sms.text == "??? ??? Ç € ?s"


# --- through the notification use case: the segments metric --------------------------------------


@pytest.fixture
async def notifier(settings: Settings, kannel: KannelGateway) -> AsyncIterator[Notifier]:
    client = make_client(settings)
    store = NotificationStore(
        service_database(client, settings, "notification"), PiiCipher(settings.pii_key_bytes())
    )
    await store.ensure_indexes()

    class KeptResults:
        """Stands in for the Kafka publisher: the results are not this test's subject."""

        def __init__(self) -> None:
            self.sent: list[object] = []

        async def send_all(self, messages: Iterable[object]) -> None:
            self.sent.extend(messages)

    class NoEmail:
        async def send_email(self, **_: object) -> domain.GatewayReply:
            raise AssertionError("no e-mail here")

    yield Notifier(
        settings=settings,
        store=store,
        renderer=Renderer(),
        sms=kannel,
        email=NoEmail(),
        publisher=KeptResults(),  # type: ignore[arg-type]
    )
    await client.close()


def observed(encoding: str) -> tuple[float, float]:
    """(count, sum) of the segments histogram for one encoding label."""
    samples = {
        sample.name: sample.value
        for metric in SMS_SEGMENTS.collect()
        for sample in metric.samples
        if sample.labels.get("encoding") == encoding
    }
    return samples.get("acikkapi_sms_segments_count", 0.0), samples.get(
        "acikkapi_sms_segments_sum", 0.0
    )


async def test_the_receipt_goes_out_as_one_turkish_gsm_sms_and_is_counted_so(
    notifier: Notifier, data_dir: Path
):
    receiver = a_receiver()
    application_id = str(uuid.uuid4())
    request = NotificationRequest(
        application_id=application_id,
        application_number=NUMBER,
        producer="intake",
        idempotency_key=f"{application_id}:received:sms",
        channel=NotificationChannel.sms,
        to="+" + receiver,
        template="application_received",
        params={"application_number": NUMBER, "tracking_url": TRACKING},
        urgent=True,  # sent now at any hour: quiet hours are not this test's subject
    )
    before = observed("gsm7_tr_locking")
    await notifier.handle_requests([request])

    sms = await wait_for_sms(data_dir / "fakesmsc.out", receiver)
    assert sms.text == TEXTS["receipt"]
    assert (sms.parts, sms.alphabet) == (1, gsm.TURKISH_LOCKING)
    count, total = observed("gsm7_tr_locking")
    assert (count - before[0], total - before[1]) == (1, 1)
    record = await notifier.store.get(request.idempotency_key)
    assert record is not None
    assert (record.encoding, record.segments) == ("gsm7_tr_locking", 1)
