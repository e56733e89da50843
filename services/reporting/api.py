"""Reporting's JSON routes: the report of a scope and period for staff and institutions.

Every route resolves the question the same way (`ReportQuestion`): the period from `from`/`to`,
the scope from `province_code`, `district` and `institution_code`, checked against the token by
`access.resolve_scope` (a supervisor reads only their province, an institution only itself).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from services.common.auth import (
    Principal,
    current_principal,
    optional_principal,
    request_settings,
)
from services.common.events import utcnow
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.reporting import exports, governor_pdf
from services.reporting.access import resolve_scope
from services.reporting.cells import Scope
from services.reporting.handlers import Reporting
from services.reporting.query import Period, QueryError, parse_period
from services.reporting.session import page_principal


async def reader(
    request: Request,
    bearer: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    """The caller, from `Authorization: Bearer` or else the dashboard's session cookie (so the
    dashboard's export links work in the browser); a bad bearer token is a 401."""
    if bearer is None and "authorization" not in request.headers:
        bearer = await page_principal(request)
    return await current_principal(bearer)


@dataclass(frozen=True)
class ReportQuestion:
    scope: Scope
    period: Period


async def report_question(
    principal: Annotated[Principal, Depends(reader)],
    settings: Annotated[Settings, Depends(request_settings)],
    province_code: Annotated[
        int | None, Query(ge=1, le=81, description="İl plaka kodu (1–81); varsayılan: kendi iliniz")
    ] = None,
    district: Annotated[str | None, Query(description="İlçe adı (ör. Merkezefendi)")] = None,
    institution_code: Annotated[str | None, Query(description="Kurum kodu (ör. DESKI)")] = None,
    start: Annotated[
        str | None, Query(alias="from", description="Başlangıç günü, YYYY-AA-GG (dahil)")
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", description="Bitiş günü, YYYY-AA-GG (dahil)")
    ] = None,
) -> ReportQuestion:
    try:
        period = parse_period(start, end)
        scope = resolve_scope(
            principal,
            settings,
            province_code=province_code,
            district=district,
            institution=institution_code,
        )
    except QueryError as exc:
        raise HTTPException(status_code=422, detail=exc.errors) from exc
    return ReportQuestion(scope, period)


Question = Annotated[ReportQuestion, Depends(report_question)]


def build_router(reporting: Reporting) -> APIRouter:
    router = APIRouter(tags=["rapor"])

    @router.get(
        "/api/v1/reports/summary",
        summary="İl, ilçe, kurum ve dönem için başvuru raporu",
        description=(
            "Dönem, başvurunun alındığı gün (İstanbul saati) üzerinden, iki ucu dahil süzülür; "
            "iki uç da isteğe bağlıdır. Valilik personeli yalnızca kendi ilini, kurum yalnızca "
            "kendini görür (aksi 403). Sayılar önceden toplanmış günlük ve aylık hücrelerden "
            "gelir (`as_of`: son toplama anı); hiçbir istek başvuruları tek tek okumaz. "
            "`ratings`: vatandaşların yanıtlara verdiği puanlar (1–5). Alanların anlamı: "
            "docs/reports.md."
        ),
    )
    async def summary(question: Question) -> dict[str, Any]:
        return await reporting.report(question.scope, question.period)

    @router.get(
        "/api/v1/reports/export.csv",
        summary="Raporun bir tablosu CSV olarak (Türkçe başlıklar, ; ayraçlı, UTF-8 BOM)",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def export_csv(
        question: Question,
        table: Annotated[
            str, Query(description="Tablo: " + ", ".join(exports.TABLES))
        ] = "by_institution",
    ) -> Response:
        report = await reporting.report(question.scope, question.period)
        try:
            body = exports.to_csv(report, table)
        except QueryError as exc:
            raise HTTPException(status_code=422, detail=exc.errors) from exc
        return _download(
            body, exports.CSV_MEDIA_TYPE, exports.export_filename(report, "csv", table)
        )

    @router.get(
        "/api/v1/reports/export.xlsx",
        summary="Raporun bütün tabloları Excel (XLSX) olarak, her tablo ayrı sayfada",
        response_class=Response,
        responses={200: {"content": {exports.XLSX_MEDIA_TYPE: {}}}},
    )
    async def export_xlsx(question: Question) -> Response:
        report = await reporting.report(question.scope, question.period)
        body = await asyncio.to_thread(exports.to_xlsx, report)
        return _download(body, exports.XLSX_MEDIA_TYPE, exports.export_filename(report, "xlsx"))

    @router.get(
        "/api/v1/reports/monthly.pdf",
        summary="Vali için aylık rapor (PDF, grafikli)",
        description="`month` verilmezse geçen ay. Kapsam süzgeçleri özetle aynıdır; `from` ve "
        "`to` yok sayılır, dönem ayın kendisidir.",
        response_class=Response,
        responses={200: {"content": {"application/pdf": {}}}},
    )
    async def monthly(
        question: Question,
        month: Annotated[str | None, Query(description="Ay, YYYY-AA (ör. 2026-11)")] = None,
    ) -> Response:
        try:
            first = governor_pdf.parse_month(month) if month else last_month(utcnow())
        except QueryError as exc:
            raise HTTPException(status_code=422, detail=exc.errors) from exc
        report = await reporting.report(question.scope, governor_pdf.month_period(first))
        report["chronic"] = await reporting.chronic(question.scope)
        body = await asyncio.to_thread(governor_pdf.monthly_pdf, report, month=first)
        return _download(body, "application/pdf", governor_pdf.monthly_filename(report, first))

    @router.get(
        "/api/v1/reports/chronic",
        summary="Süreğen sorunlar: aynı yerde, aynı başlıkta, haftalarca tekrar eden başvurular",
        description="Son tespitin sonucu (saatte bir). Örnek metinler kişisel veriden "
        "arındırılmıştır. Kapsam süzgeçleri özetle aynıdır; dönem kullanılmaz (son 12 hafta).",
    )
    async def chronic(question: Question) -> dict[str, Any]:
        return {"problems": await reporting.chronic(question.scope)}

    return router


def last_month(now: datetime) -> date:
    """The first day of the month before now's (Istanbul)."""
    this_month = now.astimezone(ISTANBUL).date().replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1)


def _download(body: bytes, media_type: str, filename: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": exports.content_disposition(filename),
            "Cache-Control": "no-store",
        },
    )
