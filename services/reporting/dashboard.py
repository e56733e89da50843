"""Reporting's pages: the staff dashboard `/pano` and its chronic problems `/pano/kronik`,
behind the login (session.py), and the public summary `/rapor`, which needs none.

Every page is drawn on the server: charts are inline SVG (page.py), the only other file is the
service's own style sheet, and no page runs a script, so they work on a closed network, print
as they are and pass a strict Content-Security-Policy. Staff pages read the scope a person may
see with `access.resolve_scope` (a supervisor only their province, an institution only itself);
the public summary shows only aggregate counts of a province or district: no application
numbers, no texts, no overdue list, no per-institution figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.common.auth import Principal, Role
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.reporting.access import home_province, resolve_scope
from services.reporting.cells import ANY, Scope
from services.reporting.exports import TABLES
from services.reporting.page import (
    PROVINCES,
    dashboard_charts,
    institution_label,
    province_name,
    public_charts,
    render_page,
    sparkline,
    turkish_sort_key,
)
from services.reporting.query import Period, QueryError, parse_period, parse_province
from services.reporting.session import (
    PAGE_HEADERS,
    PRIVATE_HEADERS,
    build_session_router,
    login_url,
    page_principal,
    session_csrf,
    who,
)

STYLESHEET = Path(__file__).parent / "static" / "pano.css"
STYLE_URL = "/static/pano.css"
# The public summary changes only as often as the cells are folded: a minute in a cache is fine.
PUBLIC_HEADERS = {**PAGE_HEADERS, "Cache-Control": "public, max-age=60"}
TREND_LABELS = {"artıyor": "Artıyor", "azalıyor": "Azalıyor", "sabit": "Sabit"}
TREND_ARROWS = {"artıyor": "↑", "azalıyor": "↓", "sabit": "→"}
TREND_CLASSES = {"artıyor": "up", "azalıyor": "down", "sabit": "flat"}

# What of a breakdown row the public summary may show: counts and shares, never anything else.
_PUBLIC_ROW = (
    "total",
    "answered",
    "open",
    "olumlu",
    "olumsuz",
    "kismen_olumlu",
    "overdue",
    "on_time_ratio",
    "mean_response_business_days",
    "median_response_business_days",
)
_PUBLIC_TREND = ("period", "start", "received", "answered", "overdue", "on_time_ratio")


class ReportSource(Protocol):
    """Where the pages get their figures (handlers.Reporting)."""

    async def report(self, scope: Scope, period: Period) -> dict[str, Any]: ...

    async def chronic(self, scope: Scope) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Filters:
    """What the filter form sent, as text, so the form shows it again."""

    province_code: str = ""
    district: str = ""
    institution_code: str = ""
    start: str = ""
    end: str = ""


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


# --- links -------------------------------------------------------------------------------------


def filter_query(scope: Scope, period: Period | None = None) -> dict[str, str]:
    """The query string the report API and the pages share for a scope and period."""
    query = {"province_code": str(scope.province_code)}
    if scope.district != ANY:
        query["district"] = scope.district
    if scope.institution != ANY:
        query["institution_code"] = scope.institution
    if period is not None and period.start is not None:
        query["from"] = period.start.isoformat()
    if period is not None and period.end is not None:
        query["to"] = period.end.isoformat()
    return query


def pdf_month(period: Period, today: date | None = None) -> str:
    """The month the governor's PDF link offers: that of the period's end, or else the last
    whole month."""
    if period.end is not None:
        return f"{period.end:%Y-%m}"
    today = today or datetime.now(ISTANBUL).date()
    return f"{today.replace(day=1) - timedelta(days=1):%Y-%m}"


def export_links(scope: Scope, period: Period, *, today: date | None = None) -> dict[str, str]:
    """The exports of what the dashboard shows: `csv:<table>` for each table of exports.TABLES,
    `xlsx` for the workbook, `pdf` for the governor's monthly report (its month: `pdf_month`)."""
    query = filter_query(scope, period)
    links = {
        f"csv:{code}": "/api/v1/reports/export.csv?" + urlencode({"table": code, **query})
        for code in TABLES
    }
    links["xlsx"] = "/api/v1/reports/export.xlsx?" + urlencode(query)
    links["pdf"] = "/api/v1/reports/monthly.pdf?" + urlencode(
        {"month": pdf_month(period, today), **filter_query(scope)}
    )
    return links


# --- what the pages show -----------------------------------------------------------------------


def public_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The public part of a report, copied key by key: whatever else the report holds (the
    overdue list with its application numbers, examples, institutions) cannot reach the page."""
    scope = report.get("scope") or {}

    def rows(name: str, *keys: str) -> list[dict[str, Any]]:
        return [
            {**{k: row.get(k) for k in keys}, **{k: row.get(k) for k in _PUBLIC_ROW}}
            for row in report.get(name) or []
        ]

    return {
        "scope": {
            k: scope.get(k) for k in ("province_code", "province_name", "district", "from", "to")
        },
        "generated_at": report.get("generated_at"),
        "as_of": report.get("as_of"),
        **{k: report.get(k) for k in _PUBLIC_ROW},
        "outcomes": dict(report.get("outcomes") or {}),
        "by_heading": rows("by_heading", "heading_code", "heading_name"),
        "by_district": rows("by_district", "district"),
        "by_channel": rows("by_channel", "channel"),
        "trends": {
            "monthly": [
                {k: point.get(k) for k in _PUBLIC_TREND}
                for point in (report.get("trends") or {}).get("monthly") or []
            ]
        },
    }


def district_options(report: dict[str, Any], chosen: str | None) -> list[str]:
    names = {row["district"] for row in report["by_district"] if row.get("district")}
    if chosen:
        names.add(chosen)
    return sorted(names, key=turkish_sort_key)


def institution_options(report: dict[str, Any], chosen: str | None) -> list[tuple[str, str]]:
    options = {
        row["institution_code"]: institution_label(row)
        for row in report["by_institution"]
        if row.get("institution_code")
    }
    if chosen and chosen not in options:
        options[chosen] = chosen
    return sorted(options.items(), key=lambda item: turkish_sort_key(item[1]))


def _week_count(week: Any) -> int:
    """A week's count from [week_start, count] or {"week_start", "count"}."""
    if isinstance(week, dict):
        return int(week["count"])
    return int(week[1])


def chronic_view(problem: dict[str, Any]) -> dict[str, Any]:
    """A chronic problem as its card shows it, with its weekly counts as a sparkline."""
    counts = [_week_count(week) for week in problem.get("weekly") or []]
    trend = str(problem.get("trend") or "")
    place = " / ".join(
        str(part) for part in (problem.get("district"), problem.get("neighbourhood")) if part
    )
    spoken = ", ".join(str(c) for c in counts)
    return {
        **problem,
        "place": place,
        "trend_label": TREND_LABELS.get(trend, trend or "—"),
        "trend_arrow": TREND_ARROWS.get(trend, ""),
        "trend_class": TREND_CLASSES.get(trend, ""),
        "weekly_text": spoken,
        "spark": sparkline(counts, f"Haftalık başvuru sayısı: {spoken}"),
        "weeks": len(counts),
    }


def _message(exc: HTTPException) -> str:
    detail = exc.detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("message") or "Bu sayfayı görme yetkiniz yok.")
    return str(detail or "Bu sayfayı görme yetkiniz yok.")


# --- the pages ---------------------------------------------------------------------------------


def build_pages(source: ReportSource, settings: Settings) -> APIRouter:
    """The login, the dashboards, the public summary and the style sheet they share."""
    router = APIRouter(include_in_schema=False)
    router.include_router(build_session_router())
    stylesheet = STYLESHEET.read_bytes()

    @router.get(STYLE_URL)
    async def style() -> Response:
        return Response(
            stylesheet,
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    async def staff_page(
        request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        # The logout form's CSRF token, bound to this browser's session cookie.
        csrf = await session_csrf(request)
        html = render_page(template, style_url=STYLE_URL, staff=True, csrf=csrf, **context)
        return HTMLResponse(html, status_code=status_code, headers=PRIVATE_HEADERS)

    async def forbidden_page(request: Request, principal: Principal, message: str) -> HTMLResponse:
        return await staff_page(
            request,
            "hata.html.j2",
            status_code=403,
            who=who(principal),
            title="Erişim yetkiniz yok",
            message=message,
        )

    def choices(
        principal: Principal, report: dict[str, Any] | None, scope: Scope | None
    ) -> dict[str, Any]:
        """The filter form's options: the province select only for an admin without one."""
        home = home_province(principal, settings)
        own = principal.institution if principal.role is Role.institution else None
        chosen_district = scope.district if scope and scope.district != ANY else None
        chosen_institution = scope.institution if scope and scope.institution != ANY else None
        return {
            "provinces": list(enumerate(PROVINCES, start=1)) if home is None else None,
            "province_selected": scope.province_code
            if scope
            else home or settings.default_province_code,
            "province_fixed": province_name(home) if home is not None else None,
            "districts": district_options(report, chosen_district) if report else [],
            "institutions": institution_options(report, chosen_institution) if report else [],
            "institution_fixed": own,
        }

    def requested_scope(
        principal: Principal,
        province_code: str | None,
        district: str | None,
        institution_code: str | None,
    ) -> Scope:
        return resolve_scope(
            principal,
            settings,
            province_code=parse_province(province_code),
            district=district,
            institution=institution_code,
        )

    async def refusal(
        request: Request,
        principal: Principal,
        exc: QueryError | HTTPException,
        template: str,
        form: Filters,
        **empty: Any,
    ) -> HTMLResponse:
        """A page's answer to a query it cannot serve: the form again with its errors (422), or
        the page that says access is denied (403); any other HTTP error goes on up."""
        if isinstance(exc, QueryError):
            return await staff_page(
                request,
                template,
                status_code=422,
                who=who(principal),
                form=form,
                errors=exc.errors,
                **empty,
                **choices(principal, None, None),
            )
        if exc.status_code != 403:
            raise exc
        return await forbidden_page(request, principal, _message(exc))

    async def options_report(
        principal: Principal, scope: Scope, period: Period, report: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The report the selects list from: the whole province (an institution: all of
        itself), so that a chosen district still offers the others."""
        wide = Scope(
            scope.province_code,
            ANY,
            scope.institution if principal.role is Role.institution else ANY,
        )
        if report is not None and wide == scope:
            return report
        return await source.report(wide, period)

    @router.get("/pano", response_class=HTMLResponse)
    async def dashboard(
        request: Request,
        principal: Annotated[Principal | None, Depends(page_principal)],
        province_code: str | None = None,
        district: str | None = None,
        institution_code: str | None = None,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> Response:
        if principal is None:
            return RedirectResponse(login_url(request), status_code=303)
        form = Filters(
            _clean(province_code),
            _clean(district),
            _clean(institution_code),
            _clean(start),
            _clean(end),
        )
        try:
            period = parse_period(start, end)
            scope = requested_scope(principal, province_code, district, institution_code)
        except (QueryError, HTTPException) as exc:
            return await refusal(request, principal, exc, "pano.html.j2", form, report=None)
        report = await source.report(scope, period)
        options = await options_report(principal, scope, period, report)
        links = export_links(scope, period)
        return await staff_page(
            request,
            "pano.html.j2",
            who=who(principal),
            form=form,
            errors=[],
            report=report,
            charts=dashboard_charts(report),
            csv_links=[(t.title, links[f"csv:{code}"]) for code, t in TABLES.items()],
            xlsx_link=links["xlsx"],
            pdf_link=links["pdf"],
            pdf_month=pdf_month(period),
            pdf_query=filter_query(scope),
            chronic_query=urlencode(filter_query(scope)),
            **choices(principal, options, scope),
        )

    @router.get("/pano/kronik", response_class=HTMLResponse)
    async def chronic(
        request: Request,
        principal: Annotated[Principal | None, Depends(page_principal)],
        province_code: str | None = None,
        district: str | None = None,
        institution_code: str | None = None,
    ) -> Response:
        if principal is None:
            return RedirectResponse(login_url(request), status_code=303)
        form = Filters(_clean(province_code), _clean(district), _clean(institution_code))
        try:
            scope = requested_scope(principal, province_code, district, institution_code)
        except (QueryError, HTTPException) as exc:
            return await refusal(request, principal, exc, "kronik.html.j2", form, problems=None)
        problems = [chronic_view(p) for p in await source.chronic(scope)]
        options = await options_report(principal, scope, Period(), None)
        return await staff_page(
            request,
            "kronik.html.j2",
            who=who(principal),
            form=form,
            errors=[],
            scope=scope,
            scope_text=_scope_text(scope, options),
            problems=problems,
            dashboard_query=urlencode(filter_query(scope)),
            **choices(principal, options, scope),
        )

    @router.get("/rapor", response_class=HTMLResponse)
    async def public(
        province_code: str | None = None,
        district: str | None = None,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> Response:
        """The public summary: no login, no cookie read, aggregate counts only."""
        form = Filters(_clean(province_code), _clean(district), "", _clean(start), _clean(end))
        chosen_district = _clean(district)
        context: dict[str, Any] = {"form": form, "provinces": list(enumerate(PROVINCES, start=1))}
        try:
            period = parse_period(start, end)
            province = parse_province(province_code) or settings.default_province_code
        except QueryError as exc:
            return _public_page(context | {"errors": exc.errors, "summary": None}, 422)
        context["province"] = province
        overall = await source.report(Scope(province), period)
        context["districts"] = district_options(overall, None)
        if chosen_district and chosen_district not in context["districts"]:
            error = {
                "field": "district",
                "code": "unknown_district",
                "message": f"{province_name(province)} ilinde “{chosen_district}” adıyla "
                "başvuru alınmış bir ilçe yok; listeden bir ilçe seçin.",
            }
            return _public_page(context | {"errors": [error], "summary": None}, 422)
        report = overall
        if chosen_district:
            report = await source.report(Scope(province, chosen_district), period)
        summary = public_summary(report)
        if chosen_district:
            # A district's own figures, beside all the province's districts for comparison.
            summary["by_district"] = public_summary(overall)["by_district"]
        return _public_page(
            context | {"errors": [], "summary": summary, "charts": public_charts(summary)}, 200
        )

    return router


def _scope_text(scope: Scope, report: dict[str, Any]) -> str:
    parts = [province_name(scope.province_code)]
    if scope.district != ANY:
        parts.append(scope.district)
    if scope.institution != ANY:
        names = {r["institution_code"]: institution_label(r) for r in report["by_institution"]}
        parts.append(names.get(scope.institution, scope.institution))
    return " · ".join(parts)


def _public_page(context: dict[str, Any], status_code: int) -> HTMLResponse:
    html = render_page("rapor.html.j2", style_url=STYLE_URL, staff=False, **context)
    return HTMLResponse(html, status_code=status_code, headers=PUBLIC_HEADERS)
