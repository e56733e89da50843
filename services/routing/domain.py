"""Routing rules with no I/O: a province's taxonomy, who answers a category in a district, and
keyword suggestions (through search.py) for applications that arrive without a category.

The taxonomy is data (services/routing/data/taxonomy_<province>.json); these models check it
when it is loaded, so a typo in the data stops the service at start-up rather than misroutes
an application at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from services.common.topics import INSTITUTION_CODE_RE
from services.routing.search import KeywordIndex, fold, words


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
FALLBACK_KIND: Mapping[str, str] = {
    InstitutionKind.KAYMAKAMLIK: InstitutionKind.VALILIK,
}

# A kind is one of the contract's kinds or one an administrator added to the province's
# taxonomy (services/routing/taxonomy_edits.py); known kinds stay InstitutionKind members.
KIND_CODE = r"^[A-Z][A-Z0-9_]{1,31}$"
Kind = Annotated[
    InstitutionKind | Annotated[str, StringConstraints(pattern=KIND_CODE)],
    Field(union_mode="left_to_right"),
]

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


# --- The taxonomy ----------------------------------------------------------------------------

InstitutionCode = Annotated[str, StringConstraints(pattern=INSTITUTION_CODE_RE.pattern)]


class Institution(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: InstitutionCode
    name: str = Field(min_length=3)
    kind: Kind
    # None: the institution serves the whole province.
    district: str | None = None
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Handler(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    scope: Scope
    # Set: this one institution answers the category everywhere (scope is then "province").
    institution: InstitutionCode | None = Field(default=None, exclude_if=lambda v: v is None)


class KindEntry(BaseModel):
    """A kind of institution a province adds to the contract's list (or names its own way)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[str, StringConstraints(pattern=KIND_CODE)]
    name: str = Field(min_length=2)


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


class Placement(BaseModel):
    """Where an application belongs: its category, heading and the institution that answers."""

    category_code: str
    category_name: str
    heading_code: str
    heading_name: str
    institution_code: str
    institution_kind: str
    institution_name: str


class Decision(Placement):
    """Where one application goes, with the address its institution is told at."""

    model_config = ConfigDict(frozen=True)

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


class Taxonomy(BaseModel):
    """One province's headings, categories and institutions, checked as a whole when loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    province_code: int = Field(ge=1, le=81)
    province: str = Field(min_length=2)
    districts: list[str] = Field(min_length=1)
    institutions: list[Institution] = Field(min_length=1)
    headings: list[Heading] = Field(min_length=1)
    # Kinds beyond InstitutionKind that this province's institutions may have.
    kinds: list[KindEntry] = Field(default_factory=list, exclude_if=lambda v: not v)

    _categories: dict[str, tuple[Heading, Category]] = PrivateAttr(default_factory=dict)
    _ordered: list[Category] = PrivateAttr(default_factory=list)
    _institutions: dict[str, Institution] = PrivateAttr(default_factory=dict)
    _by_kind: dict[tuple[str, str | None], Institution] = PrivateAttr(default_factory=dict)
    _district_names: dict[str, str] = PrivateAttr(default_factory=dict)
    _index: KeywordIndex | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_and_index(self) -> Taxonomy:
        if self._index is not None:  # an instance checked before, passed in as a field value
            return self
        problems: list[str] = []
        known_kinds = {*InstitutionKind, *(k.code for k in self.kinds)}
        for district in self.districts:
            key = fold(district)
            if key in self._district_names:
                problems.append(f"district listed twice: {district}")
            self._district_names[key] = district
        for inst in self.institutions:
            if inst.code in self._institutions:
                problems.append(f"institution code used twice: {inst.code}")
            self._institutions[inst.code] = inst
            if inst.kind not in known_kinds:
                problems.append(f"{inst.code}: unknown kind {inst.kind}")
            if inst.district is not None and inst.district not in self.districts:
                problems.append(f"{inst.code}: unknown district {inst.district!r}")
            slot = (inst.kind, inst.district)
            if slot in self._by_kind:
                problems.append(f"two {inst.kind} institutions for {_place(inst.district)}")
            self._by_kind[slot] = inst
        headings: set[str] = set()
        # Plain locals: a private attribute read goes through pydantic's __getattr__, and this
        # check resolves every category in every district.
        places: list[str | None] = [None, *self.districts]
        by_kind, by_code = self._by_kind, self._institutions
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
                for where in places:
                    if find_institution(category.handler, where, by_kind, by_code) is None:
                        kind = category.handler.kind
                        problems.append(f"{category.code}: no {kind} for {_place(where)}")
                        break
        if problems:
            raise ValueError("invalid taxonomy: " + "; ".join(problems[:20]))
        self._index = KeywordIndex.build(self._ordered)
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
        return find_institution(handler, district, self._by_kind, self._institutions)

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
            institution_kind=str(institution.kind),
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
                    institution_kind=str(institution.kind),
                    institution_name=institution.name,
                    score=round(score, 3),
                )
            )
        return out

    def public_view(self, district: str | None = None) -> PublicTaxonomy:
        """The taxonomy as citizens and institutions read it: who answers what, where.

        Without a district, district-scope categories list their institution for every
        district (`by_district`); with one, `institution` is already resolved for it.
        """
        where = self.district(district)
        headings = []
        for heading in self.headings:
            categories = []
            for category in heading.categories:
                by_district = None
                if category.handler.scope is Scope.district and where is None:
                    by_district = {
                        d: self.resolve_institution(category, d).code for d in self.districts
                    }
                categories.append(
                    PublicCategory(
                        code=category.code,
                        name=category.name,
                        handler=category.handler,
                        institution=_brief(self.resolve_institution(category, where)),
                        by_district=by_district,
                    )
                )
            headings.append(
                PublicHeading(code=heading.code, name=heading.name, categories=categories)
            )
        return PublicTaxonomy(
            province_code=self.province_code,
            province=self.province,
            districts=list(self.districts),
            district=where,
            headings=headings,
            institutions=[
                PublicInstitution(code=i.code, name=i.name, kind=i.kind, district=i.district)
                for i in self.institutions
            ],
        )


def find_institution(
    handler: Handler,
    district: str | None,
    by_kind: Mapping[tuple[str, str | None], Institution],
    by_code: Mapping[str, Institution],
) -> Institution | None:
    """Who answers a category with `handler` in `district` (None: the province), given the
    institutions by (kind, district) and by code; None when nobody does."""
    if handler.institution is not None:
        return by_code.get(handler.institution)
    if handler.scope is Scope.district and district is not None:
        local = by_kind.get((handler.kind, district))
        if local is not None:
            return local
    for kind in (handler.kind, FALLBACK_KIND.get(handler.kind)):
        if kind is not None and (found := by_kind.get((kind, None))) is not None:
            return found
    return None


def _place(district: str | None) -> str:
    return district if district is not None else "the province"


def _brief(institution: Institution) -> InstitutionBrief:
    return InstitutionBrief(code=institution.code, name=institution.name, kind=institution.kind)


# --- The taxonomy as the public reads it (GET /api/v1/taxonomy) -----------------------------


class InstitutionBrief(BaseModel):
    code: str
    name: str
    kind: Kind


class PublicInstitution(InstitutionBrief):
    district: str | None = None


class PublicCategory(BaseModel):
    code: str
    name: str
    handler: Handler
    institution: InstitutionBrief
    # District-scope categories without a chosen district: the institution of every district.
    by_district: dict[str, str] | None = None


class PublicHeading(BaseModel):
    code: str
    name: str
    categories: list[PublicCategory]


class PublicTaxonomy(BaseModel):
    """Who answers what, where: what routing publishes and the demo loader reads."""

    province_code: int
    province: str
    districts: list[str]
    district: str | None = None
    headings: list[PublicHeading]
    institutions: list[PublicInstitution]


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

    def replace(self, taxonomy: Taxonomy) -> None:
        """A new version of a province's taxonomy (or a new province): decisions from now on
        follow it (taxonomy_store.LiveTaxonomies keeps the registry current)."""
        self._by_province[taxonomy.province_code] = taxonomy

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
