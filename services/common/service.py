"""One bootstrap for every service process: the same parts, built the same way, in one place.

A service's `app.py` creates a `Service`, wires its own store and use cases to the parts, and
asks `Service.app` for the FastAPI app. The shared lifespan (`Service.app`) then
connects MongoDB and Kafka (retrying until both answer; /readyz says 503 until then), starts
the consumers and the background loops, and on shutdown stops, in this order: the loops, the
consumers (so no handler is mid-way), the service's own shutdown hooks, the MongoDB client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from socket import socket
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, multiprocess
from uvicorn.supervisors import Multiprocess

from services.common import kafka_auth
from services.common.audit import AuditLog, build_audit_router
from services.common.errors import install_error_handlers
from services.common.http_limits import LimitedHttpTools
from services.common.lag import LagMonitor, subscribed_groups
from services.common.messaging import Publisher, make_broker
from services.common.middleware import (
    BodyLimitMiddleware,
    ContentTypeMiddleware,
    MetricsMiddleware,
    install_security_headers,
)
from services.common.mongo import Client, make_client, service_database
from services.common.mongo import ping as mongo_ping
from services.common.observability import (
    MULTIPROC_ENV,
    READY,
    configure_logging,
    metrics_registry,
)
from services.common.pii import PiiCipher, configure_transport
from services.common.production import refuse_development_secrets
from services.common.settings import Settings, get_settings

log = logging.getLogger("acikkapi.http")

Hook = Callable[[], Coroutine[Any, Any, None]]

# How often each process checks its own readiness for `acikkapi_ready` (Prometheus scrapes
# every 15 s, and AcikKapiNotReady waits 5 minutes).
READINESS_INTERVAL_SECONDS = 15.0


class Runtime:
    """What one service process holds: settings, broker, database client and background loops."""

    def __init__(self, name: str, settings: Settings, broker: KafkaBroker, mongo: Client) -> None:
        self.name = name
        self.settings = settings
        self.broker = broker
        self.mongo = mongo
        self.started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # A service's own conditions for /readyz beside Kafka and MongoDB (name → check).
        self.checks: dict[str, Callable[[], bool]] = {}

    async def ready(self) -> dict[str, bool]:
        """Kafka and MongoDB asked side by side, each given 2 s to answer."""

        async def kafka() -> bool:
            return self.started.is_set() and bool(await self.broker.ping(timeout=2.0))

        kafka_ok, mongo_ok = await asyncio.gather(kafka(), mongo_ping(self.mongo))
        checks = {"kafka": bool(kafka_ok), "mongodb": mongo_ok, "consumers": self.started.is_set()}
        checks |= {name: check() for name, check in self.checks.items()}
        READY.set(1 if all(checks.values()) else 0)
        return checks

    async def watch_readiness(self) -> None:
        """Keeps this process's `acikkapi_ready` fresh between probes. With several workers on
        one port a probe reaches one of them, and the exported value is the lowest of all
        workers': without this, a worker no probe has reached yet would hold it at 0."""
        while True:
            try:
                await self.ready()
            except asyncio.CancelledError:
                raise
            except Exception:
                READY.set(0)
            await asyncio.sleep(READINESS_INTERVAL_SECONDS)


def serve(service: str, settings: Settings, app: str | None = None) -> None:
    """Run a service (`app`: its app factory, `services.<service>.app:create_app` unless told):
    `AK_WORKERS` processes share its port (`Workers` restarts a worker that dies). More
    processes elsewhere, with their own ports, join the same consumer groups; both ways scale
    one service without touching the others."""
    target = app or f"services.{service}.app:create_app"
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.host,
        "port": settings.port_for(service),
        "log_config": None,
        "access_log": False,
        "loop": "uvloop",
        # httptools with a bound on the request line and headers (services/common/http_limits.py).
        "http": LimitedHttpTools,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers == 1:
        uvicorn.run(target, **options)
        return
    config = uvicorn.Config(target, workers=settings.workers, **options)
    # Bound first: a second start on a port in use stops here, before it empties the running
    # instance's metrics folder.
    sock = config.bind_socket()
    folder = metrics_dir(service, config.port)
    fresh_folder(folder)
    # Read by prometheus_client when a worker imports it: the workers are spawned, not forked,
    # so each inherits this environment before its first import.
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        Workers(config, [sock], folder).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def metrics_dir(service: str, port: int) -> Path:
    """Where the workers of `service` on `port` write their metrics: one folder per instance
    (no two instances on one host share a port), under the system's temporary folder."""
    return Path(tempfile.gettempdir()) / f"acikkapi-metrics-{service}-{port}"


def fresh_folder(folder: Path) -> None:
    """An empty folder only this user may read: what an instance that ended without cleaning
    up (killed) left there would otherwise be added to the new workers' counters."""
    if folder.is_symlink() or folder.exists():
        shutil.rmtree(folder)  # refuses a symbolic link: someone else's folder is not emptied
    folder.mkdir(mode=0o700, parents=True)


class Workers(Multiprocess):
    """uvicorn's supervisor of several workers on one port, which also forgets the live gauges
    (`acikkapi_ready`, the lag, the assigned partitions) of a worker that ended, however it
    ended: crashed, hung and killed, retired by SIGHUP or SIGTTOU. A dead worker's counters
    stay in the sums, as Prometheus expects of a counter."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket], metrics: Path) -> None:
        super().__init__(config, sockets)
        self.metrics = metrics

    def keep_subprocess_alive(self) -> None:
        # Called every 0.5 s from the supervisor's loop, the thread that starts the workers,
        # so every worker started so far is in `self.processes` by now.
        super().keep_subprocess_alive()
        self.forget_ended()

    def forget_ended(self) -> None:
        running = {process.pid for process in self.processes}
        for path in self.metrics.glob("gauge_live*_*.db"):
            pid = path.stem.rpartition("_")[2]
            if pid.isdigit() and int(pid) not in running:
                multiprocess.mark_process_dead(int(pid), str(self.metrics))  # type: ignore[no-untyped-call]


class Service:
    """The parts of one service process: settings, Kafka broker, MongoDB client and the
    service's own database, and a publisher."""

    def __init__(self, name: str, settings: Settings) -> None:
        # Production mode with a development secret stops here, before anything connects.
        refuse_development_secrets(settings, name)
        self.name = name
        self.settings = settings
        self.broker = make_broker(settings, name)
        self.mongo = make_client(settings, name)
        self.runtime = Runtime(name, settings, self.broker, self.mongo)
        self.db = service_database(self.mongo, settings, name)
        self.publisher = Publisher(self.broker)
        # The PII keyring (current and old keys); events' personal fields are sealed with the
        # transport keyring derived from it.
        self.pii = PiiCipher.from_settings(settings)
        configure_transport(self.pii)
        # Who read or changed which application: this service's append-only audit log.
        self.audit = AuditLog(self.db, name)
        # acikkapi_consumer_lag of this service's groups, as its own Kafka user.
        self.lag = LagMonitor(
            kafka_auth.client_options(settings, name), lambda: subscribed_groups(self.broker)
        )

    def app(
        self,
        *,
        title: str,
        description: str,
        routers: Sequence[APIRouter] = (),
        on_startup: Sequence[Hook] = (),
        background: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
        ready_checks: Mapping[str, Callable[[], bool]] | None = None,
    ) -> FastAPI:
        """A FastAPI app whose lifespan connects MongoDB and Kafka, retrying until both answer.

        HTTP comes up at once (`/healthz` answers), `/readyz` says 503 until the dependencies do.
        """
        runtime = self.runtime
        runtime.checks.update(ready_checks or {})
        settings = runtime.settings
        configure_logging(runtime.name, settings.log_level)

        async def connect() -> None:
            delay = 0.5
            while True:
                try:
                    await self.audit.ensure_indexes()
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
            for loop in [*background, self.lag.run, runtime.watch_readiness]:
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

        # /docs and /redoc with their scripts served by the service itself: a closed network
        # has no CDN. No online validator badge either (Swagger UI would call swagger.io).
        app = FastAPIOffline(
            title=title,
            description=description,
            version="1.0.0",
            lifespan=lifespan,
            swagger_ui_parameters={"validatorUrl": None},
        )
        app.state.runtime = runtime
        app.state.audit = self.audit
        install_error_handlers(app)
        app.add_middleware(MetricsMiddleware)
        app.add_middleware(ContentTypeMiddleware)  # 415 before a route reads a body
        app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
        install_security_headers(app, production=settings.production)  # on every response

        ops = APIRouter(tags=["işletim"])

        @ops.get("/healthz", summary="Süreç ayakta mı")
        async def healthz() -> dict[str, str]:
            return {"status": "ok", "service": runtime.name}

        @ops.get("/readyz", summary="Kafka ve MongoDB erişilebilir mi")
        async def readyz() -> JSONResponse:
            checks = await runtime.ready()
            ok = all(checks.values())
            return JSONResponse(
                {
                    "status": "ready" if ok else "not_ready",
                    "service": runtime.name,
                    "checks": checks,
                },
                status_code=200 if ok else 503,
            )

        registry = metrics_registry()

        @ops.get("/metrics", summary="Prometheus ölçümleri")
        async def metrics() -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

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
        app.include_router(build_audit_router())  # the auditor's view, on every service
        for router in routers:
            app.include_router(router)
        return app


def run(name: str) -> None:
    """`python -m services.<name>`: serve the service with the environment's settings."""
    settings = get_settings()
    refuse_development_secrets(settings, name)
    serve(name, settings)
