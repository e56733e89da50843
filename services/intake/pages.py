"""Intake's pages: the citizen's web form `/basvuru`, the counter console `/gise`, and the two
small JSON routes they read (the province's lists, and who a pasted officer token is).

The pages are rendered on the server with the default province's lists already in them, so they
read without JavaScript; sending needs it (the scripts under static/ post to the JSON API the
other channels use). Everything a page loads is served by intake itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

from services.common.auth import Principal, Role, request_settings, require_roles
from services.common.events import TaxonomyPublished
from services.common.labels import PRIORITY_LABELS, TYPE_LABELS
from services.common.middleware import SCRIPT_PAGE_POLICY
from services.common.provinces import province_name
from services.common.settings import Settings
from services.intake.attachments import ALLOWED
from services.intake.domain import (
    NAME_MAX,
    SUBJECT_MAX,
    SUBJECT_MIN,
    TEXT_MAX,
    TEXT_MIN,
)
from services.intake.messaging import ServedProvinces

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
STATIC_DIR = Path(__file__).parent / "static"

# Scripts and styles only from intake itself; no inline script, no frames, no other host.
_PAGE_HEADERS = {
    "Content-Security-Policy": SCRIPT_PAGE_POLICY,  # services/common/middleware.py
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

UNKNOWN_YET = (
    "İl, ilçe ve konu listeleri henüz yüklenmedi; lütfen birkaç saniye sonra tekrar deneyin."
)


def _served(request: Request) -> ServedProvinces:
    return request.app.state.served  # type: ignore[no-any-return]


def governorship(province_code: int) -> str:
    """The governorship that answers a province's applications: "T.C. Denizli Valiliği"."""
    return f"T.C. {province_name(province_code)} Valiliği"


def catalogue_of(taxonomy: TaxonomyPublished) -> dict[str, Any]:
    """A province's lists as the pickers read them: districts, headings and their categories."""
    return {
        "province_code": taxonomy.province_code,
        "province": taxonomy.province,
        "districts": taxonomy.districts,
        "headings": [heading.model_dump() for heading in taxonomy.headings],
    }


@router.get(
    "/api/v1/catalogue",
    tags=["sayfalar"],
    summary="Bir ilin ilçe ve konu listeleri (başvuru formu için)",
    responses={404: {"description": "Bu il için başvuru alınmıyor"}, 503: {}},
)
async def catalogue(
    request: Request,
    province_code: Annotated[int, Query(ge=1, le=81)],
) -> JSONResponse:
    served = _served(request)
    if not served.is_known():
        raise HTTPException(
            503,
            detail=[{"field": None, "code": "unavailable", "message": UNKNOWN_YET}],
            headers={"Retry-After": "5"},
        )
    taxonomy = served.taxonomy(province_code)
    if taxonomy is None:
        message = f"{province_name(province_code)} için Açık Kapı'da henüz başvuru alınmıyor."
        raise HTTPException(
            404,
            detail=[{"field": "province_code", "code": "province_not_served", "message": message}],
        )
    # The lists change only when routing announces a new version: a minute is fresh enough.
    return JSONResponse(catalogue_of(taxonomy), headers={"Cache-Control": "max-age=60"})


@router.get(
    "/api/v1/session",
    tags=["sayfalar"],
    summary="Görevlinin oturum anahtarını denetle (gişe ekranı)",
)
async def session(
    # The counter console's token check: the counter officer (issue 11) uses it too.
    principal: Annotated[Principal, Depends(require_roles(Role.officer, Role.counter_officer))],
) -> dict[str, Any]:
    """Who the pasted token says the officer is, so the console refuses a bad one at once."""
    return {
        "subject": principal.subject,
        "role": principal.role.value,
        "province_code": principal.province,
    }


def picker_lists(taxonomy: TaxonomyPublished) -> dict[str, Any]:
    """The pickers' options as the page draws them without JavaScript: every category under its
    heading (the script then narrows the list to the heading chosen)."""
    return {
        "districts": [(name, name) for name in taxonomy.districts],
        "headings": [(h.code, h.name) for h in taxonomy.headings],
        "categories": [
            (h.name, [(c.code, c.name) for c in h.categories]) for h in taxonomy.headings
        ],
    }


def _page_context(request: Request, settings: Settings, province_code: int) -> dict[str, Any]:
    served = _served(request)
    taxonomy = served.taxonomy(province_code) if served.is_known() else None
    provinces = [(t.province_code, t.province) for t in served.served()] or [
        (province_code, province_name(province_code))
    ]
    return {
        "governorship": governorship(province_code),
        "province_code": province_code,
        "provinces": provinces,
        "catalogue": catalogue_of(taxonomy) if taxonomy else None,
        "lists": picker_lists(taxonomy) if taxonomy else None,
        "unknown_yet": UNKNOWN_YET,
        "types": [(t.value, label) for t, label in TYPE_LABELS.items()],
        "priorities": [(p.value, label) for p, label in PRIORITY_LABELS.items()],
        "tracking_url": settings.public_tracking_url,
        # What the file picker offers; the attachments endpoint decides, by the file's content.
        "accept": ",".join(
            [t.content_type for t in ALLOWED] + [f".{e}" for t in ALLOWED for e in t.extensions]
        ),
        "max_attachments": settings.attachments_per_application,
        "max_attachment_bytes": settings.attachment_max_bytes,
        "limits": {
            "name_max": NAME_MAX,
            "subject_min": SUBJECT_MIN,
            "subject_max": SUBJECT_MAX,
            "text_min": TEXT_MIN,
            "text_max": TEXT_MAX,
        },
    }


def _render(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context)
    response.headers.update(_PAGE_HEADERS)
    return response


@router.get("/basvuru", response_class=HTMLResponse, include_in_schema=False)
async def citizen_form(
    request: Request, settings: Annotated[Settings, Depends(request_settings)]
) -> HTMLResponse:
    """The citizen's web form (channel `web`, phone confirmed by an SMS code)."""
    context = _page_context(request, settings, settings.default_province_code)
    return _render(request, "basvuru.html", context)


@router.get("/gise", response_class=HTMLResponse, include_in_schema=False)
async def counter_console(
    request: Request, settings: Annotated[Settings, Depends(request_settings)]
) -> HTMLResponse:
    """The Açık Kapı counter's console (channel `counter`, an officer's token)."""
    context = _page_context(request, settings, settings.default_province_code)
    return _render(request, "gise.html", context)
