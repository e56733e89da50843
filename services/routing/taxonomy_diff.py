"""The difference between two versions of a province's taxonomy, as the change log keeps it:
what was added, changed or retired, and for which categories the answering institution changed
in some district (a changed office or kind moves responsibility without touching the category).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.routing.domain import Category, Taxonomy
from services.routing.taxonomy_edits import TaxonomyDocument, listed

PROVINCE_LEVEL = "il_geneli"  # the key of the province-wide answer in a responsibility change

Entity = Literal["province", "kind", "institution", "heading", "category", "responsibility"]
ChangeKind = Literal["added", "changed", "retired"]


class FieldChange(BaseModel):
    before: Any = None
    after: Any = None


class Change(BaseModel):
    """One thing that differs between two versions. A `responsibility` change names a category
    whose answering institution changed, per district (`il_geneli`: the province level)."""

    entity: Entity
    code: str
    change: ChangeKind
    name: str | None = None
    fields: dict[str, FieldChange] = Field(default_factory=dict)


def diff(before: TaxonomyDocument | None, after: TaxonomyDocument) -> list[Change]:
    """What changed from `before` to `after` (everything is added when there is no before)."""
    changes: list[Change] = []
    old = before.taxonomy if before else None
    new = after.taxonomy
    changes += _diff_fields(
        "province",
        {str(old.province_code): _province_fields(old)} if old else {},
        {str(new.province_code): _province_fields(new)},
    )
    changes += _diff_fields(
        "kind",
        {k: {"name": v} for k, v in before.kinds().items()} if before else {},
        {k: {"name": v} for k, v in after.kinds().items()},
    )
    changes += _diff_fields(
        "institution",
        {i.code: i.model_dump(mode="json") for i in old.institutions} if old else {},
        {i.code: i.model_dump(mode="json") for i in new.institutions},
    )
    changes += _diff_fields(
        "heading",
        {h.code: {"name": h.name} for h in old.headings} if old else {},
        {h.code: {"name": h.name} for h in new.headings},
    )
    changes += _diff_fields(
        "category",
        _category_fields(old) if old else {},
        _category_fields(new),
    )
    if old is not None:
        changes += _responsibility(old, new)
    return changes


def _province_fields(taxonomy: Taxonomy) -> dict[str, Any]:
    return {"province": taxonomy.province, "districts": list(taxonomy.districts)}


def _category_fields(taxonomy: Taxonomy) -> dict[str, dict[str, Any]]:
    out = {}
    for heading in taxonomy.headings:
        for category in heading.categories:
            out[category.code] = {
                "name": category.name,
                "heading_code": heading.code,
                "keywords": list(category.keywords),
                "institution_kind": str(category.handler.kind),
                "scope": category.handler.scope.value,
                "institution_code": category.handler.institution,
            }
    return out


def _diff_fields(
    entity: Entity, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[Change]:
    changes = []
    for code, fields in after.items():
        name = fields.get("name")
        if code not in before:
            changes.append(Change(entity=entity, code=code, change="added", name=name))
            continue
        changed = {
            field: FieldChange(before=before[code].get(field), after=value)
            for field, value in fields.items()
            if before[code].get(field) != value
        }
        if changed:
            changes.append(
                Change(entity=entity, code=code, change="changed", name=name, fields=changed)
            )
    for code, fields in before.items():
        if code not in after:
            changes.append(
                Change(entity=entity, code=code, change="retired", name=fields.get("name"))
            )
    return changes


def _responsibility(old: Taxonomy, new: Taxonomy) -> list[Change]:
    """Categories live in both versions whose answering institution changed somewhere."""
    changes = []
    # A district only one version has is a change of the province, not of who answers.
    places: list[str | None] = [None, *(d for d in new.districts if old.district(d) == d)]
    # With the same institutions and districts only a changed handler can change who answers.
    same_offices = old.institutions == new.institutions and old.districts == new.districts
    for heading in new.headings:
        for category in heading.categories:
            was = old.category(category.code)
            if was is None or (same_offices and was.handler == category.handler):
                continue
            fields = {}
            for district in places:
                before = _answerer(old, was, district)
                after = _answerer(new, category, district)
                if before != after:
                    fields[district or PROVINCE_LEVEL] = FieldChange(before=before, after=after)
            if fields:
                changes.append(
                    Change(
                        entity="responsibility",
                        code=category.code,
                        change="changed",
                        name=category.name,
                        fields=fields,
                    )
                )
    return changes


def _answerer(taxonomy: Taxonomy, category: Category, district: str | None) -> str:
    return taxonomy.resolve_institution(category, district).code


_ENTITY_NAMES: dict[str, str] = {
    "province": "il",
    "kind": "kurum türü",
    "institution": "kurum",
    "heading": "başlık",
    "category": "kategori",
}
_CHANGE_NAMES: dict[str, str] = {
    "added": "eklendi",
    "changed": "değişti",
    "retired": "emekliye ayrıldı",
}


def summary(changes: list[Change]) -> str:
    """One Turkish line for the change log: "1 kategori eklendi (ALT-016); 1 kategori değişti
    (ALT-001); 2 kategoride sorumlu kurum değişti"."""
    if not changes:
        return "Değişiklik yok."
    groups: dict[tuple[str, str], list[str]] = {}
    for change in changes:
        groups.setdefault((change.entity, change.change), []).append(change.code)
    parts = []
    for (entity, kind), codes in groups.items():
        if entity == "responsibility":
            parts.append(f"{len(codes)} kategoride sorumlu kurum değişti ({listed(codes)})")
        else:
            parts.append(
                f"{len(codes)} {_ENTITY_NAMES[entity]} {_CHANGE_NAMES[kind]} ({listed(codes)})"
            )
    return "; ".join(parts) + "."
