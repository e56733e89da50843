"""The ASGI middleware every service runs: a request body size limit and HTTP metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
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
