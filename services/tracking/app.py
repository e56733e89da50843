"""Bootstrap of the tracking service: settings, broker, database, consumers, watcher and routes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from fastapi import FastAPI

from services.common.pii import PiiCipher
from services.common.service import Service, run
from services.common.settings import Settings, get_settings
from services.tracking import api, inbox_api, inbox_page, page
from services.tracking.directory import TaxonomyDirectory
from services.tracking.handlers import Tracking
from services.tracking.messaging import SERVICE, register
from services.tracking.store import ApplicationStore

log = logging.getLogger("acikkapi.tracking")

WATCH_INTERVAL_SECONDS = 30.0


def build_app(
    settings: Settings,
    *,
    consumer_group: str | None = None,
    watch_interval: float = WATCH_INTERVAL_SECONDS,
) -> FastAPI:
    service = Service(SERVICE, settings)
    cipher = PiiCipher(settings.pii_key_bytes())
    store = ApplicationStore(service.db, service.publisher, cipher)
    directory = TaxonomyDirectory(settings)
    tracking = Tracking(store, service.publisher, cipher, settings, directory=directory)
    register(service.broker, tracking, settings, group_id=consumer_group)

    async def deadline_watcher() -> None:
        """Every few seconds: flag missed deadlines and warn one business day before."""
        while True:
            try:
                await tracking.check_deadlines(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("deadline check failed; trying again on the next round")
            await asyncio.sleep(watch_interval)

    app = service.app(
        title="Açık Kapı — başvuru takibi",
        description=(
            "Başvuruların durumu, cevap süresi ve cevabı; vatandaşın takip sayfası; kurumların "
            "gelen kutusu (açma, havale, vatandaştan bilgi isteme, cevap, iade, aktarma, bölme) "
            "ve Açık Kapı denetçisinin cevap onayı."
        ),
        routers=[api.router, inbox_api.router, page.pages, inbox_page.pages],
        on_startup=[store.ensure_indexes],
        background=[deadline_watcher, store.outbox.run_relay, directory.view.follow],
    )
    app.mount(page.STATIC_URL, page.static_files, name="static")
    app.state.tracking = tracking
    return app


def create_app() -> FastAPI:
    """The app `python -m services.tracking` serves, with the environment's settings."""
    return build_app(get_settings())


def main() -> None:
    run(SERVICE)
