"""The citizen's rating of an answer, without I/O: the short signed link in the answer SMS, and
the rules of who may rate what.

The link is `<public base>/p/<token>`, the token 16 characters of Crockford's base32 in lower
case (digits and letters without i, l, o, u, so nothing reads as something else; a hand-typed
upper-case or misread letter is still understood). It carries 80 bits: a 40-bit tag and the
application number's 40 bits (format version, plate code, year, sequence) masked with a pad
drawn from the tag. The tag is an HMAC-SHA256 of the number under a key derived from the
service's secret, so only tracking makes valid tokens, and a token shows nothing of the number
to whoever reads it. Checking one recomputes the tag and compares in constant time; a guess is
right once in 2^40 tries.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from services.common.application_number import MAX_SEQUENCE, format_number, parse_number
from services.common.events import ApplicationRated, Status
from services.common.settings import Settings
from services.tracking.domain import PRODUCER, Application, event_id

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
TOKEN_LENGTH = 16
PATH = "/p"
MIN_RATING, MAX_RATING = 1, 5
COMMENT_MAX = 500

_VERSION = 1
_BYTES = 5  # the tag's and the masked number's length each: 5 + 5 bytes = 80 bits = 16 chars
_FIRST_YEAR = 2000  # the year is stored as 7 bits from here (until 2127)
# Read as the letter people meant: Crockford's decoding.
_READS_AS = str.maketrans({"i": "1", "l": "1", "o": "0"})
_VALUE = {char: index for index, char in enumerate(ALPHABET)}
# Answered (and its SMS sent: closed): only then is there an answer to rate.
RATEABLE = frozenset({Status.answered, Status.closed})


class InvalidToken(Exception):
    """Not a token tracking made: malformed, altered, or signed with another key. Callers say
    no more than that."""


class NotRateable(Exception):
    """The application has no answer yet."""


class AlreadyRated(Exception):
    """This application was rated before: once per application."""


class InvalidRating(ValueError):
    """A rating outside 1..5, or a comment longer than allowed; `field` names the input."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.message = message


class RatingKey:
    """The keys of the rating links, derived from the service's secret with labels of their own
    (as the SMS delivery-report signature is): one to sign, one to mask."""

    def __init__(self, secret: str) -> None:
        root = hashlib.sha256(b"acikkapi-rating-link:" + secret.encode()).digest()
        self._sign = hmac.new(root, b"sign", hashlib.sha256).digest()
        self._mask = hmac.new(root, b"mask", hashlib.sha256).digest()

    def tag(self, payload: bytes) -> bytes:
        return hmac.new(self._sign, payload, hashlib.sha256).digest()[:_BYTES]

    def pad(self, tag: bytes) -> bytes:
        return hmac.new(self._mask, tag, hashlib.sha256).digest()[:_BYTES]


def _pack(number: str) -> bytes:
    province, year, sequence = parse_number(number)
    if not _FIRST_YEAR <= year < _FIRST_YEAR + 128 or not 1 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"no rating link for an application number of {year}")
    bits = (_VERSION << 38) | (province << 31) | ((year - _FIRST_YEAR) << 24) | sequence
    return bits.to_bytes(_BYTES, "big")


def _unpack(payload: bytes) -> str:
    bits = int.from_bytes(payload, "big")
    version, province = bits >> 38, (bits >> 31) & 0x7F
    year, sequence = _FIRST_YEAR + ((bits >> 24) & 0x7F), bits & 0xFFFFFF
    if version != _VERSION or not 1 <= province <= 81 or not 1 <= sequence <= MAX_SEQUENCE:
        raise InvalidToken
    return format_number(province, year, sequence)


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _encode(raw: bytes) -> str:
    bits = int.from_bytes(raw, "big")
    return "".join(ALPHABET[(bits >> shift) & 31] for shift in range(75, -1, -5))


def _decode(token: str) -> bytes:
    bits = 0
    for char in token.lower().translate(_READS_AS):
        value = _VALUE.get(char)
        if value is None:
            raise InvalidToken
        bits = (bits << 5) | value
    return bits.to_bytes(2 * _BYTES, "big")


def sign(key: RatingKey, number: str) -> str:
    """The token of an application number (`PP-YYYY-NNNNNNN-C`, separators optional)."""
    payload = _pack(number)
    tag = key.tag(payload)
    return _encode(tag + _xor(payload, key.pad(tag)))


def verify(key: RatingKey, token: str) -> str:
    """The application number a token was made for; InvalidToken for anything else."""
    if len(token) != TOKEN_LENGTH or not token.isascii():
        raise InvalidToken
    raw = _decode(token)
    tag, masked = raw[:_BYTES], raw[_BYTES:]
    payload = _xor(masked, key.pad(tag))
    if not hmac.compare_digest(key.tag(payload), tag):
        raise InvalidToken
    return _unpack(payload)


def link_base(public_tracking_url: str) -> str:
    """Where the rating links start: the status page's address without its last path segment
    (`https://acikkapi.example.gov.tr/takip` → `https://acikkapi.example.gov.tr`), so a
    deployment under a path prefix keeps it."""
    parts = urlsplit(public_tracking_url)
    path = parts.path.rstrip("/").rsplit("/", 1)[0] if parts.path.strip("/") else ""
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


def rating_url(key: RatingKey, public_tracking_url: str, number: str) -> str | None:
    """The link for the answer SMS; None for a number no token can carry (a part of a split
    application, `…/2`, which gets no SMS anyway)."""
    try:
        token = sign(key, number)
    except ValueError:
        return None
    return f"{link_base(public_tracking_url)}{PATH}/{token}"


@functools.lru_cache(maxsize=4)
def key_of(secret: str) -> RatingKey:
    """The key for a service secret (derived once per process)."""
    return RatingKey(secret)


def sms_link(settings: Settings, number: str) -> str | None:
    """The rating link the answer SMS carries (`domain.answer_sms`'s `rating_url`)."""
    return rating_url(key_of(settings.jwt_secret), settings.public_tracking_url, number)


def check_rateable(app: Application) -> None:
    """Only an answer can be rated (a part of a split application is rated with its whole)."""
    if app.status not in RATEABLE or app.outcome is None or app.parent_id is not None:
        raise NotRateable(app.application_id)


def check_rating(rating: str | int | None, comment: str | None) -> tuple[int, str | None]:
    """The rating as a number 1..5 and the comment trimmed (None when empty)."""
    try:
        value = int(str(rating).strip()) if rating is not None else 0
    except ValueError:
        value = 0
    if not MIN_RATING <= value <= MAX_RATING:
        raise InvalidRating("rating", "invalid_rating", "Lütfen 1 ile 5 arasında bir puan seçin.")
    text = (comment or "").strip()
    if len(text) > COMMENT_MAX:
        raise InvalidRating(
            "comment",
            "too_long",
            f"Görüşünüz en çok {COMMENT_MAX} karakter olabilir ({len(text)} karakter yazdınız).",
        )
    return value, text or None


def rated_event(app: Application, rating: int, at: datetime) -> ApplicationRated:
    """The announcement of a rating; its id comes from the application, so a second publication
    of it (the outbox's relay after a crash) is recognisably the same."""
    return ApplicationRated(
        event_id=event_id(app.application_id, "rated"),
        occurred_at=at,
        application_id=app.application_id,
        application_number=app.application_number,
        producer=PRODUCER,
        rating=rating,
        institution_code=app.institution_code,
        category_code=app.category_code,
        province_code=app.province_code,
        rated_at=at,
    )


def masked_number(number: str) -> str:
    """The number as the rating page shows it: plate code, year and the last three digits of
    the sequence (`20-2026-••••123-4`); the link alone should not give away a whole number."""
    province, year, sequence = parse_number(number)
    full = format_number(province, year, sequence)
    return f"{full[:8]}••••{full[12:]}"
