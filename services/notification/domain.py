"""Pure rules of notification: SMS encoding and segments, recipients, gateway answers, delivery
reports, masking and Turkish dates. No I/O here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel, BeforeValidator

from services.common.events import NotificationChannel
from services.common.pii import mask_phone
from services.notification import gsm

# --- SMS encoding -------------------------------------------------------------------------------

# The GSM 03.38 default alphabet has ö ü Ö Ü Ç but not ç ş ğ ı İ Ş Ğ. Written with a Turkish
# national language table (gsm.py) such a text still costs septets, not UCS-2's 16 bits a
# character: the 95-character receipt is one SMS instead of two.
UCS2_SINGLE, UCS2_MULTI = 70, 67  # UTF-16 code units in one SMS / in each part of a long one


class SmsEncoding(StrEnum):
    gsm7 = "gsm7"  # the default alphabet, no header
    gsm7_tr_single = "gsm7_tr_single"  # Turkish single shift table (UDH IE 0x24)
    gsm7_tr_locking = "gsm7_tr_locking"  # Turkish locking shift table (UDH IE 0x25)
    ucs2 = "ucs2"

    @property
    def alphabet(self) -> gsm.Alphabet | None:
        """The GSM tables it writes with; None for UCS-2."""
        return _ALPHABETS.get(self)

    @property
    def kannel_coding(self) -> int:
        """Kannel's `coding` parameter: 0 = 7-bit GSM, 2 = UCS-2."""
        return 2 if self is SmsEncoding.ucs2 else 0


_ALPHABETS = {
    SmsEncoding.gsm7: gsm.DEFAULT,
    SmsEncoding.gsm7_tr_single: gsm.TURKISH_SINGLE,
    SmsEncoding.gsm7_tr_locking: gsm.TURKISH_LOCKING,
}

# What Kannel (1.4.5) carries. Its 7-bit text is Unicode that every SMSC driver (and the
# splitter, for each part of a long message) maps onto the default alphabet, so a locking
# shift text goes as its default spelling (gsm.default_spelling) under the 0x25 header. A
# single shift character is ESC + a septet the default extension table lacks (ş = ESC 0x73),
# which no Unicode character maps to: Kannel sends "?" for it. So no single shift here; the
# locking shift table writes every Turkish letter in one septet anyway.
KANNEL_ENCODINGS = (SmsEncoding.gsm7, SmsEncoding.gsm7_tr_locking, SmsEncoding.ucs2)


def choose_encoding(text: str, carried: tuple[SmsEncoding, ...] = KANNEL_ENCODINGS) -> SmsEncoding:
    """The GSM alphabet among `carried` that sends the text in the fewest SMS (on a tie the
    one listed first: the smaller header); UCS-2 only when none of them can write it."""
    best: tuple[int, SmsEncoding] | None = None
    for encoding in carried:
        alphabet = encoding.alphabet
        if alphabet is None:
            continue
        count = gsm.part_count(text, alphabet)
        if count is not None and (best is None or count < best[0]):
            best = (count, encoding)
    return best[1] if best else SmsEncoding.ucs2


def sms_units(text: str, encoding: SmsEncoding) -> int:
    """Length as the network counts it: septets for GSM-7 (an escaped character is two),
    UTF-16 code units for UCS-2. gsm.NotEncodable if the GSM tables cannot write the text."""
    alphabet = encoding.alphabet
    if alphabet is None:
        return len(text.encode("utf-16-be")) // 2
    return len(gsm.encode(text, alphabet))


def segment_count(text: str, encoding: SmsEncoding | None = None) -> int:
    """How many SMS the text costs. GSM-7: 160 septets, or 153 a part once concatenated; a
    national table's header takes room too (155 / 149). UCS-2: 70, or 67 a part. An empty text
    still costs one SMS."""
    encoding = encoding or choose_encoding(text)
    alphabet = encoding.alphabet
    if alphabet is not None:
        return len(gsm.parts(text, alphabet))
    units = sms_units(text, encoding)
    return 1 if units <= UCS2_SINGLE else math.ceil(units / UCS2_MULTI)


@dataclass(frozen=True)
class SmsShape:
    encoding: SmsEncoding
    units: int
    segments: int


def sms_shape(text: str) -> SmsShape:
    encoding = choose_encoding(text)
    return SmsShape(encoding, sms_units(text, encoding), segment_count(text, encoding))


@dataclass(frozen=True)
class KannelText:
    """A text as Kannel's sendsms takes it (with charset=UTF-8): `coding`, `text`, and the
    user data header `udh` (b"" for none); Kannel adds the concatenation element itself."""

    coding: int
    text: str
    udh: bytes


def kannel_text(text: str, encoding: SmsEncoding) -> KannelText:
    if encoding is SmsEncoding.ucs2:
        return KannelText(encoding.kannel_coding, text, b"")
    if encoding not in KANNEL_ENCODINGS:
        raise ValueError(f"Kannel cannot carry {encoding.value} (see KANNEL_ENCODINGS)")
    alphabet = _ALPHABETS[encoding]
    spelled = gsm.default_spelling(gsm.encode(text, alphabet))
    return KannelText(encoding.kannel_coding, spelled, alphabet.user_data_header())


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
    """Before a gateway is called: `queued` (taken, not yet tried), `held` (quiet hours) or
    `retrying` (a gateway was away); each has a due time. `sending` is written just before the
    gateway is called; the rest after it answered."""

    queued = "queued"
    held = "held"  # a non-urgent SMS asked for in quiet hours, due when they end
    retrying = "retrying"  # a gateway was away: due again after a back-off
    sending = "sending"
    sent = "sent"  # the gateway accepted it
    delivered = "delivered"  # the handset confirmed (SMS delivery report)
    failed = "failed"
    uncertain = "uncertain"  # it may or may not have gone out: never resent, shown to operators
    skipped = "skipped"  # an informational e-mail to an address that opted out: not sent


# Nobody has called a gateway for these yet: whoever claims one first may send it.
NOT_YET_SENT = (NotificationState.queued, NotificationState.held, NotificationState.retrying)


class GatewayOutcome(StrEnum):
    accepted = "accepted"
    rejected = "rejected"  # permanent: a bad number, a refused address, bad credentials
    transient = "transient"  # nothing was sent; trying again later may work
    ambiguous = "ambiguous"  # the request left but no answer came back: it may have been sent


# What a gateway says may quote the recipient ("550 5.1.1 <ayse@...>: Recipient address
# rejected"); the detail is logged, stored beside the sealed recipient and published, so the
# addresses and phone numbers in it are masked first.
_EMAIL_IN_TEXT = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")
_PHONE_IN_TEXT = re.compile(r"\+?\d[\d ]{8,}\d")


def redact(text: str) -> str:
    """The text with every e-mail address and phone-number-like digit run masked."""
    return _PHONE_IN_TEXT.sub("<telefon>", _EMAIL_IN_TEXT.sub("<e-posta>", text))


@dataclass(frozen=True)
class GatewayReply:
    outcome: GatewayOutcome
    detail: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", redact(self.detail))


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


ResultStatus = Literal["sent", "delivered", "failed", "skipped_optout"]


def result_status(state: str) -> ResultStatus | None:
    """The NotificationResult a state is announced with; the states on the way (queued, held,
    retrying, sending) and `uncertain` announce nothing. Opting out is the only reason a
    message is skipped."""
    if state == NotificationState.sent:
        return "sent"
    if state == NotificationState.delivered:
        return "delivered"
    if state == NotificationState.failed:
        return "failed"
    if state == NotificationState.skipped:
        return "skipped_optout"
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


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _from_epoch(value: object) -> object:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else value


# A moment as a record keeps it. nx-27017 0.8.1 turns a date written by `$set` into naive UTC
# text, which reads back as a naive datetime: it is UTC. Due times are stored as epoch seconds
# (store.py), which sort and compare the same on every server.
Moment = Annotated[datetime, BeforeValidator(_from_epoch), AfterValidator(_utc)]


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
    created_at: Moment
    sent_at: Moment | None = None
    settled_at: Moment | None = None
    # The template's version (templates/registry.json) and a fingerprint of its files.
    template_version: int | None = None
    template_fingerprint: str | None = None
    urgent: bool = False
    # While queued, held or retrying: when it is due; while sending: when its lease ends.
    due_at: Moment | None = None
    held_until: Moment | None = None
    give_up_at: Moment | None = None
    skip_reason: str | None = None
    dead_lettered_at: Moment | None = None
    # Attempts made before an operator's last resend: the retry cap counts the ones after.
    retry_base: int = 0


class Attempt(BaseModel):
    """One call to a gateway, as a message's history keeps it."""

    number: int
    at: Moment
    outcome: str  # GatewayOutcome
    detail: str
    next_at: Moment | None = None  # a transient failure: when it is tried again


class Message(MessageSummary):
    """Notification's record of one idempotency key: what was asked, and where it stands."""

    request_event_id: str
    recipient_masked: str
    recipient_enc: str  # sealed: for an operator's investigation only
    updated_at: Moment
    # What was rendered, sealed, while it may still be sent (queued, held, retrying).
    content_enc: str | None = None
    # The claim a process holds while it sends (a lease: see store.py).
    lease: str | None = None
    # By attempt number ("1", "2", ...); a map, as delivery_reports (store.py says why).
    history: dict[str, Attempt] = {}
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

    def attempts_in_order(self) -> list[Attempt]:
        return sorted(self.history.values(), key=lambda attempt: attempt.number)


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
