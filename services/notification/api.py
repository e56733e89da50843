"""Notification's HTTP routes: Kannel's delivery-report callback and the state of one message."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from services.common.auth import Principal, Role, forbidden, require_roles
from services.common.errors import field_error
from services.notification import domain
from services.notification.domain import Message, MessageSummary, ReportEntry
from services.notification.handlers import Notifier

router = APIRouter()


def get_notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


class NotificationView(MessageSummary):
    """A message as the state endpoint answers it: the recipient masked, reports in order."""

    recipient: str
    delivery_reports: list[ReportEntry] = Field(default_factory=list)


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
    message = await notifier.store.get(idempotency_key)
    if message is None:
        raise HTTPException(404, "Bu anahtarla bir bildirim bulunamadı.")
    return _view(message)


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


def _view(message: Message) -> NotificationView:
    return NotificationView(
        **message.model_dump(include=set(MessageSummary.model_fields)),
        recipient=message.recipient_masked,
        delivery_reports=sorted(message.delivery_reports.values(), key=lambda r: r.at),
    )
