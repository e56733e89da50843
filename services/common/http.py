"""The HTTP shell every service shares: health, readiness, metrics, AsyncAPI, error shape, limits.

Errors always answer `{"errors": [{"field", "code", "message"}]}` with Turkish messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.mongo import Client
from services.common.mongo import ping as mongo_ping
from services.common.observability import HTTP_REQUESTS, HTTP_SECONDS, READY, configure_logging
from services.common.settings import Settings

log = logging.getLogger("acikkapi.http")

Hook = Callable[[], Coroutine[Any, Any, None]]

_MESSAGES = {
    "missing": "Bu alan zorunludur.",
    "string_too_short": "Bu alan en az {min_length} karakter olmalıdır.",
    "string_too_long": "Bu alan en fazla {max_length} karakter olabilir.",
    "string_type": "Bu alan metin olmalıdır.",
    "int_type": "Bu alan tam sayı olmalıdır.",
    "int_parsing": "Bu alan tam sayı olmalıdır.",
    "float_type": "Bu alan sayı olmalıdır.",
    "float_parsing": "Bu alan sayı olmalıdır.",
    "bool_type": "Bu alan doğru/yanlış olmalıdır.",
    "enum": "Geçersiz değer; izin verilenler: {expected}.",
    "literal_error": "Geçersiz değer; izin verilenler: {expected}.",
    "extra_forbidden": "Bu alan tanınmıyor.",
    "greater_than_equal": "Bu alan en az {ge} olmalıdır.",
    "less_than_equal": "Bu alan en fazla {le} olabilir.",
    "model_type": "Bu alan bir nesne olmalıdır.",
    "model_attributes_type": "Bu alan bir nesne olmalıdır.",
    "dict_type": "Bu alan bir nesne olmalıdır.",
    "list_type": "Bu alan bir liste olmalıdır.",
    "date_from_datetime_parsing": "Tarih YYYY-AA-GG biçiminde olmalıdır.",
    "date_parsing": "Tarih YYYY-AA-GG biçiminde olmalıdır.",
    "uuid_parsing": "Geçersiz kimlik biçimi.",
    "value_error": "{msg}",
}


def field_error(field: str | None, code: str, message: str) -> dict[str, Any]:
    return {"field": field, "code": code, "message": message}


def error_response(
    status: int, errors: list[dict[str, Any]], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


def _loc_to_field(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def translate_validation_errors(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str | None] = set()
    for err in errors:
        field = _loc_to_field(err.get("loc", ()))
        if field in seen:
            continue  # one entry per bad field
        seen.add(field)
        code = err.get("type", "invalid")
        ctx = dict(err.get("ctx") or {})
        msg = str(ctx.get("error", err.get("msg", "")))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        template = _MESSAGES.get(code, "Geçersiz değer.")
        try:
            message = template.format(msg=msg, **ctx)
        except (KeyError, IndexError):
            message = template
        out.append(field_error(field, code, message))
    return out


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(
            400, [field_error(None, "invalid_json", "İstek gövdesi geçerli bir JSON değil.")]
        )
    return error_response(422, translate_validation_errors(errors))


_STATUS_TEXT = {
    400: ("bad_request", "İstek geçersiz."),
    401: ("unauthorized", "Kimlik doğrulaması gerekli."),
    403: ("forbidden", "Bu işlem için yetkiniz yok."),
    404: ("not_found", "Aradığınız kayıt bulunamadı."),
    405: ("method_not_allowed", "Bu yöntem bu adreste desteklenmiyor."),
    409: ("conflict", "İstek mevcut kayıtla çelişiyor."),
    413: ("payload_too_large", "İstek gövdesi çok büyük."),
    415: ("unsupported_media_type", "İstek gövdesi JSON olmalıdır."),
}


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.detail, list):
        errors = exc.detail
    else:
        code, default = _STATUS_TEXT.get(exc.status_code, ("error", "İstek işlenemedi."))
        # Starlette's own detail is the English status phrase: say it in Turkish instead.
        own = isinstance(exc.detail, str) and exc.detail != HTTPStatus(exc.status_code).phrase
        message = exc.detail if own else default
        errors = [field_error(None, code, message)]
    return error_response(exc.status_code, errors, headers=getattr(exc, "headers", None))


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return error_response(
        500, [field_error(None, "internal_error", "Beklenmeyen bir hata oluştu; kayıt alındı.")]
    )


class BodyLimitMiddleware:
    """Refuses bodies over the limit with 413 before the app reads them (no 500, no memory)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        received = 0
        exceeded = False
        responded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
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
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        limit_mb = self.max_bytes / 1_048_576
        response = error_response(
            413,
            [
                field_error(
                    None,
                    "payload_too_large",
                    f"İstek gövdesi {limit_mb:g} MB sınırını aşıyor.",
                )
            ],
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


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


class Runtime:
    """What one service process holds: settings, broker, database client and background loops."""

    def __init__(self, name: str, settings: Settings, broker: KafkaBroker, mongo: Client) -> None:
        self.name = name
        self.settings = settings
        self.broker = broker
        self.mongo = mongo
        self.started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def ready(self) -> dict[str, bool]:
        """Kafka and MongoDB asked side by side, each given 2 s to answer."""

        async def kafka() -> bool:
            return self.started.is_set() and bool(await self.broker.ping(timeout=2.0))

        kafka_ok, mongo_ok = await asyncio.gather(kafka(), mongo_ping(self.mongo))
        READY.set(1 if kafka_ok and mongo_ok else 0)
        return {"kafka": bool(kafka_ok), "mongodb": mongo_ok, "consumers": self.started.is_set()}


def create_service_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    on_startup: Sequence[Hook] = (),
    background: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> FastAPI:
    """A FastAPI app whose lifespan connects MongoDB and Kafka, retrying until both answer.

    HTTP comes up at once (`/healthz` answers), `/readyz` says 503 until the dependencies do.
    """
    settings = runtime.settings
    configure_logging(runtime.name, settings.log_level)

    async def connect() -> None:
        delay = 0.5
        while True:
            try:
                for hook in on_startup:
                    await hook()
                await runtime.broker.start()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "waiting for dependencies", extra={"error": f"{type(exc).__name__}: {exc}"}
                )
                with contextlib.suppress(Exception):
                    await runtime.broker.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        runtime.started.set()
        log.info("service started", extra={"port": settings.port_for(runtime.name)})
        for loop in background:
            runtime._tasks.append(asyncio.create_task(loop(), name=loop.__name__))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = asyncio.create_task(connect(), name="connect")
        try:
            yield
        finally:
            connector.cancel()
            for task in runtime._tasks:
                task.cancel()
            for task in [connector, *runtime._tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # Consumers stop first, so no handler is mid-way when its clients are closed.
            with contextlib.suppress(Exception):
                await runtime.broker.stop()
            for hook in on_shutdown:
                with contextlib.suppress(Exception):
                    await hook()
            await runtime.mongo.close()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    ops = APIRouter(tags=["işletim"])

    @ops.get("/healthz", summary="Süreç ayakta mı")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @ops.get("/readyz", summary="Kafka ve MongoDB erişilebilir mi")
    async def readyz() -> JSONResponse:
        checks = await runtime.ready()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "service": runtime.name, "checks": checks},
            status_code=200 if ok else 503,
        )

    @ops.get("/metrics", summary="Prometheus ölçümleri")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @ops.get("/asyncapi", summary="Bu servisin Kafka konuları (AsyncAPI 3.0)")
    async def asyncapi() -> JSONResponse:
        # The subscriptions are fixed once the app is built: generate the document once.
        if not hasattr(app.state, "asyncapi"):
            app.state.asyncapi = (
                AsyncAPI(
                    runtime.broker,
                    title=f"Açık Kapı — {runtime.name}",
                    version="1.0.0",
                    description=description,
                )
                .to_specification()
                .to_jsonable()
            )
        return JSONResponse(app.state.asyncapi)

    app.include_router(ops)
    for router in routers:
        app.include_router(router)
    return app


def serve(service: str, settings: Settings) -> None:
    """Run a service: `AK_WORKERS` processes share its port (uvicorn's supervisor restarts a
    worker that dies). More processes elsewhere, with their own ports, join the same consumer
    groups; both ways scale one service without touching the others."""
    uvicorn.run(
        f"services.{service}.app:create_app",
        factory=True,
        workers=settings.workers if settings.workers > 1 else None,
        host=settings.host,
        port=settings.port_for(service),
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
