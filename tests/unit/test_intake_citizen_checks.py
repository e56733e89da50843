"""The checks a citizen's own submission passes before it is registered: the confirmed phone,
the identity in the registry, the daily limits and the rate per client address."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from services.common.events import Channel
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.intake.channels import ChannelGate, ChannelRefused, without_proofs
from services.intake.identity import (
    AcceptAll,
    IdentityClaim,
    RegistryFileVerifier,
    comparable,
    identity_verifier,
)
from services.intake.limits import (
    AddressRate,
    Applicant,
    DailyLimits,
    LimitExceeded,
    client_address,
    istanbul_day,
)
from services.intake.verification import (
    confirmed_phone_key,
    issue_phone_token,
    phone_token_for,
)
from tests.unit.test_intake_channels import Ledger
from tests.unit.test_intake_handlers import DayCounts
from tests.unit.test_intake_rules import body

SETTINGS = Settings()
CIPHER = PiiCipher(SETTINGS.pii_key_bytes())
PHONE = "+905321234567"


# --- the phone code's token --------------------------------------------------------------------


def gate() -> ChannelGate:
    return ChannelGate(SETTINGS, Ledger(), CIPHER)


def refused(raw: dict[str, Any]) -> tuple[int, str, str]:
    with pytest.raises(ChannelRefused) as refusal:
        vouched = gate().vouch(raw)
        gate().confirm_phone(vouched, PHONE)
    (error,) = refusal.value.errors
    return refusal.value.status, error["field"], error["code"]


def test_the_web_and_mobile_channels_need_the_phone_confirmed_by_code() -> None:
    for channel in ("web", "mobile"):
        assert refused(body(channel=channel)) == (401, "phone_verification", "unverified_phone")
        forged = jwt.encode({"sub": "x", "purpose": "phone_verification"}, "w" * 32, "HS256")
        assert refused(body(channel=channel, phone_verification=forged)) == (
            401,
            "phone_verification",
            "invalid_phone_verification",
        )
    # Another number's token does not vouch for this one.
    other = phone_token_for(SETTINGS, "+905559876543")
    assert refused(body(channel="web", phone_verification=other)) == (
        401,
        "phone_verification",
        "phone_mismatch",
    )
    # The right one passes, and is not part of the body that is kept.
    vouched = gate().vouch(body(channel="web", phone_verification=phone_token_for(SETTINGS, PHONE)))
    gate().confirm_phone(vouched, PHONE)
    assert "phone_verification" not in vouched.body


def test_a_phone_token_expires_and_cannot_pass_for_a_staff_token() -> None:
    key = CIPHER.blind_index(PHONE)
    old = issue_phone_token(SETTINGS, key, now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(jwt.ExpiredSignatureError):
        confirmed_phone_key(SETTINGS, old.token)
    # Signed with the service secret itself (as a staff token is): refused.
    staff_signed = jwt.encode(
        {"sub": key, "purpose": "phone_verification", "iss": "acikkapi-intake", "exp": 2**40},
        SETTINGS.jwt_secret,
        "HS256",
    )
    with pytest.raises(jwt.InvalidSignatureError):
        confirmed_phone_key(SETTINGS, staff_signed)
    assert confirmed_phone_key(SETTINGS, issue_phone_token(SETTINGS, key).token) == key


def test_other_channels_and_a_switched_off_check_need_no_phone_token() -> None:
    assert gate().vouch(body(channel="kiosk")).phone_key is None
    off = ChannelGate(Settings(phone_verification=False), Ledger(), CIPHER)
    assert off.vouch(body(channel="web")).phone_key is None
    assert without_proofs({"phone_verification": "t", "a": 1}) == {"a": 1}


# --- the identity check ------------------------------------------------------------------------

PERSON = {
    "tckn": "10000000146",
    "first_name": "Nâzım",
    "last_name": "Işıkoğlu",
    "mother_maiden_initials": "ÇI",
}


async def test_the_registry_matches_names_as_the_registry_writes_them() -> None:
    registry = RegistryFileVerifier([PERSON])
    same = IdentityClaim("10000000146", "NAZIM", "IŞIKOĞLU", "çı")
    assert await registry.verify(same)
    for wrong in (
        IdentityClaim("10000000146", "Nazım", "Isikoglu", "ÇI"),  # letters are not folded
        IdentityClaim("10000000146", "Nazım", "Işıkoğlu", "CI"),
        IdentityClaim("10000000146", "Hikmet", "Işıkoğlu", "ÇI"),
        IdentityClaim("12345678950", "Nazım", "Işıkoğlu", "ÇI"),
    ):
        assert not await registry.verify(wrong)
    assert comparable("  ali  İhsan ") == "ALİ İHSAN"


async def test_the_settings_choose_the_verifier(tmp_path: Path) -> None:
    demo = identity_verifier(Settings(identity_verifier="registry_file"))
    assert isinstance(demo, RegistryFileVerifier) and len(demo) == 2000
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"persons": [PERSON]}), "utf-8")
    own = identity_verifier(
        Settings(identity_verifier="registry_file", identity_registry_file=str(path))
    )
    assert isinstance(own, RegistryFileVerifier) and len(own) == 1
    assert isinstance(identity_verifier(Settings(identity_verifier="off")), AcceptAll)
    with pytest.raises(ValueError, match="AK_IDENTITY_SERVICE_URL"):
        identity_verifier(Settings(identity_verifier="kps"))
    with pytest.raises(ValueError, match="unknown"):
        identity_verifier(Settings(identity_verifier="maybe"))


# --- daily limits --------------------------------------------------------------------------------


def limits(counts: DayCounts, now: datetime, tckn: int = 2, phone: int = 4) -> DailyLimits:
    settings = Settings(daily_limit_per_tckn=tckn, daily_limit_per_phone=phone)
    return DailyLimits(counts, settings, clock=lambda: now)


async def test_a_person_gets_their_daily_number_of_applications_then_a_clear_refusal() -> None:
    now = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)  # 23:30 in Istanbul
    counts = DayCounts()
    daily = limits(counts, now)
    person = Applicant(Channel.web, "tckn-1", "phone-1")
    await daily.admit(person)
    await daily.admit(person)
    with pytest.raises(LimitExceeded) as refusal:
        await daily.admit(person)
    assert refusal.value.code == "daily_limit"
    assert "TC Kimlik No" in refusal.value.message and "2 başvuru" in refusal.value.message
    assert refusal.value.retry_after == 30 * 60  # until midnight in Istanbul
    # The phone has its own limit: a household sharing a phone gets more. (An attempt refused
    # counts too: the phone is at 3 of 4.)
    await daily.admit(Applicant(Channel.web, "tckn-2", "phone-1"))
    with pytest.raises(LimitExceeded) as refusal:
        await daily.admit(Applicant(Channel.web, "tckn-3", "phone-1"))
    assert "cep telefonu" in refusal.value.message
    # The next Istanbul day starts again.
    tomorrow = limits(counts, now + timedelta(hours=1))
    await tomorrow.admit(person)


async def test_officers_channels_and_switched_off_limits_count_nothing() -> None:
    counts = DayCounts()
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    for channel in (Channel.counter, Channel.call_center):
        for _ in range(5):
            await limits(counts, now, tckn=1, phone=1).admit(Applicant(channel, "t", "p"))
    for _ in range(5):
        await limits(counts, now, tckn=0, phone=0).admit(Applicant(Channel.web, "t", "p"))
    assert counts.counts == {}


def test_a_turkish_day_ends_at_midnight_in_istanbul() -> None:
    assert istanbul_day(datetime(2026, 3, 2, 21, 0, tzinfo=UTC)) == ("2026-03-03", 86400)
    assert istanbul_day(datetime(2026, 3, 2, 20, 59, 59, tzinfo=UTC)) == ("2026-03-02", 1)


# --- the rate per client address ---------------------------------------------------------------


def test_an_address_gets_a_burst_then_the_rate_with_a_retry_after() -> None:
    now = [0.0]
    rate = AddressRate(per_minute=6, burst=3, clock=lambda: now[0])
    for _ in range(3):
        rate.take("10.0.0.1")
    with pytest.raises(LimitExceeded) as refusal:
        rate.take("10.0.0.1")
    assert refusal.value.code == "rate_limited" and refusal.value.retry_after == 10
    rate.take("10.0.0.2")  # another address is not affected
    now[0] = 10.0
    rate.take("10.0.0.1")  # one more after 10 s at 6 a minute
    off = AddressRate(per_minute=0, burst=1)
    assert not off.enabled
    for _ in range(100):
        off.take("10.0.0.1")


def test_the_client_address_comes_from_a_trusted_proxy_only() -> None:
    proxies = {"10.0.0.9"}
    assert client_address("10.0.0.9", "1.2.3.4, 5.6.7.8", proxies) == "5.6.7.8"
    assert client_address("8.8.8.8", "1.2.3.4", proxies) == "8.8.8.8"  # a claim, not believed
    assert client_address(None, None, proxies) == "unknown"
