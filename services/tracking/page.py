"""The citizen's status page, `/takip`: a form answered on the server, in Turkish, checked in the
page first by the service's own script (static/takip.js) and usable without it. When the
institution asked a question, the page shows it with a form for the reply (`POST /takip/bilgi`);
a split application shows its parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.common.application_number import (
    InvalidApplicationNumber,
    format_number,
    parse_number,
)
from services.common.events import Outcome, Status
from services.common.middleware import SCRIPT_PAGE_POLICY
from services.common.turkish_time import long_datetime
from services.tracking import domain
from services.tracking.api import (
    NOT_FOUND_MESSAGE,
    NOTHING_ASKED_MESSAGE,
    PHONE_MESSAGE,
    TOO_MANY_MESSAGE,
    TrackingDep,
    check_track_query,
    now,
    step_label,
)
from services.tracking.handlers import NotFound, TooManyAttempts
from services.tracking.workflow import Stage

pages = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# The page's style sheet and script, served by the service itself (a closed network has no CDN).
STATIC_URL = "/static"
static_files = StaticFiles(directory=Path(__file__).parent / "static")

# Only this service's own files; no inline script or style, no other host, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": SCRIPT_PAGE_POLICY,  # services/common/middleware.py
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
# Finer than the status, where the institution's workflow says more.
_STAGE_EXPLANATIONS: dict[Stage, str] = {
    Stage.waiting_for_citizen: "İlgili kurum başvurunuzla ilgili sizden ek bilgi istiyor. "
    "Soruyu aşağıda görebilir ve cevabınızı bu sayfadan gönderebilirsiniz.",
    Stage.forwarded: "Başvurunuz, görev alanına girdiği için başka bir kuruma aktarılıyor.",
    Stage.split_up: "Başvurunuz birden çok kurumu ilgilendirdiği için bölümlere ayrıldı; her "
    "bölüm ilgili kurumca ayrıca cevaplanacak. Bütün bölümler cevaplanınca genel sonuç "
    "burada görünür.",
}
REPLY_MESSAGE = "Cevabınızı yazın (en az 2 karakter)."
_REPLY_MAX = 4000

OUTCOME_TITLES: dict[Outcome, str] = {
    Outcome.olumlu: "Olumlu",
    Outcome.olumsuz: "Olumsuz",
    Outcome.kismen_olumlu: "Kısmen olumlu",
}


def _page_view(
    app: domain.Application, parts: list[domain.Application] | None = None
) -> dict[str, Any]:
    answered = app.status in (Status.answered, Status.closed)
    asked = app.open_information_request
    return {
        "number": app.application_number,
        "status": app.status.value,
        "status_label": domain.STATUS_LABELS[app.status],
        "explanation": _STAGE_EXPLANATIONS.get(app.stage, _EXPLANATIONS[app.status]),
        "question": {"text": asked.question, "at": long_datetime(asked.asked_at)}
        if asked
        else None,
        "parts": [_part_view(p) for p in parts or ()],
        "institution": app.institution_name
        if app.status in (Status.routed, Status.opened, Status.answered, Status.closed)
        else None,
        "received_at": long_datetime(app.received_at),
        "deadline_at": long_datetime(app.deadline_at),
        "deadline_iso": app.deadline_at.isoformat() if app.deadline_at else "",
        "overdue": app.overdue and not answered,
        "outcome": OUTCOME_TITLES[app.outcome] if answered and app.outcome else None,
        "answer": app.answer if answered else None,
        "answered_at": long_datetime(app.answered_at),
        "timeline": [
            {"label": step_label(e), "at": long_datetime(e.at), "iso": e.at.isoformat()}
            for e in app.timeline
        ],
        "paused": app.clock_paused,
        "extended": app.extension_days,
        "messages": [_message_view(m) for m in app.messages],
    }


def _message_view(message: domain.SentMessage) -> dict[str, str]:
    channel = "SMS" if message.channel == "sms" else "E-posta"
    return {
        "label": f"{channel}: {domain.CITIZEN_MESSAGES[message.kind]} bildirimi",
        "status": domain.MESSAGE_STATUS_LABELS[message.status],
        "at": long_datetime(message.at),
        "iso": message.at.isoformat(),
    }


def _part_view(part: domain.Application) -> dict[str, Any]:
    done = part.status in (Status.answered, Status.closed)
    held = part.status in (Status.routed, Status.opened, Status.answered, Status.closed)
    return {
        "number": part.application_number,
        "note": part.part_note or "",
        "status_label": domain.STATUS_LABELS[part.status],
        "institution": part.institution_name if held else None,
        "outcome": OUTCOME_TITLES[part.outcome] if done and part.outcome else None,
        "answer": part.answer if done else None,
    }


@pages.get("/takip", response_class=HTMLResponse)
async def status_page(
    request: Request,
    tracking: TrackingDep,
    number: str | None = None,
    phone_last4: str | None = None,
    bilgi: str | None = None,
) -> HTMLResponse:
    """The citizen's status page: a form answered on the server (the script only checks first)."""
    return await _render(request, tracking, number or "", phone_last4, replied=bilgi == "alindi")


async def _render(
    request: Request,
    tracking: TrackingDep,
    number: str,
    phone_last4: str | None,
    *,
    replied: bool = False,
    reply_error: str | None = None,
) -> HTMLResponse:
    context: dict[str, Any] = {
        "fields": _fields(number),
        "errors": {},
        "result": None,
        "messages": _CLIENT_MESSAGES,
        "static": STATIC_URL,
        "replied": replied,
        "reply_error": reply_error,
        "reply_max": _REPLY_MAX,
    }
    code = status.HTTP_200_OK
    if number or phone_last4:
        number_key, errors = check_track_query(number, phone_last4)
        if errors:
            code = status.HTTP_422_UNPROCESSABLE_CONTENT
            context["errors"] = {e["field"]: e["message"] for e in errors}
        else:
            assert phone_last4 is not None
            try:
                app = await tracking.track(number_key, phone_last4.strip(), now())
                parts = await tracking.parts_of(app) if app.parts else None
                context["result"] = _page_view(app, parts)
                context["phone_last4"] = phone_last4.strip()
                if reply_error:
                    code = status.HTTP_422_UNPROCESSABLE_CONTENT
                    if context["result"]["question"] is None:
                        # No question to show it beside: it goes above the page.
                        context["errors"] = {"form": reply_error}
            except TooManyAttempts:
                code = status.HTTP_429_TOO_MANY_REQUESTS
                context["errors"] = {"form": TOO_MANY_MESSAGE}
            except NotFound:
                code = status.HTTP_404_NOT_FOUND
                context["errors"] = {"form": NOT_FOUND_MESSAGE}
    response = templates.TemplateResponse(request, "takip.html", context, status_code=code)
    response.headers.update(SECURITY_HEADERS)
    return response


@pages.post("/takip/bilgi", response_class=HTMLResponse)
async def reply_page(
    request: Request,
    tracking: TrackingDep,
    number: Annotated[str, Form(max_length=40)] = "",
    phone_last4: Annotated[str, Form(max_length=8)] = "",
    reply: Annotated[str, Form(max_length=_REPLY_MAX)] = "",
) -> Response:
    """The citizen's reply to the institution's question, from the status page's form; on
    success back to the status page, which says the reply was received."""
    text = reply.strip()
    if len(text) < 2:
        return await _render(request, tracking, number, phone_last4, reply_error=REPLY_MESSAGE)
    number_key, errors = check_track_query(number, phone_last4)
    if errors:
        return await _render(request, tracking, number, phone_last4)
    try:
        await tracking.provide_information(number_key, phone_last4.strip(), text, now())
    except domain.NoInformationAsked:
        return await _render(
            request, tracking, number, phone_last4, reply_error=NOTHING_ASKED_MESSAGE
        )
    except (NotFound, TooManyAttempts):
        return await _render(request, tracking, number, phone_last4)
    query = urlencode({"number": number, "phone_last4": phone_last4.strip(), "bilgi": "alindi"})
    redirect = RedirectResponse(f"/takip?{query}", status_code=status.HTTP_303_SEE_OTHER)
    redirect.headers.update(SECURITY_HEADERS)
    return redirect
