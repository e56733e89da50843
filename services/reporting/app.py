"""Bootstrap of the reporting service: settings, broker, database, routes and consumers."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.http import Runtime, create_service_app, serve
from services.common.messaging import make_broker
from services.common.mongo import make_client, service_database
from services.common.settings import Settings, get_settings
from services.reporting import messaging
from services.reporting.api import build_router
from services.reporting.handlers import Reporting
from services.reporting.store import ReadModel

SERVICE = "reporting"


def build_app(settings: Settings, *, consumer_group: str | None = None) -> FastAPI:
    """`consumer_group` defaults to the service's group; tests pass one of their own."""
    runtime = Runtime(SERVICE, settings, make_broker(settings, SERVICE), make_client(settings))
    store = ReadModel(service_database(runtime.mongo, settings, SERVICE))
    reporting = Reporting(store)
    messaging.register(runtime.broker, settings, reporting, group_id=consumer_group)
    app = create_service_app(
        runtime,
        title="Açık Kapı — raporlama",
        description=(
            "Başvuru olaylarından kendi okuma modelini kurar; il ve dönem için özet ile "
            "grafikli rapor sayfası sunar. Kişisel veri tutmaz."
        ),
        routers=[build_router(reporting, settings)],
        on_startup=[store.ensure_indexes],
    )
    return app


def create_app() -> FastAPI:
    """The app `python -m services.reporting` serves, with the environment's settings."""
    return build_app(get_settings())


def main() -> None:
    serve(SERVICE, get_settings())
