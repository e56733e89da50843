"""Bootstrap of the reporting service: settings, broker, database, routes and consumers."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.service import Service, run
from services.common.settings import Settings, get_settings
from services.reporting import messaging
from services.reporting.api import build_router
from services.reporting.handlers import Reporting
from services.reporting.store import ReadModel

SERVICE = "reporting"


def build_app(settings: Settings, *, consumer_group: str | None = None) -> FastAPI:
    """`consumer_group` defaults to the service's group; tests pass one of their own."""
    service = Service(SERVICE, settings)
    store = ReadModel(service.db)
    reporting = Reporting(store)
    messaging.register(service.broker, settings, reporting, group_id=consumer_group)
    app = service.app(
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
    run(SERVICE)
