"""What production mode (`AK_ENVIRONMENT=production`) refuses to start with: the development
secrets and keys that ship with the code, a Kafka without encryption, and staff sign-in without
an identity provider. Every service checks this before it builds anything (services/common/
service.py), so a process with a development secret stops before it connects to anything."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from services.common.settings import (
    DEV_EDEVLET_PUBLIC_KEY,
    DEV_JWT_SECRET,
    DEV_KAFKA_SECRET,
    DEV_PII_KEY,
    Settings,
)

# The SMS gateway's password in the local stack (deploy/local): never a real gateway's.
DEV_SMS_PASSWORD = "acikkapi"
# Secrets that sign links and codes (ratings, unsubscribe, phone codes) need at least this many
# characters.
MIN_SECRET_LENGTH = 32


def _same_key(value: str, dev: str) -> bool:
    return value.strip() == dev.strip()


def production_problems(settings: Settings) -> list[str]:
    """Why these settings must not run in production mode, one Turkish sentence each naming
    the AK_ setting to set; empty when they may (or when the mode is development)."""
    if not settings.production:
        return []
    problems: list[str] = []
    if _same_key(settings.jwt_secret, DEV_JWT_SECRET):
        problems.append(
            "AK_JWT_SECRET geliştirme değerinde: değerlendirme bağlantıları, e-posta abonelik "
            "bağlantıları ve telefon doğrulama kodları bununla imzalanır; gizli, rastgele bir "
            f"değer verin (en az {MIN_SECRET_LENGTH} karakter)."
        )
    elif len(settings.jwt_secret) < MIN_SECRET_LENGTH:
        problems.append(f"AK_JWT_SECRET en az {MIN_SECRET_LENGTH} karakter olmalı.")
    if _same_key(settings.pii_key, DEV_PII_KEY):
        problems.append(
            "AK_PII_KEY geliştirme anahtarında: kişisel verileri şifreleyen gizli bir anahtar "
            "verin."
        )
    if _same_key(settings.pii_index_key, DEV_PII_KEY):
        problems.append(
            "AK_PII_INDEX_KEY geliştirme anahtarında: gizli bir anahtar verin (boş bırakılırsa "
            "AK_PII_KEY'den türetilir)."
        )
    old_keys = settings.pii_old_keys
    if any(_same_key(k, DEV_PII_KEY) for k in old_keys.split(",") if k.strip()):
        problems.append("AK_PII_OLD_KEYS geliştirme anahtarını içeriyor: onu listeden çıkarın.")
    if not settings.kafka_password and _same_key(settings.kafka_dev_secret, DEV_KAFKA_SECRET):
        problems.append(
            "AK_KAFKA_PASSWORD boş ve Kafka parolası geliştirme sırrından türetiliyor: "
            "bu servisin Kafka kullanıcısının parolasını AK_KAFKA_PASSWORD ile verin."
        )
    plain_ok = (
        settings.kafka_security_protocol == "SASL_PLAINTEXT" and settings.kafka_private_network
    )
    if settings.kafka_security_protocol != "SASL_SSL" and not plain_ok:
        problems.append(
            f"AK_KAFKA_SECURITY_PROTOCOL {settings.kafka_security_protocol}: üretimde Kafka'ya "
            "kimlik doğrulamalı ve şifreli bağlanılır (SASL_SSL); kişisel veriler ve parolalar "
            "ağda açık gitmez."
        )
    if _same_key(settings.edevlet_public_key, DEV_EDEVLET_PUBLIC_KEY.read_text()):
        problems.append(
            "AK_EDEVLET_PUBLIC_KEY geliştirme anahtarında: e-Devlet Kapısı'nın açık anahtarını "
            "(PEM) verin."
        )
    if settings.sms_password == DEV_SMS_PASSWORD:
        problems.append(
            'AK_SMS_PASSWORD yerel ortamın parolasında ("acikkapi"): SMS ağ geçidinin '
            "parolasını verin."
        )
    if not settings.sms_dlr_secret:
        problems.append(
            "AK_SMS_DLR_SECRET boş: SMS iletim raporlarının imzası için ayrı, gizli bir değer "
            f"verin (en az {MIN_SECRET_LENGTH} karakter)."
        )
    elif len(settings.sms_dlr_secret) < MIN_SECRET_LENGTH:
        problems.append(f"AK_SMS_DLR_SECRET en az {MIN_SECRET_LENGTH} karakter olmalı.")
    elif settings.sms_dlr_secret in (settings.jwt_secret, DEV_JWT_SECRET):
        problems.append("AK_SMS_DLR_SECRET AK_JWT_SECRET'ten farklı olmalı.")
    for name, value in (
        ("AK_OIDC_ISSUER", settings.oidc_issuer),
        ("AK_OIDC_AUDIENCE", settings.oidc_audience),
        ("AK_OIDC_JWKS_URL", settings.oidc_jwks_url),
    ):
        if not value:
            problems.append(
                f"{name} boş: üretimde görevliler yalnız kimlik sağlayıcısının (OpenID Connect) "
                "anahtarlarıyla giriş yapar."
            )
    if settings.oidc_jwks_url and urlsplit(settings.oidc_jwks_url).scheme != "https":
        problems.append("AK_OIDC_JWKS_URL https:// ile başlamalı.")
    if not settings.session_cookie_secure:
        problems.append(
            "AK_SESSION_COOKIE_SECURE=true olmalı: üretimde panonun oturum çerezi yalnız HTTPS "
            "üzerinden gönderilir."
        )
    return problems


def refuse_development_secrets(settings: Settings, service: str) -> None:
    """Stops the process (status 2, the reasons on stderr, no traceback) when production mode
    meets a development secret or a missing setting."""
    problems = production_problems(settings)
    if not problems:
        return
    lines = [f"{service}: üretim kipinde (AK_ENVIRONMENT=production) başlatılamaz:"]
    lines += [f"  - {problem}" for problem in problems]
    print("\n".join(lines), file=sys.stderr, flush=True)
    raise SystemExit(2)
