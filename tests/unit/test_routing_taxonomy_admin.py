"""Taxonomy administration without I/O: each edit and the Turkish reason it is refused, the
difference between two versions, and the use cases (optimistic versions, seeding, keeping the
topic current) over an in-memory store and publisher."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from services.common.auth import Principal, Role
from services.common.errors import install_error_handlers
from services.common.events import TaxonomyPublished
from services.common.messaging import Outgoing
from services.common.settings import Settings
from services.routing import taxonomy_edits as edits
from services.routing.admin import (
    PreconditionRequired,
    TaxonomyAdmin,
    UnknownProvince,
    build_admin_router,
)
from services.routing.domain import Scope, Taxonomy, TaxonomyRegistry
from services.routing.taxonomy import default_registry
from services.routing.taxonomy_diff import FieldChange, diff, summary
from services.routing.taxonomy_edits import Draft, Missing, Rejected, TaxonomyDocument
from services.routing.taxonomy_store import (
    LiveTaxonomies,
    TaxonomyVersion,
    VersionConflict,
    VersionInfo,
)
from tests.support import bearer

NOW = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)
ADMIN = Principal(subject="ayse.admin", role=Role.admin)


@pytest.fixture(scope="module")
def denizli() -> Taxonomy:
    return default_registry().for_province(20)


@pytest.fixture
def document(denizli: Taxonomy) -> TaxonomyDocument:
    return TaxonomyDocument(taxonomy=denizli)


def edited(document: TaxonomyDocument, *steps: Callable[[Draft], object]) -> TaxonomyDocument:
    draft = Draft.of(document, 2)
    for step in steps:
        step(draft)
    return edits.finish(draft)


def refused(document: TaxonomyDocument, step: Callable[[Draft], object]) -> list[dict[str, Any]]:
    with pytest.raises(Rejected) as caught:
        edited(document, step)
    return caught.value.errors


# --- Edits -----------------------------------------------------------------------------------


class TestCategories:
    def test_a_renamed_category_is_one_named_change(self, document):
        after = edited(
            document,
            lambda d: edits.update_category(
                d, "ALT-001", edits.CategoryPatch(name="İçme suyu kesintisi ve arızası")
            ),
        )

        changes = diff(document, after)
        assert [c.model_dump(mode="json") for c in changes] == [
            {
                "entity": "category",
                "code": "ALT-001",
                "change": "changed",
                "name": "İçme suyu kesintisi ve arızası",
                "fields": {
                    "name": {
                        "before": "İçme suyu kesintisi",
                        "after": "İçme suyu kesintisi ve arızası",
                    }
                },
            }
        ]
        assert summary(changes) == "1 kategori değişti (ALT-001)."
        assert after.taxonomy.decide("ALT-001", "Pamukkale").institution_code == "DESKI"

    def test_a_new_category_without_a_code_gets_the_headings_next_number(self, document):
        body = edits.CategoryIn(
            heading_code="alt",
            name="Yağmur suyu ızgarası tıkalı",
            keywords=["ızgara", "mazgal", "yağmur"],
            institution_kind="SU_IDARESI",
        )
        draft = Draft.of(document, 2)

        code = edits.add_category(draft, body)
        after = edits.finish(draft)

        last = max(c.code for c in document.taxonomy.headings[0].categories)
        assert code == f"ALT-{int(last[-3:]) + 1:03d}"
        assert after.taxonomy.decide(code, "Tavas").institution_code == "DESKI"
        assert summary(diff(document, after)) == f"1 kategori eklendi ({code})."

    def test_a_district_scope_category_resolves_per_district(self, document):
        body = edits.CategoryIn(
            heading_code="ALT",
            name="Mahalle çeşmesi bakımı",
            keywords=["çeşme"],
            institution_kind="BELEDIYE",
            scope=Scope.district,
        )
        draft = Draft.of(document, 2)
        code = edits.add_category(draft, body)
        after = edits.finish(draft).taxonomy

        assert after.decide(code, "Tavas").institution_code == "TAVAS-BLD"
        assert after.decide(code, None).institution_code == "DENIZLI-BB"

    def test_a_category_can_name_its_institution_and_then_it_answers_everywhere(self, document):
        after = edited(
            document,
            lambda d: edits.update_category(
                d, "ALT-016", edits.CategoryPatch(institution_code="DESKI")
            ),
        )

        taxonomy = after.taxonomy
        assert {taxonomy.decide("ALT-016", d).institution_code for d in taxonomy.districts} == {
            "DESKI"
        }
        change = next(c for c in diff(document, after) if c.entity == "responsibility")
        assert change.code == "ALT-016"
        assert change.fields["Acıpayam"].model_dump() == {
            "before": "ACIPAYAM-BLD",
            "after": "DESKI",
        }

    def test_a_named_institution_with_district_scope_is_refused(self, document):
        errors = refused(
            document,
            lambda d: edits.update_category(
                d,
                "ALT-001",
                edits.CategoryPatch(institution_code="DESKI", scope=Scope.district),
            ),
        )
        assert errors[0]["field"] == "scope"
        assert "kapsam 'province' olmalıdır" in errors[0]["message"]

    def test_a_named_institution_of_another_kind_is_refused(self, document):
        errors = refused(
            document,
            lambda d: edits.update_category(
                d,
                "ALT-001",
                edits.CategoryPatch(institution_code="DESKI", institution_kind="BELEDIYE"),
            ),
        )
        assert errors == [
            {
                "field": "institution_kind",
                "code": "kind_mismatch",
                "message": "Denizli Su ve Kanalizasyon İdaresi (DESKİ) SU_IDARESI türünde; "
                "institution_kind ya boş bırakılmalı ya da SU_IDARESI olmalıdır (adıyla "
                "belirlenen kurumu kaldırmak için institution_code: null gönderin).",
            }
        ]

    def test_a_code_of_another_heading_is_refused(self, document):
        body = edits.CategoryIn(
            heading_code="ALT",
            code="CEV-099",
            name="Deneme",
            keywords=["x"],
            institution_kind="VALILIK",
        )
        errors = refused(document, lambda d: edits.add_category(d, body))
        assert errors[0]["field"] == "code"
        assert errors[0]["code"] == "wrong_heading"

    def test_an_unknown_kind_is_refused_with_the_kinds_there_are(self, document):
        body = edits.CategoryIn(
            heading_code="ALT", name="Deneme", keywords=["x"], institution_kind="KALKINMA"
        )
        errors = refused(document, lambda d: edits.add_category(d, body))
        assert errors[0]["field"] == "institution_kind"
        assert errors[0]["message"].startswith("'KALKINMA' diye bir kurum türü yok. Geçerli")

    def test_a_moved_category_gets_a_code_under_its_new_heading(self, document):
        draft = Draft.of(document, 2)

        code = edits.update_category(draft, "ALT-016", edits.CategoryPatch(heading_code="CEV"))
        after = edits.finish(draft)

        assert code.startswith("CEV-")
        assert after.taxonomy.category("ALT-016") is None
        assert after.retired.categories["ALT-016"].replaced_by == code
        with pytest.raises(Missing, match=f"'ALT-016' kategorisi {code} koduyla taşındı"):
            Draft.of(after, 3).category("ALT-016")

    def test_a_retired_code_is_not_given_again(self, document):
        retired = edited(document, lambda d: edits.retire_category(d, "ALT-002"))
        again = edits.CategoryIn(
            heading_code="ALT",
            code="ALT-002",
            name="Yeni",
            keywords=["x"],
            institution_kind="VALILIK",
        )

        errors = refused(retired, lambda d: edits.add_category(d, again))
        assert errors[0]["code"] == "retired_code"
        draft = Draft.of(retired, 3)
        fresh = edits.add_category(draft, again.model_copy(update={"code": None}))
        assert fresh != "ALT-002"

    def test_the_last_category_of_a_heading_cannot_be_retired(self):
        small = Taxonomy.model_validate(SMALL)
        errors = refused(
            TaxonomyDocument(taxonomy=small), lambda d: edits.retire_category(d, "GEN-001")
        )
        assert errors[0]["code"] == "last_category"
        assert "başlığı emekliye ayırın" in errors[0]["message"]

    def test_a_retired_heading_takes_its_categories_with_it(self, document):
        after = edited(document, lambda d: edits.retire_heading(d, "ALT"))
        heading = document.taxonomy.headings[0]
        assert {c.code for c in heading.categories} <= set(after.retired.categories)
        assert "ALT" in after.retired.headings
        assert all(h.code != "ALT" for h in after.taxonomy.headings)


class TestInstitutions:
    def test_a_district_office_is_found_by_any_spelling_of_its_district(self, document):
        body = edits.InstitutionIn(
            code="ACIPAYAM-ILCE-SAGLIK",
            name="Acıpayam İlçe Sağlık Müdürlüğü",
            kind="SAGLIK",
            email="acipayam.saglik@acikkapi.local",
            district="ACIPAYAM",
        )
        after = edited(document, lambda d: edits.add_institution(d, body, district_office=True))
        added = after.taxonomy.institution("ACIPAYAM-ILCE-SAGLIK")
        assert added is not None and added.district == "Acıpayam"

    def test_an_unknown_district_lists_the_districts_there_are(self, document):
        body = edits.InstitutionIn(
            code="X-SAGLIK",
            name="Bir Sağlık Birimi",
            kind="SAGLIK",
            email="a@b.co",
            district="Bodrum",
        )
        errors = refused(document, lambda d: edits.add_institution(d, body))
        assert errors[0]["field"] == "district"
        assert errors[0]["message"].startswith("'Bodrum' Denizli ilçeleri arasında yok.")
        assert "Acıpayam, Babadağ" in errors[0]["message"]

    def test_a_district_office_needs_its_district(self, document):
        body = edits.InstitutionIn(code="X-SAGLIK", name="Birim", kind="SAGLIK", email="a@b.co")
        errors = refused(document, lambda d: edits.add_institution(d, body, district_office=True))
        assert errors == [
            {"field": "district", "code": "missing", "message": "İlçe birimi için ilçe zorunludur."}
        ]

    def test_two_offices_of_one_kind_in_one_district_are_refused(self, document):
        body = edits.InstitutionIn(
            code="ACIPAYAM-BLD-2",
            name="İkinci Belediye",
            kind="BELEDIYE",
            email="a@b.co",
            district="Acıpayam",
        )
        errors = refused(document, lambda d: edits.add_institution(d, body))
        assert errors == [
            {
                "field": "kind",
                "code": "duplicate_office",
                "message": "Acıpayam ilçesinde BELEDIYE türünde zaten bir kurum var: "
                "ACIPAYAM-BLD (Acıpayam Belediyesi). Her yerde bir türden tek kurum olabilir.",
            }
        ]

    def test_an_institution_still_answering_categories_is_not_retired(self, document):
        errors = refused(document, lambda d: edits.retire_institution(d, "ACIPAYAM-BLD"))
        assert errors[0]["code"] == "still_responsible"
        assert errors[0]["message"].startswith("Acıpayam Belediyesi hâlâ 40 kategoride sorumlu")

    def test_with_transfer_a_district_offices_work_passes_to_the_province_office(self, document):
        after = edited(
            document, lambda d: edits.retire_institution(d, "ACIPAYAM-BLD", transfer=True)
        )

        changes = diff(document, after)
        moved = [c for c in changes if c.entity == "responsibility"]
        assert len(moved) == 40
        assert all(
            c.fields == {"Acıpayam": FieldChange(before="ACIPAYAM-BLD", after="DENIZLI-BB")}
            for c in moved
        )
        assert summary(changes).startswith("1 kurum emekliye ayrıldı (ACIPAYAM-BLD);")

    def test_even_with_transfer_nobody_left_to_answer_is_refused(self, document):
        errors = refused(document, lambda d: edits.retire_institution(d, "DESKI", transfer=True))
        assert errors[0]["field"] == "categories.ALT-001.handler.kind"
        assert errors[0]["code"] == "unresolvable"
        assert errors[0]["message"] == (
            "ALT-001 kategorisinin il genelinde sorumlusu bulunamıyor: il genelinde SU_IDARESI "
            "türünde bir kurum yok."
        )

    def test_a_named_institution_is_not_retired(self, document):
        named = edited(
            document,
            lambda d: edits.update_category(
                d, "ALT-016", edits.CategoryPatch(institution_code="DESKI")
            ),
        )
        errors = refused(
            named,
            lambda d: edits.retire_institution(d, "DENIZLI-BB", transfer=True),
        )
        assert errors[0]["code"] == "unresolvable"  # the metropolitan municipality's work stays
        errors = refused(named, lambda d: edits.retire_institution(d, "DESKI", transfer=True))
        assert errors[0]["message"].startswith(
            "Denizli Su ve Kanalizasyon İdaresi (DESKİ) şu kategorilerin adıyla"
        )

    def test_a_renamed_institution_keeps_its_code_and_topic(self, document):
        after = edited(
            document,
            lambda d: edits.update_institution(
                d, "DESKI", edits.InstitutionPatch(name="DESKİ Genel Müdürlüğü")
            ),
        )
        assert after.taxonomy.decide("ALT-001", None).institution_name == "DESKİ Genel Müdürlüğü"
        [change] = diff(document, after)
        assert (change.entity, change.code, list(change.fields)) == (
            "institution",
            "DESKI",
            ["name"],
        )


class TestKinds:
    def test_a_new_kind_can_have_institutions_and_categories(self, document):
        def steps(d: Draft) -> None:
            edits.add_kind(d, edits.KindIn(code="KALKINMA_AJANSI", name="Kalkınma ajansı"))
            edits.add_institution(
                d,
                edits.InstitutionIn(
                    code="GEKA",
                    name="Güney Ege Kalkınma Ajansı",
                    kind="KALKINMA_AJANSI",
                    email="geka@acikkapi.local",
                ),
            )
            edits.add_category(
                d,
                edits.CategoryIn(
                    heading_code="VRG",
                    code="VRG-901",
                    name="Kalkınma ajansı destekleri",
                    keywords=["hibe", "destek"],
                    institution_kind="KALKINMA_AJANSI",
                ),
            )

        after = edited(document, steps)
        decision = after.taxonomy.decide("VRG-901", "Çal")
        assert (decision.institution_code, decision.institution_kind) == ("GEKA", "KALKINMA_AJANSI")
        assert after.kinds()["KALKINMA_AJANSI"] == "Kalkınma ajansı"

    def test_a_kind_in_use_is_not_retired(self, document):
        errors = refused(document, lambda d: edits.retire_kind(d, "DSI"))
        assert errors[0]["code"] == "kind_in_use"

    def test_a_contract_kind_can_be_renamed_for_the_province(self, document):
        after = edited(
            document,
            lambda d: edits.rename_kind(d, "BELEDIYE", edits.KindPatch(name="Belediye başkanlığı")),
        )
        assert after.kinds()["BELEDIYE"] == "Belediye başkanlığı"
        [change] = diff(document, after)
        assert change.model_dump(include={"entity", "code", "change"}) == {
            "entity": "kind",
            "code": "BELEDIYE",
            "change": "changed",
        }


class TestInputs:
    @pytest.mark.parametrize(
        ("model", "data", "message"),
        [
            (edits.HeadingPatch, {"name": "ab"}, "at least 3"),
            (
                edits.KindIn,
                {"code": "belediye-2", "name": "X türü"},
                "Kurum türü kodu büyük harfle",
            ),
            (
                edits.CategoryIn,
                {"heading_code": "ALTI", "name": "Bir ad", "keywords": ["su"]},
                "Başlık kodu üç büyük harftir",
            ),
            (
                edits.CategoryIn,
                {"heading_code": "ALT", "name": "Bir ad", "keywords": ["iki kelime"]},
                "anahtar kelime tek kelimedir",
            ),
            (
                edits.InstitutionIn,
                {"code": "X", "name": "Bir kurum", "kind": "VALILIK", "email": "a@b.co"},
                "Kurum kodu 2-64 karakterdir",
            ),
            (
                edits.InstitutionIn,
                {"code": "XY", "name": "Bir kurum", "kind": "VALILIK", "email": "kurum"},
                "Geçerli bir e-posta adresi yazın",
            ),
        ],
    )
    def test_bad_fields_are_refused_in_turkish(self, model, data, message):
        with pytest.raises(ValidationError, match=message):
            model.model_validate(data)

    def test_codes_are_taken_in_any_case(self):
        body = edits.CategoryIn(heading_code=" alt ", name="Bir ad", keywords=["su", "su"])
        assert (body.heading_code, body.keywords) == ("ALT", ["su"])


# --- A whole file ----------------------------------------------------------------------------

SMALL: dict[str, Any] = {
    "province_code": 74,
    "province": "Bartın",
    "districts": ["Merkez", "Amasra", "Kurucaşile", "Ulus"],
    "institutions": [
        {
            "code": "BARTIN-VALILIK",
            "name": "Bartın Valiliği",
            "kind": "VALILIK",
            "district": None,
            "email": "bartin.valilik@acikkapi.local",
        },
        {
            "code": "BARTIN-BLD",
            "name": "Bartın Belediyesi",
            "kind": "BELEDIYE",
            "district": None,
            "email": "bartin.belediye@acikkapi.local",
        },
        {
            "code": "AMASRA-BLD",
            "name": "Amasra Belediyesi",
            "kind": "BELEDIYE",
            "district": "Amasra",
            "email": "amasra.belediye@acikkapi.local",
        },
    ],
    "headings": [
        {
            "code": "ALT",
            "name": "Altyapı",
            "categories": [
                {
                    "code": "ALT-001",
                    "name": "Su kesintisi",
                    "keywords": ["su", "kesinti"],
                    "handler": {"kind": "BELEDIYE", "scope": "district"},
                },
                {
                    "code": "ALT-002",
                    "name": "Yol bozukluğu",
                    "keywords": ["yol", "çukur"],
                    "handler": {"kind": "BELEDIYE", "scope": "province"},
                },
            ],
        },
        {
            "code": "GEN",
            "name": "Genel",
            "categories": [
                {
                    "code": "GEN-001",
                    "name": "Valilik hizmetleri",
                    "keywords": ["vali"],
                    "handler": {"kind": "VALILIK", "scope": "province"},
                }
            ],
        },
    ],
}


def small(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(SMALL))
    data.update(changes)
    return data


class TestLoad:
    def test_a_new_province_loads_as_version_one(self):
        document = edits.finish(edits.load(small(), 74, None, 1))
        assert document.taxonomy.decide("ALT-001", "Amasra").institution_code == "AMASRA-BLD"
        assert document.taxonomy.decide("ALT-001", "Ulus").institution_code == "BARTIN-BLD"

    def test_the_plate_code_must_match_the_address(self):
        with pytest.raises(Rejected) as caught:
            edits.load(small(), 20, None, 1)
        assert caught.value.errors[0]["code"] == "province_mismatch"

    def test_a_province_name_that_is_not_the_plate_codes_is_refused(self):
        with pytest.raises(Rejected) as caught:
            edits.finish(edits.load(small(province="Bartin Ili"), 74, None, 1))
        assert caught.value.errors == [
            {
                "field": "province",
                "code": "province_mismatch",
                "message": "74 plaka kodu Bartın ilinindir; dosyada 'Bartin Ili' yazıyor.",
            }
        ]

    def test_every_problem_of_a_bad_file_is_named_in_turkish(self):
        data = small()
        data["institutions"].append(dict(data["institutions"][0]))
        data["institutions"][2]["district"] = "Bodrum"
        data["headings"][0]["categories"][0]["handler"]["kind"] = "KALKINMA"
        with pytest.raises(Rejected) as caught:
            edits.finish(edits.load(data, 74, None, 1))
        assert {(e["field"], e["code"]) for e in caught.value.errors} == {
            ("institutions.AMASRA-BLD.district", "invalid"),
            ("institutions.BARTIN-VALILIK.code", "duplicate"),
            ("categories.ALT-001.handler.kind", "unknown_kind"),
        }

    def test_a_file_without_the_fields_of_a_taxonomy_is_refused(self):
        with pytest.raises(Rejected) as caught:
            edits.load({"province_code": 74, "headings": {}}, 74, None, 1)
        assert {e["field"] for e in caught.value.errors} == {
            "province",
            "districts",
            "institutions",
            "headings",
        }

    def test_a_new_file_retires_what_it_no_longer_has(self):
        first = edits.finish(edits.load(small(), 74, None, 1))
        data = small()
        data["headings"][0]["categories"].pop(1)
        second = edits.finish(edits.load(data, 74, first, 2))
        assert set(second.retired.categories) == {"ALT-002"}
        [change] = diff(first, second)
        assert (change.entity, change.code, change.change) == ("category", "ALT-002", "retired")


# --- The use cases, over an in-memory store and publisher ------------------------------------


class MemoryVersions:
    """TaxonomyVersions in memory: numbers are unique per province, as the store's _id is."""

    def __init__(self) -> None:
        self.versions: dict[tuple[int, int], TaxonomyVersion] = {}

    async def head(self, province_code: int) -> TaxonomyVersion | None:
        mine = [v for (p, _), v in self.versions.items() if p == province_code]
        return max(mine, key=lambda v: v.version, default=None)

    async def get(self, province_code: int, version: int) -> TaxonomyVersion | None:
        return self.versions.get((province_code, version))

    async def newest(self, province_code: int) -> VersionInfo | None:
        await asyncio.sleep(0)  # a round trip: another request may run meanwhile
        head = await self.head(province_code)
        return None if head is None else VersionInfo.model_validate(head.model_dump())

    async def document(self, province_code: int, version: int) -> TaxonomyDocument | None:
        found = self.versions.get((province_code, version))
        return None if found is None else found.document

    async def log(
        self, province_code: int, limit: int, offset: int
    ) -> tuple[list[VersionInfo], int]:
        mine = sorted(
            (v for (p, _), v in self.versions.items() if p == province_code),
            key=lambda v: -v.version,
        )
        return [VersionInfo.model_validate(v.model_dump()) for v in mine][offset:][:limit], len(
            mine
        )

    async def heads(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for p, n in self.versions:
            out[p] = max(out.get(p, 0), n)
        return out

    async def append(self, version: TaxonomyVersion) -> None:
        await asyncio.sleep(0)
        key = (version.province_code, version.version)
        if key in self.versions:
            raise VersionConflict(await self.head(version.province_code))
        self.versions[key] = version


class Sent:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []
        self.fail = False

    async def send_all(self, messages: Iterable[Outgoing]) -> None:
        batch = list(messages)
        if self.fail:
            raise ConnectionError("Kafka away")
        self.messages.extend(batch)

    async def send(self, topic: str, event: Any, key: str | None) -> None:
        raise AssertionError("not used")

    def events(self) -> list[TaxonomyPublished]:
        return [TaxonomyPublished.model_validate_json(m.value) for m in self.messages]


class World:
    def __init__(self, seeds: list[Taxonomy]) -> None:
        self.store = MemoryVersions()
        self.sent = Sent()
        self.registry = TaxonomyRegistry(seeds)
        self.live = LiveTaxonomies(self.store, self.registry, self.sent, Settings(), seeds=seeds)
        self.admin = TaxonomyAdmin(self.store, self.live, clock=lambda: NOW)


@pytest.fixture
async def world(denizli: Taxonomy) -> World:
    world = World([denizli])
    await world.live.load()
    return world


def rename(code: str, name: str) -> Callable[[Draft], str]:
    return lambda d: edits.update_category(d, code, edits.CategoryPatch(name=name))


class TestUseCases:
    async def test_the_file_seeds_version_one_once(self, world: World, denizli: Taxonomy):
        head = await world.store.head(20)
        assert head is not None
        assert (head.version, head.author, head.action) == (1, "sistem", "seed")
        assert head.summary.startswith("Varsayılan görev dağılımı dosyasından ilk yükleme: 17")

        again = World([denizli])
        again.store = world.store
        again.live.store = world.store
        await again.live.load()
        assert await world.store.heads() == {20: 1}

    async def test_a_change_makes_a_version_with_its_author_and_announces_it(self, world: World):
        outcome = await world.admin.change(
            20, 1, ADMIN, "category.update", rename("ALT-001", "Şebeke suyu kesintisi")
        )

        assert (outcome.changed, outcome.published) == (True, True)
        stored = await world.store.get(20, 2)
        assert stored is not None
        assert (stored.author, stored.author_role, stored.at, stored.action) == (
            "ayse.admin",
            "admin",
            NOW,
            "category.update",
        )
        assert stored.target == "ALT-001"
        assert stored.summary == "1 kategori değişti (ALT-001)."
        # This process decides with it at once...
        category = world.registry.for_province(20).category("ALT-001")
        assert category is not None and category.name == "Şebeke suyu kesintisi"
        # ...and every other one hears of it.
        [event] = world.sent.events()
        assert (event.province_code, event.version) == (20, "2")
        assert event.headings[0].categories[0].name == "Şebeke suyu kesintisi"

    async def test_a_change_on_an_old_version_is_a_conflict(self, world: World):
        await world.admin.change(20, 1, ADMIN, "category.update", rename("ALT-001", "Birinci ad"))

        with pytest.raises(VersionConflict) as caught:
            await world.admin.change(
                20, 1, ADMIN, "category.update", rename("ALT-002", "İkinci ad")
            )
        assert caught.value.current is not None and caught.value.current.version == 2
        assert set(await world.store.heads()) == {20}
        assert (await world.store.heads())[20] == 2

    async def test_two_changes_racing_for_one_number_lose_nothing(self, world: World):
        # Both admins read version 1 before either stores: the store lets one become version 2.
        results = await asyncio.gather(
            world.admin.change(20, 1, ADMIN, "category.update", rename("ALT-001", "Birinci")),
            world.admin.change(20, 1, ADMIN, "category.update", rename("ALT-002", "İkinci")),
            return_exceptions=True,
        )

        assert sorted(type(r).__name__ for r in results) == ["Outcome", "VersionConflict"]
        assert await world.store.heads() == {20: 2}
        kept = await world.store.get(20, 2)
        assert kept is not None
        assert kept.document.taxonomy.category("ALT-001").name == "Birinci"

    async def test_a_change_must_say_its_version(self, world: World):
        with pytest.raises(PreconditionRequired):
            await world.admin.change(20, None, ADMIN, "category.update", rename("ALT-001", "Ad"))

    async def test_a_change_that_changes_nothing_makes_no_version(self, world: World):
        same = rename("ALT-001", "İçme suyu kesintisi")
        outcome = await world.admin.change(20, 1, ADMIN, "category.update", same)
        assert (outcome.changed, outcome.version.version) == (False, 1)
        assert await world.store.heads() == {20: 1}

    async def test_an_unknown_province_is_said_by_name(self, world: World):
        with pytest.raises(UnknownProvince, match="Bartın \\(74\\) için kayıtlı bir görev"):
            await world.admin.change(74, 1, ADMIN, "category.update", rename("ALT-001", "x"))

    async def test_a_province_is_loaded_then_replaced(self, world: World):
        created = await world.admin.load(74, small(), None, ADMIN)
        assert (created.version.version, created.changed) == (1, True)
        assert world.registry.for_province(74).province == "Bartın"

        with pytest.raises(PreconditionRequired):
            await world.admin.load(74, small(), None, ADMIN)
        replaced = await world.admin.load(
            74, small(districts=[*SMALL["districts"], "Yeni"]), 1, ADMIN
        )
        assert replaced.version.version == 2
        assert [c.entity for c in replaced.version.changes] == ["province"]

    async def test_a_version_the_store_has_is_taken_by_every_process(self, world: World, denizli):
        other = World([denizli])
        other.store = world.store
        other.live.store = world.store
        await other.live.load()
        await world.admin.change(20, 1, ADMIN, "category.update", rename("ALT-001", "Yeni ad"))

        assert await other.live.sync() == [20]
        category = other.registry.for_province(20).category("ALT-001")
        assert category is not None and category.name == "Yeni ad"
        assert await other.live.sync() == []

    async def test_an_announcement_that_failed_is_left_to_reconcile(self, world: World):
        world.sent.fail = True
        outcome = await world.admin.change(
            20, 1, ADMIN, "category.update", rename("ALT-001", "Yeni ad")
        )
        assert (outcome.changed, outcome.published) == (True, False)


class TestReconcile:
    """The topic must end with every province's newest version."""

    async def test_at_start_what_the_topic_lacks_is_announced_at_once(self, world: World):
        world.live.topic.caught_up.set()

        assert await world.live.reconcile(now=100.0) == [20]
        assert [e.version for e in world.sent.events()] == ["1"]

    async def test_a_topic_that_shows_the_held_version_needs_nothing(self, world: World):
        world.live.topic.caught_up.set()
        world.live.topic.latest["20"] = world.live.held[20].event
        assert await world.live.reconcile(now=100.0) == []
        assert world.sent.messages == []

    async def test_a_topic_behind_is_announced_after_the_grace(self, world: World):
        world.live.topic.caught_up.set()
        world.live.topic.latest["20"] = world.live.held[20].event
        await world.live.reconcile(now=100.0)  # start: all is well
        stale = world.live.held[20].event.model_copy(update={"event_id": uuid.uuid4()})
        world.live.topic.latest["20"] = stale

        assert await world.live.reconcile(now=101.0) == []
        assert await world.live.reconcile(now=103.5) == [20]
        # and not again at once, if the other side keeps saying otherwise
        assert await world.live.reconcile(now=104.0) == []
        assert await world.live.reconcile(now=106.0) == [20]


# --- HTTP refusals ---------------------------------------------------------------------------


@pytest.fixture
async def http(world: World):
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_admin_router(world.admin))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://routing") as client:
        yield client


URL = "/api/v1/admin/taxonomy/20/categories/ALT-001"


class TestHttp:
    async def test_an_officer_is_forbidden(self, http: httpx.AsyncClient):
        response = await http.patch(
            URL,
            json={"name": "Yeni ad"},
            headers={**bearer(Settings(), Role.officer), "If-Match": '"1"'},
        )
        assert response.status_code == 403
        assert response.json()["errors"][0]["code"] == "forbidden"

    async def test_without_a_version_the_answer_is_428(self, http: httpx.AsyncClient):
        response = await http.patch(
            URL, json={"name": "Yeni ad"}, headers=bearer(Settings(), Role.admin)
        )
        assert response.status_code == 428
        assert response.json()["errors"][0]["field"] == "If-Match"

    async def test_a_stale_version_is_409_naming_the_current_one(self, http: httpx.AsyncClient):
        admin = bearer(Settings(), Role.admin, subject="mehmet.admin")
        first = await http.patch(
            URL, json={"name": "Birinci ad"}, headers={**admin, "If-Match": '"1"'}
        )
        assert first.status_code == 200, first.text
        assert first.headers["ETag"] == '"2"'

        stale = await http.patch(
            URL, json={"name": "İkinci ad", "expected_version": 1}, headers=admin
        )
        assert stale.status_code == 409
        assert stale.headers["ETag"] == '"2"'
        [error] = stale.json()["errors"]
        assert error["code"] == "version_conflict"
        assert error["message"].startswith(
            "Görev dağılımı siz düzenlerken başka biri tarafından değiştirildi; değişikliğiniz "
            "kaydedilmedi. Güncel sürüm 2: mehmet.admin, 2026-12-04 10:30 UTC"
        )

    async def test_an_admin_of_another_province_is_forbidden(self, http: httpx.AsyncClient):
        response = await http.patch(
            URL,
            json={"name": "Yeni ad"},
            headers={**bearer(Settings(), Role.admin, province=11), "If-Match": '"1"'},
        )
        assert response.status_code == 403

    async def test_a_refused_edit_is_422_with_field_errors(self, http: httpx.AsyncClient):
        response = await http.post(
            "/api/v1/admin/taxonomy/20/categories",
            json={
                "heading_code": "ALT",
                "name": "Deneme",
                "keywords": ["x"],
                "institution_kind": "YOK",
            },
            headers={**bearer(Settings(), Role.admin), "If-Match": "1"},
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "institution_kind"

    async def test_an_unknown_category_is_404(self, http: httpx.AsyncClient):
        response = await http.delete(
            "/api/v1/admin/taxonomy/20/categories/ZZZ-001",
            headers={**bearer(Settings(), Role.admin), "If-Match": "1"},
        )
        assert response.status_code == 404
        assert response.json()["errors"][0]["message"] == "'ZZZ-001' kodlu bir kategori yok."
