"""The institutions' inbox, `/kurum`: one page served by tracking with its own script and style
(static/kurum.js, static/kurum.css; a closed network has no CDN). The staff member pastes the
token once (kept in the tab's sessionStorage); the script then reads and acts through the same
HTTP API as any institution's own software (inbox_api.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.common.auth import request_settings
from services.common.labels import TYPE_LABELS
from services.tracking.page import OUTCOME_TITLES, SECURITY_HEADERS, STATIC_URL, templates
from services.tracking.workflow import ACTIVE_STAGES, STAGE_LABELS, Stage

pages = APIRouter(include_in_schema=False)

# The stages an institution filters by, in the order work moves.
_FILTER_STAGES = [s for s in Stage if s is not Stage.unrouted]


@pages.get("/kurum", response_class=HTMLResponse)
async def inbox(request: Request) -> HTMLResponse:
    """The inbox page; everything after the token is the script's, over the JSON API."""
    settings = await request_settings(request)
    context = {
        "static": STATIC_URL,
        "province_code": settings.default_province_code,
        "stages": [(s.value, STAGE_LABELS[s]) for s in _FILTER_STAGES],
        "active": sorted(s.value for s in ACTIVE_STAGES),
        "types": [(t.value, label) for t, label in TYPE_LABELS.items()],
        "outcomes": [(o.value, label) for o, label in OUTCOME_TITLES.items()],
    }
    response = templates.TemplateResponse(request, "kurum.html", context)
    response.headers.update(SECURITY_HEADERS)
    return response
