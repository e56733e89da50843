"""The provinces' institutions and categories as routing announces them on the compacted
`acikkapi.taxonomy` topic: tracking checks a forward's and a split's targets against them and
offers them in the institutions' inbox. Every tracking process reads the topic whole (no
consumer group), as intake does."""

from __future__ import annotations

from typing import Protocol

from services.common import kafka_auth, topics
from services.common.compacted import CompactedView
from services.common.events import CategoryBrief, InstitutionEntry, TaxonomyPublished
from services.common.settings import Settings


class Directory(Protocol):
    """What the use cases ask of the directory (`TaxonomyDirectory`; a fake in unit tests)."""

    def province(self, province_code: int) -> TaxonomyPublished | None: ...
    def provinces(self) -> list[TaxonomyPublished]: ...


class TaxonomyDirectory:
    def __init__(self, settings: Settings) -> None:
        self.view = CompactedView(
            kafka_auth.client_options(settings, "tracking"),
            topics.TAXONOMY,
            TaxonomyPublished,
            client_id="acikkapi-tracking-taxonomy",
        )

    def province(self, province_code: int) -> TaxonomyPublished | None:
        return self.view.latest.get(str(province_code))

    def provinces(self) -> list[TaxonomyPublished]:
        return sorted(self.view.latest.values(), key=lambda t: t.province_code)


def institution_in(taxonomy: TaxonomyPublished, code: str) -> InstitutionEntry | None:
    return next((i for i in taxonomy.institutions if i.code == code), None)


def category_in(taxonomy: TaxonomyPublished, code: str) -> CategoryBrief | None:
    return next((c for h in taxonomy.headings for c in h.categories if c.code == code), None)


def province_of_institution(directory: Directory, code: str) -> TaxonomyPublished | None:
    """The province whose institutions include `code` (for a record that does not know its
    province yet: routing's event overtook intake's)."""
    return next((t for t in directory.provinces() if institution_in(t, code) is not None), None)
