"""The Denizli taxonomy as data: its figures, its codes, and who answers each category where."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from pydantic import ValidationError

from services.common.topics import INSTITUTION_CODE_RE, institution_topic
from services.routing.domain import InstitutionKind, Scope, Taxonomy, UnknownCategory
from services.routing.taxonomy import DATA_DIR, default_registry

DENIZLI_DISTRICTS = [
    "Acıpayam", "Babadağ", "Baklan", "Bekilli", "Beyağaç", "Bozkurt", "Buldan", "Çal", "Çameli",
    "Çardak", "Çivril", "Güney", "Honaz", "Kale", "Merkezefendi", "Pamukkale", "Sarayköy",
    "Serinhisar", "Tavas",
]  # fmt: skip
LOCAL_OFFICES = (InstitutionKind.KAYMAKAMLIK, InstitutionKind.BELEDIYE, InstitutionKind.MEB)
CONTRACT_KINDS = (
    "VALILIK BELEDIYE SU_IDARESI ELEKTRIK DOGALGAZ KARAYOLLARI MEB SAGLIK EMNIYET JANDARMA SGK "
    "ASH SYDV TARIM CEVRE TAPU NUFUS VERGI ISKUR MUFTULUK AFAD GSB TICARET ULASTIRMA DSI ORMAN"
).split()


@pytest.fixture(scope="module")
def denizli() -> Taxonomy:
    return default_registry().for_province(20)


def categories(taxonomy: Taxonomy):
    return [c for h in taxonomy.headings for c in h.categories]


class TestFigures:
    def test_17_headings_327_categories_83_institutions(self, denizli: Taxonomy):
        assert len(denizli.headings) == 17
        assert len(categories(denizli)) == 327
        assert len(denizli.institutions) == 83

    def test_province_and_its_19_districts_spelled_in_turkish(self, denizli: Taxonomy):
        assert (denizli.province_code, denizli.province) == (20, "Denizli")
        assert denizli.districts == DENIZLI_DISTRICTS

    def test_every_district_has_its_kaymakamlik_municipality_and_education_office(
        self, denizli: Taxonomy
    ):
        per_district = Counter(
            (i.kind, i.district) for i in denizli.institutions if i.district is not None
        )
        for district in DENIZLI_DISTRICTS:
            for kind in LOCAL_OFFICES:
                assert per_district[(kind, district)] == 1, (kind, district)

    def test_institution_counts_by_kind(self, denizli: Taxonomy):
        kinds = Counter(i.kind.value for i in denizli.institutions)
        assert kinds["KAYMAKAMLIK"] == 19
        assert kinds["BELEDIYE"] == 20  # the metropolitan municipality and 19 district ones
        assert kinds["MEB"] == 20  # the province office and 19 district offices
        assert sum(kinds.values()) == 83

    def test_the_data_file_is_the_only_source(self):
        assert [p.name for p in DATA_DIR.glob("taxonomy_*.json")] == ["taxonomy_denizli.json"]


class TestCodesAndKinds:
    def test_every_contract_kind_has_an_institution_and_no_other_kind_appears(
        self, denizli: Taxonomy
    ):
        present = {i.kind.value for i in denizli.institutions}
        assert set(CONTRACT_KINDS) <= present
        assert present - set(CONTRACT_KINDS) == {"KAYMAKAMLIK"}
        handled = {c.handler.kind.value for c in categories(denizli)}
        assert handled <= present

    def test_institution_codes_are_unique_and_name_valid_topics(self, denizli: Taxonomy):
        codes = [i.code for i in denizli.institutions]
        assert len(set(codes)) == len(codes)
        for code in codes:
            assert INSTITUTION_CODE_RE.fullmatch(code), code
            assert institution_topic(code) == f"acikkapi.institution.{code}"

    def test_category_and_heading_codes_are_unique_and_shaped(self, denizli: Taxonomy):
        heading_codes = [h.code for h in denizli.headings]
        assert len(set(heading_codes)) == 17
        codes = [c.code for c in categories(denizli)]
        assert len(set(codes)) == 327
        for heading in denizli.headings:
            for n, category in enumerate(heading.categories, start=1):
                assert category.code == f"{heading.code}-{n:03d}"
                assert category.keywords

    def test_e_mails_are_unique_and_on_the_fake_domain(self, denizli: Taxonomy):
        emails = [i.email for i in denizli.institutions]
        assert len(set(emails)) == 83
        assert all(e.endswith("@acikkapi.local") for e in emails)
        kym = denizli.institution("MERKEZEFENDI-KYM")
        assert kym is not None and kym.email == "merkezefendi.kaymakamlik@acikkapi.local"


class TestResolution:
    def test_every_handler_resolves_for_every_district_and_for_none(self, denizli: Taxonomy):
        for category in categories(denizli):
            for district in [None, *DENIZLI_DISTRICTS]:
                institution = denizli.resolve_institution(category, district)
                if category.handler.kind is InstitutionKind.KAYMAKAMLIK and district is None:
                    assert institution.kind is InstitutionKind.VALILIK
                else:
                    assert institution.kind is category.handler.kind
                if category.handler.scope is Scope.province:
                    assert institution.district is None
                else:
                    assert institution.district in (district, None)

    @pytest.mark.parametrize(
        ("district", "expected"),
        [("Merkezefendi", "MERKEZEFENDI-KYM"), ("Pamukkale", "PAMUKKALE-KYM")],
    )
    def test_central_kaymakamliks_take_their_districts_kaymakamlik_categories(
        self, denizli: Taxonomy, district: str, expected: str
    ):
        handled = [c for c in categories(denizli) if c.handler.kind is InstitutionKind.KAYMAKAMLIK]
        names = {c.name for c in handled}
        assert {"Muhtarlık işleri", "Sosyal yardım başvurularının koordinasyonu"} <= names
        for category in handled:
            assert denizli.resolve_institution(category, district).code == expected
            decision = denizli.decide(category.code, district)
            assert decision.institution_code == expected
            assert decision.institution_kind == "KAYMAKAMLIK"

    def test_district_scope_finds_the_district_office(self, denizli: Taxonomy):
        school = denizli.category("EGT-001")  # okul binası
        assert school is not None and school.handler.scope is Scope.district
        assert denizli.resolve_institution(school, "Tavas").code == "TAVAS-MEM"
        assert denizli.resolve_institution(school, None).code == "DENIZLI-MEM"
        garbage = denizli.category("BEL-001")  # çöp toplama
        assert denizli.resolve_institution(garbage, "Çivril").code == "CIVRIL-BLD"

    def test_province_scope_ignores_the_district(self, denizli: Taxonomy):
        transit = denizli.category("ULS-001")  # belediye otobüsleri: Büyükşehir
        assert transit is not None and transit.handler.scope is Scope.province
        assert denizli.resolve_institution(transit, "Buldan").code == "DENIZLI-BB"
        assert denizli.resolve_institution("ALT-001", "Buldan").code == "DESKI"

    def test_district_without_its_own_office_falls_back_to_the_province(self, denizli: Taxonomy):
        aid = denizli.category("SOS-001")  # SYDV, district scope, one province-wide foundation
        assert aid is not None and aid.handler.scope is Scope.district
        assert denizli.resolve_institution(aid, "Honaz").code == "DENIZLI-SYDV"

    def test_unknown_district_resolves_as_the_province(self, denizli: Taxonomy):
        assert denizli.resolve_institution("NUF-012", "Karşıyaka").code == "DENIZLI-VALILIK"
        assert denizli.resolve_institution("BEL-001", None).code == "DENIZLI-BB"

    def test_district_names_match_however_they_are_typed(self, denizli: Taxonomy):
        for typed in ("Çivril", "çivril", "ÇİVRİL", "CIVRIL", "civril", " Çivril "):
            assert denizli.district(typed) == "Çivril"
        assert denizli.district("Beyagac") == "Beyağaç"
        assert denizli.district("İzmir") is None
        assert denizli.resolve_institution("BEL-001", "merkezefendi").code == "MERKEZEFENDI-BLD"

    def test_unknown_category_is_refused(self, denizli: Taxonomy):
        with pytest.raises(UnknownCategory, match="XYZ-999"):
            denizli.decide("XYZ-999", "Tavas")
        assert denizli.category("alt-001") is not None  # codes are read case-insensitively


def small(**changes) -> dict:
    """A two-district taxonomy to test the rules on data that lacks offices."""
    data = {
        "province_code": 81,
        "province": "Deneme",
        "districts": ["Birinci", "İkinci"],
        "institutions": [
            {"code": "DNM-VALILIK", "name": "Valilik", "kind": "VALILIK", "email": "v@x.local"},
            {"code": "BB", "name": "Büyükşehir", "kind": "BELEDIYE", "email": "bb@x.local"},
            {
                "code": "B1",
                "name": "Birinci Belediyesi",
                "kind": "BELEDIYE",
                "district": "Birinci",
                "email": "b1@x.local",
            },
            {
                "code": "K1",
                "name": "Birinci Kaymakamlığı",
                "kind": "KAYMAKAMLIK",
                "district": "Birinci",
                "email": "k1@x.local",
            },
        ],
        "headings": [
            {
                "code": "BEL",
                "name": "Belediye",
                "categories": [
                    {
                        "code": "BEL-001",
                        "name": "Çöp toplama",
                        "keywords": ["çöp"],
                        "handler": {"kind": "BELEDIYE", "scope": "district"},
                    },
                    {
                        "code": "BEL-002",
                        "name": "Muhtarlık işleri",
                        "keywords": ["muhtar"],
                        "handler": {"kind": "KAYMAKAMLIK", "scope": "district"},
                    },
                ],
            }
        ],
    }
    data.update(changes)
    return data


class TestRulesOnSmallData:
    def test_missing_district_office_falls_back_to_the_province_wide_one(self):
        t = Taxonomy.model_validate(small())
        assert t.resolve_institution("BEL-001", "Birinci").code == "B1"
        assert t.resolve_institution("BEL-001", "İkinci").code == "BB"

    def test_missing_kaymakamlik_falls_back_to_the_valilik(self):
        t = Taxonomy.model_validate(small())
        assert t.resolve_institution("BEL-002", "Birinci").code == "K1"
        assert t.resolve_institution("BEL-002", "İkinci").code == "DNM-VALILIK"

    def test_an_unresolvable_handler_is_refused_at_load(self):
        data = small()
        data["headings"][0]["categories"][0]["handler"] = {"kind": "DSI", "scope": "province"}
        with pytest.raises(ValidationError, match="BEL-001: no DSI"):
            Taxonomy.model_validate(data)

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (lambda d: d["institutions"].append(dict(d["institutions"][0])), "twice: DNM-VALILIK"),
            (lambda d: d["institutions"][0].update(code="deneme.valilik"), "pattern"),
            (lambda d: d["institutions"][0].update(kind="BAKANLIK"), "kind"),
            (lambda d: d["institutions"][2].update(district="Üçüncü"), "unknown district"),
            (
                lambda d: d["headings"][0]["categories"][1].update(code="ALT-002"),
                "not under heading BEL",
            ),
            (
                lambda d: d["headings"][0]["categories"][1].update(code="BEL-001"),
                "category code used twice",
            ),
            (
                lambda d: d["headings"][0]["categories"][0].update(keywords=["iki kelime"]),
                "pattern",
            ),
        ],
    )
    def test_bad_data_is_refused_at_load(self, mutate, message):
        data = json.loads(json.dumps(small()))
        mutate(data)
        with pytest.raises(ValidationError, match=message):
            Taxonomy.model_validate(data)


class TestPublicView:
    def test_lists_the_responsible_institution_per_district(self, denizli: Taxonomy):
        view = denizli.public_view().model_dump(mode="json")
        assert [h["name"] for h in view["headings"]][:2] == ["Altyapı ve Su", "Ulaşım ve Yollar"]
        assert len(view["institutions"]) == 83
        school = next(c for c in view["headings"][2]["categories"] if c["code"] == "EGT-001")
        assert school["handler"] == {"kind": "MEB", "scope": "district"}
        assert school["institution"]["code"] == "DENIZLI-MEM"
        assert school["by_district"]["Merkezefendi"] == "MERKEZEFENDI-MEM"
        assert len(school["by_district"]) == 19

    def test_resolved_for_one_district(self, denizli: Taxonomy):
        view = denizli.public_view("pamukkale").model_dump(mode="json")
        assert view["district"] == "Pamukkale"
        everything = [c for h in view["headings"] for c in h["categories"]]
        muhtar = next(c for c in everything if c["code"] == "NUF-012")
        assert muhtar["institution"] == {
            "code": "PAMUKKALE-KYM",
            "name": "Pamukkale Kaymakamlığı",
            "kind": "KAYMAKAMLIK",
        }
        assert muhtar["by_district"] is None
