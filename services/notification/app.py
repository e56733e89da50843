"""Bootstrap of notification: wires settings, Kafka, MongoDB, Kannel, SMTP and the HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.retention import RetentionRule, retention_job
from services.common.service import Service, run
from services.common.settings import Settings, get_settings
from services.notification import api, optout
from services.notification.gateways import KannelGateway, SmtpGateway
from services.notification.handlers import SERVICE, Notifier
from services.notification.messaging import register
from services.notification.rendering import Renderer
from services.notification.store import NotificationStore


def build_app(settings: Settings, *, consumer_group: str | None = None) -> FastAPI:
    """The notification app; `consumer_group` lets tests consume beside a running service."""
    service = Service(SERVICE, settings)
    broker = service.broker
    store = NotificationStore(service.db, service.pii)
    # KVKK retention (services/common/retention.py): the sealed recipient becomes a sealed empty
    # one (the record still reads), what was rendered goes; the masked recipient stays.
    retention = retention_job(
        service,
        [
            RetentionRule(
                collection="notification_messages",
                time_field="created_at",
                remove=("content_enc",),
                replace={"recipient_enc": service.pii.encrypt("")},
            )
        ],
    )
    sms = KannelGateway(settings)
    smtp = SmtpGateway(settings)
    notifier = Notifier(
        settings=settings,
        store=store,
        renderer=Renderer(),
        sms=sms,
        email=smtp,
        publisher=service.publisher,
    )
    register(broker, notifier, settings, group_id=consumer_group)

    async def close_http_client() -> None:
        # Shutdown hooks run before the shared lifespan stops the broker; closing the client
        # under a handler that is mid-request would make Kannel's answer unreadable and the
        # SMS "uncertain". So drain the consumers first (stopping twice is harmless).
        await broker.stop()
        await sms.aclose()
        await smtp.aclose()

    app = service.app(
        title="Açık Kapı — bildirim servisi",
        description=(
            "Vatandaşa SMS (Kannel) ve e-posta, kurumlara e-posta (SMTP) gönderir; her bildirim "
            "anahtarı en fazla bir kez gönderilir. Ağ geçidi geçici olarak ulaşılamazsa artan "
            "aralıklarla yeniden dener; acil olmayan SMS'leri sessiz saatlerde sabaha bekletir; "
            "bilgilendirme e-postalarından ayrılan adreslere bu e-postaları göndermez. Teslim "
            "raporlarını Kannel'den alır; şablonları sürümleriyle listeler ve önizler."
        ),
        routers=[api.router, optout.router],
        on_startup=[store.ensure_indexes, notifier.outbox.ensure_indexes],
        # In every process: what is due (retries, held SMS, queued messages a dead process left)
        # and the results a crash left in a record's outbox.
        background=[notifier.run_due, notifier.outbox.run_relay, retention.loop],
        on_shutdown=[close_http_client],
    )
    app.state.notifier = notifier
    app.state.retention = retention
    return app


def create_app() -> FastAPI:
    """The app `python -m services.notification` serves, with the environment's settings."""
    return build_app(get_settings())


def main() -> None:
    run(SERVICE)
