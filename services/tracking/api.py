"""Tracking's HTTP API for citizens: the look-up (JSON) and the reply to an institution's
question. The institutions' and supervisors' endpoints are in inbox_api.py, the citizen's
`/takip` page in page.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, StringConstraints

from services.common.application_number import InvalidApplicationNumber, normalize, parse_number
from services.common.auth import Principal, current_principal
from services.common.errors import field_error
from services.common.events import Outcome, Status
from services.tracking import domain
from services.tracking.handlers import NotFound, TooManyAttempts, Tracking
from services.tracking.workflow import STEP_LABELS, Step

router = APIRouter()

NOT_FOUND_MESSAGE = (
    "Başvuru bulunamadı. Başvuru numarasını ve telefon numaranızın son 4 hanesini kontrol edin."
)
TOO_MANY_MESSAGE = (
    "Bu başvuru numarası için çok fazla hatalı deneme yapıldı. "
    "Lütfen 15 dakika sonra yeniden deneyin."
)
PHONE_MESSAGE = "Telefon numaranızın son 4 hanesini rakamla girin (ör. 4567)."
NOTHING_ASKED_MESSAGE = "Bu başvuru için sizden beklenen bir bilgi yok."
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
    # A workflow step inside the status (assigned, information_requested, forwarded, split, ...)
    step: Step | None = None
    # What the citizen may read of it: the unit, the institution forwarded to, the part count.
    detail: str | None = None


class OpenQuestion(BaseModel):
    """The institution's question the citizen is asked to answer."""

    question: str
    asked_at: datetime


class PartResult(BaseModel):
    """One part of a split application, as the citizen sees it."""

    application_number: str
    note: str
    status: Status
    institution: str | None = None
    outcome: Outcome | None = None
    answer: str | None = None


class MessageItem(BaseModel):
    """A message the citizen was sent: which, by which channel, and what became of it."""

    kind: str
    channel: str
    status: str
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
    information_request: OpenQuestion | None = None
    parts: list[PartResult] | None = None
    timeline: list[TimelineItem]
    # The clock stands still while a question to the citizen is open.
    deadline_paused: bool = False
    messages: list[MessageItem] = []


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


def citizen_timeline(app: domain.Application) -> list[TimelineItem]:
    """The steps the citizen sees: never who did them, never an answer before it is final."""
    return [
        TimelineItem(status=e.status, at=e.at, step=e.step, detail=_citizen_detail(e))
        for e in app.timeline
    ]


def _citizen_detail(entry: domain.TimelineEntry) -> str | None:
    # A unit's name, the institution forwarded to, the number of parts or the part answered;
    # an assignment to a person (no unit) says nothing.
    return entry.detail if entry.step is not None else None


def step_label(entry: domain.TimelineEntry) -> str:
    if entry.step is None:
        return domain.STATUS_LABELS[entry.status]
    label = STEP_LABELS[entry.step]
    if entry.step is Step.split_up and entry.detail:
        return f"{label} ({entry.detail} bölüm)"
    if entry.detail and entry.step in (Step.assigned, Step.forwarded, Step.part_answered):
        return f"{label}: {entry.detail}"
    return label


def track_result(
    app: domain.Application, parts: list[domain.Application] | None = None
) -> TrackResult:
    answered = app.status in (Status.answered, Status.closed)
    asked = app.open_information_request
    return TrackResult(
        application_number=app.application_number,
        status=app.status,
        received_at=app.received_at,
        deadline_at=app.deadline_at,
        overdue=app.overdue,
        outcome=app.outcome if answered else None,
        answer=app.answer if answered else None,
        information_request=OpenQuestion(question=asked.question, asked_at=asked.asked_at)
        if asked
        else None,
        parts=[part_result(app, p) for p in parts] if parts else None,
        timeline=citizen_timeline(app),
        deadline_paused=app.clock_paused,
        messages=[
            MessageItem(kind=m.kind, channel=m.channel, status=m.status, at=m.at)
            for m in app.messages
        ],
    )


def part_result(parent: domain.Application, part: domain.Application) -> PartResult:
    done = part.status in (Status.answered, Status.closed)
    return PartResult(
        application_number=part.application_number,
        note=part.part_note or "",
        status=part.status,
        institution=part.institution_name
        if part.status in (Status.routed, Status.opened, Status.answered, Status.closed)
        else None,
        outcome=part.outcome if done else None,
        answer=part.answer if done else None,
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
    except (TooManyAttempts, NotFound) as exc:
        raise _not_yours(exc) from None
    return track_result(app, await tracking.parts_of(app) if app.parts else None)


def _not_yours(exc: TooManyAttempts | NotFound) -> HTTPException:
    """A look-up that failed: the same answer for an unknown number and a wrong phone."""
    if isinstance(exc, TooManyAttempts):
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=[field_error("application_number", "too_many_attempts", TOO_MANY_MESSAGE)],
            headers={"Retry-After": "900"},
        )
    return HTTPException(
        status.HTTP_404_NOT_FOUND, detail=[field_error(None, "not_found", NOT_FOUND_MESSAGE)]
    )


class InformationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_last4: str
    reply: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=4000)]


@router.post(
    "/api/v1/track/{application_number}/information",
    response_model=TrackResult,
    response_model_exclude_none=True,
    tags=["vatandaş"],
    summary="Kurumun istediği ek bilgiyi gönder (başvuru numarası + telefonun son 4 hanesi)",
    responses={404: {"description": "Bulunamadı"}, 409: {}, 422: {}, 429: {}},
)
async def provide_information(
    application_number: str, body: InformationIn, tracking: TrackingDep
) -> TrackResult:
    """The citizen's reply to the institution's question; the application goes back to it."""
    number_key, errors = check_track_query(application_number, body.phone_last4)
    if errors:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=errors)
    try:
        app = await tracking.provide_information(
            number_key, body.phone_last4.strip(), body.reply, now()
        )
    except (TooManyAttempts, NotFound) as exc:
        raise _not_yours(exc) from None
    except domain.NoInformationAsked:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=[field_error(None, "no_information_asked", NOTHING_ASKED_MESSAGE)],
        ) from None
    return track_result(app, await tracking.parts_of(app) if app.parts else None)
