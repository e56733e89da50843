"""Tracking's HTTP API: the citizen's look-up (JSON) and the institutions' queue, answer and
return. The citizen's `/takip` page is in page.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, StringConstraints

from services.common.application_number import InvalidApplicationNumber, normalize, parse_number
from services.common.auth import Principal, Role, current_principal, ensure_institution_access
from services.common.auth import forbidden as forbidden_error
from services.common.errors import field_error
from services.common.events import ApplicationType, Outcome, Priority, Status
from services.tracking import domain
from services.tracking.handlers import NotFound, TooManyAttempts, Tracking
from services.tracking.store import InstitutionPage, InvalidCursor, encode_cursor

router = APIRouter()

NOT_FOUND_MESSAGE = (
    "Başvuru bulunamadı. Başvuru numarasını ve telefon numaranızın son 4 hanesini kontrol edin."
)
TOO_MANY_MESSAGE = (
    "Bu başvuru numarası için çok fazla hatalı deneme yapıldı. "
    "Lütfen 15 dakika sonra yeniden deneyin."
)
PHONE_MESSAGE = "Telefon numaranızın son 4 hanesini rakamla girin (ör. 4567)."
_LAST4 = re.compile(r"[0-9]{4}")


def get_tracking(request: Request) -> Tracking:
    tracking: Tracking = request.app.state.tracking
    return tracking


TrackingDep = Annotated[Tracking, Depends(get_tracking)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]


def now() -> datetime:
    return datetime.now(UTC)


# --- citizens --------------------------------------------------------------------------------


class TimelineItem(BaseModel):
    status: Status
    at: datetime


class TrackResult(BaseModel):
    """What anyone with the number and the phone digits may see: no personal data."""

    application_number: str
    status: Status
    received_at: datetime | None = None
    deadline_at: datetime | None = None
    overdue: bool = False
    outcome: Outcome | None = None
    answer: str | None = None
    timeline: list[TimelineItem]


def check_track_query(number: str, phone_last4: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The normalized number and the Turkish errors for a bad number or bad phone digits."""
    errors = []
    try:
        parse_number(number)
    except InvalidApplicationNumber as exc:
        code = "check_digit" if exc.shape_ok else "invalid_format"
        errors.append(field_error("application_number", code, str(exc)))
    if phone_last4 is None or not _LAST4.fullmatch(phone_last4.strip()):
        errors.append(field_error("phone_last4", "invalid_format", PHONE_MESSAGE))
    return normalize(number), errors


def track_result(app: domain.Application) -> TrackResult:
    answered = app.status in (Status.answered, Status.closed)
    return TrackResult(
        application_number=app.application_number,
        status=app.status,
        received_at=app.received_at,
        deadline_at=app.deadline_at,
        overdue=app.overdue,
        outcome=app.outcome if answered else None,
        answer=app.answer if answered else None,
        timeline=[TimelineItem(status=e.status, at=e.at) for e in app.timeline],
    )


@router.get(
    "/api/v1/track/{application_number}",
    response_model=TrackResult,
    response_model_exclude_none=True,
    tags=["vatandaş"],
    summary="Başvurunun durumu (başvuru numarası + telefonun son 4 hanesi)",
    responses={404: {"description": "Bulunamadı"}, 422: {}, 429: {}},
)
async def track(
    application_number: str, tracking: TrackingDep, phone_last4: str | None = None
) -> TrackResult:
    number_key, errors = check_track_query(application_number, phone_last4)
    if errors:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=errors)
    assert phone_last4 is not None
    try:
        app = await tracking.track(number_key, phone_last4.strip(), now())
    except TooManyAttempts:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=[field_error("application_number", "too_many_attempts", TOO_MANY_MESSAGE)],
            headers={"Retry-After": "900"},
        ) from None
    except NotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=[field_error(None, "not_found", NOT_FOUND_MESSAGE)]
        ) from None
    return track_result(app)


# --- institutions ----------------------------------------------------------------------------


class InstitutionApplication(BaseModel):
    application_id: str
    application_number: str
    application_type: ApplicationType | None
    category_code: str | None
    subject: str | None
    district: str | None
    priority: Priority | None  # an escorted applicant: listed first
    status: Status
    received_at: datetime | None
    deadline_at: datetime | None
    overdue: bool


class InstitutionApplicationList(BaseModel):
    items: list[InstitutionApplication]
    next_cursor: str | None


class InstitutionApplicationDetail(InstitutionApplication):
    channel: str | None
    institution_code: str | None
    outcome: Outcome | None
    answer: str | None
    answered_at: datetime | None
    timeline: list[TimelineItem]


def _item(app: domain.Application) -> InstitutionApplication:
    # The record's fields by the answer's own names (the answer says which it shows).
    return InstitutionApplication.model_validate(app, from_attributes=True)


def _not_found() -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        detail=[
            field_error("application_id", "not_found", "Bu kuruma atanmış böyle bir başvuru yok.")
        ],
    )


def _institution_only(principal: Principal, code: str) -> None:
    """Answering and returning are the institution's own acts (an admin may stand in)."""
    if principal.role not in (Role.institution, Role.admin):
        raise forbidden_error("Bu işlemi yalnızca ilgili kurum yapabilir.")
    ensure_institution_access(principal, code)


@router.get(
    "/api/v1/institutions/{code}/applications",
    response_model=InstitutionApplicationList,
    tags=["kurum"],
    summary="Kuruma atanmış başvurular (öncelikli başvuru sahipleri, sonra en yakın süre önce)",
)
async def institution_applications(
    code: str,
    principal: PrincipalDep,
    tracking: TrackingDep,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> InstitutionApplicationList:
    ensure_institution_access(principal, code)
    try:
        apps = await tracking.institution_applications(
            InstitutionPage(code, status_filter, overdue, limit, cursor),
            opened_by_institution=principal.role is Role.institution,
            now=now(),
        )
    except InvalidCursor:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[field_error("cursor", "invalid_cursor", "Sayfa imleci geçersiz.")],
        ) from None
    next_cursor = encode_cursor(apps[-1]) if len(apps) == limit else None
    return InstitutionApplicationList(items=[_item(a) for a in apps], next_cursor=next_cursor)


@router.get(
    "/api/v1/institutions/{code}/applications/{application_id}",
    response_model=InstitutionApplicationDetail,
    tags=["kurum"],
    summary="Kuruma atanmış bir başvuru",
)
async def institution_application(
    code: str, application_id: str, principal: PrincipalDep, tracking: TrackingDep
) -> InstitutionApplicationDetail:
    ensure_institution_access(principal, code)
    try:
        app = await tracking.institution_application(
            code,
            application_id,
            opened_by_institution=principal.role is Role.institution,
            now=now(),
        )
    except NotFound:
        raise _not_found() from None
    return InstitutionApplicationDetail(
        **_item(app).model_dump(),
        channel=app.channel.value if app.channel else None,
        institution_code=app.institution_code,
        outcome=app.outcome,
        answer=app.answer,
        answered_at=app.answered_at,
        timeline=[TimelineItem(status=e.status, at=e.at) for e in app.timeline],
    )


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=5000)]


class ResponseAccepted(BaseModel):
    application_id: str
    status: str = "answer_received"


@router.post(
    "/api/v1/institutions/{code}/applications/{application_id}/response",
    response_model=ResponseAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["kurum"],
    summary="Kurumun cevabı",
)
async def respond(
    code: str,
    application_id: str,
    body: ResponseIn,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> ResponseAccepted:
    _institution_only(principal, code)
    try:
        await tracking.submit_response(
            code,
            application_id,
            outcome=body.outcome,
            text=body.text,
            responded_by=principal.subject,
        )
    except NotFound:
        raise _not_found() from None
    except domain.AlreadyAnswered:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=[field_error(None, "already_answered", "Bu başvuru zaten cevaplanmış.")],
        ) from None
    return ResponseAccepted(application_id=application_id)


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=1000)]


class ReturnAccepted(BaseModel):
    application_id: str
    status: Status


@router.post(
    "/api/v1/institutions/{code}/applications/{application_id}/return",
    response_model=ReturnAccepted,
    tags=["kurum"],
    summary="Görev alanı dışında: başvuruyu yönlendirmeye iade et",
)
async def return_application(
    code: str,
    application_id: str,
    body: ReturnIn,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> ReturnAccepted:
    _institution_only(principal, code)
    try:
        app = await tracking.return_application(code, application_id, reason=body.reason, now=now())
    except (NotFound, domain.NotAssigned):
        raise _not_found() from None
    except domain.AlreadyAnswered:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=[
                field_error(None, "already_answered", "Cevaplanmış bir başvuru iade edilemez.")
            ],
        ) from None
    return ReturnAccepted(application_id=app.application_id, status=app.status)
