"""Suggestions learned from what citizens write: linear models over character n-grams, trained
at start from the bundled labelled applications and from what officers decided since, fused
with the keyword index, calibrated so that their confidence may route an application at once.

Why this shape (bench/routing_eval.py measures it against the alternatives):
- Character n-grams of the text lowered with Turkish rules and folded to ASCII: "İ"/"ı" casing,
  text typed without Turkish letters, suffixes ("suyumuz", "yolların") and misspellings share
  most of their n-grams with the words the model was trained on.
- One-vs-rest linear SVMs (squared hinge, dual coordinate descent: what scikit-learn's LinearSVC
  runs) written in numpy: scikit-learn itself would add about 100 MB to routing's memory, numpy
  about 12 MB. Training takes seconds, so the models are trained at start from data in the
  repository; nothing is downloaded and no binary artefact is shipped.
- The taxonomy's category names and keywords are training documents too; the keyword index's
  scores and a second model that knows only the headings (17 classes with a hundred examples
  each) are added to each category's score: with four or five examples per category, each of
  the three makes mistakes the others do not.
- A softmax with a temperature fitted on cross-validated scores turns the scores into a
  probability per category; an institution's probability is the sum over the categories it
  answers in the applicant's district, and that is the confidence auto-routing compares with
  `auto_route_threshold`.
- Officers' decisions are training data: every routing process looks at the decisions in
  routing's store every LEARN_INTERVAL seconds and retrains (in a worker thread) when there are
  new ones, so each process learns them, whichever process recorded them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from services.routing.domain import (
    MAX_SUGGESTIONS,
    Category,
    Decision,
    Institution,
    Pending,
    Suggestion,
    Taxonomy,
    TaxonomyRegistry,
    UnknownProvince,
)
from services.routing.search import KeywordIndex, fold, words

log = logging.getLogger("acikkapi.routing.learned")

LABELLED = Path(__file__).resolve().parent / "data" / "labelled" / "applications.jsonl"
# How often each routing process looks for officers' decisions it has not learnt yet.
LEARN_INTERVAL = 30.0
# The newest decisions learnt from (older ones add little and make training slower).
MAX_DECISIONS = 5_000

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int32]

_WORD = re.compile(r"[a-z0-9]+")
NGRAMS = (2, 5)


# --- Data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One training text and the category it belongs to."""

    text: str
    category_code: str


@dataclass(frozen=True)
class LabelledRow:
    """A row of the bundled labelled set (data/labelled/applications.jsonl, see its README)."""

    id: str
    text: str
    district: str
    category_code: str
    heading_code: str
    institution_kind: str
    institution_code: str
    also_category_codes: tuple[str, ...]
    split: str  # "train" or "heldout"
    provenance: str

    @property
    def example(self) -> Example:
        return Example(self.text, self.category_code)


def load_labelled(path: Path = LABELLED) -> list[LabelledRow]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw: dict[str, Any] = json.loads(line)
            raw["also_category_codes"] = tuple(raw.get("also_category_codes") or ())
            rows.append(LabelledRow(**raw))
    return rows


def labelled_problems(rows: Sequence[LabelledRow], taxonomy: Taxonomy) -> list[str]:
    """What is wrong with the labelled set against a taxonomy: every heading and every
    institution kind its categories name must be covered, each row's institution must be the
    one routing resolves, every category must have rows for training and held out."""
    problems = []
    categories = _categories(taxonomy)
    per_category = Counter((r.category_code, r.split) for r in rows)
    for category in categories:
        if (
            not per_category[(category.code, "train")]
            or not per_category[(category.code, "heldout")]
        ):
            problems.append(f"{category.code}: needs rows for training and held out")
    headings = {h.code for h in taxonomy.headings} - {r.heading_code for r in rows}
    problems += [f"heading {h} not covered" for h in sorted(headings)]
    kinds = {str(c.handler.kind) for c in categories} - {r.institution_kind for r in rows}
    problems += [f"institution kind {k} not covered" for k in sorted(kinds)]
    for row in rows:
        labelled = taxonomy.category(row.category_code)
        if labelled is None:
            problems.append(f"{row.id}: unknown category {row.category_code}")
            continue
        institution = taxonomy.resolve_institution(labelled, taxonomy.district(row.district))
        if (row.institution_code, row.institution_kind) != (
            institution.code,
            str(institution.kind),
        ):
            problems.append(f"{row.id}: routing resolves {institution.code} ({institution.kind})")
        if row.split not in ("train", "heldout") or not row.provenance or not row.text.strip():
            problems.append(f"{row.id}: split, provenance or text missing")
        problems += [
            f"{row.id}: unknown category {c}"
            for c in row.also_category_codes
            if taxonomy.category(c) is None
        ]
    return problems


class OfficerDecision(BaseModel):
    """An officer routed an application that waited: its text and the category chosen."""

    application_id: str
    round: int
    province_code: int
    district: str
    text: str
    category_code: str
    institution_code: str
    officer: str
    decided_at: datetime
    # What the suggestions put first when the officer decided (None: there were none).
    suggested_category_code: str | None = None

    @property
    def example(self) -> Example:
        return Example(self.text, self.category_code)


class DecisionRecorder(Protocol):
    """Where officers' decisions are written (routing's store)."""

    async def record_decision(self, decision: OfficerDecision) -> None: ...


class DecisionLog(Protocol):
    """Where officers' decisions are read back (routing's store)."""

    async def decisions_marker(self) -> tuple[int, str | None]: ...
    async def recent_decisions(self, limit: int) -> list[OfficerDecision]: ...


# --- Features -----------------------------------------------------------------------------------


def ngrams(text: str) -> Counter[str]:
    """The character n-grams of each word, the word padded with a space on both sides (so that
    beginnings and endings are n-grams of their own), after Turkish lowering and ASCII folding."""
    found: Counter[str] = Counter()
    low, high = NGRAMS
    for word in _WORD.findall(fold(text)):
        padded = f" {word} "
        for n in range(low, min(high, len(padded)) + 1):
            found.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    return found


@dataclass(frozen=True)
class SparseVector:
    indices: Ints
    values: Floats


class Vectoriser:
    """TF-IDF over character n-grams: sublinear term frequency, smoothed idf, unit length."""

    def __init__(self, vocabulary: dict[str, int], idf: Floats) -> None:
        self.vocabulary = vocabulary
        self.idf = idf

    @classmethod
    def fit(cls, texts: Iterable[str], min_df: int = 1) -> Vectoriser:
        document_frequency: Counter[str] = Counter()
        total = 0
        for text in texts:
            document_frequency.update(ngrams(text).keys())
            total += 1
        grams = sorted(g for g, df in document_frequency.items() if df >= min_df)
        df = np.array([document_frequency[g] for g in grams], np.float32)
        idf = (np.log((1 + total) / (1 + df)) + 1).astype(np.float32)
        return cls({gram: n for n, gram in enumerate(grams)}, idf)

    @property
    def size(self) -> int:
        return len(self.vocabulary)

    def transform(self, text: str) -> SparseVector:
        known = sorted(
            (n, count)
            for gram, count in ngrams(text).items()
            if (n := self.vocabulary.get(gram)) is not None
        )
        indices = np.fromiter((n for n, _ in known), np.int32, len(known))
        tf = np.fromiter((1 + math.log(c) for _, c in known), np.float32, len(known))
        values = tf * self.idf[indices]
        norm = float(np.linalg.norm(values))
        return SparseVector(indices, values / norm if norm else values)


# --- Linear models ------------------------------------------------------------------------------


def train_svm(
    vectors: Sequence[SparseVector],
    labels: Sequence[int],
    n_features: int,
    n_classes: int,
    *,
    c: float,
    epochs: int,
    seed: int = 0,
) -> Floats:
    """One-vs-rest L2-regularised squared-hinge SVMs, all classes at once, by dual coordinate
    descent (Hsieh et al. 2008, liblinear's solver for LinearSVC). The last row of the returned
    (n_features + 1, n_classes) matrix is the bias, learnt as a constant feature of 1.

    Deterministic for a given seed, so every routing process trains the same model."""
    weights = np.zeros((n_features + 1, n_classes), np.float32)
    alpha = np.zeros((len(vectors), n_classes), np.float32)
    diagonal = np.float32(1.0 / (2.0 * c))
    bias = np.int32(n_features)
    rows = [(np.append(v.indices, bias), np.append(v.values, np.float32(1.0))) for v in vectors]
    signs = np.full((len(vectors), n_classes), -1.0, np.float32)
    signs[np.arange(len(vectors)), np.asarray(labels, np.int64)] = 1.0
    squared = np.array([float(v @ v) for _, v in rows], np.float32) + diagonal
    shuffle = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in shuffle.permutation(len(rows)):
            idx, val = rows[i]
            y = signs[i]
            gradient = y * (val @ weights[idx]) - 1.0 + diagonal * alpha[i]
            updated = np.maximum(alpha[i] - gradient / squared[i], 0.0)
            step = (updated - alpha[i]) * y
            if step.any():
                alpha[i] = updated
                weights[idx] += np.outer(val, step)
    return weights


@dataclass(frozen=True)
class ModelSettings:
    """Hyper-parameters, chosen by cross-validation on the training part of the labelled set
    (`python bench/routing_eval.py --tune`), never on the held-out part."""

    c: float = 1.0
    epochs: int = 8
    keyword_weight: float = 0.4
    heading_weight: float = 0.5
    temperature: float = 0.12
    # N-grams found in fewer training texts are left out. 2 would save 4 MB of weights for about
    # a point of cross-validated accuracy, so all are kept.
    min_df: int = 1
    seed: int = 0


@dataclass
class Linear:
    """A trained linear model, stored in half precision (its scores move by less than 1e-3)."""

    weights: npt.NDArray[np.float16]
    bias: Floats

    @classmethod
    def of(cls, trained: Floats) -> Linear:
        return cls(trained[:-1].astype(np.float16), trained[-1].copy())

    def scores(self, vector: SparseVector) -> Floats:
        rows = self.weights[vector.indices].astype(np.float32)
        return np.asarray(vector.values @ rows + self.bias, np.float32)

    @property
    def nbytes(self) -> int:
        return int(self.weights.nbytes + self.bias.nbytes)


@dataclass
class CategoryModel:
    """Scores every category of one taxonomy's categories for a text."""

    codes: list[str]
    vectoriser: Vectoriser
    categories: Linear
    headings: Linear
    heading_of: Ints  # heading index of each category
    keywords: KeywordIndex
    settings: ModelSettings
    signature: Signature
    examples: int = 0

    @classmethod
    def train(
        cls,
        categories: Sequence[Category],
        examples: Sequence[Example],
        settings: ModelSettings = ModelSettings(),
    ) -> CategoryModel:
        codes = [c.code for c in categories]
        position = {code: n for n, code in enumerate(codes)}
        usable = [e for e in examples if e.category_code in position]
        heading_codes = sorted({_heading(code) for code in codes})
        heading_of = np.array([heading_codes.index(_heading(code)) for code in codes], np.int32)
        # Each category's name and keywords are a document of that category.
        texts = [e.text for e in usable] + [_describe(c) for c in categories]
        labels = [position[e.category_code] for e in usable] + list(range(len(codes)))
        vectoriser = Vectoriser.fit(texts, settings.min_df)
        vectors = [vectoriser.transform(t) for t in texts]
        train = _trainer(vectors, vectoriser.size, settings)
        return cls(
            codes=codes,
            vectoriser=vectoriser,
            categories=Linear.of(train(labels, len(codes))),
            headings=Linear.of(train([int(heading_of[n]) for n in labels], len(heading_codes))),
            heading_of=heading_of,
            keywords=KeywordIndex.build(categories),
            settings=settings,
            signature=_signature(categories),
            examples=len(usable),
        )

    def scores(self, text: str) -> Floats:
        """The fused score of every category, in the order of `codes`."""
        vector = self.vectoriser.transform(text)
        fused = self.categories.scores(vector)
        fused += self.settings.heading_weight * self.headings.scores(vector)[self.heading_of]
        found = self.keywords.scores(words(text))
        if found:
            keyword = np.zeros(len(self.codes), np.float32)
            for n, score in found.items():
                keyword[n] = score
            fused += self.settings.keyword_weight * keyword / keyword.max()
        return fused

    def probabilities(self, text: str) -> Floats:
        return softmax(self.scores(text), self.settings.temperature)

    @property
    def nbytes(self) -> int:
        return self.categories.nbytes + self.headings.nbytes + int(self.vectoriser.idf.nbytes)


def _trainer(
    vectors: Sequence[SparseVector], n_features: int, settings: ModelSettings
) -> Callable[[Sequence[int], int], Floats]:
    def train(labels: Sequence[int], n_classes: int) -> Floats:
        return train_svm(
            vectors,
            labels,
            n_features,
            n_classes,
            c=settings.c,
            epochs=settings.epochs,
            seed=settings.seed,
        )

    return train


def softmax(scores: Floats, temperature: float) -> Floats:
    exp = np.exp((scores - scores.max()) / temperature)
    return np.asarray(exp / exp.sum(), np.float32)


def _heading(code: str) -> str:
    return code.split("-", 1)[0]


def _describe(category: Category) -> str:
    return f"{category.name} {' '.join(category.keywords)}"


Signature = tuple[tuple[str, str, tuple[str, ...]], ...]


def _signature(categories: Iterable[Category]) -> Signature:
    """What a model depends on: provinces with the same categories share one model."""
    return tuple((c.code, c.name, tuple(c.keywords)) for c in categories)


def _categories(taxonomy: Taxonomy) -> list[Category]:
    return [c for h in taxonomy.headings for c in h.categories]


# --- Ranking within a taxonomy ------------------------------------------------------------------


@dataclass(frozen=True)
class Ranking:
    """Categories for a text, best first, and how sure the model is of the first institution."""

    suggestions: list[Suggestion]
    # The probability that the first suggestion's institution is the right one (0 when the
    # suggestions come from the keyword index alone: it is never sure enough to route).
    confidence: float
    learned: bool


class ModelDecision(Decision):
    """Routing chose the category from the text, this sure of the institution."""

    confidence: float


@dataclass
class _Where:
    """Who answers each category (in the model's order) in one district."""

    institutions: list[Institution]
    index: Ints  # position of each category's institution in `institutions`


@dataclass
class TaxonomyModel:
    """A trained model bound to one province's taxonomy."""

    taxonomy: Taxonomy
    model: CategoryModel
    _places: dict[str | None, _Where] = field(default_factory=dict)

    def _where(self, district: str | None) -> _Where:
        where = self._places.get(district)
        if where is None:
            institutions: list[Institution] = []
            position: dict[str, int] = {}
            index = []
            for code in self.model.codes:
                institution = self.taxonomy.resolve_institution(code, district)
                if institution.code not in position:
                    position[institution.code] = len(institutions)
                    institutions.append(institution)
                index.append(position[institution.code])
            where = self._places[district] = _Where(institutions, np.array(index, np.int32))
        return where

    def rank(
        self,
        text: str,
        district: str | None,
        limit: int = MAX_SUGGESTIONS,
        *,
        exclude_institutions: Iterable[str] = (),
    ) -> Ranking:
        """Categories by probability, except that the first is the likeliest category of the
        likeliest institution: several categories of one institution often share the mass."""
        where = self._where(district)
        probabilities = self.model.probabilities(text)
        excluded = set(exclude_institutions)
        for n, institution in enumerate(where.institutions):
            if institution.code in excluded:
                probabilities[where.index == n] = 0.0
        total = float(probabilities.sum())
        if total <= 0:
            return Ranking([], 0.0, True)
        probabilities /= total
        mass = np.bincount(where.index, weights=probabilities, minlength=len(where.institutions))
        best = int(np.argmax(mass))
        order = [int(n) for n in np.argsort(-probabilities, kind="stable")]
        first = next(n for n in order if where.index[n] == best)
        chosen = [first, *[n for n in order if n != first and probabilities[n] > 0]][:limit]
        suggestions = [
            self._suggestion(n, where.institutions[where.index[n]], float(probabilities[n]))
            for n in chosen
        ]
        return Ranking(suggestions, min(float(mass[best]), 1.0), True)

    def _suggestion(self, n: int, institution: Institution, probability: float) -> Suggestion:
        category = self.taxonomy.category(self.model.codes[n])
        assert category is not None  # the model was trained on this taxonomy's categories
        return Suggestion(
            category_code=category.code,
            category_name=category.name,
            heading_code=self.taxonomy.heading_of(category).code,
            institution_code=institution.code,
            institution_kind=str(institution.kind),
            institution_name=institution.name,
            score=round(probability, 4),
        )


# --- The learned routing of one process ---------------------------------------------------------


class LearnedRouting:
    """The models of every province this routing serves, retrained as officers decide.

    Until a province's model is trained (or if training failed) its suggestions come from the
    keyword index, with confidence 0: nothing is routed automatically on keywords alone.
    """

    def __init__(
        self,
        registry: TaxonomyRegistry,
        *,
        threshold: float,
        decisions: DecisionLog | None = None,
        labelled: Sequence[Example] | None = None,
        settings: ModelSettings = ModelSettings(),
        interval: float = LEARN_INTERVAL,
        max_decisions: int = MAX_DECISIONS,
    ) -> None:
        self._registry = registry
        self.threshold = threshold
        self._decisions = decisions
        self._labelled = (
            list(labelled)
            if labelled is not None
            else [r.example for r in load_labelled() if r.split == "train"]
        )
        self._settings = settings
        self._interval = interval
        self._max_decisions = max_decisions
        self._models: dict[int, TaxonomyModel] = {}
        self._marker: tuple[int, str | None] | None = None
        self.learnt_decisions = 0

    @property
    def auto_routing(self) -> bool:
        """A threshold of 1 turns automatic routing off."""
        return self.threshold < 1.0

    def ready(self) -> bool:
        return bool(self._models)

    # Training ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Train before the consumers start (a start-up hook: retried if MongoDB is not there)."""
        await self.refresh(force=True)

    async def refresh(self, *, force: bool = False) -> bool:
        """Retrain if officers decided something since the last training. True if it did."""
        marker = await self._decisions.decisions_marker() if self._decisions else (0, None)
        if not force and marker == self._marker and self._current():
            return False
        decided = (
            await self._decisions.recent_decisions(self._max_decisions) if self._decisions else []
        )
        self._models = await asyncio.to_thread(self.train, decided)
        self._marker = marker
        self.learnt_decisions = len(decided)
        log.info(
            "routing model trained",
            extra={"decisions": len(decided), "provinces": sorted(self._models)},
        )
        return True

    def train(self, decided: Sequence[OfficerDecision] = ()) -> dict[int, TaxonomyModel]:
        """Models for every province, from the labelled set and these officers' decisions."""
        models: dict[int, TaxonomyModel] = {}
        shared: dict[Signature, CategoryModel] = {}
        for province in self._registry.provinces():
            taxonomy = self._registry.for_province(province)
            categories = _categories(taxonomy)
            signature = _signature(categories)
            model = shared.get(signature)
            if model is None:
                codes = {c.code for c in categories}
                examples = self._labelled + [d.example for d in decided if d.category_code in codes]
                model = shared[signature] = CategoryModel.train(
                    categories, examples, self._settings
                )
            models[province] = TaxonomyModel(taxonomy, model)
        return models

    def _current(self) -> bool:
        """Whether every model was trained on the taxonomy the registry holds now."""
        return all(
            (m := self._models.get(p)) is not None
            and m.model.signature == _signature(_categories(self._registry.for_province(p)))
            for p in self._registry.provinces()
        )

    def use(self, models: dict[int, TaxonomyModel]) -> None:
        """Serve these models (the evaluation trains once and swaps them in)."""
        self._models = models

    async def run(self) -> None:
        """Background loop: learn the officers' decisions, whichever process recorded them."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("routing model not retrained", extra={"error": type(exc).__name__})

    # Serving -------------------------------------------------------------------------------------

    def rank(
        self,
        taxonomy: Taxonomy,
        text: str,
        district: str | None,
        limit: int = MAX_SUGGESTIONS,
        *,
        exclude_institutions: Iterable[str] = (),
    ) -> Ranking:
        trained = self._bound(taxonomy)
        if trained is None:
            excluded = set(exclude_institutions)
            found = taxonomy.suggest(text, district, limit + len(excluded))
            kept = [s for s in found if s.institution_code not in excluded][:limit]
            return Ranking(kept, 0.0, False)
        return trained.rank(text, district, limit, exclude_institutions=exclude_institutions)

    def _bound(self, taxonomy: Taxonomy) -> TaxonomyModel | None:
        """The province's model for this very taxonomy. An administrator's edit that kept the
        categories (institutions, names, districts) keeps the model until the next training;
        one that changed the categories falls back to keywords until then."""
        trained = self._models.get(taxonomy.province_code)
        if trained is None or trained.taxonomy is taxonomy:
            return trained
        if [c.code for c in _categories(taxonomy)] != trained.model.codes:
            return None
        rebound = self._models[taxonomy.province_code] = TaxonomyModel(taxonomy, trained.model)
        return rebound

    def reconsider(
        self, province_code: int, district: str, text: str, waiting: Pending
    ) -> ModelDecision | Pending:
        """An application without a category: routed at once when the model is sure enough of
        its institution, else it waits with the model's suggestions."""
        try:
            taxonomy = self._registry.for_province(province_code)
        except UnknownProvince:
            return waiting
        where = taxonomy.district(district)
        if where is None:
            return waiting  # the reason (unknown district) is the officer's to solve
        ranking = self.rank(taxonomy, text, where)
        if ranking.learned and self.auto_routing and ranking.confidence >= self.threshold:
            decision = taxonomy.decide(ranking.suggestions[0].category_code, where)
            return ModelDecision(**decision.model_dump(), confidence=round(ranking.confidence, 4))
        return Pending(waiting.reason, ranking.suggestions)
