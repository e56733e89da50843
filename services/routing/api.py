"""Routing's HTTP routes: the public taxonomy, keyword suggestions, and the officers' queue."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.common import application_number as numbers
from services.common.audit import CHANGE, READ_PERSONAL, audit_of
from services.common.auth import Principal, Role, forbidden, require_roles
from services.common.errors import field_error
from services.common.messaging import TRANSIENT_ERRORS
from services.common.settings import Settings
from services.routing import domain
from services.routing.domain import PublicTaxonomy, Suggestion, Taxonomy, TaxonomyRegistry
from services.routing.handlers import NotFound, OutsideProvince, Routing
from services.routing.lifecycle import AlreadyRouted, PendingApplication, RoutingRecord

MAX_OFFSET = 1_000_000

# Issue 11: the routing officer reads the queue and routes; the supervisor only reads it.
_queue_readers = require_roles(Role.officer, Role.routing_officer, Role.supervisor)
_routers = require_roles(Role.officer, Role.routing_officer)


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=5000)]
    province_code: int = Field(ge=1, le=81)
    district: str | None = Field(default=None, max_length=100)


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category_code: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)
    ]


class PendingPage(BaseModel):
    items: list[PendingApplication]
    total: int
    limit: int
    offset: int


def _unprocessable(field: str | None, code: str, message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[field_error(field, code, message)]
    )


def _taxonomy(registry: TaxonomyRegistry, province_code: int) -> Taxonomy:
    try:
        return registry.for_province(province_code)
    except domain.UnknownProvince as exc:
        raise _unprocessable("province_code", "province_not_supported", str(exc)) from exc


def _district(taxonomy: Taxonomy, name: str | None) -> str | None:
    if name is None or not name.strip():
        return None
    known = taxonomy.district(name)
    if known is None:
        raise _unprocessable(
            "district",
            "unknown_district",
            f"'{name.strip()}' {taxonomy.province} ilçeleri arasında yok. "
            f"Geçerli ilçeler: {', '.join(taxonomy.districts)}.",
        )
    return known


def build_router(routing: Routing, registry: TaxonomyRegistry, settings: Settings) -> APIRouter:
    router = APIRouter(tags=["yönlendirme"])
    # Built once per version of a province: a new version is a new Taxonomy object.
    views: dict[tuple[int, str | None], tuple[Taxonomy, PublicTaxonomy]] = {}

    @router.get(
        "/api/v1/taxonomy",
        summary="Konu başlıkları, kategoriler ve her kategoride sorumlu kurum",
        description=(
            'Herkese açıktır. `handler.scope` "district" olan kategorilerde sorumlu kurum '
            "başvuru sahibinin ilçesine göre değişir: `by_district` her ilçe için kurumu verir; "
            "`district` parametresiyle tek bir ilçe için çözülmüş hâli istenebilir."
        ),
    )
    async def taxonomy(
        province_code: Annotated[int | None, Query(ge=1, le=81)] = None,
        district: Annotated[str | None, Query(max_length=100)] = None,
    ) -> PublicTaxonomy:
        chosen = _taxonomy(registry, province_code or settings.default_province_code)
        where = _district(chosen, district)
        key = (chosen.province_code, where)
        cached = views.get(key)
        if cached is None or cached[0] is not chosen:
            cached = views[key] = (chosen, chosen.public_view(where))
        return cached[1]

    @router.post(
        "/api/v1/routing/suggest",
        summary="Başvuru metnine göre olası kategoriler ve sorumlu kurumlar",
        description=(
            "Vatandaş metinlerinden öğrenilmiş model sıralar (Türkçe büyük/küçük harf, Türkçe "
            "karakter kullanılmadan yazılmış metin, ekler ve yazım hataları dahil). `score`, "
            "kategorinin doğru olma olasılığıdır (0-1); model henüz hazır değilse anahtar "
            "kelime puanıdır. Kurum, verilen ilçeye göre çözülür."
        ),
    )
    async def suggest(body: SuggestRequest) -> list[Suggestion]:
        chosen = _taxonomy(registry, body.province_code)
        return routing.suggest(chosen, body.text, _district(chosen, body.district))

    @router.get(
        "/api/v1/routing/pending",
        summary="Görevli yönlendirmesi bekleyen başvurular (en eski önce)",
        description=(
            "Görevli veya üst yönetici oturum anahtarı gerekir; anahtarda il varsa yalnızca o "
            "ilin başvuruları listelenir. `district` ve `application_number` ile süzülebilir."
        ),
    )
    async def pending(
        request: Request,
        principal: Annotated[Principal, Depends(_queue_readers)],
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        # Bounded: MongoDB takes a 64-bit skip, a larger one failed with 500 (OverflowError).
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        district: Annotated[str | None, Query(max_length=100)] = None,
        application_number: Annotated[str | None, Query(max_length=32)] = None,
    ) -> PendingPage:
        number = None
        if application_number:
            try:
                number = numbers.canonical(application_number)
            except numbers.InvalidApplicationNumber as exc:
                raise _unprocessable("application_number", "invalid_number", str(exc)) from exc
        where = None
        if district and district.strip():
            # Stored districts carry intake's official spelling; accept any casing of it.
            try:
                home = registry.for_province(principal.province or settings.default_province_code)
                where = home.district(district)
            except domain.UnknownProvince:
                pass
            where = where or district.strip()
        items, total = await routing.pending(
            principal, limit, offset, district=where, application_number=number
        )
        # No name, phone or TC Kimlik No here, but the citizen's own words and place, which
        # often name people: each application shown is audited (one batch for the page),
        # before the page is answered.
        audit = audit_of(request)
        await asyncio.gather(
            *(
                audit.record(
                    actor=principal,
                    action=READ_PERSONAL,
                    application_id=item.application_id,
                    application_number=item.application_number,
                    fields=["subject", "text", *(["location"] if item.location else [])],
                    request=request,
                    detail={"operation": "pending"},
                )
                for item in items
            )
        )
        return PendingPage(items=items, total=total, limit=limit, offset=offset)

    @router.post(
        "/api/v1/routing/{application_id}/route",
        summary="Bekleyen başvuruyu görevli kararıyla bir kategoriye ve kuruma yönlendirir",
    )
    async def route(
        request: Request,
        application_id: Annotated[str, Path(min_length=1, max_length=128)],
        body: RouteRequest,
        principal: Annotated[Principal, Depends(_routers)],
    ) -> RoutingRecord:
        try:
            decided = await routing.route_by_officer(application_id, body.category_code, principal)
        except NotFound as exc:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=[field_error(None, "not_found", "Bu kimlikle bir başvuru bulunamadı.")],
            ) from exc
        except OutsideProvince as exc:
            raise forbidden("Bu ilin başvurularını yönlendirme yetkiniz yok.") from exc
        except AlreadyRouted as exc:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=[
                    field_error(
                        None,
                        "already_routed",
                        "Başvuru zaten bir kuruma yönlendirilmiş; yalnızca yönlendirme "
                        "bekleyen başvurular yönlendirilebilir.",
                    )
                ],
            ) from exc
        except domain.UnknownCategory as exc:
            raise _unprocessable("category_code", "unknown_category", str(exc)) from exc
        except domain.RoutingError as exc:
            raise _unprocessable(None, "province_not_supported", str(exc)) from exc
        except TRANSIENT_ERRORS as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=[
                    field_error(
                        None,
                        "unavailable",
                        "Karar şu anda iletilemedi; başvuru kuyrukta kaldı, lütfen tekrar deneyin.",
                    )
                ],
            ) from exc
        await audit_of(request).record(
            actor=principal,
            action=CHANGE,
            application_id=decided.application_id,
            application_number=decided.application_number,
            request=request,
            detail={
                "operation": "route",
                "category_code": decided.category_code,
                "institution_code": decided.institution_code,
            },
        )
        return decided

    return router
