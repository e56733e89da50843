"""What an administrator may change in a province's taxonomy, with no I/O: the edits, the checks
that say in Turkish what is wrong and where, and the difference between two versions.

An edit works on a `Draft` (the taxonomy as plain data plus the codes retired so far), then
`finish` checks the whole draft and builds the new `Taxonomy`. Codes of retired headings,
categories and institutions are kept (`Retired`) and never handed out again by an edit: old
applications, reports and institution topics still carry them.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from services.common.errors import field_error
from services.common.provinces import PROVINCES
from services.common.topics import INSTITUTION_CODE_RE
from services.routing.domain import (
    CATEGORY_CODE,
    FALLBACK_KIND,
    HEADING_CODE,
    KIND_CODE,
    Handler,
    Institution,
    InstitutionKind,
    Scope,
    Taxonomy,
    find_institution,
)
from services.routing.search import fold

# The contract's kinds as people read them; a province may rename them or add its own.
KIND_NAMES: dict[str, str] = {
    "VALILIK": "Valilik",
    "KAYMAKAMLIK": "Kaymakamlık",
    "BELEDIYE": "Belediye",
    "SU_IDARESI": "Su ve kanalizasyon idaresi",
    "ELEKTRIK": "Elektrik dağıtım şirketi",
    "DOGALGAZ": "Doğal gaz dağıtım şirketi",
    "KARAYOLLARI": "Karayolları bölge müdürlüğü",
    "MEB": "Millî eğitim müdürlüğü",
    "SAGLIK": "Sağlık müdürlüğü",
    "EMNIYET": "Emniyet müdürlüğü",
    "JANDARMA": "Jandarma komutanlığı",
    "SGK": "Sosyal Güvenlik Kurumu",
    "ASH": "Aile ve sosyal hizmetler müdürlüğü",
    "SYDV": "Sosyal yardımlaşma ve dayanışma vakfı",
    "TARIM": "Tarım ve orman müdürlüğü",
    "CEVRE": "Çevre, şehircilik ve iklim değişikliği müdürlüğü",
    "TAPU": "Tapu müdürlüğü",
    "NUFUS": "Nüfus ve vatandaşlık müdürlüğü",
    "VERGI": "Vergi dairesi başkanlığı",
    "ISKUR": "İŞKUR il müdürlüğü",
    "MUFTULUK": "Müftülük",
    "AFAD": "AFAD il müdürlüğü",
    "GSB": "Gençlik ve spor il müdürlüğü",
    "TICARET": "Ticaret il müdürlüğü",
    "ULASTIRMA": "Ulaştırma bölge müdürlüğü",
    "DSI": "DSİ bölge müdürlüğü",
    "ORMAN": "Orman bölge müdürlüğü",
}
assert set(KIND_NAMES) == set(InstitutionKind), "every contract kind needs a name"

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SHOWN = 5  # codes named in one message before "ve N tane daha"


class Rejected(Exception):
    """The edit is refused; `errors` are the service's field errors, in Turkish."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


class Missing(Exception):
    """The edit names something the taxonomy does not have (HTTP 404); the message is Turkish."""


def _reject(field: str | None, code: str, message: str) -> Rejected:
    return Rejected([field_error(field, code, message)])


def listed(codes: list[str]) -> str:
    """Codes for a message: the first few, then how many more."""
    shown = ", ".join(codes[:SHOWN])
    return shown if len(codes) <= SHOWN else f"{shown} ve {len(codes) - SHOWN} tane daha"


# --- Inputs, checked field by field with Turkish messages ------------------------------------


def _code(pattern: str, message: str) -> Any:
    """A code field: trimmed, upper-cased, and matched against `pattern`."""
    compiled = re.compile(pattern)

    def check(value: object) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip().upper()
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return BeforeValidator(check)


HeadingCode = Annotated[str, _code(HEADING_CODE, "Başlık kodu üç büyük harftir (ör. ALT, CEV).")]
CategoryCode = Annotated[
    str,
    _code(CATEGORY_CODE, "Kategori kodu başlık kodu, tire ve üç rakamdır (ör. ALT-016)."),
]
InstitutionCode = Annotated[
    str,
    _code(
        INSTITUTION_CODE_RE.pattern,
        "Kurum kodu 2-64 karakterdir; büyük harf, rakam, tire ve alt çizgi içerebilir "
        "(ör. DENIZLI-BLD).",
    ),
]
KindCode = Annotated[
    str,
    _code(
        KIND_CODE,
        "Kurum türü kodu büyük harfle başlar; büyük harf, rakam ve alt çizgi içerir "
        "(ör. BELEDIYE, KALKINMA_AJANSI).",
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
District = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=100)]


def _email(value: str) -> str:
    value = value.strip()
    if not EMAIL.fullmatch(value):
        raise ValueError("Geçerli bir e-posta adresi yazın (ör. birim@kurum.gov.tr).")
    return value


def _keywords(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        word = value.strip()
        if not word:
            raise ValueError("Anahtar kelimeler boş olamaz.")
        if any(ch.isspace() for ch in word):
            raise ValueError(
                f"'{word}': anahtar kelime tek kelimedir; birden çok kelimeyi ayrı ayrı yazın."
            )
        if word not in out:
            out.append(word)
    return out


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Versioned(_Input):
    """A change's body; it may say which version it was made on (instead of If-Match)."""

    expected_version: int | None = Field(default=None, ge=0)


class KindIn(Versioned):
    code: KindCode
    name: Name


class KindPatch(Versioned):
    name: Name


class InstitutionIn(Versioned):
    code: InstitutionCode
    name: Name
    kind: KindCode
    email: str = Field(max_length=200)
    # None: the institution serves the whole province; a district: it is that district's office.
    district: District | None = None

    _email = field_validator("email")(_email)


class InstitutionPatch(Versioned):
    name: Name | None = None
    kind: KindCode | None = None
    email: str | None = Field(default=None, max_length=200)
    # Sent as null: the office becomes province-wide. Not sent: unchanged.
    district: District | None = None

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        return None if value is None else _email(value)


class CategoryFields(_Input):
    """A category as an administrator writes it: who answers is a kind (resolved per district
    when `scope` is "district") or one named institution."""

    code: CategoryCode | None = None  # None: the next free number under the heading
    name: Name
    keywords: list[str] = Field(min_length=1, max_length=100)
    institution_kind: KindCode | None = None
    scope: Scope = Scope.province
    institution_code: InstitutionCode | None = None

    _keywords = field_validator("keywords")(_keywords)


class CategoryIn(CategoryFields, Versioned):
    heading_code: HeadingCode


class CategoryPatch(Versioned):
    name: Name | None = None
    keywords: list[str] | None = Field(default=None, min_length=1, max_length=100)
    # Another heading: the category moves and gets a code under it (`new_code`, or the next
    # free one); the old code is retired and points to the new one.
    heading_code: HeadingCode | None = None
    new_code: CategoryCode | None = None
    institution_kind: KindCode | None = None
    scope: Scope | None = None
    # Sent as null: no named institution any more, the kind answers.
    institution_code: InstitutionCode | None = None

    @field_validator("keywords")
    @classmethod
    def _check_keywords(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _keywords(value)


class HeadingIn(Versioned):
    code: HeadingCode
    name: Name
    categories: list[CategoryFields] = Field(min_length=1, max_length=200)


class HeadingPatch(Versioned):
    name: Name


# --- The document kept for each version -----------------------------------------------------


class RetiredEntry(BaseModel):
    name: str
    version: int  # retired in this version
    replaced_by: str | None = None  # a moved category: its new code


class Retired(BaseModel):
    """Codes that were live once; edits never give them out again."""

    headings: dict[str, RetiredEntry] = Field(default_factory=dict)
    categories: dict[str, RetiredEntry] = Field(default_factory=dict)
    institutions: dict[str, RetiredEntry] = Field(default_factory=dict)
    kinds: dict[str, RetiredEntry] = Field(default_factory=dict)


class TaxonomyDocument(BaseModel):
    """One version of a province's taxonomy as it is stored: the live taxonomy and what was
    retired before."""

    taxonomy: Taxonomy
    retired: Retired = Field(default_factory=Retired)

    def kinds(self) -> dict[str, str]:
        """The kinds institutions may have in this province, with their names."""
        return kinds_of(self.taxonomy.model_dump(mode="json"), self.retired)


def kinds_of(data: dict[str, Any], retired: Retired) -> dict[str, str]:
    names = {code: name for code, name in KIND_NAMES.items() if code not in retired.kinds}
    names.update({k["code"]: k["name"] for k in data.get("kinds", [])})
    return names


class Draft:
    """A taxonomy being edited: plain data that edits change, then `finish` checks."""

    def __init__(self, data: dict[str, Any], retired: Retired, version: int) -> None:
        self.data = copy.deepcopy(data)
        self.data.setdefault("kinds", [])
        self.retired = retired.model_copy(deep=True)
        self.version = version  # the version this draft will become

    @classmethod
    def of(cls, document: TaxonomyDocument, version: int) -> Draft:
        return cls(document.taxonomy.model_dump(mode="json"), document.retired, version)

    # Look-ups ---------------------------------------------------------------------------------

    def categories(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        for heading in self.data["headings"]:
            for category in heading["categories"]:
                yield heading, category

    def heading(self, code: str) -> dict[str, Any]:
        for heading in self.data["headings"]:
            if heading["code"] == code:
                return cast(dict[str, Any], heading)
        raise Missing(f"'{code}' kodlu bir başlık yok.")

    def category(self, code: str) -> tuple[dict[str, Any], dict[str, Any]]:
        for heading, category in self.categories():
            if category["code"] == code:
                return heading, category
        moved = self.retired.categories.get(code)
        if moved is not None and moved.replaced_by:
            raise Missing(f"'{code}' kategorisi {moved.replaced_by} koduyla taşındı.")
        raise Missing(f"'{code}' kodlu bir kategori yok.")

    def institution(self, code: str) -> dict[str, Any]:
        for institution in self.data["institutions"]:
            if institution["code"] == code:
                return cast(dict[str, Any], institution)
        raise Missing(f"'{code}' kodlu bir kurum yok.")

    def kinds(self) -> dict[str, str]:
        return kinds_of(self.data, self.retired)

    def district(self, name: str, field: str) -> str:
        """The province's own spelling of a district, or a field error."""
        known: dict[str, str] = {fold(d): d for d in self.data["districts"]}
        found = known.get(fold(name.strip()))
        if found is None:
            raise _reject(
                field,
                "unknown_district",
                f"'{name}' {self.data['province']} ilçeleri arasında yok. "
                f"Geçerli ilçeler: {', '.join(self.data['districts'])}.",
            )
        return found

    def _retire(self, bucket: dict[str, RetiredEntry], code: str, name: str, **extra: Any) -> None:
        bucket[code] = RetiredEntry(name=name, version=self.version, **extra)


# --- Kinds -----------------------------------------------------------------------------------


def add_kind(draft: Draft, body: KindIn) -> str:
    if body.code in draft.kinds():
        raise _reject("code", "duplicate", f"'{body.code}' kurum türü zaten var.")
    # A retired kind may come back: its code meant the same thing all along.
    draft.retired.kinds.pop(body.code, None)
    _name_kind(draft, body.code, body.name)
    return body.code


def rename_kind(draft: Draft, code: str, body: KindPatch) -> str:
    if code not in draft.kinds():
        raise Missing(f"'{code}' kodlu bir kurum türü yok.")
    _name_kind(draft, code, body.name)
    return code


def _name_kind(draft: Draft, code: str, name: str) -> None:
    entries = [k for k in draft.data["kinds"] if k["code"] != code]
    if KIND_NAMES.get(code) != name:  # a contract kind under its usual name needs no entry
        entries.append({"code": code, "name": name})
    draft.data["kinds"] = entries


def retire_kind(draft: Draft, code: str) -> str:
    kinds = draft.kinds()
    if code not in kinds:
        raise Missing(f"'{code}' kodlu bir kurum türü yok.")
    users = [i["code"] for i in draft.data["institutions"] if i["kind"] == code]
    if users:
        raise _reject(
            None,
            "kind_in_use",
            f"'{code}' türünde kurumlar var ({listed(users)}); önce onların türünü değiştirin "
            "ya da onları emekliye ayırın.",
        )
    handled = [c["code"] for _, c in draft.categories() if c["handler"]["kind"] == code]
    if handled:
        raise _reject(
            None,
            "kind_in_use",
            f"'{code}' türü şu kategorilerin sorumlusu: {listed(handled)}; önce bu "
            "kategorilere başka bir sorumlu atayın.",
        )
    draft.data["kinds"] = [k for k in draft.data["kinds"] if k["code"] != code]
    draft._retire(draft.retired.kinds, code, kinds[code])
    return code


# --- Institutions and district offices -------------------------------------------------------


def add_institution(draft: Draft, body: InstitutionIn, *, district_office: bool = False) -> str:
    if district_office and body.district is None:
        raise _reject("district", "missing", "İlçe birimi için ilçe zorunludur.")
    if any(i["code"] == body.code for i in draft.data["institutions"]):
        raise _reject("code", "duplicate", f"'{body.code}' kodlu bir kurum zaten var.")
    if body.code in draft.retired.institutions:
        raise _reject(
            "code",
            "retired_code",
            f"'{body.code}' kodu emekliye ayrılmış bir kurumundu; eski başvurular ve kurum "
            "konusu bu kodu taşıdığı için yeni bir kod seçin.",
        )
    district = draft.district(body.district, "district") if body.district else None
    _check_kind(draft, body.kind, "kind")
    _check_slot(draft, body.kind, district, body.code)
    draft.data["institutions"].append(
        {
            "code": body.code,
            "name": body.name,
            "kind": body.kind,
            "district": district,
            "email": body.email,
        }
    )
    return body.code


def update_institution(
    draft: Draft, code: str, body: InstitutionPatch, *, district_office: bool | None = None
) -> str:
    institution = draft.institution(code)
    _check_office(institution, district_office)
    sent = body.model_fields_set
    if body.name is not None:
        institution["name"] = body.name
    if body.email is not None:
        institution["email"] = body.email
    if body.kind is not None:
        _check_kind(draft, body.kind, "kind")
        institution["kind"] = body.kind
    if "district" in sent:
        if district_office and body.district is None:
            raise _reject("district", "missing", "İlçe birimi için ilçe zorunludur.")
        institution["district"] = (
            draft.district(body.district, "district") if body.district else None
        )
    if body.kind is not None or "district" in sent:
        field = "kind" if body.kind is not None else "district"
        _check_slot(draft, institution["kind"], institution["district"], code, field=field)
    return code


def retire_institution(
    draft: Draft, code: str, *, transfer: bool = False, district_office: bool | None = None
) -> str:
    """Refused while the institution answers a live category anywhere, unless `transfer`
    lets another institution take over every one of them (then `finish` checks they do)."""
    institution = draft.institution(code)
    _check_office(institution, district_office)
    named = [c["code"] for _, c in draft.categories() if c["handler"].get("institution") == code]
    if named:
        raise _reject(
            None,
            "still_responsible",
            f"{institution['name']} şu kategorilerin adıyla belirlenmiş sorumlusu: "
            f"{listed(named)}. Önce bu kategorilere başka bir sorumlu atayın.",
        )
    answered = _answered_by(draft, code)
    if answered and not transfer:
        raise _reject(
            None,
            "still_responsible",
            f"{institution['name']} hâlâ {len(answered)} kategoride sorumlu "
            f"({listed(answered)}). Önce bu kategorilerin sorumlusunu değiştirin; görevlerin "
            "ilçe birimi yoksa il geneli kuruma geçmesi isteniyorsa transfer=true ile yeniden "
            "deneyin.",
        )
    draft.data["institutions"] = [i for i in draft.data["institutions"] if i["code"] != code]
    draft._retire(draft.retired.institutions, code, institution["name"])
    return code


def _answered_by(draft: Draft, code: str) -> list[str]:
    """Live categories that `code` answers for the province or for some district."""
    by_kind, by_code = _institution_maps(draft.data["institutions"])
    where: list[str | None] = [None, *draft.data["districts"]]
    out = []
    for _, category in draft.categories():
        handler = Handler.model_validate(category["handler"])
        for district in where:
            found = find_institution(handler, district, by_kind, by_code)
            if found is not None and found.code == code:
                out.append(category["code"])
                break
    return out


def _check_office(institution: dict[str, Any], district_office: bool | None) -> None:
    if district_office is True and institution["district"] is None:
        raise Missing(f"'{institution['code']}' bir ilçe birimi değil, il geneli bir kurum.")


def _check_kind(draft: Draft, kind: str, field: str) -> None:
    kinds = draft.kinds()
    if kind not in kinds:
        raise _reject(
            field,
            "unknown_kind",
            f"'{kind}' diye bir kurum türü yok. Geçerli türler: {', '.join(sorted(kinds))}.",
        )


def _check_slot(
    draft: Draft, kind: str, district: str | None, code: str, field: str = "kind"
) -> None:
    for other in draft.data["institutions"]:
        if other["code"] != code and other["kind"] == kind and other["district"] == district:
            where = f"{district} ilçesinde" if district else "il genelinde"
            raise _reject(
                field,
                "duplicate_office",
                f"{where} {kind} türünde zaten bir kurum var: {other['code']} "
                f"({other['name']}). Her yerde bir türden tek kurum olabilir.",
            )


# --- Headings and categories -----------------------------------------------------------------


def add_heading(draft: Draft, body: HeadingIn) -> str:
    if any(h["code"] == body.code for h in draft.data["headings"]):
        raise _reject("code", "duplicate", f"'{body.code}' kodlu bir başlık zaten var.")
    if body.code in draft.retired.headings:
        raise _reject(
            "code",
            "retired_code",
            f"'{body.code}' kodu emekliye ayrılmış bir başlığındı; yeni bir kod seçin.",
        )
    draft.data["headings"].append({"code": body.code, "name": body.name, "categories": []})
    for n, fields in enumerate(body.categories):
        _add_category(draft, body.code, fields, prefix=f"categories.{n}.")
    return body.code


def rename_heading(draft: Draft, code: str, body: HeadingPatch) -> str:
    draft.heading(code)["name"] = body.name
    return code


def retire_heading(draft: Draft, code: str) -> str:
    """The heading and every category under it are retired together."""
    heading = draft.heading(code)
    draft.data["headings"] = [h for h in draft.data["headings"] if h["code"] != code]
    for category in heading["categories"]:
        draft._retire(draft.retired.categories, category["code"], category["name"])
    draft._retire(draft.retired.headings, code, heading["name"])
    return code


def add_category(draft: Draft, body: CategoryIn) -> str:
    try:
        draft.heading(body.heading_code)
    except Missing as exc:
        raise _reject("heading_code", "unknown_heading", str(exc)) from exc
    return _add_category(draft, body.heading_code, body)


def _add_category(draft: Draft, heading_code: str, body: CategoryFields, prefix: str = "") -> str:
    code = _new_category_code(draft, heading_code, body.code, f"{prefix}code")
    handler = _handler(
        draft,
        kind=body.institution_kind,
        scope=body.scope,
        institution=body.institution_code,
        prefix=prefix,
    )
    draft.heading(heading_code)["categories"].append(
        {"code": code, "name": body.name, "keywords": body.keywords, "handler": handler}
    )
    return code


def update_category(draft: Draft, code: str, body: CategoryPatch) -> str:
    heading, category = draft.category(code)
    sent = body.model_fields_set
    if body.name is not None:
        category["name"] = body.name
    if body.keywords is not None:
        category["keywords"] = body.keywords
    if sent & {"institution_kind", "scope", "institution_code"}:
        current = category["handler"]
        pinned = body.institution_code if "institution_code" in sent else current.get("institution")
        if pinned is not None:  # a named institution brings its own kind
            kind, scope = body.institution_kind, body.scope or Scope.province
        else:
            kind = body.institution_kind or current["kind"]
            scope = body.scope or Scope(current["scope"])
        category["handler"] = _handler(draft, kind=kind, scope=scope, institution=pinned)
    if body.new_code is not None and body.heading_code is None:
        raise _reject(
            "new_code",
            "heading_required",
            "Yeni kod yalnızca kategori başka bir başlığa taşınırken verilir (heading_code).",
        )
    if body.heading_code is not None and body.heading_code != heading["code"]:
        return _move_category(draft, heading, category, body.heading_code, body.new_code)
    return code


def _move_category(
    draft: Draft,
    heading: dict[str, Any],
    category: dict[str, Any],
    target_code: str,
    new_code: str | None,
) -> str:
    """A category's code carries its heading: moved, it gets a code under the new heading and
    the old code is retired, pointing to the new one."""
    try:
        target = draft.heading(target_code)
    except Missing as exc:
        raise _reject("heading_code", "unknown_heading", str(exc)) from exc
    old = category["code"]
    if len(heading["categories"]) == 1:
        raise _reject(
            "heading_code",
            "last_category",
            f"{old}, {heading['code']} başlığının tek kategorisi; taşınırsa başlık boş kalır. "
            "Önce başlığa başka bir kategori ekleyin ya da başlığı emekliye ayırın.",
        )
    code = _new_category_code(draft, target_code, new_code, "new_code")
    heading["categories"] = [c for c in heading["categories"] if c["code"] != old]
    target["categories"].append({**category, "code": code})
    draft._retire(draft.retired.categories, old, category["name"], replaced_by=code)
    return code


def retire_category(draft: Draft, code: str) -> str:
    heading, category = draft.category(code)
    if len(heading["categories"]) == 1:
        raise _reject(
            None,
            "last_category",
            f"{code}, {heading['code']} ({heading['name']}) başlığının tek kategorisi. Başlık "
            "boş kalamaz: başlığı emekliye ayırın ya da önce başka bir kategori ekleyin.",
        )
    heading["categories"] = [c for c in heading["categories"] if c["code"] != code]
    draft._retire(draft.retired.categories, code, category["name"])
    return code


def _new_category_code(draft: Draft, heading_code: str, wanted: str | None, field: str) -> str:
    taken = {c["code"] for _, c in draft.categories()}
    if wanted is None:
        numbers = [
            int(code.rsplit("-", 1)[1])
            for code in [*taken, *draft.retired.categories]
            if code.startswith(heading_code + "-")
        ]
        number = max(numbers, default=0) + 1
        if number > 999:
            raise _reject(field, "no_free_code", f"{heading_code} başlığında boş kod kalmadı.")
        return f"{heading_code}-{number:03d}"
    if not wanted.startswith(heading_code + "-"):
        raise _reject(
            field,
            "wrong_heading",
            f"'{wanted}' kodu {heading_code} başlığına ait değil; kod "
            f"{heading_code}- ile başlamalıdır.",
        )
    if wanted in taken:
        raise _reject(field, "duplicate", f"'{wanted}' kodlu bir kategori zaten var.")
    if wanted in draft.retired.categories:
        raise _reject(
            field,
            "retired_code",
            f"'{wanted}' kodu emekliye ayrılmış bir kategorinindi; eski başvurular bu kodu "
            "taşıdığı için yeni bir kod seçin (boş bırakılırsa sıradaki kod verilir).",
        )
    return wanted


def _handler(
    draft: Draft,
    *,
    kind: str | None,
    scope: Scope,
    institution: str | None,
    prefix: str = "",
) -> dict[str, Any]:
    """Who answers a category, as stored: a kind and a scope, or one named institution."""
    if institution is not None:
        try:
            named = draft.institution(institution)
        except Missing as exc:
            raise _reject(f"{prefix}institution_code", "unknown_institution", str(exc)) from exc
        if kind is not None and kind != named["kind"]:
            raise _reject(
                f"{prefix}institution_kind",
                "kind_mismatch",
                f"{named['name']} {named['kind']} türünde; institution_kind ya boş bırakılmalı "
                f"ya da {named['kind']} olmalıdır (adıyla belirlenen kurumu kaldırmak için "
                "institution_code: null gönderin).",
            )
        if scope is Scope.district:
            raise _reject(
                f"{prefix}scope",
                "named_institution_scope",
                "Adıyla belirlenen kurum her ilçenin başvurusuna bakar; kapsam 'province' "
                "olmalıdır. İlçeye göre değişen sorumlu için kurum türü verin.",
            )
        return {"kind": named["kind"], "scope": Scope.province.value, "institution": institution}
    if kind is None:
        raise _reject(
            f"{prefix}institution_kind",
            "missing",
            "Sorumlu kurum türü (institution_kind) ya da kurum (institution_code) gerekir.",
        )
    _check_kind(draft, kind, f"{prefix}institution_kind")
    return {"kind": kind, "scope": scope.value}


# --- A whole province at once (a file loaded through the API or the command) ------------------


def load(data: Any, province_code: int, previous: TaxonomyDocument | None, version: int) -> Draft:
    """A draft that replaces the province's taxonomy with `data` (a taxonomy file's content).

    Codes live before and absent from the file are retired; a retired code the file names
    again comes back (a file is the official list, not a slip of the hand)."""
    if not isinstance(data, dict):
        raise _reject(None, "invalid_file", "Görev dağılımı dosyası bir JSON nesnesi olmalıdır.")
    if data.get("province_code") != province_code:
        raise _reject(
            "province_code",
            "province_mismatch",
            f"Dosyadaki plaka kodu ({data.get('province_code')}) adresteki il ile "
            f"({province_code}) aynı değil.",
        )
    problems = check_shape(data)
    if problems:
        raise Rejected(problems)
    draft = Draft(data, previous.retired if previous else Retired(), version)
    if previous is not None:
        before = previous.taxonomy
        now = _codes(draft.data)
        for heading in before.headings:
            if heading.code not in now["headings"]:
                draft._retire(draft.retired.headings, heading.code, heading.name)
            for category in heading.categories:
                if category.code not in now["categories"]:
                    draft._retire(draft.retired.categories, category.code, category.name)
        for institution in before.institutions:
            if institution.code not in now["institutions"]:
                draft._retire(draft.retired.institutions, institution.code, institution.name)
    for bucket, live in zip(
        (draft.retired.headings, draft.retired.categories, draft.retired.institutions),
        _codes(draft.data).values(),
        strict=True,
    ):
        for code in live:
            bucket.pop(code, None)
    return draft


def _codes(data: dict[str, Any]) -> dict[str, set[str]]:
    return {
        "headings": {h["code"] for h in data["headings"]},
        "categories": {c["code"] for h in data["headings"] for c in h["categories"]},
        "institutions": {i["code"] for i in data["institutions"]},
    }


def check_shape(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's form: the fields a taxonomy has, of the right types (Turkish messages)."""
    wanted = {
        "province_code": int,
        "province": str,
        "districts": list,
        "institutions": list,
        "headings": list,
    }
    problems = [
        field_error(name, "invalid", f"'{name}' alanı eksik ya da türü yanlış.")
        for name, kind in wanted.items()
        if not isinstance(data.get(name), kind)
    ]
    if problems:
        return problems
    allowed = {*wanted, "kinds"}
    problems += [
        field_error(name, "extra_forbidden", f"'{name}' alanı tanınmıyor.")
        for name in data
        if name not in allowed
    ]
    for n, heading in enumerate(data["headings"]):
        if not isinstance(heading, dict) or not isinstance(heading.get("categories"), list):
            problems.append(
                field_error(
                    f"headings.{n}",
                    "invalid",
                    "Başlık, kategorileriyle birlikte bir nesne olmalıdır.",
                )
            )
        elif any(
            not isinstance(c, dict) or not isinstance(c.get("handler"), dict)
            for c in heading["categories"]
        ):
            problems.append(
                field_error(
                    f"headings.{n}.categories",
                    "invalid",
                    "Her kategori sorumlusuyla (handler) birlikte bir nesne olmalıdır.",
                )
            )
    if any(not isinstance(i, dict) for i in data["institutions"]):
        problems.append(field_error("institutions", "invalid", "Her kurum bir nesne olmalıdır."))
    return problems


# --- Checking a whole draft -----------------------------------------------------------------


def finish(draft: Draft) -> TaxonomyDocument:
    """The checked document of the draft, or Rejected with every problem found."""
    problems = check(draft.data, draft.retired)
    if problems:
        raise Rejected(problems)
    try:
        taxonomy = Taxonomy.model_validate(draft.data)
    except ValidationError as exc:  # a rule `check` does not know yet: still refused
        raise _reject(
            None,
            "invalid_taxonomy",
            f"Görev dağılımı tutarsız: {exc.errors()[0].get('msg', exc)}",
        ) from exc
    return TaxonomyDocument(taxonomy=taxonomy, retired=draft.retired)


def check(data: dict[str, Any], retired: Retired) -> list[dict[str, Any]]:
    """Every rule of a province's taxonomy, each broken one as a Turkish field error."""
    problems: list[dict[str, Any]] = []

    def problem(field: str, code: str, message: str) -> None:
        problems.append(field_error(field, code, message))

    province_code = data["province_code"]
    official = PROVINCES.get(province_code) if isinstance(province_code, int) else None
    if official is None:
        problem("province_code", "invalid", "Plaka kodu 1 ile 81 arasında olmalıdır.")
    elif fold(str(data["province"])) != fold(official):
        problem(
            "province",
            "province_mismatch",
            f"{province_code} plaka kodu {official} ilinindir; dosyada '{data['province']}' "
            "yazıyor.",
        )
    districts = data["districts"]
    if not districts:
        problem("districts", "missing", "İlin en az bir ilçesi olmalıdır.")
    for name, count in Counter(fold(str(d)) for d in districts).items():
        if count > 1:
            problem("districts", "duplicate", f"'{name}' ilçesi birden çok kez yazılmış.")

    kinds = kinds_of(data, retired)
    for entry in data.get("kinds", []):
        code = entry.get("code", "")
        if not re.fullmatch(KIND_CODE, str(code)):
            problem(f"kinds.{code}", "invalid", f"'{code}' geçerli bir kurum türü kodu değil.")
        if len(str(entry.get("name", "")).strip()) < 2:
            problem(f"kinds.{code}.name", "missing", "Kurum türünün adı olmalıdır.")

    institutions: dict[str, Institution] = {}
    slots: dict[tuple[str, str | None], str] = {}
    for n, raw in enumerate(data["institutions"]):
        code = str(raw.get("code", ""))
        at = f"institutions.{code or n}"
        for field, message in _institution_problems(raw, districts, kinds):
            problem(f"{at}.{field}", "invalid", message)
        if code in institutions:
            problem(f"{at}.code", "duplicate", f"'{code}' kurum kodu birden çok kez kullanılmış.")
            continue
        slot = (str(raw.get("kind")), raw.get("district"))
        if slot in slots:
            place = f"{slot[1]} ilçesinde" if slot[1] else "il genelinde"
            problem(
                f"{at}.kind",
                "duplicate_office",
                f"{place} iki {slot[0]} kurumu var ({slots[slot]}, {code}); her yerde bir "
                "türden tek kurum olabilir.",
            )
        slots[slot] = code
        try:
            institutions[code] = Institution.model_validate(raw)
        except ValidationError:
            pass  # already said above, field by field

    if not data["headings"]:
        problem("headings", "missing", "En az bir başlık olmalıdır.")
    seen_headings: set[str] = set()
    seen_categories: set[str] = set()
    by_kind = {(i.kind, i.district): i for i in institutions.values()}
    where: list[str | None] = [None, *districts]
    for heading in data["headings"]:
        code = str(heading.get("code", ""))
        at = f"headings.{code}"
        if not re.fullmatch(HEADING_CODE, code):
            problem(f"{at}.code", "invalid", f"'{code}' geçerli bir başlık kodu değil (ör. ALT).")
        if code in seen_headings:
            problem(f"{at}.code", "duplicate", f"'{code}' başlık kodu birden çok kez kullanılmış.")
        seen_headings.add(code)
        if len(str(heading.get("name", "")).strip()) < 3:
            problem(f"{at}.name", "invalid", "Başlık adı en az 3 karakter olmalıdır.")
        if not heading["categories"]:
            problem(f"{at}.categories", "missing", "Başlığın en az bir kategorisi olmalıdır.")
        for category in heading["categories"]:
            ccode = str(category.get("code", ""))
            cat = f"categories.{ccode}"
            if not re.fullmatch(CATEGORY_CODE, ccode) or not ccode.startswith(code + "-"):
                problem(
                    f"{cat}.code",
                    "invalid",
                    f"'{ccode}' {code} başlığına uygun bir kategori kodu değil (ör. {code}-001).",
                )
            if ccode in seen_categories:
                problem(
                    f"{cat}.code",
                    "duplicate",
                    f"'{ccode}' kategori kodu birden çok kez kullanılmış.",
                )
            seen_categories.add(ccode)
            if len(str(category.get("name", "")).strip()) < 3:
                problem(f"{cat}.name", "invalid", "Kategori adı en az 3 karakter olmalıdır.")
            keywords = category.get("keywords")
            if (
                not isinstance(keywords, list)
                or not keywords
                or any(not isinstance(k, str) or not k or re.search(r"\s", k) for k in keywords)
            ):
                problem(
                    f"{cat}.keywords",
                    "invalid",
                    "En az bir anahtar kelime olmalıdır; her biri boşluksuz tek kelimedir.",
                )
            problems += _handler_problems(
                category["handler"], f"{cat}.handler", ccode, kinds, institutions, by_kind, where
            )
    return problems


def _institution_problems(
    raw: dict[str, Any], districts: list[str], kinds: dict[str, str]
) -> Iterable[tuple[str, str]]:
    code = str(raw.get("code", ""))
    if not INSTITUTION_CODE_RE.fullmatch(code):
        yield "code", f"'{code}' geçerli bir kurum kodu değil (ör. DENIZLI-BLD)."
    if len(str(raw.get("name", "")).strip()) < 3:
        yield "name", "Kurum adı en az 3 karakter olmalıdır."
    if not EMAIL.fullmatch(str(raw.get("email", ""))):
        yield "email", f"'{raw.get('email')}' geçerli bir e-posta adresi değil."
    if raw.get("kind") not in kinds:
        yield "kind", f"'{raw.get('kind')}' bu ilde tanımlı bir kurum türü değil."
    district = raw.get("district")
    if district is not None and district not in districts:
        yield "district", f"'{district}' ilin ilçeleri arasında yok."
    extra = set(raw) - {"code", "name", "kind", "district", "email"}
    if extra:
        yield sorted(extra)[0], "Bu alan tanınmıyor."


def _handler_problems(
    raw: dict[str, Any],
    at: str,
    category: str,
    kinds: dict[str, str],
    institutions: dict[str, Institution],
    by_kind: dict[tuple[str, str | None], Institution],
    where: list[str | None],
) -> list[dict[str, Any]]:
    try:
        handler = Handler.model_validate(raw)
    except ValidationError:
        return [
            field_error(
                at,
                "invalid",
                "Sorumlu; kind, scope ve isteğe bağlı institution "
                "alanlarından oluşur (scope: province ya da district).",
            )
        ]
    if handler.institution is not None:
        named = institutions.get(handler.institution)
        if named is None:
            return [
                field_error(
                    f"{at}.institution",
                    "unknown_institution",
                    f"{category}: '{handler.institution}' kodlu bir kurum yok.",
                )
            ]
        if named.kind != handler.kind or handler.scope is not Scope.province:
            return [
                field_error(
                    at,
                    "kind_mismatch",
                    f"{category}: adıyla belirlenen {named.code} {named.kind} "
                    "türündedir; kind aynı, scope 'province' olmalıdır.",
                )
            ]
        return []
    if handler.kind not in kinds:
        return [
            field_error(
                f"{at}.kind",
                "unknown_kind",
                f"{category}: '{handler.kind}' bu ilde tanımlı bir kurum türü değil.",
            )
        ]
    for district in where:
        if find_institution(handler, district, by_kind, institutions) is None:
            fallback = FALLBACK_KIND.get(handler.kind)
            kinds_named = f"{handler.kind} ya da {fallback}" if fallback else handler.kind
            if district is not None and handler.scope is Scope.district:
                place = f"{district} ilçesinde"
                missing = (
                    f"{district} ilçesinde {handler.kind} birimi, il genelinde de {kinds_named} "
                    "türünde bir kurum yok."
                )
            else:
                place = f"{district} ilçesinde" if district else "il genelinde"
                missing = f"il genelinde {kinds_named} türünde bir kurum yok."
            return [
                field_error(
                    f"{at}.kind",
                    "unresolvable",
                    f"{category} kategorisinin {place} sorumlusu bulunamıyor: {missing}",
                )
            ]
    return []


def _institution_maps(
    raw: list[dict[str, Any]],
) -> tuple[dict[tuple[str, str | None], Institution], dict[str, Institution]]:
    by_code = {i["code"]: Institution.model_validate(i) for i in raw}
    return {(i.kind, i.district): i for i in by_code.values()}, by_code
