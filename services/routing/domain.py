"""Routing rules with no I/O: a province's taxonomy, who answers a category in a district, and
keyword suggestions for applications that arrive without a category.

The taxonomy is data (services/routing/data/taxonomy_<province>.json); these models check it
when it is loaded, so a typo in the data stops the service at start-up rather than misroutes
an application at run time.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from services.common.topics import INSTITUTION_CODE_RE
from services.common.turkish import turkish_lower


class InstitutionKind(StrEnum):
    """The contract's institution kinds, plus KAYMAKAMLIK (a district governorship)."""

    VALILIK = "VALILIK"
    KAYMAKAMLIK = "KAYMAKAMLIK"
    BELEDIYE = "BELEDIYE"
    SU_IDARESI = "SU_IDARESI"
    ELEKTRIK = "ELEKTRIK"
    DOGALGAZ = "DOGALGAZ"
    KARAYOLLARI = "KARAYOLLARI"
    MEB = "MEB"
    SAGLIK = "SAGLIK"
    EMNIYET = "EMNIYET"
    JANDARMA = "JANDARMA"
    SGK = "SGK"
    ASH = "ASH"
    SYDV = "SYDV"
    TARIM = "TARIM"
    CEVRE = "CEVRE"
    TAPU = "TAPU"
    NUFUS = "NUFUS"
    VERGI = "VERGI"
    ISKUR = "ISKUR"
    MUFTULUK = "MUFTULUK"
    AFAD = "AFAD"
    GSB = "GSB"
    TICARET = "TICARET"
    ULASTIRMA = "ULASTIRMA"
    DSI = "DSI"
    ORMAN = "ORMAN"


class Scope(StrEnum):
    """Whose institution answers: the province-wide one, or the one in the applicant's district."""

    province = "province"
    district = "district"


# Where a kind has no province-wide office of its own, the province-wide counterpart answers:
# a district governorship's duties fall to the governorship.
FALLBACK_KIND: Mapping[InstitutionKind, InstitutionKind] = {
    InstitutionKind.KAYMAKAMLIK: InstitutionKind.VALILIK,
}

HEADING_CODE = r"^[A-Z]{3}$"
CATEGORY_CODE = r"^[A-Z]{3}-\d{3}$"
MAX_SUGGESTIONS = 5


class RoutingError(ValueError):
    """A routing request that the taxonomy cannot answer; the message is for people (Turkish)."""


class UnknownProvince(RoutingError):
    def __init__(self, province_code: int) -> None:
        super().__init__(f"{province_code} plaka kodlu il için görev dağılımı tanımlı değil.")


class UnknownCategory(RoutingError):
    def __init__(self, category_code: str, province: str) -> None:
        super().__init__(f"'{category_code}' kodlu kategori {province} görev dağılımında yok.")


# --- Turkish-aware text normalisation -------------------------------------------------------

# After lowering, fold to ASCII so that "cop" finds "çöp": many people type without Turkish keys.
_FOLD = str.maketrans({"ı": "i", "â": "a", "î": "i", "û": "u"})
_WORD = re.compile(r"[0-9a-z]+")

# Words that carry no subject in an application text (compared before folding, so that "şu"
# is dropped while "su", water, is kept).
STOP_WORDS = frozenset(
    """
    ve veya ile ya da de ki mi mı mu mü bir bu şu o bunlar şunlar onlar ben sen biz siz
    benim bizim için gibi kadar daha çok en az ama fakat ancak ne neden niçin nasıl hangi her
    hiç tüm bütün olan olarak oldu olduğu olmuş olmadı olmuyor var yok değil diye ise bile
    sonra önce artık hala hâlâ halen hep lütfen rica ederim ediyorum ederiz ediyoruz sayın
    yetkili yetkililer ilgili ilgililer teşekkür teşekkürler merhaba iyi günler gün gündür
    günlerdir hafta haftadır ay aydır yıl yıldır saat saattir defa kez kere bugün dün yarın
    sabah akşam iki üç dört beş on yine tekrar hakkında konusunda konu başvuru şikayet şikâyet
    talep talebi istek sorunu sorun problem durum durumu
    """.split()
)
_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$")

# Turkish inflectional endings (folded) that may follow a short keyword: "çöp" finds "çöpler",
# "su" finds "suyu" and "sular", but "su" does not find "suç".
SHORT_WORD_SUFFIXES = frozenset(
    """
    a e i u ya ye yi yu da de ta te dan den tan ten in un nin nun yin yun la le yla yle
    lar ler lari leri larin lerin larda lerde lardan lerden lara lere si su sin sun na ne
    nda nde ndan nden ndaki ndeki daki deki umuz imiz muz miz unuz iniz ku ki ci cu
    """.split()
)
# Keywords this long or longer match any word that begins with their first letters.
PREFIX_MIN = 4
PREFIX_LEN = 5


def fold(word: str) -> str:
    """Lower-case with Turkish rules, then drop diacritics: "Çöpler" -> "copler"."""
    lowered = turkish_lower(word).translate(_FOLD)
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# The same words typed without Turkish letters ("cok", "icin"); but "su" stays, it is water.
_FOLDED_STOP_WORDS = frozenset(fold(w) for w in STOP_WORDS) - {"su"}


def words(text: str) -> list[str]:
    """The folded words of a text that can say what it is about (stop words removed)."""
    out: list[str] = []
    for raw in turkish_lower(text).replace("’", "'").split():
        # An apostrophe separates a proper noun from its suffix: "Pamukkale'de".
        head = _EDGE_PUNCTUATION.sub("", raw.split("'", 1)[0])
        if head in STOP_WORDS:
            continue
        out.extend(w for w in _WORD.findall(fold(head)) if w not in _FOLDED_STOP_WORDS)
    return out


def keyword_key(word: str) -> str:
    """How a keyword is indexed: long words by their first letters, short ones whole."""
    folded = fold(word)
    return folded[:PREFIX_LEN] if len(folded) >= PREFIX_MIN else folded


def keys_for(word: str) -> list[str]:
    """The keyword keys a folded text word can match."""
    keys: list[str] = []
    if len(word) >= PREFIX_LEN:
        keys.append(word[:PREFIX_LEN])
    if len(word) >= PREFIX_MIN:
        keys.append(word[:PREFIX_MIN])
    for n in range(1, PREFIX_MIN):
        if len(word) >= n and (len(word) == n or word[n:] in SHORT_WORD_SUFFIXES):
            keys.append(word[:n])
    return keys


# --- The taxonomy ----------------------------------------------------------------------------

InstitutionCode = Annotated[str, StringConstraints(pattern=INSTITUTION_CODE_RE.pattern)]


class Institution(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: InstitutionCode
    name: str = Field(min_length=3)
    kind: InstitutionKind
    # None: the institution serves the whole province.
    district: str | None = None
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Handler(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: InstitutionKind
    scope: Scope


class Category(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=CATEGORY_CODE)
    name: str = Field(min_length=3)
    keywords: list[Annotated[str, StringConstraints(pattern=r"^\S+$")]] = Field(min_length=1)
    handler: Handler


class Heading(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=HEADING_CODE)
    name: str = Field(min_length=3)
    categories: list[Category] = Field(min_length=1)


class Decision(BaseModel):
    """Where one application goes: its category and the institution that must answer."""

    model_config = ConfigDict(frozen=True)

    category_code: str
    category_name: str
    heading_code: str
    heading_name: str
    institution_code: str
    institution_kind: str
    institution_name: str
    institution_email: str


class Suggestion(BaseModel):
    model_config = ConfigDict(frozen=True)

    category_code: str
    category_name: str
    heading_code: str
    institution_code: str
    institution_kind: str
    institution_name: str
    score: float


@dataclass(frozen=True)
class _KeywordIndex:
    postings: dict[str, frozenset[int]]
    idf: dict[str, float]

    @classmethod
    def build(cls, categories: list[Category]) -> _KeywordIndex:
        found: dict[str, set[int]] = defaultdict(set)
        for n, category in enumerate(categories):
            # The category's own name counts as keywords too.
            for word in [*category.keywords, *words(category.name)]:
                key = keyword_key(word)
                if key:
                    found[key].add(n)
        total = len(categories)
        # Rare words say more: "akmıyor" points at one category, "sokak" at many.
        idf = {key: math.log(1 + total / len(cats)) for key, cats in found.items()}
        return cls({key: frozenset(cats) for key, cats in found.items()}, idf)

    def scores(self, text_words: Iterable[str]) -> dict[int, float]:
        credited: dict[int, dict[str, float]] = defaultdict(dict)
        for word in set(text_words):
            # One text word counts once per category, through its best-weighted keyword.
            best: dict[int, tuple[str, float]] = {}
            for key in keys_for(word):
                weight = self.idf.get(key)
                if weight is None:
                    continue
                for n in self.postings[key]:
                    if n not in best or best[n][1] < weight:
                        best[n] = (key, weight)
            for n, (key, weight) in best.items():
                credited[n][key] = weight
        return {n: sum(keys.values()) for n, keys in credited.items()}


class Taxonomy(BaseModel):
    """One province's headings, categories and institutions, checked as a whole when loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    province_code: int = Field(ge=1, le=81)
    province: str = Field(min_length=2)
    districts: list[str] = Field(min_length=1)
    institutions: list[Institution] = Field(min_length=1)
    headings: list[Heading] = Field(min_length=1)

    _categories: dict[str, tuple[Heading, Category]] = PrivateAttr(default_factory=dict)
    _ordered: list[Category] = PrivateAttr(default_factory=list)
    _institutions: dict[str, Institution] = PrivateAttr(default_factory=dict)
    _by_kind: dict[tuple[InstitutionKind, str | None], Institution] = PrivateAttr(
        default_factory=dict
    )
    _district_names: dict[str, str] = PrivateAttr(default_factory=dict)
    _index: _KeywordIndex | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_and_index(self) -> Taxonomy:
        problems: list[str] = []
        for district in self.districts:
            key = fold(district)
            if key in self._district_names:
                problems.append(f"district listed twice: {district}")
            self._district_names[key] = district
        for inst in self.institutions:
            if inst.code in self._institutions:
                problems.append(f"institution code used twice: {inst.code}")
            self._institutions[inst.code] = inst
            if inst.district is not None and inst.district not in self.districts:
                problems.append(f"{inst.code}: unknown district {inst.district!r}")
            slot = (inst.kind, inst.district)
            if slot in self._by_kind:
                problems.append(f"two {inst.kind} institutions for {_place(inst.district)}")
            self._by_kind[slot] = inst
        headings: set[str] = set()
        for heading in self.headings:
            if heading.code in headings:
                problems.append(f"heading code used twice: {heading.code}")
            headings.add(heading.code)
            for category in heading.categories:
                if not category.code.startswith(heading.code + "-"):
                    problems.append(f"{category.code} is not under heading {heading.code}")
                if category.code in self._categories:
                    problems.append(f"category code used twice: {category.code}")
                self._categories[category.code] = (heading, category)
                self._ordered.append(category)
                for where in [None, *self.districts]:
                    if self._find(category.handler, where) is None:
                        kind = category.handler.kind
                        problems.append(f"{category.code}: no {kind} for {_place(where)}")
                        break
        if problems:
            raise ValueError("invalid taxonomy: " + "; ".join(problems[:20]))
        self._index = _KeywordIndex.build(self._ordered)
        return self

    # Look-ups --------------------------------------------------------------------------------

    def category(self, code: str) -> Category | None:
        found = self._categories.get(code.strip().upper())
        return found[1] if found else None

    def heading_of(self, category: Category) -> Heading:
        return self._categories[category.code][0]

    def institution(self, code: str) -> Institution | None:
        return self._institutions.get(code)

    def district(self, name: str | None) -> str | None:
        """The district's own spelling for any casing or ASCII spelling of it, else None."""
        if not name:
            return None
        return self._district_names.get(fold(name.strip()))

    # Rules -------------------------------------------------------------------------------------

    def _find(self, handler: Handler, district: str | None) -> Institution | None:
        if handler.scope is Scope.district and district is not None:
            local = self._by_kind.get((handler.kind, district))
            if local is not None:
                return local
        for kind in (handler.kind, FALLBACK_KIND.get(handler.kind)):
            if kind is not None and (found := self._by_kind.get((kind, None))) is not None:
                return found
        return None

    def resolve_institution(self, category: Category | str, district: str | None) -> Institution:
        """Who answers `category` for an applicant in `district`.

        District scope: the institution of the handler's kind in that district, else the
        province-wide one (of that kind, or its province-wide counterpart). An unknown or
        missing district resolves as the province.
        """
        if isinstance(category, str):
            found = self.category(category)
            if found is None:
                raise UnknownCategory(category, self.province)
            category = found
        institution = self._find(category.handler, self.district(district))
        if institution is None:  # the validator makes this unreachable for loaded data
            raise RoutingError(f"{category.code} için sorumlu kurum bulunamadı.")
        return institution

    def decide(self, category_code: str, district: str | None) -> Decision:
        category = self.category(category_code)
        if category is None:
            raise UnknownCategory(category_code, self.province)
        institution = self.resolve_institution(category, district)
        heading = self.heading_of(category)
        return Decision(
            category_code=category.code,
            category_name=category.name,
            heading_code=heading.code,
            heading_name=heading.name,
            institution_code=institution.code,
            institution_kind=institution.kind.value,
            institution_name=institution.name,
            institution_email=institution.email,
        )

    def suggest(
        self, text: str, district: str | None = None, limit: int = MAX_SUGGESTIONS
    ) -> list[Suggestion]:
        """Categories ranked by the weight of the keywords the text shares with them."""
        assert self._index is not None
        scores = self._index.scores(words(text))
        ranked = sorted(scores.items(), key=lambda item: (-item[1], self._ordered[item[0]].code))
        out: list[Suggestion] = []
        for n, score in ranked[:limit]:
            category = self._ordered[n]
            institution = self.resolve_institution(category, district)
            out.append(
                Suggestion(
                    category_code=category.code,
                    category_name=category.name,
                    heading_code=self.heading_of(category).code,
                    institution_code=institution.code,
                    institution_kind=institution.kind.value,
                    institution_name=institution.name,
                    score=round(score, 3),
                )
            )
        return out

    def public_view(self, district: str | None = None) -> dict[str, Any]:
        """The taxonomy as citizens and institutions read it: who answers what, where.

        Without a district, district-scope categories list their institution for every
        district (`by_district`); with one, `institution` is already resolved for it.
        """
        where = self.district(district)
        headings = []
        for heading in self.headings:
            categories = []
            for category in heading.categories:
                entry: dict[str, Any] = {
                    "code": category.code,
                    "name": category.name,
                    "handler": category.handler.model_dump(mode="json"),
                    "institution": _brief(self.resolve_institution(category, where)),
                }
                if category.handler.scope is Scope.district and where is None:
                    entry["by_district"] = {
                        d: self.resolve_institution(category, d).code for d in self.districts
                    }
                categories.append(entry)
            headings.append({"code": heading.code, "name": heading.name, "categories": categories})
        return {
            "province_code": self.province_code,
            "province": self.province,
            "districts": list(self.districts),
            "district": where,
            "headings": headings,
            "institutions": [
                {"code": i.code, "name": i.name, "kind": i.kind.value, "district": i.district}
                for i in self.institutions
            ],
        }


def _place(district: str | None) -> str:
    return district if district is not None else "the province"


def _brief(institution: Institution) -> dict[str, str]:
    return {"code": institution.code, "name": institution.name, "kind": institution.kind.value}


class TaxonomyRegistry:
    """The taxonomies the service knows, by province plate code."""

    def __init__(self, taxonomies: Iterable[Taxonomy]) -> None:
        self._by_province = {t.province_code: t for t in taxonomies}

    def for_province(self, province_code: int) -> Taxonomy:
        try:
            return self._by_province[province_code]
        except KeyError:
            raise UnknownProvince(province_code) from None

    def provinces(self) -> list[int]:
        return sorted(self._by_province)

    def suggest(
        self,
        text: str,
        province_code: int,
        district: str | None = None,
        limit: int = MAX_SUGGESTIONS,
    ) -> list[Suggestion]:
        return self.for_province(province_code).suggest(text, district, limit)


# --- What happens to a received application --------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """The application waits for an officer; `reason` is shown to officers and citizens."""

    reason: str
    suggestions: list[Suggestion] = field(default_factory=list)


PENDING_SUFFIX = "Görevli tarafından yönlendirilmesi gerekiyor."


def plan(
    registry: TaxonomyRegistry,
    *,
    province_code: int,
    district: str,
    category_code: str | None,
    text: str,
) -> Decision | Pending:
    """Route at once when the category is known; otherwise say why an officer must decide."""
    try:
        taxonomy = registry.for_province(province_code)
    except UnknownProvince as exc:
        return Pending(f"{exc} {PENDING_SUFFIX}")
    known_district = taxonomy.district(district)
    if known_district is None:
        reason = f"'{district}' ilçesi {taxonomy.province} ilçeleri arasında bulunamadı."
    elif not category_code:
        reason = "Başvuruda kategori belirtilmemiş."
    else:
        try:
            return taxonomy.decide(category_code, known_district)
        except UnknownCategory as exc:
            reason = str(exc)
    # Suggestions only on the slow path: routing at once must stay cheap.
    return Pending(f"{reason} {PENDING_SUFFIX}", taxonomy.suggest(text, known_district))
