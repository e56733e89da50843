"""Pure rules of notification: SMS encoding and segments, recipients, gateway answers, delivery
reports, masking and Turkish dates. No I/O here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel

from services.common.events import NotificationChannel
from services.common.pii import mask_phone

# --- SMS encoding -------------------------------------------------------------------------------

# GSM 03.38 default alphabet (3GPP TS 23.038, the unicode.org GSM0338 mapping), without ESC.
# Of the Turkish letters only ö ü Ö Ü and Ç are in it; ç ş ğ ı İ Ş Ğ are not, so a text with
# any of those must go out as UCS-2 (70 characters a segment instead of 160).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters reached through the escape code: each costs two septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153  # septets in one SMS / in each part of a concatenated one
UCS2_SINGLE, UCS2_MULTI = 70, 67  # UTF-16 code units, likewise


class SmsEncoding(StrEnum):
    gsm7 = "gsm7"
    ucs2 = "ucs2"

    @property
    def kannel_coding(self) -> int:
        """Kannel's `coding` parameter: 0 = 7-bit GSM, 2 = UCS-2."""
        return 0 if self is SmsEncoding.gsm7 else 2


def choose_encoding(text: str) -> SmsEncoding:
    """GSM-7 when every character is in GSM 03.38 (basic or extension), UCS-2 otherwise."""
    for char in text:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            return SmsEncoding.ucs2
    return SmsEncoding.gsm7


def sms_units(text: str, encoding: SmsEncoding) -> int:
    """Length as the network counts it: septets for GSM-7, UTF-16 code units for UCS-2."""
    if encoding is SmsEncoding.gsm7:
        return sum(2 if char in GSM7_EXTENSION else 1 for char in text)
    return len(text.encode("utf-16-be")) // 2


def segment_count(text: str, encoding: SmsEncoding | None = None) -> int:
    """How many SMS the text costs: GSM-7 160 / 153 per part, UCS-2 70 / 67 per part.

    Concatenated parts lose room to the UDH header, hence 153 and 67. An empty text still
    costs one SMS.
    """
    encoding = encoding or choose_encoding(text)
    units = sms_units(text, encoding)
    single, multi = (
        (GSM7_SINGLE, GSM7_MULTI) if encoding is SmsEncoding.gsm7 else (UCS2_SINGLE, UCS2_MULTI)
    )
    if units <= single:
        return 1
    return math.ceil(units / multi)


@dataclass(frozen=True)
class SmsShape:
    encoding: SmsEncoding
    units: int
    segments: int


def sms_shape(text: str) -> SmsShape:
    encoding = choose_encoding(text)
    return SmsShape(encoding, sms_units(text, encoding), segment_count(text, encoding))


# --- recipients ---------------------------------------------------------------------------------


class InvalidRecipient(ValueError):
    """The address can never be delivered to (a bad number or e-mail): failed at once."""


_E164_RE = re.compile(r"^\+[1-9]\d{7,14}$")
_EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


def kannel_recipient(phone: str) -> str:
    """The `to` Kannel expects: international digits without "+", e.g. 905321234567.

    E.164 (+905321234567) is what producers send; Turkish national forms (05321234567,
    5321234567) are accepted too and given the 90 prefix.
    """
    compact = re.sub(r"[\s\-().]", "", phone)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if _E164_RE.fullmatch(compact):
        return compact[1:]
    if re.fullmatch(r"90[1-9]\d{9}", compact):
        return compact
    if re.fullmatch(r"0[1-9]\d{9}", compact):
        return "9" + compact
    if re.fullmatch(r"[1-9]\d{9}", compact):
        return "90" + compact
    raise InvalidRecipient(
        "Geçersiz telefon numarası / invalid phone number (E.164 bekleniyor, ör. +905321234567)."
    )


def check_email(address: str) -> str:
    address = address.strip()
    if not _EMAIL_RE.fullmatch(address) or len(address) > 254:
        raise InvalidRecipient("Geçersiz e-posta adresi / invalid e-mail address.")
    return address


def mask_email(address: str) -> str:
    """ayse.yilmaz@denizli.gov.tr -> ay***@denizli.gov.tr (the length is not given away)."""
    local, at, domain = address.partition("@")
    if not at:
        return "***"
    shown = local[:2] if len(local) > 2 else local[:1]
    return f"{shown}***@{domain}"


def mask_recipient(channel: str, address: str) -> str:
    return mask_phone(address) if channel == "sms" else mask_email(address)


# --- what the gateways answered ----------------------------------------------------------------


class NotificationState(StrEnum):
    """`sending` is written before the gateway is called; the rest after it answered."""

    sending = "sending"
    sent = "sent"  # the gateway accepted it
    delivered = "delivered"  # the handset confirmed (SMS delivery report)
    failed = "failed"
    uncertain = "uncertain"  # it may or may not have gone out: never resent, shown to operators


class GatewayOutcome(StrEnum):
    accepted = "accepted"
    rejected = "rejected"  # permanent: a bad number, a refused address, bad credentials
    transient = "transient"  # nothing was sent; trying again later may work
    ambiguous = "ambiguous"  # the request left but no answer came back: it may have been sent


@dataclass(frozen=True)
class GatewayReply:
    outcome: GatewayOutcome
    detail: str


_KANNEL_ACCEPTED = ("0:", "3:", "Sent.")  # "0: Accepted for delivery", "3: Queued for later ..."


def classify_kannel_reply(status_code: int, body: str) -> GatewayReply:
    """Kannel sendsms answers 202 when it took the message, 4xx when it never will, 5xx when
    it cannot now (e.g. 503 "Temporal failure, try again later")."""
    detail = f"{status_code} {body.strip()}"[:500]
    if 200 <= status_code < 300:
        if body.strip().startswith(_KANNEL_ACCEPTED):
            return GatewayReply(GatewayOutcome.accepted, detail)
        return GatewayReply(GatewayOutcome.ambiguous, detail)
    if 400 <= status_code < 500:
        return GatewayReply(GatewayOutcome.rejected, detail)
    return GatewayReply(GatewayOutcome.transient, detail)


def classify_smtp_code(code: int, message: str) -> GatewayReply:
    """SMTP's own rule: 4xx means "try again later", 5xx means "never"."""
    detail = f"{code} {message.strip()}"[:500]
    if 200 <= code < 300:
        return GatewayReply(GatewayOutcome.accepted, detail)
    if 400 <= code < 500:
        return GatewayReply(GatewayOutcome.transient, detail)
    return GatewayReply(GatewayOutcome.rejected, detail)


def state_after(outcome: GatewayOutcome) -> NotificationState:
    if outcome is GatewayOutcome.accepted:
        return NotificationState.sent
    if outcome is GatewayOutcome.ambiguous:
        return NotificationState.uncertain
    return NotificationState.failed


ResultStatus = Literal["sent", "delivered", "failed"]


def result_status(state: str) -> ResultStatus | None:
    """The NotificationResult a state is announced with; `sending`/`uncertain` announce nothing."""
    if state == NotificationState.sent:
        return "sent"
    if state == NotificationState.delivered:
        return "delivered"
    if state == NotificationState.failed:
        return "failed"
    return None


# --- SMS delivery reports (Kannel dlr-url callbacks) ------------------------------------------

# 1 delivered + 2 undelivered + 16 SMSC reject: the final states only. Buffered (4) and SMSC
# ack (8) would double the callbacks per segment and change nothing a citizen or operator sees.
DLR_MASK = 19


@dataclass(frozen=True)
class DeliveryReport:
    code: int
    name: str
    final_state: NotificationState | None  # None: an intermediate report, the state stays


_DLR = {
    1: DeliveryReport(1, "delivered", NotificationState.delivered),
    2: DeliveryReport(2, "undelivered", NotificationState.failed),
    4: DeliveryReport(4, "buffered", None),
    8: DeliveryReport(8, "submitted", None),
    16: DeliveryReport(16, "rejected_by_smsc", NotificationState.failed),
}


def delivery_report(code: int) -> DeliveryReport:
    return _DLR.get(code, DeliveryReport(code, "unknown", None))


class ReportEntry(BaseModel):
    """One of Kannel's delivery reports as kept on its message."""

    status: int
    name: str
    answer: str = ""
    at: datetime

    @classmethod
    def of(cls, code: int, answer: str, at: datetime) -> ReportEntry:
        return cls(status=code, name=delivery_report(code).name, answer=answer[:200], at=at)

    @property
    def detail(self) -> str:
        return f"DLR {self.status} {self.name}" + (f": {self.answer}" if self.answer else "")


class MessageSummary(BaseModel):
    """Where one message stands, as an operator may see it: no recipient in clear."""

    idempotency_key: str
    channel: NotificationChannel
    template: str
    state: NotificationState
    application_id: str | None = None
    application_number: str | None = None
    encoding: str | None = None
    segments: int | None = None
    attempts: int | None = None
    gateway_answer: str | None = None
    error: str | None = None
    uncertain_reason: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    settled_at: datetime | None = None


class Message(MessageSummary):
    """Notification's record of one idempotency key: what was asked, and where it stands."""

    request_event_id: str
    recipient_masked: str
    recipient_enc: str  # sealed: for an operator's investigation only
    updated_at: datetime
    settled_by: ReportEntry | None = None
    # By report status ("1", "2", ...): a repeated report overwrites itself.
    delivery_reports: dict[str, ReportEntry] = {}
    # A final report that came before the gateway's answer was written (store.py).
    early_report: ReportEntry | None = None

    @property
    def detail(self) -> str | None:
        """What decided its state: the final report, else the gateway's answer or the error."""
        if self.settled_by is not None:
            return self.settled_by.detail
        return self.gateway_answer or self.error


_B64_PREFIX = "b64."


def dlr_key_param(key: str) -> str:
    """The idempotency key as it travels in the dlr-url.

    Kannel substitutes %-escapes in the dlr-url (%d, %A, %C, %b ...), so a percent-encoded
    non-ASCII byte such as %C5 would be mangled; ASCII keys (all real ones) only produce
    %0x-%7x, which Kannel leaves alone. Anything else goes base64url-encoded, prefixed "b64.".
    """
    if key.isascii() and not key.startswith(_B64_PREFIX):
        return quote(key, safe="")
    return _B64_PREFIX + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def parse_dlr_key(param: str) -> str:
    if param.startswith(_B64_PREFIX):
        raw = param[len(_B64_PREFIX) :]
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    return param


def dlr_signature(secret: bytes, key: str) -> str:
    """A per-notification HMAC carried in the dlr-url: only Kannel, which got the URL from us,
    can report on that key (the callback may come from another host, so no IP allow-list)."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:32]


def dlr_signature_ok(secret: bytes, key: str, signature: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    return hmac.compare_digest(dlr_signature(secret, key).encode(), signature.encode())


def dlr_secret(jwt_secret: str) -> bytes:
    """Derived from a secret the service already has, with its own label."""
    return hashlib.sha256(b"acikkapi-sms-dlr:" + jwt_secret.encode()).digest()
