"""Loads the taxonomies shipped with the service: `data/taxonomy_<province>.json` each."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from services.routing.domain import Taxonomy, TaxonomyRegistry

DATA_DIR = Path(__file__).resolve().parent / "data"


def load_taxonomy(path: Path) -> Taxonomy:
    """Read and check one province's taxonomy; a bad file raises pydantic.ValidationError."""
    return Taxonomy.model_validate_json(path.read_bytes())


@lru_cache
def default_registry() -> TaxonomyRegistry:
    """Every taxonomy in the data folder; immutable, so one copy per process is enough."""
    paths = sorted(DATA_DIR.glob("taxonomy_*.json"))
    if not paths:
        raise RuntimeError(f"no taxonomy_*.json in {DATA_DIR}")
    return TaxonomyRegistry(load_taxonomy(p) for p in paths)
