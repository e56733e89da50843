"""Bootstrap of the reporting service: settings, broker, database, routes, consumers and the
fold loop."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.mongo import Database
from services.common.pii import index_root
from services.common.service import Service, run
from services.common.settings import Settings, get_settings
from services.reporting import messaging
from services.reporting.aggregator import Aggregator
from services.reporting.api import build_router
from services.reporting.chronic_runner import ChronicDetector
from services.reporting.chronic_store import ChronicProblems, ChronicTexts
from services.reporting.dashboard import build_pages
from services.reporting.handlers import Reporting
from services.reporting.store import ReadModel

SERVICE = "reporting"


def make_reporting(db: Database, settings: Settings) -> Reporting:
    """Reporting's use cases on its own database (the service and the rebuild command)."""
    # The pseudonyms are keyed like blind indexes: they survive a rotation of the PII key.
    keys = index_root(settings)
    return Reporting(ReadModel(db), ChronicTexts(db), ChronicProblems(db), keys)


def build_app(settings: Settings, *, consumer_group: str | None = None) -> FastAPI:
    """`consumer_group` defaults to the service's group; tests pass one of their own."""
    service = Service(SERVICE, settings)
    reporting = make_reporting(service.db, settings)
    store = reporting.store
    aggregator = Aggregator(store, interval=settings.report_fold_interval_seconds)
    detector = ChronicDetector(
        reporting.texts,
        reporting.problems,
        interval_seconds=settings.chronic_interval_minutes * 60,
    )

    async def detect_chronic_problems() -> None:
        await detector.run(lambda: aggregator.holding)

    messaging.register(service.broker, settings, reporting, group_id=consumer_group)
    app = service.app(
        title="Açık Kapı — raporlama",
        description=(
            "Başvuru olaylarından kendi okuma modelini kurar ve günlük/aylık hücrelerde toplar; "
            "il, ilçe, kurum ve dönem için rapor, dışa aktarım ve grafikli panolar sunar. "
            "Kişisel veri tutmaz."
        ),
        routers=[build_router(reporting), build_pages(reporting, settings)],
        on_startup=[
            store.ensure_indexes,
            reporting.texts.ensure_indexes,
            reporting.problems.ensure_indexes,
        ],
        background=[aggregator.run, detect_chronic_problems],
        on_shutdown=[aggregator.stop],
    )
    app.state.reporting = reporting
    app.state.aggregator = aggregator
    app.state.chronic = detector
    return app


def create_app() -> FastAPI:
    """The app `python -m services.reporting` serves, with the environment's settings."""
    return build_app(get_settings())


def main() -> None:
    run(SERVICE)
