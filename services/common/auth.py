"""Bearer tokens (JWT, HS256) and the FastAPI dependencies that check roles and institutions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from services.common.settings import Settings, get_settings


class Role(StrEnum):
    officer = "officer"
    institution = "institution"
    supervisor = "supervisor"
    admin = "admin"


class Principal(BaseModel):
    subject: str
    role: Role
    institution: str | None = None
    province: int | None = None


def issue_token(
    settings: Settings,
    *,
    subject: str,
    role: Role,
    institution: str | None = None,
    province: int | None = None,
    ttl: timedelta = timedelta(hours=12),
) -> str:
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
    if province is not None:
        claims["prov"] = province
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def decode_token(settings: Settings, token: str) -> Principal:
    claims = jwt.decode(
        token,
        settings.jwt_secret,
        algorithms=["HS256"],
        issuer=settings.jwt_issuer,
        options={"require": ["exp", "sub", "role"]},
    )
    return Principal(
        subject=claims["sub"],
        role=Role(claims["role"]),
        institution=claims.get("inst"),
        province=claims.get("prov"),
    )


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
        return decode_token(settings, credentials.credentials)
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
