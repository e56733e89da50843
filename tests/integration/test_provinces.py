"""A province added as data: routing announces it on `acikkapi.taxonomy`, intake then takes its
applications; a province no taxonomy is loaded for is refused before it is numbered."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.common.settings import Settings
from services.intake.app import build_app as build_intake
from services.routing.app import build_app as build_routing
from tests.conftest import intake_takes
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

SMALL_PROVINCE = Path(__file__).resolve().parents[1] / "data" / "taxonomies"


@pytest.fixture(scope="module")
async def intake(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Routing started with a second, small province file (Bilecik) beside Denizli, and intake
    started after it, each in a consumer group of its own."""
    with_bilecik = settings.model_copy(update={"taxonomy_dir": str(SMALL_PROVINCE)})
    routing = build_routing(with_bilecik, consumer_group=f"test-provinces-{uuid.uuid4().hex[:8]}")
    app = build_intake(settings, consumer_group=f"test-provinces-{uuid.uuid4().hex[:8]}")
    async with routing.router.lifespan_context(routing), app.router.lifespan_context(app):
        await intake_takes(app, [11, 20])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            yield http


async def test_a_province_added_as_data_is_served(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/api/v1/applications", json=body(province_code=11, district="Bozüyük")
    )

    assert response.status_code == 201, response.text
    assert response.json()["application_number"].startswith("11-")
    ready = (await intake.get("/readyz")).json()
    assert ready["checks"]["taxonomy"] is True


async def test_the_added_provinces_districts_come_from_its_taxonomy(
    intake: httpx.AsyncClient,
) -> None:
    typed = await intake.post(
        "/api/v1/applications", json=body(province_code=11, district="BOZUYUK")
    )
    unknown = await intake.post(
        "/api/v1/applications", json=body(province_code=11, district="Merkezefendi")
    )

    assert typed.status_code == 201, typed.text
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [
        {
            "field": "district",
            "code": "unknown_district",
            "message": "Bilecik iline bağlı böyle bir ilçe bulunamadı.",
        }
    ]


async def test_a_province_without_a_taxonomy_is_refused_by_name(
    intake: httpx.AsyncClient,
) -> None:
    response = await intake.post(
        "/api/v1/applications", json=body(province_code=34, district="Kadıköy")
    )

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "field": "province_code",
            "code": "province_not_served",
            "message": "İstanbul için Açık Kapı'da henüz başvuru alınmıyor: bu ilin konu ve kurum "
            "tablosu yüklenmemiş. Başvurunuzu ilgili valiliğe iletebilirsiniz.",
        }
    ]
