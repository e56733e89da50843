"""The citizen's status page, `/takip`: a form answered on the server, in Turkish, checked in the
page first by the service's own script (static/takip.js) and usable without it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.common.application_number import (
    InvalidApplicationNumber,
    format_number,
    parse_number,
)
from services.common.events import Outcome, Status
from services.common.turkish_time import long_datetime
from services.tracking import domain
from services.tracking.api import (
    NOT_FOUND_MESSAGE,
    PHONE_MESSAGE,
    TOO_MANY_MESSAGE,
    TrackingDep,
    check_track_query,
    now,
)
from services.tracking.handlers import NotFound, TooManyAttempts

pages = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# The page's style sheet and script, served by the service itself (a closed network has no CDN).
STATIC_URL = "/static"
static_files = StaticFiles(directory=Path(__file__).parent / "static")

# Only this service's own files; no inline script or style, no other host, no framing.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    # The page may show an institution's answer: never keep it in a shared cache.
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _number_message(wrong: str) -> str:
    try:
        parse_number(wrong)
    except InvalidApplicationNumber as exc:
        return str(exc)
    raise AssertionError(f"{wrong!r} is a valid application number")  # pragma: no cover


def _with_wrong_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


# The texts the page's script shows are the server's own (application_number.py, api.py).
_CLIENT_MESSAGES = {
    "number_format": _number_message(""),
    "number_check_digit": _number_message(_with_wrong_check_digit(format_number(20, 2026, 1))),
    "phone": PHONE_MESSAGE,
    "summary": "Lütfen aşağıdaki hataları düzeltin.",
}


@dataclass(frozen=True)
class _Field:
    id: str
    error: str  # the field's name in the API's errors
    label: str
    hint: str
    maxlength: int
    pattern: str = ""
    value: str = ""


def _fields(number: str) -> list[_Field]:
    """The form's fields in reading order; the phone digits are never written back."""
    return [
        _Field(
            "number",
            "application_number",
            "Başvuru numarası",
            "Örnek: 20-2026-0000123-4 (tireler olmadan da yazabilirsiniz)",
            maxlength=40,
            value=number,
        ),
        _Field(
            "phone_last4",
            "phone_last4",
            "Telefon numaranızın son 4 hanesi",
            "Başvuruda verdiğiniz cep telefonu numarasının son 4 rakamı",
            maxlength=4,
            pattern="[0-9]{4}",
        ),
    ]


# Plain words for the citizen: what the status means for them.
_EXPLANATIONS: dict[Status, str] = {
    Status.received: "Başvurunuz kaydedildi; ilgili kuruma yönlendirilecek.",
    Status.awaiting_routing: "Başvurunuz, ilgili kurumu belirlemek için bir görevli tarafından "
    "inceleniyor.",
    Status.routed: "Başvurunuz cevaplaması için ilgili kuruma iletildi.",
    Status.opened: "İlgili kurum başvurunuzu inceliyor.",
    Status.answered: "Başvurunuz cevaplandı.",
    Status.closed: "Başvurunuz cevaplandı ve cevabı size bildirildi.",
    Status.returned: "Kurum, başvurunuzun kendi görev alanında olmadığını bildirdi; başvurunuz "
    "doğru kuruma yönlendirilecek.",
}
_OUTCOME_TITLES: dict[Outcome, str] = {
    Outcome.olumlu: "Olumlu",
    Outcome.olumsuz: "Olumsuz",
    Outcome.kismen_olumlu: "Kısmen olumlu",
}


def _page_view(app: domain.Application) -> dict[str, Any]:
    answered = app.status in (Status.answered, Status.closed)
    return {
        "number": app.application_number,
        "status": app.status.value,
        "status_label": domain.STATUS_LABELS[app.status],
        "explanation": _EXPLANATIONS[app.status],
        "institution": app.institution_name
        if app.status in (Status.routed, Status.opened, Status.answered, Status.closed)
        else None,
        "received_at": long_datetime(app.received_at),
        "deadline_at": long_datetime(app.deadline_at),
        "deadline_iso": app.deadline_at.isoformat() if app.deadline_at else "",
        "overdue": app.overdue and not answered,
        "outcome": _OUTCOME_TITLES[app.outcome] if answered and app.outcome else None,
        "answer": app.answer if answered else None,
        "answered_at": long_datetime(app.answered_at),
        "timeline": [
            {
                "label": domain.STATUS_LABELS[e.status],
                "at": long_datetime(e.at),
                "iso": e.at.isoformat(),
            }
            for e in app.timeline
        ],
    }


@pages.get("/takip", response_class=HTMLResponse)
async def status_page(
    request: Request,
    tracking: TrackingDep,
    number: str | None = None,
    phone_last4: str | None = None,
) -> HTMLResponse:
    """The citizen's status page: a form answered on the server (the script only checks first)."""
    context: dict[str, Any] = {
        "fields": _fields(number or ""),
        "errors": {},
        "result": None,
        "messages": _CLIENT_MESSAGES,
        "static": STATIC_URL,
    }
    code = status.HTTP_200_OK
    if number or phone_last4:
        number_key, errors = check_track_query(number or "", phone_last4)
        if errors:
            code = status.HTTP_422_UNPROCESSABLE_CONTENT
            context["errors"] = {e["field"]: e["message"] for e in errors}
        else:
            assert phone_last4 is not None
            try:
                app = await tracking.track(number_key, phone_last4.strip(), now())
                context["result"] = _page_view(app)
            except TooManyAttempts:
                code = status.HTTP_429_TOO_MANY_REQUESTS
                context["errors"] = {"form": TOO_MANY_MESSAGE}
            except NotFound:
                code = status.HTTP_404_NOT_FOUND
                context["errors"] = {"form": NOT_FOUND_MESSAGE}
    response = templates.TemplateResponse(request, "takip.html", context, status_code=code)
    response.headers.update(_SECURITY_HEADERS)
    return response
