"""Reporting's HTTP routes: the summary as JSON for staff, and the same figures as a Turkish page.

Access: the JSON summary needs a governorship staff token (officer, supervisor or admin);
institution tokens are refused, since an institution sees its own queue in tracking. The
`/rapor` page is open without a token on purpose: it shows only aggregate counts, and the
reporting read model holds no personal data at all (no names, TC Kimlik Nos, phones, subjects
or texts), so there is nothing on it a token would protect. Put it behind the intranet proxy if
even the totals should stay inside.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse

from services.common.auth import Principal, Role, require_roles
from services.common.events import utcnow
from services.common.settings import Settings
from services.reporting import page
from services.reporting.handlers import Reporting
from services.reporting.query import Period, QueryError, parse_period, parse_province

_staff = require_roles(Role.officer, Role.supervisor, Role.admin)


def build_router(reporting: Reporting, settings: Settings) -> APIRouter:
    router = APIRouter(tags=["rapor"])

    @router.get(
        "/api/v1/reports/summary",
        summary="İl ve dönem için başvuru özeti",
        description=(
            "Dönem, başvurunun alındığı gün (İstanbul saati) üzerinden, iki ucu dahil "
            "süzülür; iki uç da isteğe bağlıdır. Valilik personeli oturum anahtarı gerekir. "
            "`ratings`: vatandaşların yanıtlara SMS bağlantısıyla verdiği puanlar (1–5): "
            "sayı, ortalama ve dağılım; hem genel hem her kurum, kategori ve ilçe satırında."
        ),
    )
    async def summary(
        _: Annotated[Principal, Depends(_staff)],
        province_code: Annotated[
            int | None, Query(ge=1, le=81, description="İl plaka kodu (1–81)")
        ] = None,
        start: Annotated[
            str | None, Query(alias="from", description="Başlangıç günü, YYYY-AA-GG (dahil)")
        ] = None,
        end: Annotated[
            str | None, Query(alias="to", description="Bitiş günü, YYYY-AA-GG (dahil)")
        ] = None,
    ) -> dict[str, Any]:
        try:
            period = parse_period(start, end)
        except QueryError as exc:
            raise HTTPException(status_code=422, detail=exc.errors) from exc
        return await reporting.summary(province_code, period)

    @router.get(
        "/rapor",
        response_class=HTMLResponse,
        summary="Başvuru raporu sayfası (grafikli, yalnızca toplu sayılar)",
    )
    async def report_page(
        province_code: Annotated[str | None, Query(description="İl plaka kodu (1–81)")] = None,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> HTMLResponse:
        # The form sends every field as text, empty ones too: parse here and answer on the page.
        form = {
            "province_code": province_code
            if province_code is not None
            else str(settings.default_province_code),
            "start": start or "",
            "end": end or "",
        }
        generated_at = utcnow()
        errors: list[dict[str, str]] = []
        province: int | None = None
        period: Period | None = None
        summary = None
        try:
            province = parse_province(form["province_code"])
        except QueryError as exc:
            errors += exc.errors
        try:
            period = parse_period(start, end)
        except QueryError as exc:
            errors += exc.errors
        if period is not None and not errors:
            summary = await reporting.summary(province, period, now=generated_at)
        html = page.render(
            summary=summary,
            form=form,
            province_code=province,
            period=period,
            errors=errors,
            generated_at=generated_at,
        )
        return HTMLResponse(html, status_code=422 if errors else 200)

    return router
