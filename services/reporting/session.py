"""The staff's login for reporting's pages: a pasted access token becomes an HttpOnly session
cookie, and `page_principal` reads it (or a bearer header) for every page behind the login.

Until the identity provider arrives (issue 11) staff paste the token they were given. The
cookie lives as long as the token, is SameSite=Strict (no other site can send it) and holds
nothing the token does not. The login form checks that it was posted from this host (Origin,
or Referer when there is no Origin), so no other site can log a browser in as someone else; and
it goes back only to a path on this host (no open redirect).
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote, urlsplit

import jwt
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.common.auth import Principal, Role, decode_token, request_settings
from services.common.settings import Settings
from services.reporting.page import province_name, render_page

COOKIE = "ak_oturum"
HOME = "/pano"
DEVTOKEN_HELP = "python -m services.common.devtoken --role supervisor --province 20"

# Only the service's own style sheet; no script at all, no other host, no framing.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
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
}

BAD_TOKEN = "Oturum anahtarı geçersiz ya da süresi dolmuş. Lütfen yeni bir anahtar yapıştırın."
NO_TOKEN = "Oturum anahtarını yapıştırın."
FOREIGN_FORM = "Bu form başka bir siteden gönderilmiş; güvenliğiniz için giriş yapılmadı."


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
        return decode_token(settings, token)
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


def _login_page(
    *,
    next_path: str,
    error: str | None = None,
    principal: Principal | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    html = render_page(
        "giris.html.j2",
        next_path=next_path,
        error=error,
        who=who(principal) if principal else None,
        devtoken_help=DEVTOKEN_HELP,
    )
    return HTMLResponse(html, status_code=status_code, headers=PRIVATE_HEADERS)


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
        return _login_page(next_path=safe_next(next), principal=principal)

    @router.post("/giris", response_class=HTMLResponse)
    async def login(
        request: Request,
        token: Annotated[str, Form(max_length=8192)] = "",
        next: Annotated[str, Form(max_length=2048)] = "",
    ) -> Response:
        target = safe_next(next)
        if not same_origin(request):
            return _login_page(next_path=target, error=FOREIGN_FORM, status_code=403)
        token = token.strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        if not token:
            return _login_page(next_path=target, error=NO_TOKEN, status_code=401)
        settings = await request_settings(request)
        try:
            decode_token(settings, token)
        except jwt.PyJWTError:
            return _login_page(next_path=target, error=BAD_TOKEN, status_code=401)
        response = RedirectResponse(target, status_code=303, headers=PRIVATE_HEADERS)
        _set_session(response, settings, token)
        return response

    @router.post("/cikis")
    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return _login_page(next_path=HOME, error=FOREIGN_FORM, status_code=403)
        settings = await request_settings(request)
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
