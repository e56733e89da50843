"""Bootstrap of routing: settings, broker, database, app; `python -m services.routing`."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.pii import PiiCipher
from services.common.service import Service, run
from services.common.settings import Settings, get_settings
from services.routing import messaging
from services.routing.api import build_router
from services.routing.domain import TaxonomyRegistry
from services.routing.handlers import Routing
from services.routing.store import RoutingStore
from services.routing.taxonomy import default_registry

SERVICE = "routing"


def build_app(
    settings: Settings,
    *,
    consumer_group: str | None = None,
    registry: TaxonomyRegistry | None = None,
) -> FastAPI:
    """`consumer_group` defaults to the service's group; tests pass one of their own."""
    # Loaded (and checked) before anything connects: bad taxonomy data stops the start.
    registry = registry or default_registry(settings.taxonomy_dir)
    service = Service(SERVICE, settings)
    cipher = PiiCipher(settings.pii_key_bytes())
    store = RoutingStore(service.db, service.publisher, cipher)
    routing = Routing(store, store.outbox.deliver, registry)
    messaging.register(service.broker, routing, settings, group_id=consumer_group)
    codes = [i.code for p in registry.provinces() for i in registry.for_province(p).institutions]

    async def ensure_institution_topics() -> None:
        await messaging.ensure_institution_topics(settings, codes)

    async def announce_taxonomies() -> None:
        await messaging.announce_taxonomies(service.publisher, registry)

    app = service.app(
        title="Açık Kapı — Yönlendirme",
        description=(
            "Başvurunun kategorisine ve başvuru sahibinin ilçesine göre sorumlu kurumu belirler, "
            "başvuruyu kurumun kendi Kafka konusuna yazar; kategorisiz başvuruları görevli "
            "yönlendirmesi için kuyrukta tutar."
        ),
        routers=[build_router(routing, registry, settings)],
        on_startup=[store.ensure_indexes, ensure_institution_topics],
        background=[store.outbox.run_relay, announce_taxonomies],
    )
    app.state.routing = routing
    app.state.store = store
    return app


def create_app() -> FastAPI:
    """The app `python -m services.routing` serves, with the environment's settings."""
    return build_app(get_settings())


def main() -> None:
    run(SERVICE)
