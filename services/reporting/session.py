"""The staff's login for reporting's pages: a pasted access token becomes an HttpOnly session
cookie, and `page_principal` reads it (or a bearer header) for every page behind the login.

Until the identity provider arrives (issue 11) staff paste the token they were given. The
cookie lives as long as the token, is SameSite=Strict (no other site can send it) and holds
nothing the token does not. The login form checks that it was posted from this host (Origin,
or Referer when there is no Origin), so no other site can log a browser in as someone else; and
it goes back only to a path on this host (no open redirect).

On top of those, every form that changes something carries a CSRF token (`csrf_token`) that a
POST must send back, or it is refused with 403: the login form's is bound to a random cookie
the login page sets (`ak_giris`, only for /giris), the logout form's to the session cookie
itself; both are HMACs under a key derived from AK_JWT_SECRET, so no other site can make one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Annotated
from urllib.parse import quote, urlsplit

import jwt
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.common.auth import (
    Principal,
    Role,
    decode_token,
    decode_token_async,
    request_settings,
)
from services.common.middleware import PLAIN_PAGE_POLICY
from services.common.settings import Settings
from services.reporting.page import province_name, render_page

COOKIE = "ak_oturum"
HOME = "/pano"
DEVTOKEN_HELP = "python -m services.common.devtoken --role supervisor --province 20"

# Only the service's own style sheet; no script at all, no other host, no framing. The
# referrer stays on this host: with "no-referrer" a browser would send `Origin: null` with the
# forms, and the Origin check below would refuse them.
PAGE_HEADERS = {
    "Content-Security-Policy": PLAIN_PAGE_POLICY,  # services/common/middleware.py
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
# A staff page holds figures that are not public: never kept in a shared cache.
PRIVATE_HEADERS = {**PAGE_HEADERS, "Cache-Control": "no-store"}

ROLE_NAMES = {
    Role.officer: "Açık Kapı görevlisi",
    Role.institution: "Kurum personeli",
    Role.supervisor: "Valilik denetçisi",
    Role.admin: "Yönetici",
    Role.citizen: "Vatandaş",
    Role.counter_officer: "Gişe görevlisi",
    Role.routing_officer: "Yönlendirme görevlisi",
    Role.governor: "Vali / valilik yöneticisi",
    Role.auditor: "Denetim kaydı denetçisi",
}

BAD_TOKEN = "Oturum anahtarı geçersiz ya da süresi dolmuş. Lütfen yeni bir anahtar yapıştırın."
NO_TOKEN = "Oturum anahtarını yapıştırın."
FOREIGN_FORM = "Bu form başka bir siteden gönderilmiş; güvenliğiniz için giriş yapılmadı."
BAD_CSRF = (
    "Formun güvenlik anahtarı eksik ya da geçersiz (sayfa çok uzun süre açık kalmış ya da form "
    "başka bir yerden gönderilmiş olabilir). Lütfen sayfayı yenileyip yeniden deneyin."
)

# The login form's CSRF token is bound to this cookie, which only the login page sets.
LOGIN_NONCE_COOKIE = "ak_giris"
LOGIN_NONCE_SECONDS = 8 * 3600
CSRF_FIELD = "csrf"


def _csrf_key(settings: Settings) -> bytes:
    return hmac.new(settings.jwt_secret.encode(), b"acikkapi-reporting-csrf-v1", "sha256").digest()


def csrf_token(settings: Settings, purpose: str, bound_to: str) -> str:
    """The token a form carries: an HMAC of what it is bound to (the login page's nonce, or
    the session cookie), for one purpose ("giris" or "oturum")."""
    message = f"{purpose}\x00{bound_to}".encode()
    return hmac.new(_csrf_key(settings), message, hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, purpose: str, bound_to: str | None, sent: str) -> bool:
    if not bound_to or not sent:
        return False
    return hmac.compare_digest(csrf_token(settings, purpose, bound_to), sent)


async def session_csrf(request: Request) -> str | None:
    """The logout form's token for this browser's session cookie (None without one: a page
    reached with a bearer header has no session to end)."""
    session = request.cookies.get(COOKIE)
    if not session:
        return None
    return csrf_token(await request_settings(request), "oturum", session)


def _token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


async def page_principal(request: Request) -> Principal | None:
    """Who is looking at a page: from `Authorization: Bearer` or the session cookie; None when
    neither is there or the token is invalid or expired (the page then asks for a login)."""
    token = _token_of(request)
    if token is None:
        return None
    settings = await request_settings(request)
    try:
        return await decode_token_async(settings, token)
    except jwt.PyJWTError:
        return None


def who(principal: Principal) -> str:
    """The person behind a token as the page's header names them."""
    parts = [principal.subject, ROLE_NAMES[principal.role]]
    if principal.institution:
        parts.append(principal.institution)
    if principal.province is not None:
        parts.append(province_name(principal.province))
    return " · ".join(parts)


def safe_next(target: str | None) -> str:
    """Where to go after the login: a path on this host, else the dashboard. A scheme, a host,
    a protocol-relative "//x" or a backslash (which browsers read as a slash) is refused."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return HOME
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return HOME
    return target


def login_url(request: Request) -> str:
    """The login page that comes back to the page asked for."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/giris?next={quote(target, safe='')}"


def same_origin(request: Request) -> bool:
    """Was the form posted from a page of this host? Origin says so; a browser that sends no
    Origin sends a Referer; with neither (not a browser), SameSite=Strict is what protects."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc == host
    referer = request.headers.get("referer")
    if referer is not None:
        return urlsplit(referer).netloc == host
    return True


async def _login_page(
    request: Request,
    *,
    next_path: str,
    error: str | None = None,
    principal: Principal | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The login form, with its CSRF token bound to the browser's login nonce (set here when
    the browser has none yet)."""
    settings = await request_settings(request)
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE) or ""
    fresh = len(nonce) < 32
    if fresh:
        nonce = secrets.token_urlsafe(32)
    html = render_page(
        "giris.html.j2",
        next_path=next_path,
        error=error,
        who=who(principal) if principal else None,
        devtoken_help=DEVTOKEN_HELP,
        login_csrf=csrf_token(settings, "giris", nonce),
        csrf=await session_csrf(request),
    )
    response = HTMLResponse(html, status_code=status_code, headers=PRIVATE_HEADERS)
    if fresh:
        response.set_cookie(
            LOGIN_NONCE_COOKIE,
            nonce,
            max_age=LOGIN_NONCE_SECONDS,
            path="/giris",
            secure=settings.session_cookie_secure,
            httponly=True,
            samesite="strict",
        )
    return response


def _remaining_seconds(token: str) -> int:
    """The token's remaining life (its signature and expiry were checked by decode_token)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return max(0, int(claims["exp"]) - int(time.time()))


def _set_session(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=_remaining_seconds(token),
        path="/",
        secure=settings.session_cookie_secure,
        httponly=True,
        samesite="strict",
    )


def build_session_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/giris", response_class=HTMLResponse)
    async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
        principal = await page_principal(request)
        return await _login_page(request, next_path=safe_next(next), principal=principal)

    @router.post("/giris", response_class=HTMLResponse)
    async def login(
        request: Request,
        token: Annotated[str, Form(max_length=8192)] = "",
        next: Annotated[str, Form(max_length=2048)] = "",
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        target = safe_next(next)
        if not same_origin(request):
            return await _login_page(request, next_path=target, error=FOREIGN_FORM, status_code=403)
        settings = await request_settings(request)
        if not csrf_ok(settings, "giris", request.cookies.get(LOGIN_NONCE_COOKIE), csrf):
            return await _login_page(request, next_path=target, error=BAD_CSRF, status_code=403)
        token = token.strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        if not token:
            return await _login_page(request, next_path=target, error=NO_TOKEN, status_code=401)
        try:
            decode_token(settings, token)
        except jwt.PyJWTError:
            return await _login_page(request, next_path=target, error=BAD_TOKEN, status_code=401)
        response = RedirectResponse(target, status_code=303, headers=PRIVATE_HEADERS)
        _set_session(response, settings, token)
        return response

    @router.post("/cikis")
    async def logout(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
        if not same_origin(request):
            return await _login_page(request, next_path=HOME, error=FOREIGN_FORM, status_code=403)
        settings = await request_settings(request)
        session = request.cookies.get(COOKIE)
        if session and not csrf_ok(settings, "oturum", session, csrf):
            return await _login_page(request, next_path=HOME, error=BAD_CSRF, status_code=403)
        response = RedirectResponse("/giris", status_code=303, headers=PRIVATE_HEADERS)
        response.delete_cookie(
            COOKIE,
            path="/",
            secure=settings.session_cookie_secure,
            httponly=True,
            samesite="strict",
        )
        return response

    return router
