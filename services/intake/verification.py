"""The web and mobile channels confirm the applicant's mobile number with a one-time code.

1. `start(phone)`: a six-digit code goes by SMS to the number, straight through the SMS gateway
   (Kannel), not through the bus: the citizen is waiting for it, and a code must not sit in a
   Kafka log or notification's records. Only a keyed hash of the code is stored, with the
   number's keyed hash, the tries made and the expiry (MongoDB removes it once expired).
2. `confirm(id, code)`: at most `MAX_TRIES` tries, each counted atomically before it is judged;
   the right code returns a `phone_verification` token, signed by intake, naming the number's
   keyed hash and valid for `TOKEN_MINUTES`.
3. The application carries the token; `ChannelGate` checks it against the form's phone.

A number may be sent a new code once every `RESEND_SECONDS`, and at most `CODES_PER_HOUR` an hour.
Neither the code nor the token is ever logged.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jwt
from prometheus_client import Counter
from pymongo import ReturnDocument

from services.common.mongo import Collection, Database
from services.common.pii import PiiCipher
from services.common.settings import Settings

CODE_DIGITS = 6
CODE_MINUTES = 5
MAX_TRIES = 5
RESEND_SECONDS = 60
CODES_PER_HOUR = 5
TOKEN_MINUTES = 30
TOKEN_PURPOSE = "phone_verification"
TOKEN_ISSUER = "acikkapi-intake"
# One UCS-2 segment (at most 70 characters): the code arrives whole, and costs one SMS.
SMS_TEXT = "Açık Kapı doğrulama kodu: {code}. {minutes} dk geçerli, kimseyle paylaşmayın."

VERIFICATIONS = Counter(
    "acikkapi_intake_phone_verifications_total",
    "Phone verification steps, by step (sent, confirmed, wrong, expired, too_many, throttled)",
    ["step"],
)


class VerificationError(Exception):
    """A step refused: HTTP `status`, the field it concerns, a code and a Turkish message."""

    def __init__(
        self, status: int, field: str | None, code: str, message: str, retry_after: int = 0
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Started:
    verification_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Confirmed:
    token: str
    expires_at: datetime


class SmsUnavailable(Exception):
    """The gateway did not take the code's SMS."""


class KannelSender:
    """Sends one SMS through Kannel's sendsms (UCS-2: the text has Turkish letters)."""

    TIMEOUT = aiohttp.ClientTimeout(total=10.0)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def send(self, to: str, text: str) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.TIMEOUT, cookie_jar=aiohttp.DummyCookieJar()
            )
        settings = self._settings
        params = {
            "username": settings.sms_username,
            "password": settings.sms_password,
            "from": settings.sms_sender,
            "to": to,
            "text": text,
            "charset": "UTF-8",
            "coding": "2",
        }
        try:
            async with self._session.get(settings.sms_gateway_url, params=params) as answer:
                if answer.status not in (200, 202):
                    raise SmsUnavailable(f"HTTP {answer.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SmsUnavailable(type(exc).__name__) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def token_key(settings: Settings) -> bytes:
    """The key phone tokens are signed with: derived from the service secret for this purpose
    alone, so a staff token can never pass for one, nor the other way round."""
    return hmac.new(settings.jwt_secret.encode(), b"acikkapi:phone-verification", "sha256").digest()


def issue_phone_token(settings: Settings, phone_key: str, now: datetime | None = None) -> Confirmed:
    """A token saying the number with keyed hash `phone_key` was confirmed (the benchmarks and
    the demo loader mint one the way a confirmed code would)."""
    issued = now or datetime.now(UTC)
    expires = issued + timedelta(minutes=TOKEN_MINUTES)
    claims = {
        "sub": phone_key,
        "purpose": TOKEN_PURPOSE,
        "iss": TOKEN_ISSUER,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
    }
    return Confirmed(jwt.encode(claims, token_key(settings), algorithm="HS256"), expires)


def phone_token_for(settings: Settings, phone: str) -> str:
    """A token for `phone` (E.164) as a confirmed code gives it: for the demo loader and the
    benchmarks, which apply without reading the SMS."""
    phone_key = PiiCipher.from_settings(settings).blind_index(phone)
    return issue_phone_token(settings, phone_key).token


def confirmed_phone_key(settings: Settings, token: str) -> str:
    """The phone's keyed hash a token confirms; jwt.PyJWTError if it is forged or expired."""
    claims = jwt.decode(
        token,
        token_key(settings),
        algorithms=["HS256"],
        issuer=TOKEN_ISSUER,
        options={"require": ["exp", "sub", "purpose"]},
    )
    if claims.get("purpose") != TOKEN_PURPOSE:
        raise jwt.InvalidTokenError("not a phone verification")
    return str(claims["sub"])


class PhoneVerifications:
    def __init__(
        self, db: Database, cipher: PiiCipher, settings: Settings, sender: KannelSender
    ) -> None:
        self._codes: Collection = db["intake_phone_codes"]
        self._cipher = cipher
        self._settings = settings
        self._sender = sender

    async def ensure_indexes(self) -> None:
        await self._codes.create_index("expires_at", expireAfterSeconds=0)
        await self._codes.create_index([("phone_key", 1), ("created_at", -1)])

    def _code_hash(self, verification_id: str, code: str) -> str:
        return self._cipher.blind_index(f"{verification_id}:{code}")

    async def start(self, phone: str, now: datetime | None = None) -> Started:
        """Sends a code to `phone` (E.164, already checked); VerificationError 429 if asked
        too soon or too often, 503 if the SMS gateway did not take it."""
        now = now or datetime.now(UTC)
        phone_key = self._cipher.blind_index(phone)
        recent = await self._codes.find(
            {"phone_key": phone_key, "created_at": {"$gt": now - timedelta(hours=1)}},
            {"created_at": 1},
        ).to_list(CODES_PER_HOUR + 1)
        if recent:
            # nx-27017 may hand back naive datetimes: they are UTC.
            latest = max(_aware(doc["created_at"]) for doc in recent)
            wait = RESEND_SECONDS - int((now - latest).total_seconds())
            if wait > 0:
                VERIFICATIONS.labels("throttled").inc()
                raise VerificationError(
                    429,
                    "phone",
                    "too_soon",
                    f"Yeni bir kod için {wait} saniye bekleyin; önceki kod hâlâ geçerli olabilir.",
                    wait,
                )
            if len(recent) >= CODES_PER_HOUR:
                oldest = min(_aware(doc["created_at"]) for doc in recent)
                wait = max(1, 3600 - int((now - oldest).total_seconds()))
                VERIFICATIONS.labels("throttled").inc()
                raise VerificationError(
                    429,
                    "phone",
                    "too_many_codes",
                    f"Bu numaraya bir saat içinde en çok {CODES_PER_HOUR} kod gönderilebilir. "
                    f"Lütfen {-(-wait // 60)} dakika sonra tekrar deneyin.",
                    wait,
                )
        verification_id = uuid.uuid4().hex
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        expires = now + timedelta(minutes=CODE_MINUTES)
        await self._codes.insert_one(
            {
                "_id": verification_id,
                "phone_key": phone_key,
                "code_hash": self._code_hash(verification_id, code),
                "tries": 0,
                "created_at": now,
                "expires_at": expires,
            }
        )
        try:
            await self._sender.send(phone, SMS_TEXT.format(code=code, minutes=CODE_MINUTES))
        except SmsUnavailable:
            await self._codes.delete_one({"_id": verification_id})
            raise VerificationError(
                503,
                None,
                "sms_unavailable",
                "Doğrulama kodu şu anda gönderilemiyor. Lütfen biraz sonra tekrar deneyin.",
                30,
            ) from None
        VERIFICATIONS.labels("sent").inc()
        return Started(verification_id, expires)

    async def confirm(
        self, verification_id: str, code: str, now: datetime | None = None
    ) -> Confirmed:
        """The token for a right code; VerificationError otherwise (422 wrong code with the
        tries left, 410 expired or out of tries)."""
        now = now or datetime.now(UTC)
        code = code.strip()
        if not (len(code) == CODE_DIGITS and code.isdigit()):
            raise VerificationError(
                422, "code", "invalid_code", f"Doğrulama kodu {CODE_DIGITS} haneli bir sayıdır."
            )
        # The try is counted before the code is judged, atomically: parallel guesses cannot
        # get more than MAX_TRIES between them.
        doc: dict[str, Any] | None = await self._codes.find_one_and_update(
            {"_id": verification_id, "tries": {"$lt": MAX_TRIES}, "expires_at": {"$gt": now}},
            {"$inc": {"tries": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            left = await self._codes.find_one(
                {"_id": verification_id}, {"tries": 1, "expires_at": 1}
            )
            if left is not None and _aware(left["expires_at"]) > now:
                VERIFICATIONS.labels("too_many").inc()
                raise VerificationError(
                    410,
                    "code",
                    "too_many_tries",
                    "Bu kod için deneme hakkınız bitti. Lütfen yeni bir kod isteyin.",
                )
            VERIFICATIONS.labels("expired").inc()
            raise VerificationError(
                410,
                "code",
                "expired",
                "Doğrulama kodunun süresi doldu. Lütfen yeni bir kod isteyin.",
            )
        if not hmac.compare_digest(doc["code_hash"], self._code_hash(verification_id, code)):
            VERIFICATIONS.labels("wrong").inc()
            left_tries = MAX_TRIES - int(doc["tries"])
            message = (
                f"Doğrulama kodu yanlış. {left_tries} deneme hakkınız kaldı."
                if left_tries
                else "Doğrulama kodu yanlış ve deneme hakkınız bitti. Lütfen yeni bir kod isteyin."
            )
            raise VerificationError(422, "code", "wrong_code", message)
        # Used up: the same code cannot confirm twice.
        await self._codes.delete_one({"_id": verification_id})
        VERIFICATIONS.labels("confirmed").inc()
        return issue_phone_token(self._settings, doc["phone_key"], now)

    def phone_key(self, phone: str) -> str:
        return self._cipher.blind_index(phone)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
