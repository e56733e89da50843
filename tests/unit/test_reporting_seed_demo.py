"""The demo loader (deploy/local/seed_demo.py): the outcome plan, generated applicants, bodies
that intake accepts, and the whole flow against in-memory fakes of the four services."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from stdnum.tr import tckimlik

from services.common.auth import decode_token
from services.common.settings import Settings
from services.intake.identity import demo_persons

ROOT = Path(__file__).resolve().parents[2]


def _load_seed_module():
    spec = importlib.util.spec_from_file_location("seed_demo", ROOT / "deploy/local/seed_demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["seed_demo"] = module
    spec.loader.exec_module(module)
    return module


seed = _load_seed_module()


def test_denizli_figures_exactly_for_631():
    assert seed.outcome_counts(631) == {"olumlu": 263, "olumsuz": 123, "kismen_olumlu": 245}
    plan = seed.plan_outcomes(631)
    assert Counter(plan) == {"olumlu": 263, "olumsuz": 123, "kismen_olumlu": 245}
    assert plan == seed.plan_outcomes(631)  # a rerun gives every application the same answer
    assert plan != seed.plan_outcomes(631, seed=7)  # the seed shuffles
    assert Counter(seed.plan_outcomes(631, seed=7)) == Counter(plan)


@pytest.mark.parametrize("count", [1, 2, 3, 10, 50, 100, 200, 630, 632, 1000, 1262])
def test_other_counts_keep_the_proportions(count: int):
    counts = seed.outcome_counts(count)
    assert sum(counts.values()) == count
    for outcome, published in seed.DENIZLI_OUTCOMES.items():
        assert abs(counts[outcome] - count * published / 631) < 1
    planned = Counter(seed.plan_outcomes(count))
    assert {k: planned[k] for k in counts} == counts


def test_doubling_doubles():
    assert seed.outcome_counts(1262) == {"olumlu": 526, "olumsuz": 246, "kismen_olumlu": 490}


def test_generated_tc_kimlik_numbers_are_valid():
    rng = random.Random(1)
    numbers = [seed.tckn(rng) for _ in range(2000)]
    assert all(tckimlik.is_valid(n) for n in numbers)
    assert all(len(n) == 11 and n[0] != "0" for n in numbers)
    assert len(set(numbers)) > 1990


def test_idempotency_keys():
    assert seed.idempotency_key(1, seed.DEFAULT_SEED, 20) == "demo-1"
    assert seed.idempotency_key(631, seed.DEFAULT_SEED, 20) == "demo-631"
    assert seed.idempotency_key(1, 7, 20) == "demo-20-7-1"


def _denizli_taxonomy_view() -> dict[str, Any]:
    from services.routing.taxonomy import default_registry

    return default_registry().for_province(20).public_view().model_dump(mode="json")


def test_the_real_taxonomy_view_parses():
    taxonomy = seed.parse_taxonomy(_denizli_taxonomy_view())
    assert len(taxonomy.categories) > 300
    assert {c.heading_code for c in taxonomy.categories} >= {"ALT", "ULS", "BEL"}
    assert "DESKI" in taxonomy.institutions and "PAMUKKALE-BLD" in taxonomy.institutions
    assert len(taxonomy.institutions) == len(set(taxonomy.institutions))


def test_every_demo_body_passes_intakes_rules():
    from services.intake.domain import ApplicationForm, DistrictDirectory

    districts = DistrictDirectory.from_document(
        json.loads((ROOT / "services/intake/data/districts.json").read_text())
    )
    categories = seed.parse_taxonomy(_denizli_taxonomy_view()).categories
    channels: Counter[str] = Counter()
    without_category = 0
    registry = {p["tckn"]: p for p in demo_persons()}
    applicants = set()
    for n in range(1, 632):
        body, category = seed.build_application(n, seed.DEFAULT_SEED, 20, categories)
        # A person of the demo registry, as the identity check knows them, each one only once.
        applicant = body["applicant"]
        assert registry[applicant["tckn"]] == applicant
        applicants.add(applicant["tckn"])
        assert body == seed.build_application(n, seed.DEFAULT_SEED, 20, categories)[0]
        ApplicationForm.model_validate(body, context={"districts": districts})
        channels[body["channel"]] += 1
        if "category_code" not in body:
            without_category += 1
        else:
            assert body["category_code"] == category.code
    assert set(channels) == {"web", "mobile", "counter", "edevlet"}
    assert len(applicants) == 631
    assert without_category == 631 // seed.UNCATEGORISED_EVERY
    for outcome in seed.DENIZLI_OUTCOMES:
        assert all(len(t) >= 10 for t in seed.ANSWERS[outcome])


# --- The whole flow against fakes of the services --------------------------------------------


class FakeServices:
    """Just enough of intake, routing, tracking and reporting to run the loader in memory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.by_key: dict[str, dict[str, Any]] = {}
        self.apps: dict[str, dict[str, Any]] = {}
        self.responses = 0
        self.conflicts = 0
        # Routing's public view (services.routing.domain.PublicTaxonomy), cut to two categories.
        self.taxonomy = {
            "province_code": 20,
            "province": "Denizli",
            "districts": ["Merkezefendi", "Pamukkale"],
            "headings": [
                {
                    "code": "ALT",
                    "name": "Altyapı ve Su",
                    "categories": [
                        {
                            "code": "ALT-001",
                            "name": "İçme suyu kesintisi",
                            "handler": {"kind": "SU_IDARESI", "scope": "province"},
                            "institution": {"code": "DESKI", "name": "DESKİ", "kind": "SU_IDARESI"},
                        },
                    ],
                },
                {
                    "code": "BEL",
                    "name": "Belediye Hizmetleri",
                    "categories": [
                        {
                            "code": "BEL-001",
                            "name": "Çöp toplama",
                            "handler": {"kind": "BELEDIYE", "scope": "province"},
                            "institution": {"code": "DENIZLI-BB", "name": "BB", "kind": "BELEDIYE"},
                        },
                    ],
                },
            ],
            "institutions": [
                {"code": "DESKI", "name": "DESKİ", "kind": "SU_IDARESI"},
                {"code": "DENIZLI-BB", "name": "BB", "kind": "BELEDIYE"},
            ],
        }
        self.owner = {"ALT-001": "DESKI", "BEL-001": "DENIZLI-BB"}

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        principal = None
        if "authorization" in request.headers:
            principal = decode_token(self.settings, request.headers["authorization"][7:])
        if path == "/readyz":
            return httpx.Response(200, json={"status": "ready"})
        if path == "/api/v1/taxonomy":
            return httpx.Response(200, json=self.taxonomy)
        if path == "/api/v1/applications" and method == "POST":
            body = json.loads(request.content)
            if body["channel"] == "counter" and (not principal or principal.role != "officer"):
                return httpx.Response(401, json={"errors": []})
            key = request.headers["idempotency-key"]
            if key not in self.by_key:
                app_id = uuid.uuid4().hex
                app = {
                    "application_id": app_id,
                    "application_number": f"20-2025-{len(self.apps) + 1:07d}-0",
                    "institution": self.owner.get(body.get("category_code")),
                    "status": "routed" if body.get("category_code") else "awaiting_routing",
                    "outcome": None,
                }
                self.apps[app_id] = app
                self.by_key[key] = app
            app = self.by_key[key]
            return httpx.Response(
                201,
                json={
                    "application_id": app["application_id"],
                    "application_number": app["application_number"],
                    "status": "received",
                    "received_at": "2025-01-01T00:00:00+00:00",
                },
            )
        if path == "/api/v1/routing/pending":
            items = [
                {"application_id": a["application_id"]}
                for a in self.apps.values()
                if a["status"] == "awaiting_routing"
            ]
            return httpx.Response(200, json={"items": items, "total": len(items), "offset": 0})
        if path.startswith("/api/v1/routing/") and path.endswith("/route"):
            assert principal and principal.role == "officer"
            app = self.apps[path.split("/")[4]]
            if app["status"] != "awaiting_routing":
                return httpx.Response(409, json={"errors": []})
            app["institution"] = self.owner[json.loads(request.content)["category_code"]]
            app["status"] = "routed"
            return httpx.Response(200, json={})
        if path.startswith("/api/v1/institutions/"):
            code = path.split("/")[4]
            assert principal and principal.role == "institution" and principal.institution == code
            if method == "GET":
                items = [
                    {"application_id": a["application_id"], "status": a["status"]}
                    for a in self.apps.values()
                    if a["institution"] == code
                ]
                return httpx.Response(200, json={"items": items, "next_cursor": None})
            app = self.apps[path.split("/")[6]]
            if app["institution"] != code:
                return httpx.Response(404, json={"errors": []})
            if app["outcome"] is not None:
                self.conflicts += 1
                return httpx.Response(409, json={"errors": []})
            outcome = json.loads(request.content)["outcome"]
            app.update(outcome=outcome, status="answered")
            self.responses += 1
            return httpx.Response(202, json={"status": "answer_received"})
        if path == "/api/v1/reports/summary":
            assert principal and principal.role == "supervisor"
            outcomes = Counter(a["outcome"] for a in self.apps.values() if a["outcome"])
            return httpx.Response(
                200,
                json={
                    "total": len(self.apps),
                    "answered": sum(outcomes.values()),
                    "outcomes": {k: outcomes.get(k, 0) for k in seed.DENIZLI_OUTCOMES},
                },
            )
        return httpx.Response(404, json={"errors": []})


async def _run(fake: FakeServices, settings: Settings, count: int) -> dict[str, Any]:
    transport = httpx.MockTransport(fake.handle)
    async with httpx.AsyncClient(transport=transport) as http:
        loader = seed.Loader(http, settings, count=count, province=20, seed=2024, timeout=20)
        return await loader.run()


async def test_the_loader_answers_everything_and_a_rerun_adds_nothing(capsys):
    settings = Settings(db_prefix="unit")
    fake = FakeServices(settings)
    count = 120
    report = await _run(fake, settings, count)
    assert report["total"] == count
    assert report["outcomes"] == seed.outcome_counts(count)
    assert fake.responses == count
    assert sum(a["status"] == "awaiting_routing" for a in fake.apps.values()) == 0
    out = capsys.readouterr().out
    assert "Başvurular gönderiliyor: 50/120" in out
    assert "Başvurular gönderiliyor: 120/120" in out
    assert "Cevaplar veriliyor: 100/120" in out

    # Forget that the fake listed them as answered: the loader must meet 409s and count them.
    for app in fake.apps.values():
        app["status"] = "routed"
    again = await _run(fake, settings, count)
    assert len(fake.apps) == count  # the idempotency keys held
    assert fake.responses == count
    assert fake.conflicts == count
    assert again["outcomes"] == seed.outcome_counts(count)
    assert "Daha önce cevaplanmış (409) ve sayılan: 120" in capsys.readouterr().out


async def test_the_loader_times_out_with_a_clear_message(capsys):
    settings = Settings(db_prefix="unit")
    fake = FakeServices(settings)
    fake.owner["BEL-001"] = "NOWHERE"  # an institution the taxonomy does not list
    transport = httpx.MockTransport(fake.handle)
    async with httpx.AsyncClient(transport=transport) as http:
        loader = seed.Loader(http, settings, count=20, province=20, seed=2024, timeout=2)
        with pytest.raises(seed.SeedError, match="hiçbir kurumun listesinde görünmedi"):
            await loader.run()


async def test_a_rerun_succeeds_when_the_report_also_holds_later_applications(capsys):
    settings = Settings(db_prefix="unit")
    fake = FakeServices(settings)
    await _run(fake, settings, 40)  # 10 more than the demo below: made "since", as it were
    capsys.readouterr()
    started = asyncio.get_running_loop().time()
    report = await _run(fake, settings, 30)
    assert asyncio.get_running_loop().time() - started < 10
    assert report["total"] == 40
    assert "demo dışında 10 başvuru daha var" in capsys.readouterr().out
