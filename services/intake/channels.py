"""Who vouches for a submission, by channel, over HTTP and on Kafka alike.

- counter, call_center: an Açık Kapı officer (at the counter, or answering the phone) records
  it. The officer's bearer token goes in the HTTP `Authorization` header, or in the
  submission's `officer_token` field on Kafka. The officer is stored as `recorded_by`; the call
  centre also gives the calling number (`caller_number`, a form rule). A counter officer
  (role counter_officer) records counter applications only, of their province (`prov`) and,
  when the token names one (`dist`), their district (`check_scope`, once the form is valid).
- edevlet: the citizen arrives with the e-Devlet gateway's signed identity assertion, a JWT
  (RS256, the gateway's public key from `AK_EDEVLET_PUBLIC_KEY`), in `edevlet_assertion`. The
  TC Kimlik No and names are taken from it, not from the form. A forged or expired assertion
  is refused (`vouch`), and so is a replayed one (`spend`, once the form has passed the rules,
  so a corrected form can reuse it): each `jti` registers one application, and a retry with
  the same idempotency key or submission id is not a replay.
- web, mobile: the citizen confirmed the mobile number with a one-time code
  (verification.py); the token it gave goes in `phone_verification` and must name the form's
  phone (`confirm_phone`, once the rules have normalised the number). Off with
  `AK_PHONE_VERIFICATION=false`.
- every other channel: nothing to vouch for here.

Neither the officer token, the assertion nor the phone token is stored or logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt

from services.common.auth import Principal, Role, decode_token
from services.common.events import Channel
from services.common.pii import PiiCipher
from services.common.provinces import province_name
from services.common.settings import Settings
from services.common.turkish import turkish_lower
from services.intake.verification import confirmed_phone_key

ASSERTION_FIELD = "edevlet_assertion"
# Channels where an officer records the application, by the name the messages give them.
_STAFFED: dict[str, str] = {
    Channel.counter.value: "Açık Kapı masası",
    Channel.call_center.value: "Çağrı merkezi",
}
OFFICER_FIELD = "officer_token"
PHONE_FIELD = "phone_verification"
_PHONE_CONFIRMED = frozenset({Channel.web.value, Channel.mobile.value})
_PROOFS = (OFFICER_FIELD, ASSERTION_FIELD, PHONE_FIELD)
# Clock difference tolerated between the gateway and us.
LEEWAY_SECONDS = 30


class ChannelRefused(Exception):
    """The channel's proof is missing, wrong or used up; `status` for HTTP (401 or 403)."""

    def __init__(self, status: int, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errors = [{"field": field, "code": code, "message": message}]


class AssertionLedger(Protocol):
    """The e-Devlet assertions already used (`store.AssertionStore`)."""

    async def use(self, jti: str, expires_at: datetime, request_key: str | None) -> bool:
        """True the first time, and again for the same request (a retry); False for a replay."""
        ...


@dataclass(frozen=True)
class Vouched:
    """A body ready for the rules, and what the channel proved."""

    body: Any
    recorded_by: str | None = None
    identity_proven: bool = False
    # The e-Devlet assertion to spend once the application passed the rules.
    assertion_id: str | None = None
    assertion_expires: datetime | None = None
    # The keyed hash of the phone the citizen confirmed with a code (web and mobile).
    phone_key: str | None = None
    # The officer who records it (counter, call centre): their scope is checked on the form.
    officer: Principal | None = None


class ChannelGate:
    def __init__(self, settings: Settings, ledger: AssertionLedger, cipher: PiiCipher) -> None:
        self._settings = settings
        self._ledger = ledger
        self._cipher = cipher

    def vouch(self, body: Any, *, bearer: str | None = None) -> Vouched:
        """What the channel proves for `body`, or ChannelRefused. A body that is not an
        object passes untouched: the rules answer it. Over HTTP the officer's token is the
        `bearer`, and a refusal names the Authorization header."""
        if not isinstance(body, dict):
            return Vouched(body)
        channel = body.get("channel")
        if not isinstance(channel, str):
            return Vouched(without_proofs(body))  # the rules answer a missing or odd channel
        if channel in _STAFFED:
            field = "Authorization" if bearer is not None else OFFICER_FIELD
            token = bearer or body.get(OFFICER_FIELD)
            officer = self._officer(token, field, channel)
            return Vouched(without_proofs(body), recorded_by=officer.subject, officer=officer)
        if channel == Channel.edevlet:
            return self._edevlet(body)
        if channel in _PHONE_CONFIRMED and self._settings.phone_verification:
            return Vouched(without_proofs(body), phone_key=self._phone_key(body.get(PHONE_FIELD)))
        return Vouched(without_proofs(body))

    def confirm_phone(self, vouched: Vouched, phone: str) -> None:
        """The confirmed number must be the form's (E.164, after the rules)."""
        if vouched.phone_key is not None and vouched.phone_key != self._cipher.blind_index(phone):
            raise ChannelRefused(
                401,
                PHONE_FIELD,
                "phone_mismatch",
                "Doğrulanan telefon numarası başvurudaki numara değil. Lütfen başvurudaki "
                "numaraya gönderilen kodla doğrulayın.",
            )

    def _phone_key(self, token: Any) -> str:
        if not isinstance(token, str) or not token:
            raise ChannelRefused(
                401,
                PHONE_FIELD,
                "unverified_phone",
                "Cep telefonu numaranızı doğrulamanız gerekir: numaranıza gönderilen kodu girin.",
            )
        try:
            return confirmed_phone_key(self._settings, token)
        except jwt.PyJWTError:
            raise ChannelRefused(
                401,
                PHONE_FIELD,
                "invalid_phone_verification",
                "Telefon doğrulamanızın süresi dolmuş veya geçersiz; lütfen yeni bir kod isteyin.",
            ) from None

    async def spend(self, vouched: Vouched, request_key: str | None) -> None:
        """Uses up the e-Devlet assertion, if there is one; a second use is refused, except a
        retry of the same request (the same idempotency key or submission id)."""
        if vouched.assertion_id is None or vouched.assertion_expires is None:
            return
        # Kept until well after the assertion could still pass (its expiry, the leeway, and
        # the time MongoDB's expiry monitor may take to remove it).
        keep_until = vouched.assertion_expires + timedelta(seconds=LEEWAY_SECONDS + 120)
        if not await self._ledger.use(vouched.assertion_id, keep_until, request_key):
            raise ChannelRefused(
                401,
                ASSERTION_FIELD,
                "replayed",
                "Bu e-Devlet girişiyle zaten bir başvuru yapılmış; yeni bir başvuru için lütfen "
                "e-Devlet Kapısı üzerinden yeniden giriş yapın.",
            )

    def check_scope(self, vouched: Vouched, province_code: int, district: str) -> None:
        """A counter officer records applications of their own province and, if their token
        names one, their own district only (403 otherwise); other officers are not bound."""
        officer = vouched.officer
        if officer is None or officer.role is not Role.counter_officer:
            return
        if officer.province is None:
            raise ChannelRefused(
                403,
                "Authorization",
                "forbidden",
                "Gişe görevlisinin oturum anahtarında il bilgisi yok; başvuru kaydedilemez.",
            )
        if officer.province != province_code:
            raise ChannelRefused(
                403,
                "province_code",
                "forbidden",
                f"Yalnız kendi ilinizin ({province_name(officer.province)}) gişe başvurularını "
                "kaydedebilirsiniz.",
            )
        if officer.district and turkish_lower(officer.district.strip()) != turkish_lower(
            district.strip()
        ):
            raise ChannelRefused(
                403,
                "district",
                "forbidden",
                f"Yalnız kendi ilçenizin ({officer.district}) gişe başvurularını "
                "kaydedebilirsiniz.",
            )

    def _officer(self, token: Any, field: str, channel: str) -> Principal:
        place = _STAFFED[channel]
        if not isinstance(token, str) or not token:
            raise ChannelRefused(
                401,
                field,
                "unauthorized",
                f"{place} başvurusunu yalnız oturum açmış bir görevli kaydedebilir.",
            )
        try:
            officer = decode_token(self._settings, token)
        except (jwt.PyJWTError, ValueError):
            raise ChannelRefused(
                401,
                field,
                "unauthorized",
                "Görevlinin oturum anahtarı geçersiz veya süresi dolmuş.",
            ) from None
        allowed = {Role.officer, Role.admin}
        if channel == Channel.counter:
            allowed.add(Role.counter_officer)
        if officer.role not in allowed:
            message = f"{place} başvurusunu yalnız Açık Kapı görevlileri kaydedebilir."
            raise ChannelRefused(403, field, "forbidden", message)
        return officer

    def _edevlet(self, body: dict[str, Any]) -> Vouched:
        assertion = body.get(ASSERTION_FIELD)
        if not isinstance(assertion, str) or not assertion:
            raise ChannelRefused(
                401,
                ASSERTION_FIELD,
                "unauthorized",
                "e-Devlet başvurusu için e-Devlet Kapısı üzerinden giriş yapmanız gerekir.",
            )
        try:
            claims = edevlet_claims(self._settings, assertion)
        except jwt.PyJWTError:
            raise ChannelRefused(
                401,
                ASSERTION_FIELD,
                "invalid_assertion",
                "e-Devlet kimlik doğrulaması geçersiz veya süresi dolmuş; lütfen e-Devlet "
                "Kapısı üzerinden yeniden giriş yapın.",
            ) from None
        applicant = body.get("applicant")
        applicant = dict(applicant) if isinstance(applicant, dict) else {}
        applicant |= {
            "tckn": str(claims["sub"]),
            "first_name": str(claims["given_name"]),
            "last_name": str(claims["family_name"]),
        }
        proven = without_proofs(body) | {"applicant": applicant}
        return Vouched(
            proven,
            identity_proven=True,
            assertion_id=str(claims["jti"]),
            assertion_expires=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )


def edevlet_claims(settings: Settings, assertion: str) -> dict[str, Any]:
    """The claims of an e-Devlet gateway's identity assertion (RS256, its issuer and our
    audience, not expired), or a jwt.PyJWTError."""
    claims: dict[str, Any] = jwt.decode(
        assertion,
        settings.edevlet_public_key,
        algorithms=["RS256"],
        audience=settings.edevlet_audience,
        issuer=settings.edevlet_issuer,
        leeway=LEEWAY_SECONDS,
        options={"require": ["exp", "iat", "jti", "sub", "given_name", "family_name"]},
    )
    return claims


def without_proofs(body: Any) -> Any:
    """The body without its proofs (officer token, e-Devlet assertion, phone token): what may
    be kept, fingerprinted or set aside on a dead-letter topic."""
    if not isinstance(body, dict):
        return body
    return {k: v for k, v in body.items() if k not in _PROOFS}
