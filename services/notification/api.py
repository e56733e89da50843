"""Notification's HTTP routes: Kannel's delivery-report callback, the state of one message (and
an operator's resend), and the templates with their versions and a preview."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from services.common.audit import CHANGE, READ_PERSONAL, audit_of
from services.common.auth import Principal, Role, forbidden, require_roles
from services.common.errors import field_error
from services.common.events import NotificationChannel
from services.notification import domain
from services.notification.domain import Attempt, Message, MessageSummary, ReportEntry
from services.notification.handlers import Notifier
from services.notification.registry import Purpose, TemplateEntry
from services.notification.rendering import Rendered, RenderedSms, TemplateProblem

router = APIRouter()

_operators = require_roles(Role.supervisor)  # and administrators
_admins = require_roles()  # no role named: administrators only

# What the state of a message shows of its recipient, as the audit log names it.
RECIPIENT_FIELD = "recipient_masked"

# The address a preview of an informational e-mail shows an unsubscribe link for.
PREVIEW_ADDRESS = "vatandas@example.org"


def get_notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


class NotificationView(MessageSummary):
    """A message as the state endpoint answers it: the recipient masked, reports and attempts
    in order."""

    recipient: str
    delivery_reports: list[ReportEntry] = Field(default_factory=list)
    history: list[Attempt] = Field(default_factory=list)


class DeliveryReportAck(BaseModel):
    result: str


class TemplateView(BaseModel):
    name: str
    channel: NotificationChannel
    version: int
    changed: date
    purpose: Purpose
    description: str
    urgent: bool
    opt_out_allowed: bool
    sample: dict[str, Any]


class SmsShapeView(BaseModel):
    encoding: str
    units: int
    segments: int


class TemplatePreview(BaseModel):
    template: TemplateView
    params: dict[str, Any]
    subject: str | None = None
    text: str
    html: str | None = None
    sms: SmsShapeView | None = None


class PreviewRequest(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict)


@router.get(
    "/api/v1/notifications/{idempotency_key:path}",
    response_model=NotificationView,
    tags=["bildirim"],
    summary="Bir bildirimin durumu ve denemeleri (alıcı maskeli)",
)
async def notification_state(
    idempotency_key: str,
    request: Request,
    notifier: Annotated[Notifier, Depends(get_notifier)],
    principal: Annotated[Principal, Depends(_operators)],
) -> NotificationView:
    message = await notifier.store.get(idempotency_key)
    if message is None:
        raise HTTPException(404, "Bu anahtarla bir bildirim bulunamadı.")
    # The recipient, even masked, is a person's phone or address: audited before it is shown.
    await audit_of(request).record(
        actor=principal,
        action=READ_PERSONAL,
        application_id=message.application_id,
        application_number=message.application_number,
        fields=[RECIPIENT_FIELD],
        request=request,
        detail={"operation": "notification_state", "idempotency_key": idempotency_key},
    )
    return _view(message)


@router.post(
    "/api/v1/notifications/{idempotency_key:path}/resend",
    response_model=NotificationView,
    tags=["bildirim"],
    summary="Başarısız veya belirsiz bir bildirimi yeniden gönder (yönetici)",
    description=(
        "Yeniden denemeleri tükenmiş (ölü mektup kuyruğuna düşmüş) veya sonucu belirsiz bir "
        "bildirimi yeniden gönderim sırasına koyar. Belirsiz bir SMS'i, vatandaşa ulaşmadığı "
        "doğrulandıktan sonra yeniden gönderin: aksi hâlde vatandaş iki SMS alabilir."
    ),
)
async def resend_notification(
    idempotency_key: str,
    request: Request,
    notifier: Annotated[Notifier, Depends(get_notifier)],
    principal: Annotated[Principal, Depends(_admins)],
) -> NotificationView:
    message = await notifier.resend(idempotency_key)
    if message is None:
        existing = await notifier.store.get(idempotency_key)
        if existing is None:
            raise HTTPException(404, "Bu anahtarla bir bildirim bulunamadı.")
        raise HTTPException(
            409,
            [
                field_error(
                    "idempotency_key",
                    "not_resendable",
                    f"Bu bildirim yeniden gönderilemez (durumu: {existing.state.value}); yalnız "
                    "başarısız veya belirsiz, içeriği saklı bildirimler yeniden gönderilir.",
                )
            ],
        )
    await audit_of(request).record(
        actor=principal,
        action=CHANGE,
        application_id=message.application_id,
        application_number=message.application_number,
        fields=[RECIPIENT_FIELD],
        request=request,
        detail={"operation": "resend", "idempotency_key": idempotency_key},
    )
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


@router.get(
    "/api/v1/templates",
    response_model=list[TemplateView],
    tags=["şablon"],
    summary="Bildirim şablonları, sürümleri ve amaçları",
)
async def list_templates(
    notifier: Annotated[Notifier, Depends(get_notifier)],
    _: Annotated[Principal, Depends(_operators)],
) -> list[TemplateView]:
    return [_template_view(entry) for entry in notifier.renderer.registry.all()]


@router.get(
    "/api/v1/templates/{name}/{channel}/preview",
    response_model=TemplatePreview,
    tags=["şablon"],
    summary="Bir şablonu örnek parametrelerle önizle",
)
async def preview_sample(
    name: str,
    channel: NotificationChannel,
    notifier: Annotated[Notifier, Depends(get_notifier)],
    _: Annotated[Principal, Depends(_operators)],
) -> TemplatePreview:
    entry = _entry(notifier, name, channel)
    return _preview(notifier, entry, entry.sample)


@router.post(
    "/api/v1/templates/{name}/{channel}/preview",
    response_model=TemplatePreview,
    tags=["şablon"],
    summary="Bir şablonu verilen parametrelerle önizle",
    description=(
        "Şablonu `params` ile işler; eksik veya hatalı parametre 422 döner. SMS için kodlama "
        "(gsm7 / Türkçe tablo / ucs2) ve parça sayısı da verilir. Hiçbir şey gönderilmez."
    ),
)
async def preview_given(
    name: str,
    channel: NotificationChannel,
    body: Annotated[PreviewRequest, Body()],
    notifier: Annotated[Notifier, Depends(get_notifier)],
    _: Annotated[Principal, Depends(_operators)],
) -> TemplatePreview:
    return _preview(notifier, _entry(notifier, name, channel), body.params)


def _entry(notifier: Notifier, name: str, channel: NotificationChannel) -> TemplateEntry:
    entry = notifier.renderer.entry(name, channel)
    if entry is None:
        raise HTTPException(
            404,
            [
                field_error(
                    "name",
                    "unknown_template",
                    f"'{name}' adlı bir {channel.value} şablonu yok.",
                )
            ],
        )
    return entry


def _preview(notifier: Notifier, entry: TemplateEntry, params: dict[str, Any]) -> TemplatePreview:
    unsubscribe = notifier.unsubscribe_url(PREVIEW_ADDRESS) if entry.opt_out_allowed else None
    try:
        rendered: Rendered = notifier.renderer.render(
            entry.name, entry.channel, params, unsubscribe_url=unsubscribe
        )
    except TemplateProblem as exc:
        raise HTTPException(422, [field_error("params", "template_problem", str(exc))]) from exc
    view = _template_view(entry)
    if isinstance(rendered, RenderedSms):
        shape = domain.sms_shape(rendered.text)
        return TemplatePreview(
            template=view,
            params=params,
            text=rendered.text,
            sms=SmsShapeView(
                encoding=shape.encoding.value, units=shape.units, segments=shape.segments
            ),
        )
    return TemplatePreview(
        template=view,
        params=params,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )


def _template_view(entry: TemplateEntry) -> TemplateView:
    return TemplateView(
        **entry.model_dump(
            include={"name", "channel", "version", "changed", "purpose", "description", "urgent"}
        ),
        opt_out_allowed=entry.opt_out_allowed,
        sample=entry.sample,
    )


def _view(message: Message) -> NotificationView:
    return NotificationView(
        **message.model_dump(include=set(MessageSummary.model_fields)),
        recipient=message.recipient_masked,
        delivery_reports=sorted(message.delivery_reports.values(), key=lambda r: r.at),
        history=message.attempts_in_order(),
    )
