"""The ASGI middleware every service runs: a request body size limit, strict content types,
security headers on every response, and HTTP metrics."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, params
from fastapi.routing import APIRoute, iter_route_contexts
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import error_response, field_error
from services.common.observability import HTTP_REQUESTS, HTTP_SECONDS


@dataclass(frozen=True)
class BodyAllowance:
    """A larger body limit for one path (an upload), the error its 413 carries, and what to
    call when it refuses one (the route's own metrics)."""

    max_bytes: int
    error: dict[str, Any]
    on_refuse: Callable[[], None] | None = None


def allow_larger_body(app: Starlette, path: str, allowance: BodyAllowance) -> None:
    """Let requests to exactly `path` be up to `allowance.max_bytes`; every other path keeps
    the service's limit. Call it while building the app, before it serves."""
    allowances = getattr(app.state, "body_allowances", {})
    app.state.body_allowances = {**allowances, path: allowance}


class BodyLimitMiddleware:
    """Refuses bodies over the limit with 413 before the app reads them (no 500, no memory).

    The limit is `max_bytes`, or the path's `BodyAllowance` (`allow_larger_body`), which the
    middleware finds on the app's state: the service bootstrap builds the middleware for all.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowance = _allowance(scope)
        max_bytes = allowance.max_bytes if allowance else self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send, allowance)
                    return
        received = 0
        exceeded = False
        responded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal responded
            # FastAPI catches the exception while parsing a body parameter and answers 400
            # itself; a body without Content-Length (chunked) must still get the 413.
            if exceeded and not responded:
                return
            responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if exceeded and not responded:
            await self._reject(send, allowance)

    async def _reject(self, send: Send, allowance: BodyAllowance | None) -> None:
        if allowance and allowance.on_refuse:
            allowance.on_refuse()
        limit_mb = self.max_bytes / 1_048_576
        error = (
            allowance.error
            if allowance
            else field_error(
                None, "payload_too_large", f"İstek gövdesi {limit_mb:g} MB sınırını aşıyor."
            )
        )
        response = error_response(413, [error])
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def _allowance(scope: Scope) -> BodyAllowance | None:
    app = scope.get("app")  # Starlette puts itself there before its middleware runs
    allowances = getattr(app.state, "body_allowances", None) if app is not None else None
    return allowances.get(scope.get("path")) if allowances else None


class _BodyTooLarge(Exception):
    pass


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            if path not in ("/metrics", "/healthz", "/readyz"):
                method = scope.get("method", "GET")
                HTTP_REQUESTS.labels(method, path, str(status_holder["status"])).inc()
                HTTP_SECONDS.labels(method, path).observe(time.perf_counter() - start)


# --- Strict content types ----------------------------------------------------------------------

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
# An OpenAPI extension a route sets when it reads its body itself and answers a wrong type in
# its own error shape (Open311's `[{code, description}]`); the middleware leaves it alone.
OWN_CONTENT_TYPE_CHECK = "x-acikkapi-own-content-type-check"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON_CHARSETS = frozenset({"utf-8", "utf8"})
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


@dataclass(frozen=True)
class _BodyRoute:
    """A route that takes a body, and the media types it takes (empty: it checks them itself)."""

    path: re.Pattern[str]
    methods: frozenset[str]
    accepted: frozenset[str]


def accepted_media_types(route: APIRoute, openapi_extra: dict[str, Any] | None) -> frozenset[str]:
    """The media types a route's body may have.

    What the route's OpenAPI `requestBody` documents when it reads the body itself (intake's
    `/api/v1/applications`, the e-mail opt-out), else what FastAPI reads its body parameter as:
    a `File` multipart only, a `Form` either form encoding (an HTML form may use either), any
    other body JSON. A route that takes no body takes JSON (an empty object) and nothing else.
    """
    extra = openapi_extra or {}
    if extra.get(OWN_CONTENT_TYPE_CHECK):
        return frozenset()
    content = (extra.get("requestBody") or {}).get("content")
    if content:
        return frozenset(str(media_type).lower() for media_type in content)
    body = route.body_field
    if body is None:
        return frozenset({JSON})
    info = body.field_info
    if isinstance(info, params.File):
        return frozenset({MULTIPART})
    if isinstance(info, params.Form):
        return frozenset({FORM, MULTIPART})
    return frozenset({str(getattr(info, "media_type", JSON)).lower()})


def body_routes(app: Starlette) -> list[_BodyRoute]:
    """Every API route of `app` that a POST, PUT or PATCH reaches, in the router's order."""
    table: list[_BodyRoute] = []
    for context in iter_route_contexts(app.router.routes):
        route = context.original_route
        methods = frozenset(context.methods or ()) & _BODY_METHODS
        if not isinstance(route, APIRoute) or not methods:
            continue
        accepted = accepted_media_types(route, context.openapi_extra)
        table.append(_BodyRoute(context.path_regex, methods, accepted))
    return table


def media_type_acceptable(content_type: str | None, accepted: frozenset[str]) -> bool:
    """Whether a request's Content-Type is one of `accepted` (its parameters aside; JSON must be
    UTF-8, RFC 8259, so another declared charset is refused)."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in accepted:
        return False
    if media_type == JSON:
        charset = _CHARSET.search(content_type)
        return charset is None or charset.group(1).lower() in _JSON_CHARSETS
    return True


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return True  # chunked: its length is not known ahead
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
    return False


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None


class ContentTypeMiddleware:
    """Refuses, with 415 before the route runs, a POST, PUT or PATCH whose body is not of a
    media type its route takes (`accepted_media_types`): JSON for the JSON API, a form
    encoding only where a route reads a form or a file. A request without a body passes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: list[_BodyRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        accepted = self._accepted(scope)
        content_type = _header(scope, b"content-type")
        if not accepted or media_type_acceptable(content_type, accepted):
            await self.app(scope, receive, send)
            return
        await self._reject(scope, send, content_type, accepted)

    def _accepted(self, scope: Scope) -> frozenset[str]:
        if self._routes is None:
            app = scope.get("app")  # Starlette puts itself there before its middleware runs
            if app is None:
                return frozenset()
            self._routes = body_routes(app)
        path, method = get_route_path(scope), scope["method"]
        for route in self._routes:
            if method in route.methods and route.path.match(path):
                return route.accepted
        return frozenset()  # no route: the router answers 404 or 405

    async def _reject(
        self, scope: Scope, send: Send, content_type: str | None, accepted: frozenset[str]
    ) -> None:
        kinds = ", ".join(sorted(accepted))
        sent = (
            f"gönderilen tür: {content_type[:100]}"
            if content_type
            else "Content-Type başlığı verilmemiş"
        )
        message = f"İstek gövdesinin türü bu adreste kabul edilmiyor ({sent}); beklenen: {kinds}."
        headers = {}
        if scope["method"] in ("POST", "PATCH"):
            headers[f"Accept-{scope['method'].title()}"] = kinds  # RFC 7694 / RFC 5789
        response = error_response(
            415, [field_error("Content-Type", "unsupported_media_type", message)], headers
        )
        await send({"type": "http.response.start", "status": 415, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


# --- Security headers --------------------------------------------------------------------------

# The Content-Security-Policy of every response, in one place. A page sets the one it needs
# (`SCRIPT_PAGE_POLICY` or `PLAIN_PAGE_POLICY`); any other HTML gets the plain page's, and
# everything else (JSON, errors, /metrics, files) the API's, which lets nothing load or run.
API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# Pages with the service's own scripts (intake's forms, tracking's /takip, /kurum, /p): no
# inline script or style, no other host, no framing. Images also as data: and blob: (a photo
# attachment's preview).
SCRIPT_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Pages without any script (reporting's dashboard, the e-mail opt-out).
PLAIN_PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# /docs and /redoc: the bundled Swagger UI and ReDoc from the service itself, their one inline
# script each allowed by its hash (filled in per response), the styles they set themselves,
# ReDoc's search worker, and calls to the service's own API ("Try it out").
_DOCS_POLICY = (
    "default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Intake's form may ask for the location (and only intake's own pages may); nothing else.
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(self), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    ),
}
_INLINE_SCRIPT = re.compile(
    rb"<script(?![^>]*\bsrc\s*=)(?:\s[^>]*)?>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL
)


def docs_policy(html: bytes) -> str:
    """The docs page's policy, allowing exactly the inline scripts `html` carries."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return _DOCS_POLICY.format(hashes=hashes)


class SecurityHeadersMiddleware:
    """Puts the security headers on every response: those a response sets itself stay (a page's
    policy, reporting's `Referrer-Policy: same-origin` for its Origin check), the rest are
    added; `Strict-Transport-Security` only in production mode (behind TLS)."""

    def __init__(self, app: ASGIApp, *, production: bool, docs_paths: Iterable[str]) -> None:
        self.app = app
        self.headers = {
            **SECURITY_HEADERS,
            **({"Strict-Transport-Security": HSTS} if production else {}),
        }
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = get_route_path(scope) in self.docs_paths
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_secured(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
                if "content-security-policy" not in headers:
                    html = headers.get("content-type", "").startswith("text/html")
                    if docs and html:
                        held = message  # its policy needs the page's inline scripts
                        return
                    headers["Content-Security-Policy"] = PLAIN_PAGE_POLICY if html else API_POLICY
            elif held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                MutableHeaders(scope=held)["Content-Security-Policy"] = docs_policy(body)
                await send(held)
                held = None
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, send_secured)


def install_security_headers(app: FastAPI, *, production: bool) -> None:
    """Wrap the whole app, its error middleware included, so that a 500 carries the headers."""
    # FastAPIOffline serves /docs and /redoc itself (FastAPI's own `docs_url` is None there).
    docs_paths: Sequence[str | None] = (
        app.docs_url or "/docs",
        app.redoc_url or "/redoc",
        app.swagger_ui_oauth2_redirect_url,
    )
    build = app.build_middleware_stack

    def build_secured() -> ASGIApp:
        return SecurityHeadersMiddleware(
            build(), production=production, docs_paths=[path for path in docs_paths if path]
        )

    app.build_middleware_stack = build_secured  # type: ignore[method-assign]
