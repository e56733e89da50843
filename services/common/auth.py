"""Bearer tokens and the FastAPI dependencies that check roles and institutions.

Two kinds of token: staff tokens of the OpenID Connect identity provider (RS256 or ES256, keys
from its JWKS, issuer, audience and expiry checked), and in development the HS256 tokens
`python -m services.common.devtoken` prints. In production mode only the provider's are taken.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, StrictStr, ValidationError

from services.common.settings import Settings, get_settings


class Role(StrEnum):
    """Who a token speaks for (docs/security.md has the roles matrix)."""

    # A citizen logged in through e-Devlet (the subject is the TC Kimlik No): the KVKK export only.
    citizen = "citizen"
    # An Açık Kapı officer: the counter and routing both (the contract's original role).
    officer = "officer"
    # An officer at a counter only: of a province, or of one district (the `dist` claim).
    counter_officer = "counter_officer"
    # An officer who routes only: the pending queue and the routing decision.
    routing_officer = "routing_officer"
    # An institution's staff: their institution (`inst`), optionally one sub-unit (`unit`).
    institution = "institution"
    # An Açık Kapı supervisor of a province: approves, unmasks with a reason, reads everything.
    supervisor = "supervisor"
    # The governor and the governorship's managers: reports only, read-only.
    governor = "governor"
    # Reads the audit log (and nothing personal besides).
    auditor = "auditor"
    admin = "admin"


class Principal(BaseModel):
    subject: str
    role: Role
    institution: str | None = None
    # A sub-unit of the institution (e.g. a DESKİ district directorate), when the token has one.
    unit: str | None = None
    province: int | None = None
    district: str | None = None


# The signature algorithms taken from the identity provider, and the key type each needs.
OIDC_ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
DEV_ALGORITHM = "HS256"
# Clocks of the provider and of the services may differ this much.
LEEWAY_SECONDS = 30


class InvalidClaims(jwt.InvalidTokenError):
    """A correctly signed token whose claims do not make a principal (unknown role, a province
    that is no number, an institution token without its institution, ...): a 401, never a 500."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IdentityProviderUnavailable(jwt.PyJWKClientConnectionError):
    """The identity provider's keys could not be fetched: the request gets a 503."""


class _Claims(BaseModel):
    """What a principal is made of, checked strictly: text is text, the province a plate code."""

    subject: StrictStr = Field(min_length=1, max_length=200)
    role: Role
    institution: StrictStr | None = Field(default=None, min_length=1, max_length=64)
    unit: StrictStr | None = Field(default=None, min_length=1, max_length=64)
    province: int | None = Field(default=None, ge=1, le=81, strict=True)
    district: StrictStr | None = Field(default=None, min_length=1, max_length=64)


_CLAIM_NAMES = {
    "subject": "kullanıcı (sub)",
    "role": "rol",
    "institution": "kurum",
    "unit": "birim",
    "province": "il",
    "district": "ilçe",
}


def _province(value: object) -> object:
    """A plate code as a number; a string of digits is taken too (some providers give only text)."""
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return value


def principal_from_claims(
    claims: Mapping[str, Any],
    *,
    role: object,
    subject: str = "sub",
    institution: str = "inst",
    unit: str = "unit",
    province: str = "prov",
    district: str = "dist",
) -> Principal:
    """The principal a verified token speaks for, or InvalidClaims (Turkish) when its claims do
    not make one."""
    try:
        checked = _Claims.model_validate(
            {
                "subject": claims.get(subject),
                "role": role,
                "institution": claims.get(institution),
                "unit": claims.get(unit),
                "province": _province(claims.get(province)),
                "district": claims.get(district),
            }
        )
    except ValidationError as exc:
        names = {str(error["loc"][0]) for error in exc.errors()}
        fields = sorted(_CLAIM_NAMES.get(name, name) for name in names)
        raise InvalidClaims(
            f"Oturum anahtarındaki bilgiler geçersiz: {', '.join(fields)}."
        ) from None
    if checked.role is Role.institution and not checked.institution:
        raise InvalidClaims("Kurum görevlisinin oturum anahtarında kurum bilgisi yok.")
    return Principal(**checked.model_dump())


def issue_token(
    settings: Settings,
    *,
    subject: str,
    role: Role,
    institution: str | None = None,
    province: int | None = None,
    unit: str | None = None,
    district: str | None = None,
    ttl: timedelta = timedelta(hours=12),
) -> str:
    """A development token (HS256 with `AK_JWT_SECRET`); production mode does not take them."""
    if role is Role.institution and not institution:
        raise ValueError("an institution token needs an institution code")
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": subject,
        "role": role.value,
        "iss": settings.jwt_issuer,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if institution:
        claims["inst"] = institution
    if unit:
        claims["unit"] = unit
    if province is not None:
        claims["prov"] = province
    if district:
        claims["dist"] = district
    return jwt.encode(claims, settings.jwt_secret, algorithm=DEV_ALGORITHM)


def oidc_configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url)


def _decode_dev(settings: Settings, token: str) -> Principal:
    claims = jwt.decode(
        token,
        settings.jwt_secret,
        algorithms=[DEV_ALGORITHM],
        issuer=settings.jwt_issuer,
        options={"require": ["exp", "sub", "role"]},
    )
    return principal_from_claims(claims, role=claims.get("role"))


_jwks_lock = threading.Lock()
_jwks_clients: dict[tuple[str, float], jwt.PyJWKClient] = {}


def jwks_client(settings: Settings) -> jwt.PyJWKClient:
    """The provider's key set client, one per JWKS address: created at the first token, keys
    fetched then and kept `oidc_jwks_lifespan_seconds` (an unknown key id refetches, at most
    once every 30 s)."""
    key = (settings.oidc_jwks_url, settings.oidc_jwks_lifespan_seconds)
    with _jwks_lock:
        client = _jwks_clients.get(key)
        if client is None:
            client = jwt.PyJWKClient(
                settings.oidc_jwks_url,
                cache_keys=True,
                lifespan=settings.oidc_jwks_lifespan_seconds,
                timeout=settings.oidc_jwks_timeout_seconds,
            )
            _jwks_clients[key] = client
        return client


def _claim_path(claims: Mapping[str, Any], path: str) -> object:
    """A claim by name, or by a dotted path into nested objects (`realm_access.roles`)."""
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def role_of(claims: Mapping[str, Any], claim: str) -> object:
    """The role claim: a role name, or a list of names (Keycloak's `realm_access.roles`) of
    which exactly one is a role of this system. Without the configured claim, Keycloak's."""
    value = _claim_path(claims, claim)
    if value is None and claim == "role":
        value = _claim_path(claims, "realm_access.roles")
    if isinstance(value, list):
        known = {str(v) for v in value if isinstance(v, str) and v in Role.__members__}
        if len(known) != 1:
            raise InvalidClaims("Oturum anahtarında bu sistemin rollerinden tam olarak biri yok.")
        return known.pop()
    return value


def _decode_oidc(settings: Settings, token: str, algorithm: str) -> Principal:
    try:
        signing_key = jwks_client(settings).get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as exc:
        raise IdentityProviderUnavailable(str(exc)) from exc
    if signing_key.key_type != OIDC_ALGORITHMS[algorithm]:
        raise jwt.InvalidAlgorithmError("the key's type does not match the token's algorithm")
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[algorithm],
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        leeway=LEEWAY_SECONDS,
        options={"require": ["exp", "iat", "iss", "aud"]},
    )
    return principal_from_claims(
        claims,
        role=role_of(claims, settings.oidc_role_claim),
        subject=settings.oidc_subject_claim,
        institution=settings.oidc_institution_claim,
        unit=settings.oidc_unit_claim,
        province=settings.oidc_province_claim,
        district=settings.oidc_district_claim,
    )


def _algorithm(token: str) -> str:
    header = jwt.get_unverified_header(token)
    algorithm = header.get("alg")
    return algorithm if isinstance(algorithm, str) else ""


def decode_token(settings: Settings, token: str) -> Principal:
    """The principal of a bearer token, or a jwt.PyJWTError (InvalidClaims: Turkish message).

    The provider's tokens (RS256, ES256) when OpenID Connect is configured; the development
    HS256 tokens only outside production mode. Anything else (alg "none" too) is refused.
    """
    algorithm = _algorithm(token)
    if algorithm in OIDC_ALGORITHMS and oidc_configured(settings):
        return _decode_oidc(settings, token, algorithm)
    if algorithm == DEV_ALGORITHM and not settings.production:
        return _decode_dev(settings, token)
    raise jwt.InvalidAlgorithmError(f"tokens signed with {algorithm!r} are not accepted here")


async def decode_token_async(settings: Settings, token: str) -> Principal:
    """decode_token off the event loop for the provider's tokens (the first one, and one with a
    new key id, fetch the JWKS over the network)."""
    if _algorithm(token) in OIDC_ALGORITHMS:
        return await asyncio.to_thread(decode_token, settings, token)
    return decode_token(settings, token)


_bearer = HTTPBearer(auto_error=False)


async def request_settings(request: Request) -> Settings:
    """The settings of the service that got the request (async: no worker-thread hop)."""
    runtime = getattr(request.app.state, "runtime", None)
    return runtime.settings if runtime is not None else get_settings()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=[{"field": "Authorization", "code": "unauthorized", "message": message}],
        headers={"WWW-Authenticate": "Bearer"},
    )


def forbidden(message: str = "Bu işlem için yetkiniz yok.") -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_403_FORBIDDEN,
        detail=[{"field": "Authorization", "code": "forbidden", "message": message}],
    )


async def optional_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(request_settings)],
) -> Principal | None:
    if credentials is None:
        return None
    try:
        return await decode_token_async(settings, credentials.credentials)
    except IdentityProviderUnavailable as exc:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=[
                {
                    "field": "Authorization",
                    "code": "identity_provider_unavailable",
                    "message": "Kimlik sağlayıcısına şu an ulaşılamıyor; "
                    "biraz sonra yeniden deneyin.",
                }
            ],
            headers={"Retry-After": "30"},
        ) from exc
    except InvalidClaims as exc:
        raise _unauthorized(exc.message) from exc
    except jwt.PyJWTError as exc:
        raise _unauthorized("Oturum anahtarı geçersiz veya süresi dolmuş.") from exc


async def current_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise _unauthorized("Bu işlem için oturum anahtarı (Bearer token) gerekir.")
    return principal


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through only the given roles (admin always passes)."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if principal.role is not Role.admin and principal.role not in roles:
            raise forbidden()
        return principal

    return dependency


def ensure_institution_access(principal: Principal, institution_code: str) -> None:
    """An institution token sees only its own institution; supervisors and admins see all."""
    if principal.role in (Role.admin, Role.supervisor):
        return
    if principal.role is Role.institution and principal.institution == institution_code:
        return
    raise forbidden("Bu kurumun başvurularını görme yetkiniz yok.")
