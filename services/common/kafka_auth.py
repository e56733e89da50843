"""Who a Kafka client is, and how it proves it: SASL/SCRAM with one user per party.

Each service connects as its own user (its name: `intake`, `routing`, ...), and the broker's
ACLs let that user read and write only the topics the service reads and writes
(deploy/local/kafka_acl.py holds the table). Channel adapters connect as `adapter`, each
institution as `inst-<CODE>`, and the tools that work on every topic (topic creation, the
dead-letter CLI, tests, benchmarks) as `admin`, the broker's super user.

Every client is built from `client_options` (aiokafka producers, consumers and admin clients)
or `broker_security` (FastStream's `KafkaBroker`), so no client connects unauthenticated.

`AK_KAFKA_USERNAME` and `AK_KAFKA_PASSWORD` name the process's user. Left empty, the user is
the one the caller names and the password is derived from `AK_KAFKA_DEV_SECRET`, so the local
stack needs no setup. That derivation is for local use only; issue 11 refuses the development
secret outside it, and production sets each process's own password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from dataclasses import dataclass, field
from typing import Any

from faststream.security import BaseSecurity, SASLScram256, SASLScram512

from services.common.settings import Settings
from services.common.topics import INSTITUTION_CODE_RE

ADMIN = "admin"
ADAPTER = "adapter"
INSTITUTION_USER_PREFIX = "inst-"


def institution_user(code: str) -> str:
    """The broker user of one institution: `inst-<CODE>`."""
    if not INSTITUTION_CODE_RE.fullmatch(code):
        raise ValueError(f"invalid institution code: {code!r}")
    return f"{INSTITUTION_USER_PREFIX}{code}"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def dev_password(secret: str, user: str) -> str:
    """A local user's password: an HMAC of its name under the development secret, URL-safe
    base64 (43 characters, nothing a SCRAM config or a shell has to quote)."""
    digest = hmac.new(secret.encode(), f"kafka-user:{user}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def credentials(settings: Settings, user: str) -> Credentials:
    """The user this process connects as: the configured one, else `user`."""
    name = settings.kafka_username or user
    return Credentials(
        name, settings.kafka_password or dev_password(settings.kafka_dev_secret, name)
    )


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol != "SASL_SSL":
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)


def client_options(
    settings: Settings, user: str, *, bootstrap: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer, admin client and client: where the
    brokers are and how `user` authenticates (`bootstrap` overrides the settings' address)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap or settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol == "PLAINTEXT":
        return options
    login = credentials(settings, user)
    return options | {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": login.username,
        "sasl_plain_password": login.password,
        "ssl_context": _ssl_context(settings),
    }


def broker_security(settings: Settings, user: str) -> BaseSecurity | None:
    """The same, for FastStream's `KafkaBroker(security=...)` (AsyncAPI then names the
    mechanism, never the password)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    login = credentials(settings, user)
    scram = SASLScram512 if settings.kafka_sasl_mechanism == "SCRAM-SHA-512" else SASLScram256
    use_ssl = settings.kafka_security_protocol == "SASL_SSL"
    return scram(
        login.username, login.password, ssl_context=_ssl_context(settings), use_ssl=use_ssl
    )
