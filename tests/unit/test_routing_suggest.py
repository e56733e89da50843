"""Keyword suggestions: Turkish-aware normalisation, and sensible first choices for real texts."""

from __future__ import annotations

import pytest

from services.common.turkish import turkish_lower
from services.routing.domain import Decision, Pending, Taxonomy, TaxonomyRegistry, plan
from services.routing.search import fold, keys_for, words
from services.routing.taxonomy import default_registry


@pytest.fixture(scope="module")
def registry() -> TaxonomyRegistry:
    return default_registry()


@pytest.fixture(scope="module")
def denizli(registry: TaxonomyRegistry) -> Taxonomy:
    return registry.for_province(20)


class TestNormalisation:
    def test_dotted_and_dotless_i_lower_the_turkish_way(self):
        assert turkish_lower("IŞIK") == "ışık"
        assert turkish_lower("İNSAN") == "insan"
        assert turkish_lower("DİYARBAKIR") == "diyarbakır"

    def test_fold_drops_diacritics_after_turkish_lowering(self):
        assert fold("Çöpler") == "copler"
        assert fold("IŞIK") == "isik"
        assert fold("İĞNE") == "igne"
        assert fold("Kâğıt") == "kagit"

    def test_words_drop_stop_words_punctuation_and_suffix_after_apostrophe(self):
        assert words("Bu sokakta çok çöp var!") == ["sokakta", "cop"]
        assert words("Pamukkale'de, su yok.") == ["pamukkale", "su"]

    def test_su_is_water_but_su_with_cedilla_is_a_stop_word(self):
        assert words("şu su") == ["su"]
        assert words("Şu. Su, çok!") == ["su"]

    def test_stop_words_typed_without_turkish_letters_are_dropped_too(self):
        assert words("cok kotu icin") == ["kotu"]

    def test_long_words_match_by_prefix_short_ones_only_with_a_suffix(self):
        assert "sular" in keys_for("sularimiz")  # five letters: prefix
        assert "okul" in keys_for("okulun")  # four letters: prefix
        assert "su" in keys_for("sular") and "su" in keys_for("suyu")
        assert "cop" in keys_for("copler")
        assert "su" not in keys_for("suc")  # suç is not water
        assert "kar" not in keys_for("karar")  # karar is not snow


def top(taxonomy: Taxonomy, text: str, district: str | None = "Merkezefendi"):
    suggestions = taxonomy.suggest(text, district)
    assert suggestions, text
    return suggestions[0]


class TestSuggestions:
    @pytest.mark.parametrize(
        ("text", "kind", "institution"),
        [
            ("Mahallemizde iki gündür sular akmıyor", "SU_IDARESI", "DESKI"),
            ("Okulun çatısı akıyor", "MEB", "MERKEZEFENDI-MEM"),
            ("Sokak lambası yanmıyor", "ELEKTRIK", "ADM-ELEKTRIK"),
            ("Çöpler toplanmıyor", "BELEDIYE", "MERKEZEFENDI-BLD"),
            ("Apartmanda doğalgaz kokusu var", "DOGALGAZ", "DENIZLI-DOGALGAZ"),
            ("Sokakta su borusu patladı", "SU_IDARESI", "DESKI"),
            ("Sokak köpekleri çocuklara saldırıyor", "BELEDIYE", "MERKEZEFENDI-BLD"),
            ("Pasaport randevusu alamıyorum", "NUFUS", "DENIZLI-NUFUS"),
            ("Hastaneden randevu bulamıyorum", "SAGLIK", "DENIZLI-SAGLIK"),
            ("Gece yarısı yüksek sesle müzik çalıyorlar", "EMNIYET", "DENIZLI-EMNIYET"),
            ("Muhtarımız hiç ilgilenmiyor", "KAYMAKAMLIK", "MERKEZEFENDI-KYM"),
            ("Sosyal yardım başvurum aylardır sonuçlanmadı", "KAYMAKAMLIK", "MERKEZEFENDI-KYM"),
            ("Caminin hoparlöründen ezan çok yüksek", "MUFTULUK", "DENIZLI-MUFTULUK"),
            ("KYK yurdunda oda bulamadım", "GSB", "DENIZLI-GSB"),
            ("Evimizde depremden sonra çatlaklar oluştu", "AFAD", "AFAD-DENIZLI"),
        ],
    )
    def test_sensible_first_choice(self, denizli: Taxonomy, text: str, kind: str, institution: str):
        first = top(denizli, text)
        assert (first.institution_kind, first.institution_code) == (kind, institution), first

    def test_typed_without_turkish_letters_or_in_capitals(self, denizli: Taxonomy):
        assert top(denizli, "sokak lambasi yanmiyor").category_code == "ENR-002"
        assert top(denizli, "ÇÖPLER TOPLANMIYOR").category_code == "BEL-001"
        assert top(denizli, "SULAR AKMIYOR").category_code == "ALT-001"

    def test_district_decides_the_institution_of_district_scope_categories(self, denizli: Taxonomy):
        assert top(denizli, "Çöpler toplanmıyor", "Tavas").institution_code == "TAVAS-BLD"
        assert top(denizli, "Muhtarımız ilgilenmiyor", "Pamukkale").institution_code == (
            "PAMUKKALE-KYM"
        )
        # Without a district the province-wide office answers.
        assert top(denizli, "Çöpler toplanmıyor", None).institution_code == "DENIZLI-BB"
        assert top(denizli, "Muhtarımız ilgilenmiyor", None).institution_code == "DENIZLI-VALILIK"

    def test_ranked_best_first_and_limited(self, denizli: Taxonomy):
        suggestions = denizli.suggest("su kesintisi fatura sayaç boru kanalizasyon", limit=4)
        assert len(suggestions) == 4
        scores = [s.score for s in suggestions]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0

    def test_a_text_with_nothing_to_go_on_suggests_nothing(self, denizli: Taxonomy):
        assert denizli.suggest("Merhaba, iyi günler, teşekkür ederim.") == []

    def test_registry_suggests_by_province(self, registry: TaxonomyRegistry):
        first = registry.suggest("Sokak lambası yanmıyor", 20, "Honaz")[0]
        assert first.category_code == "ENR-002"


class TestPlan:
    def plan(self, registry, **overrides):
        args = {
            "province_code": 20,
            "district": "Merkezefendi",
            "category_code": "ALT-001",
            "text": "Mahallemizde sular akmıyor",
        }
        return plan(registry, **(args | overrides))

    def test_known_category_is_decided_at_once(self, registry):
        decision = self.plan(registry)
        assert isinstance(decision, Decision)
        assert decision.institution_code == "DESKI"
        assert decision.institution_email == "deski@acikkapi.local"
        assert decision.heading_code == "ALT"

    def test_known_category_with_district_spelled_loosely(self, registry):
        decision = self.plan(registry, category_code="BEL-001", district="CIVRIL")
        assert isinstance(decision, Decision) and decision.institution_code == "CIVRIL-BLD"

    def test_no_category_waits_with_suggestions(self, registry):
        pending = self.plan(registry, category_code=None)
        assert isinstance(pending, Pending)
        assert "kategori belirtilmemiş" in pending.reason
        assert pending.suggestions[0].category_code == "ALT-001"

    def test_unknown_category_waits_and_says_which(self, registry):
        pending = self.plan(registry, category_code="YOL-001")
        assert isinstance(pending, Pending)
        assert "'YOL-001'" in pending.reason and pending.suggestions

    def test_unknown_district_waits(self, registry):
        pending = self.plan(registry, district="Bornova")
        assert isinstance(pending, Pending) and "'Bornova'" in pending.reason

    def test_province_without_taxonomy_waits_without_suggestions(self, registry):
        pending = self.plan(registry, province_code=35, district="Bornova")
        assert isinstance(pending, Pending)
        assert "35 plaka kodlu il" in pending.reason and pending.suggestions == []
