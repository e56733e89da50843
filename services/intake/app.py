"""Bootstrap of the intake service: settings, broker, database, app; `python -m services.intake`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.common.backpressure import Admission
from services.common.middleware import allow_larger_body
from services.common.retention import retention_job
from services.common.service import Service, run
from services.common.settings import Settings, get_settings
from services.intake import api, attachments_api, kvkk, open311, pages, receipt
from services.intake import messaging as intake_messaging
from services.intake.attachments import AttachmentStore
from services.intake.channels import ChannelGate
from services.intake.domain import ApplicationForm, SequenceAllocator
from services.intake.handlers import Intake, bundled_districts
from services.intake.identity import identity_verifier
from services.intake.limits import AddressRate, DailyCounters, DailyLimits, trusted_proxies
from services.intake.progress import ProgressStore
from services.intake.store import RETENTION, ApplicationStore, AssertionStore, SequenceCounters
from services.intake.verification import KannelSender, PhoneVerifications

SERVICE = "intake"
# Numbers reserved per database round trip. A stopped process leaves at most this many
# unused numbers behind in each (province, year) it served: small gaps, never duplicates.
NUMBER_BLOCK_SIZE = 50
# Submissions handled at once over HTTP; more are answered 503 at once rather than queued
# (each holds a connection and memory while it waits for its write).
MAX_IN_FLIGHT = 512


def build_app(settings: Settings, *, consumer_group: str | None = None) -> FastAPI:
    """The intake app; `consumer_group` only for tests that must not share the service's group."""
    service = Service(SERVICE, settings)
    db = service.db
    cipher = service.pii
    store = ApplicationStore(db, cipher, service.publisher)
    retention = retention_job(service, [RETENTION])

    async def seal_clear_names() -> None:  # documents written before names were encrypted
        await store.seal_clear_applicants_once()

    served = intake_messaging.ServedProvinces(settings)
    assertions = AssertionStore(db)
    counters = DailyCounters(db)
    attachments = AttachmentStore(db, settings)
    intake = Intake(
        store=store,
        allocator=SequenceAllocator(SequenceCounters(db), block_size=NUMBER_BLOCK_SIZE),
        publish=service.publisher.send,
        cipher=cipher,
        districts=bundled_districts(),
        served=served,
        gate=ChannelGate(settings, assertions, cipher),
        identities=identity_verifier(settings),
        limits=DailyLimits(counters, settings),
        attachments=attachments,
        tracking_url=settings.public_tracking_url,
    )
    sms = KannelSender(settings)
    verifications = PhoneVerifications(db, cipher, settings, sms)
    progress = ProgressStore(db)
    open311_requests = open311.RequestQuery(db)
    intake_messaging.wire(
        service.broker, intake, settings, group_id=consumer_group, progress=progress
    )
    admission = Admission(SERVICE, service.runtime.ready, max_in_flight=MAX_IN_FLIGHT)
    app = service.app(
        title="Açık Kapı — Başvuru Kabul",
        description=(
            "Vatandaş başvurularını her kanaldan alır, kurallara göre denetler, numaralandırır "
            "ve Kafka'ya duyurur."
        ),
        routers=[
            api.router,
            attachments_api.router,
            receipt.router,
            pages.router,
            open311.router,
            kvkk.router,
        ],
        on_startup=[
            store.ensure_indexes,
            open311_requests.ensure_indexes,
            assertions.ensure_indexes,
            counters.ensure_indexes,
            verifications.ensure_indexes,
            attachments.ensure_indexes,
        ],
        background=[
            store.outbox.run_relay,
            admission.watch,
            served.view.follow,
            attachments.run_sweeper,
            seal_clear_names,
            retention.loop,
        ],
        ready_checks={"taxonomy": served.is_known},
        on_shutdown=[intake.shutdown, sms.aclose],
    )
    app.add_middleware(
        api.AddressRateMiddleware,
        rate=AddressRate(settings.client_posts_per_minute, settings.client_burst),
        trusted=trusted_proxies(settings),
        accountable=api.staff_token_check(settings),
    )
    # The pages' style sheet and scripts, served by intake itself (no CDN on a closed network).
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.state.intake = intake
    app.state.verifications = verifications
    app.state.served = served
    app.state.store = store
    app.state.progress = progress
    app.state.open311_requests = open311_requests
    app.state.attachments = attachments
    app.state.assertions = assertions
    app.state.retention = retention
    allow_larger_body(app, attachments_api.UPLOAD_PATH, attachments_api.upload_allowance(settings))
    app.state.admission = admission
    _document_request_body(app)
    return app


def _document_request_body(app: FastAPI) -> None:
    """Put the application form's schema into the OpenAPI document (see api._SUBMIT_OPENAPI)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            schema = ApplicationForm.model_json_schema(ref_template="#/components/schemas/{model}")
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            components.update(schema.pop("$defs", {}))
            components["ApplicationForm"] = schema
        return app.openapi_schema or spec

    app.openapi = openapi  # type: ignore[method-assign]


def create_app() -> FastAPI:
    """The app `python -m services.intake` serves, with the environment's settings."""
    return build_app(get_settings())


def main() -> None:
    run(SERVICE)
