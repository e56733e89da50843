"""Loads the taxonomy files: those shipped with the service (`data/taxonomy_<province>.json`) and
those an operator adds as data, in the folder `AK_TAXONOMY_DIR` names (a file there replaces a
shipped one for the same province). They seed routing's store for provinces it has never held;
after that the store's versions rule (taxonomy_store.py)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from services.routing.domain import Taxonomy, TaxonomyRegistry

DATA_DIR = Path(__file__).resolve().parent / "data"


def load_taxonomy(path: Path) -> Taxonomy:
    """Read and check one province's taxonomy; a bad file raises pydantic.ValidationError."""
    return Taxonomy.model_validate_json(path.read_bytes())


@lru_cache
def default_registry(extra_dir: str = "") -> TaxonomyRegistry:
    """Every taxonomy shipped, then every one in `extra_dir`; immutable, so one copy per
    process (and folder) is enough."""
    paths = sorted(DATA_DIR.glob("taxonomy_*.json"))
    if extra_dir:
        folder = Path(extra_dir)
        if not folder.is_dir():
            raise RuntimeError(f"AK_TAXONOMY_DIR: {folder} is not a folder")
        paths += sorted(folder.glob("taxonomy_*.json"))
    if not paths:
        raise RuntimeError(f"no taxonomy_*.json in {DATA_DIR}")
    by_province = {t.province_code: t for t in map(load_taxonomy, paths)}  # the last one wins
    return TaxonomyRegistry(by_province.values())
