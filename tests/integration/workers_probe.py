"""A tiny service built with services/common/service.py, served by `serve` like the real ones,
for tests/integration/test_workers_metrics.py. It consumes nothing, so it joins no consumer
group another test run may be using; it connects to the test stack's Kafka and MongoDB."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from prometheus_client import Counter

from services.common.service import Service, serve
from services.common.settings import get_settings

NAME = "probe"

# Like intake's acikkapi_intake_applications_total: a use case's own counter.
HITS = Counter("acikkapi_probe_hits_total", "Requests the probe's one route answered")

router = APIRouter()


@router.post("/deneme", summary="Bir sayaç artırır")
async def count() -> dict[str, bool]:
    HITS.inc()
    return {"sayildi": True}


def create_app() -> FastAPI:
    return Service(NAME, get_settings()).app(
        title="Açık Kapı — deneme servisi",
        description="Çok işçili ölçüm testi için.",
        routers=[router],
    )


def main() -> None:
    """Serve the probe as `serve` serves any service. Started with `python -c`: run with -m,
    this module would be imported twice in each spawned worker (once as __mp_main__), and its
    counter registered twice."""
    serve(NAME, get_settings(), app=f"{__name__}:create_app")
