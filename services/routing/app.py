"""Bootstrap of routing: settings, broker, database, app; `python -m services.routing`."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.business_days import rules_from
from services.common.calendar_live import LiveCalendar
from services.common.retention import RetentionRule, retention_job
from services.common.service import Service, run
from services.common.settings import Settings, get_settings
from services.routing import lifecycle, messaging
from services.routing.admin import TaxonomyAdmin, build_admin_router
from services.routing.api import build_router
from services.routing.domain import Taxonomy, TaxonomyRegistry
from services.routing.handlers import Routing
from services.routing.learned import LearnedRouting
from services.routing.store import RoutingStore
from services.routing.taxonomy import default_registry
from services.routing.taxonomy_store import LiveTaxonomies, TaxonomyStore

SERVICE = "routing"


def build_app(
    settings: Settings,
    *,
    consumer_group: str | None = None,
    registry: TaxonomyRegistry | None = None,
) -> FastAPI:
    """`consumer_group` defaults to the service's group; tests pass one of their own."""
    # Loaded (and checked) before anything connects: bad taxonomy data stops the start. The
    # files only seed provinces the store has never held; the store's newest versions replace
    # them in this process's own registry at start and whenever an administrator edits one.
    seeds = registry or default_registry(settings.taxonomy_dir)
    registry = TaxonomyRegistry(registry_taxonomies(seeds))
    service = Service(SERVICE, settings)
    cipher = service.pii
    store = RoutingStore(service.db, service.publisher, cipher)
    # KVKK retention (services/common/retention.py): the sealed applicant becomes a sealed empty
    # contact (so the document still reads), and the citizen's words go.
    retention = retention_job(
        service,
        [
            RetentionRule(
                collection="routing_applications",
                time_field="received_at",
                replace={
                    "applicant": cipher.encrypt(
                        '{"tckn_masked": "", "first_name": "", "last_name": "", "phone": ""}'
                    ),
                    "text": "(Kişisel veri saklama süresi dolduğu için silindi.)",
                },
            )
        ],
    )
    # Suggestions learned from the labelled set and officers' decisions; trained at start.
    learned = LearnedRouting(registry, threshold=settings.auto_route_threshold, decisions=store)
    routing = Routing(store, store.outbox.deliver, registry, learned=learned, decisions=store)
    messaging.register(service.broker, routing, settings, group_id=consumer_group)

    async def institution_topics(codes: list[str]) -> None:
        await messaging.ensure_institution_topics(settings, codes)

    versions = TaxonomyStore(service.db)
    taxonomies = LiveTaxonomies(
        versions,
        registry,
        service.publisher,
        settings,
        seeds=registry_taxonomies(seeds),
        new_institutions=institution_topics,
    )

    # The leave days tracking announces: the deadline on an institution's queue counts them.
    calendar = LiveCalendar(settings, SERVICE)
    levels = rules_from(settings)
    lifecycle.deadline_rules = lambda: levels.with_calendar(calendar.current)

    async def ensure_institution_topics() -> None:
        codes = [i.code for t in registry_taxonomies(registry) for i in t.institutions]
        await institution_topics(codes)

    app = service.app(
        title="Açık Kapı — Yönlendirme",
        description=(
            "Başvurunun kategorisine ve başvuru sahibinin ilçesine göre sorumlu kurumu belirler, "
            "başvuruyu kurumun kendi Kafka konusuna yazar; kategorisiz başvuruları görevli "
            "yönlendirmesi için kuyrukta tutar."
        ),
        routers=[
            build_router(routing, registry, settings),
            build_admin_router(TaxonomyAdmin(versions, taxonomies)),
        ],
        on_startup=[
            store.ensure_indexes,
            versions.ensure_indexes,
            taxonomies.load,
            learned.start,  # after the taxonomies: it trains on the current ones
            ensure_institution_topics,
            calendar.start,  # read to its end before the consumers start
        ],
        background=[store.outbox.run_relay, taxonomies.run, learned.run, retention.loop],
        on_shutdown=[calendar.stop],
        ready_checks={"calendar": calendar.is_caught_up},
    )
    app.state.routing = routing
    app.state.store = store
    app.state.retention = retention
    app.state.learned = learned
    app.state.taxonomies = taxonomies
    app.state.calendar = calendar
    return app


def registry_taxonomies(registry: TaxonomyRegistry) -> list[Taxonomy]:
    return [registry.for_province(p) for p in registry.provinces()]


def create_app() -> FastAPI:
    """The app `python -m services.routing` serves, with the environment's settings."""
    return build_app(get_settings())


def main() -> None:
    run(SERVICE)
