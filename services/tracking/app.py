"""Bootstrap of the tracking service: settings, broker, database, consumers, watcher and routes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from fastapi import FastAPI

from services.common import business_days
from services.common.business_days import Calendar
from services.common.calendar_live import LiveCalendar
from services.common.retention import RetentionRule, retention_job
from services.common.service import Service, run
from services.common.settings import Settings, get_settings
from services.tracking import api, calendar_store, inbox_api, inbox_page, page, rating_page
from services.tracking.calendar_admin import CalendarAdmin, build_calendar_router
from services.tracking.digest import MorningLists
from services.tracking.directory import TaxonomyDirectory
from services.tracking.handlers import Tracking
from services.tracking.messaging import SERVICE, register
from services.tracking.rating import key_of
from services.tracking.rating_handlers import Ratings
from services.tracking.rating_store import MongoRatings
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

    def calendar_now() -> Calendar:
        """The calendar with the leave days an admin declared, as this process knows it."""
        live = getattr(app.state, "calendar", None)
        return live.current if live is not None else business_days.PUBLIC

    cipher = service.pii
    store = ApplicationStore(service.db, service.publisher, cipher)
    # KVKK retention (services/common/retention.py): contact, identity and the citizen's words go.
    retention = retention_job(
        service,
        [
            RetentionRule(
                collection="tracking_applications",
                time_field="received_at",
                remove=("phone_enc", "phone_index", "email_enc", "identity_enc", "text"),
            )
        ],
    )
    directory = TaxonomyDirectory(settings)
    tracking = Tracking(
        store, service.publisher, cipher, settings, directory=directory, calendar=calendar_now
    )
    morning = MorningLists(service.db, service.publisher, directory, settings, calendar_now)
    rating_store = MongoRatings(service.db, service.publisher, cipher)
    ratings = Ratings(store, rating_store, key_of(settings.jwt_secret))
    register(service.broker, tracking, settings, group_id=consumer_group)
    # The leave days administrators declare (calendar_admin.py): acikkapi.calendar is read to
    # its end before the consumers start; this process's own versions are taken at once.
    calendar = LiveCalendar(settings, SERVICE)
    calendar_versions = calendar_store.CalendarStore(service.db)
    calendar_keeper = calendar_store.CalendarKeeper(calendar_versions, calendar, service.publisher)
    calendar_store.declare(service.broker)

    async def deadline_watcher() -> None:
        """Every few seconds: flag missed deadlines, give the warnings, and on business-day
        mornings send each institution its list."""
        while True:
            try:
                await tracking.check_deadlines(datetime.now(UTC))
                await morning.run(datetime.now(UTC))
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
        routers=[
            api.router,
            inbox_api.router,
            page.pages,
            inbox_page.pages,
            rating_page.pages,
            build_calendar_router(CalendarAdmin(calendar_versions, calendar_keeper)),
        ],
        on_startup=[
            store.ensure_indexes,
            morning.ensure_indexes,
            rating_store.ensure_indexes,
            calendar_keeper.load,
            calendar.start,
        ],
        background=[
            deadline_watcher,
            store.outbox.run_relay,
            directory.view.follow,
            rating_store.outbox.run_relay,
            calendar_keeper.run,
            retention.loop,
        ],
        on_shutdown=[calendar.stop],
        ready_checks={"calendar": calendar.is_caught_up},
    )
    app.mount(page.STATIC_URL, page.static_files, name="static")
    app.state.tracking = tracking
    app.state.retention = retention
    app.state.morning_lists = morning
    app.state.calendar = calendar
    app.state.ratings = ratings
    return app


def create_app() -> FastAPI:
    """The app `python -m services.tracking` serves, with the environment's settings."""
    return build_app(get_settings())


def main() -> None:
    run(SERVICE)
