"""Who vouches for a submission: the counter's officer, e-Devlet's signed assertion."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.auth import Role
from services.common.devtoken import edevlet_assertion
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.intake.channels import ChannelGate, ChannelRefused
from tests.support import bearer
from tests.unit.test_intake_rules import VALID_TCKN, body

SETTINGS = Settings(phone_verification=False)  # tests/unit/test_intake_phone_codes.py has it


class Ledger:
    """The assertions spent, in memory (AssertionStore's contract)."""

    def __init__(self) -> None:
        self.spent: dict[str, str | None] = {}

    async def use(self, jti: str, expires_at: datetime, request_key: str | None) -> bool:
        if jti not in self.spent:
            self.spent[jti] = request_key
            return True
        return request_key is not None and self.spent[jti] == request_key


@pytest.fixture
def gate() -> ChannelGate:
    return ChannelGate(SETTINGS, Ledger(), PiiCipher(SETTINGS.pii_key_bytes()))


def token(role: Role, institution: str | None = None) -> str:
    headers = (
        bearer(SETTINGS, role, institution=institution) if institution else bearer(SETTINGS, role)
    )
    return headers["Authorization"].removeprefix("Bearer ")


def refusal(gate: ChannelGate, raw: dict[str, Any], **kwargs: str) -> tuple[int, str, str]:
    with pytest.raises(ChannelRefused) as refused:
        gate.vouch(raw, **kwargs)
    (error,) = refused.value.errors
    return refused.value.status, error["field"], error["code"]


def test_a_counter_submission_names_its_officer_over_http_and_on_kafka(gate: ChannelGate) -> None:
    counter = body(channel="counter")

    assert refusal(gate, counter) == (401, "officer_token", "unauthorized")
    assert refusal(gate, counter, bearer="") == (401, "Authorization", "unauthorized")
    assert refusal(gate, counter, bearer="not-a-token") == (401, "Authorization", "unauthorized")
    institution = token(Role.institution, "DESKI")
    assert refusal(gate, counter, bearer=institution) == (403, "Authorization", "forbidden")

    over_http = gate.vouch(counter, bearer=token(Role.officer))
    on_kafka = gate.vouch({**counter, "officer_token": token(Role.officer)})
    assert over_http.recorded_by == on_kafka.recorded_by == "test-officer"
    assert "officer_token" not in on_kafka.body  # never stored with the application


def test_an_edevlet_identity_comes_from_the_assertion_not_the_form(gate: ChannelGate) -> None:
    assertion = edevlet_assertion(SETTINGS, tckn=VALID_TCKN, first_name="Ayşe", last_name="Yılmaz")
    form = body(channel="edevlet", applicant_first_name="Başkası", applicant_tckn="12345678950")
    del form["applicant"]["mother_maiden_initials"]

    vouched = gate.vouch({**form, "edevlet_assertion": assertion})

    assert vouched.identity_proven
    assert vouched.body["applicant"]["tckn"] == VALID_TCKN
    assert vouched.body["applicant"]["first_name"] == "Ayşe"
    assert "edevlet_assertion" not in vouched.body


def test_a_missing_forged_or_expired_assertion_is_refused(gate: ChannelGate) -> None:
    edevlet = body(channel="edevlet")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = edevlet_assertion(
        SETTINGS,
        tckn=VALID_TCKN,
        first_name="Ayşe",
        last_name="Yılmaz",
        private_key=other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    expired = edevlet_assertion(
        SETTINGS, tckn=VALID_TCKN, first_name="A", last_name="B", ttl=timedelta(minutes=-5)
    )

    assert refusal(gate, edevlet) == (401, "edevlet_assertion", "unauthorized")
    for bad in (forged, expired, "a.b.c"):
        assert refusal(gate, {**edevlet, "edevlet_assertion": bad})[2] == "invalid_assertion"


async def test_an_assertion_registers_one_application_and_a_retry_is_not_a_replay(
    gate: ChannelGate,
) -> None:
    assertion = edevlet_assertion(SETTINGS, tckn=VALID_TCKN, first_name="A", last_name="B")
    vouched = gate.vouch({**body(channel="edevlet"), "edevlet_assertion": assertion})

    await gate.spend(vouched, "key-1")
    await gate.spend(vouched, "key-1")  # the same request again: its answer is replayed
    for other in ("key-2", None):
        with pytest.raises(ChannelRefused) as refused:
            await gate.spend(vouched, other)
        assert refused.value.errors[0]["code"] == "replayed"
