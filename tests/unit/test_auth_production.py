"""Production mode refuses development secrets and keys (services/common/production.py): the
list of problems, a service process that stops before it connects, the dev token command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.production import production_problems
from services.common.settings import (
    DEV_EDEVLET_PUBLIC_KEY,
    DEV_JWT_SECRET,
    DEV_PII_KEY,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnUVPjFZEvVvF8Q4y3e6y6l5w0ww+\n"
    "-----END PUBLIC KEY-----\n"
)

GOOD = {
    "environment": "production",
    "jwt_secret": "p" * 48,
    "pii_key": "q" * 48,
    "kafka_password": "kafka-parolasi",
    "kafka_security_protocol": "SASL_SSL",
    "edevlet_public_key": PUBLIC_PEM,
    "sms_password": "gercek-parola",
    "sms_dlr_secret": "d" * 48,
    "oidc_issuer": "https://kimlik.denizli.gov.tr/realms/acikkapi",
    "oidc_audience": "acikkapi-api",
    "oidc_jwks_url": "https://kimlik.denizli.gov.tr/realms/acikkapi/protocol/openid-connect/certs",
    "session_cookie_secure": True,
}


def test_development_mode_has_no_problems() -> None:
    assert production_problems(Settings()) == []


def test_good_production_settings_pass() -> None:
    assert production_problems(Settings(**GOOD)) == []


def test_the_defaults_are_refused_each_by_its_setting() -> None:
    problems = production_problems(Settings(environment="production"))
    named = {p.split(" ", 1)[0] for p in problems}
    assert named == {
        "AK_JWT_SECRET",
        "AK_PII_KEY",
        "AK_KAFKA_PASSWORD",
        "AK_KAFKA_SECURITY_PROTOCOL",
        "AK_EDEVLET_PUBLIC_KEY",
        "AK_SMS_PASSWORD",
        "AK_SMS_DLR_SECRET",
        "AK_SESSION_COOKIE_SECURE=true",
        "AK_OIDC_ISSUER",
        "AK_OIDC_AUDIENCE",
        "AK_OIDC_JWKS_URL",
    }


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"jwt_secret": DEV_JWT_SECRET}, "AK_JWT_SECRET"),
        ({"jwt_secret": "kisa"}, "AK_JWT_SECRET"),
        ({"kafka_security_protocol": "PLAINTEXT"}, "AK_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "AK_KAFKA_SECURITY_PROTOCOL"),
        ({"pii_old_keys": "eski-anahtar," + DEV_PII_KEY}, "AK_PII_OLD_KEYS"),
        ({"pii_index_key": DEV_PII_KEY}, "AK_PII_INDEX_KEY"),
        ({"edevlet_public_key": DEV_EDEVLET_PUBLIC_KEY.read_text()}, "AK_EDEVLET_PUBLIC_KEY"),
        ({"kafka_password": ""}, "AK_KAFKA_PASSWORD"),
        ({"sms_password": "acikkapi"}, "AK_SMS_PASSWORD"),
        ({"sms_dlr_secret": "p" * 48}, "AK_SMS_DLR_SECRET"),
        ({"oidc_jwks_url": "http://kimlik.local/certs"}, "AK_OIDC_JWKS_URL"),
        ({"oidc_audience": ""}, "AK_OIDC_AUDIENCE"),
    ],
)
def test_each_development_value_is_named(change: dict[str, str], setting: str) -> None:
    problems = production_problems(Settings(**(GOOD | change)))
    assert [p.split(" ", 1)[0] for p in problems] == [setting]


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AK_")}
    # Nothing listens there: a process that tried to connect would hang, not exit at once.
    env |= {
        "AK_ENVIRONMENT": "production",
        "AK_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "AK_MONGO_URI": "mongodb://127.0.0.1:1",
        "AK_INTAKE_PORT": "1",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_service_in_production_mode_with_dev_secrets_does_not_start() -> None:
    result = run(["-m", "services.intake"])
    assert result.returncode == 2, result.stderr
    assert "üretim kipinde" in result.stderr
    assert "AK_JWT_SECRET" in result.stderr and "AK_OIDC_JWKS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_dev_token_command_refuses_production_mode() -> None:
    result = run(["-m", "services.common.devtoken", "--role", "admin"])
    assert result.returncode == 2
    assert result.stdout == ""
    assert "üretim kipinde" in result.stderr
