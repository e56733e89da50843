"""Notification's HTTP routes: Kannel's delivery-report callback and the state of one message."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from services.common.auth import Principal, Role, forbidden, require_roles
from services.common.errors import field_error
from services.notification import domain
from services.notification.handlers import Notifier

router = APIRouter()


def get_notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


class DeliveryReportView(BaseModel):
    status: int
    name: str
    answer: str | None = None
    at: datetime | None = None


class NotificationView(BaseModel):
    idempotency_key: str
    channel: str
    template: str
    state: str
    recipient: str
    application_id: str | None = None
    application_number: str | None = None
    encoding: str | None = None
    segments: int | None = None
    attempts: int | None = None
    gateway_answer: str | None = None
    error: str | None = None
    uncertain_reason: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    settled_at: datetime | None = None
    delivery_reports: list[DeliveryReportView] = []


class DeliveryReportAck(BaseModel):
    result: str


@router.get(
    "/api/v1/notifications/{idempotency_key:path}",
    response_model=NotificationView,
    tags=["bildirim"],
    summary="Bir bildirimin durumu (alıcı maskeli)",
)
async def notification_state(
    idempotency_key: str,
    notifier: Annotated[Notifier, Depends(get_notifier)],
    _: Annotated[Principal, Depends(require_roles(Role.supervisor))],
) -> NotificationView:
    doc = await notifier.store.get(idempotency_key)
    if doc is None:
        raise HTTPException(404, "Bu anahtarla bir bildirim bulunamadı.")
    return _view(doc)


@router.get(
    "/api/v1/sms/dlr",
    response_model=DeliveryReportAck,
    tags=["bildirim"],
    summary="Kannel teslim raporu (dlr-url geri çağrısı)",
    description=(
        "Kannel'in dlr-url ile çağırdığı adres. `sig`, gönderimde dlr-url'e konan ve yalnız o "
        "bildirim anahtarı için geçerli imzadır (HMAC); imzasız veya yanlış imzalı rapor 403 alır. "
        "status: 1 teslim edildi, 2 teslim edilemedi, 4 tamponda, 8 SMSC'ye iletildi, "
        "16 SMSC reddetti."
    ),
)
async def sms_delivery_report(
    notifier: Annotated[Notifier, Depends(get_notifier)],
    key: Annotated[str, Query(min_length=1, max_length=400)],
    status: Annotated[int, Query(ge=0, le=255)],
    answer: Annotated[str, Query(max_length=1000)] = "",
    sig: Annotated[str, Query(max_length=128)] = "",
) -> DeliveryReportAck:
    try:
        idempotency_key = domain.parse_dlr_key(key)
    except ValueError as exc:
        raise HTTPException(
            422, [field_error("key", "invalid", "Bildirim anahtarı çözülemedi.")]
        ) from exc
    if not sig or not domain.dlr_signature_ok(notifier.dlr_secret, idempotency_key, sig):
        raise forbidden("Teslim raporunun imzası geçersiz.")
    outcome = await notifier.handle_delivery_report(idempotency_key, status, answer)
    if outcome == "unknown":
        raise HTTPException(404, "Bu anahtarla bir bildirim bulunamadı.")
    return DeliveryReportAck(result=outcome)


def _view(doc: dict[str, Any]) -> NotificationView:
    return NotificationView(
        idempotency_key=doc["_id"],
        channel=doc["channel"],
        template=doc["template"],
        state=doc["state"],
        recipient=doc.get("recipient_masked", "***"),
        application_id=doc.get("application_id"),
        application_number=doc.get("application_number"),
        encoding=doc.get("encoding"),
        segments=doc.get("segments"),
        attempts=doc.get("attempts"),
        gateway_answer=doc.get("gateway_answer"),
        error=doc.get("error"),
        uncertain_reason=doc.get("uncertain_reason"),
        created_at=doc["created_at"],
        sent_at=doc.get("sent_at"),
        settled_at=doc.get("settled_at"),
        delivery_reports=[
            DeliveryReportView(**report)
            for report in sorted(
                (doc.get("delivery_reports") or {}).values(), key=lambda r: str(r.get("at", ""))
            )
        ],
    )
