"""The rating page, `/p/<token>`: the short signed link in the answer SMS opens it. It shows the
application (its number partly hidden), the institution and the outcome, and a choice of 1 to 5
that is a plain form: radio buttons drawn as stars, usable by keyboard, without any script.
A rating is taken once per application; what follows a rating is the same page, saying so."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.common.turkish_time import long_datetime
from services.tracking.api import now
from services.tracking.page import OUTCOME_TITLES, SECURITY_HEADERS, STATIC_URL, templates
from services.tracking.rating import (
    COMMENT_MAX,
    PATH,
    AlreadyRated,
    InvalidRating,
    InvalidToken,
    NotRateable,
    masked_number,
)
from services.tracking.rating_handlers import Ratings, RatingView

pages = APIRouter(include_in_schema=False)

ALREADY_RATED_MESSAGE = "Bu başvuru için değerlendirmeniz daha önce alındı."
THANKS_MESSAGE = "Değerlendirmeniz alındı. Teşekkür ederiz."
NOT_ANSWERED_MESSAGE = (
    "Bu başvuru henüz cevaplanmadı. Cevap verildiğinde size SMS ile bildirilecek; "
    "değerlendirmenizi o zaman yapabilirsiniz."
)
INVALID_LINK_MESSAGE = (
    "Bu değerlendirme bağlantısı geçersiz. Bağlantıyı SMS'te geldiği gibi, eksiksiz açtığınızdan "
    "emin olun. Başvurunuzun durumunu Başvuru Takibi sayfasından da öğrenebilirsiniz."
)
# 1 is the lowest, 5 the highest; the words say what each means to the citizen.
CHOICES = [
    (1, "Hiç memnun değilim"),
    (2, "Memnun değilim"),
    (3, "Kararsızım"),
    (4, "Memnunum"),
    (5, "Çok memnunum"),
]
_SAVED = "kaydedildi"


def get_ratings(request: Request) -> Ratings:
    ratings: Ratings = request.app.state.ratings
    return ratings


RatingsDep = Annotated[Ratings, Depends(get_ratings)]


def _view(view: RatingView) -> dict[str, Any]:
    app = view.application
    return {
        "number": masked_number(app.application_number),
        "institution": app.institution_name,
        "outcome": OUTCOME_TITLES[app.outcome] if app.outcome else None,
        "answered_at": long_datetime(app.answered_at),
        "rated": view.rated.rating if view.rated else None,
        "rateable": view.rateable,
    }


def _page(
    request: Request,
    code: int,
    *,
    view: RatingView | None = None,
    message: str | None = None,
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    chosen: str = "",
    comment: str = "",
) -> HTMLResponse:
    context = {
        "static": STATIC_URL,
        "result": _view(view) if view else None,
        "message": message,
        "notice": notice,
        "errors": errors or {},
        "choices": CHOICES,
        "chosen": chosen,
        "comment": comment,
        "comment_max": COMMENT_MAX,
        "action": request.url.path,
    }
    response = templates.TemplateResponse(request, "puan.html", context, status_code=code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _invalid(request: Request) -> HTMLResponse:
    return _page(request, status.HTTP_404_NOT_FOUND, message=INVALID_LINK_MESSAGE)


@pages.get(PATH + "/{token}", response_class=HTMLResponse)
async def rating_page(
    request: Request, token: str, ratings: RatingsDep, durum: str | None = None
) -> HTMLResponse:
    """The page the SMS link opens: the choice, or what became of it."""
    try:
        view = await ratings.open(token)
    except InvalidToken:
        return _invalid(request)
    if view.rated is not None:
        notice = THANKS_MESSAGE if durum == _SAVED else ALREADY_RATED_MESSAGE
        return _page(request, status.HTTP_200_OK, view=view, notice=notice)
    if not view.rateable:
        return _page(request, status.HTTP_200_OK, view=view, notice=NOT_ANSWERED_MESSAGE)
    return _page(request, status.HTTP_200_OK, view=view)


@pages.post(PATH + "/{token}", response_class=HTMLResponse)
async def rate(
    request: Request,
    token: str,
    ratings: RatingsDep,
    rating: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
) -> Response:
    """Record the rating, then show the page again (a reload sends nothing twice)."""
    try:
        await ratings.rate(token, rating or None, comment, now())
    except InvalidToken:
        return _invalid(request)
    except AlreadyRated:
        view = await ratings.open(token)
        return _page(request, status.HTTP_409_CONFLICT, view=view, notice=ALREADY_RATED_MESSAGE)
    except NotRateable:
        view = await ratings.open(token)
        return _page(request, status.HTTP_409_CONFLICT, view=view, notice=NOT_ANSWERED_MESSAGE)
    except InvalidRating as exc:
        view = await ratings.open(token)
        return _page(
            request,
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            view=view,
            errors={exc.field: exc.message},
            chosen=rating,
            comment=comment,
        )
    redirect = RedirectResponse(
        f"{request.url.path}?durum={_SAVED}", status_code=status.HTTP_303_SEE_OTHER
    )
    redirect.headers.update(SECURITY_HEADERS)
    return redirect
