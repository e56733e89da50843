"""How well chronic-problem detection finds real repeats and avoids false ones, offline.

Runs `services.reporting.chronic.find_chronic` on the labelled set
(tests/data/chronic_labelled.jsonl) exactly as reporting would: each text masked of the
applicant's personal data, the neighbourhood taken from the address (else from the text), the
citizen a keyed pseudonym of the phone. Then it times a synthetic province-sized run.

The labelled set (298 applications in Denizli, March-May 2026) was written by hand for this
project by an AI assistant working as one of its helpers, before the detection was tuned:
- 33 chronic problems (label `sorun-NN`, `chronic: true`): 4-7 applications each, paraphrased
  (petitions, short angry ones, capitals, texts typed without Turkish letters, misspellings),
  from different citizens (three of them write twice), spread over 5-9 weeks; several share a
  district and heading with another problem or with decoys, two share a category in one
  district and differ by neighbourhood (sorun-04 and sorun-32);
- 36 decoys (label `yanlis-NN`, `chronic: false`), each of 3-6 applications that would pass
  the thresholds if the detection erred: one citizen writing again and again (ayni_vatandas),
  two citizens only (iki_vatandas), similar words for different problems (benzer_kelime), the
  same problem in different districts or neighbourhoods (farkli_yer), a one-time event in one
  or two weeks (tek_hafta, iki_hafta), a problem mostly before the window (pencere_disi), the
  same problem under different headings (farkli_baslik), unrelated one-offs (tekil).
Names, phones, e-mail addresses, TC Kimlik Nos and IBANs are made up (TC Kimlik Nos and IBANs
with valid check digits), ids and dates were filled in by a seeded script; the texts are as
written.

Figures (one a line):
- recall: true problems found / all true problems. Found: a reported problem more than half of
  whose applications are that problem's, and no second true problem has two or more in it;
- false discovery rate: reported problems that are not such a find (a decoy's majority, a mix
  with no majority, or two true problems merged) / all reported;
- false-positive rate: decoys reported (a reported problem more than half of which is the
  decoy's) / all decoys;
- purity: applications in reported problems that belong to the problem's majority label;
- run times: the labelled set, and a synthetic 12-week province of --scale texts (default
  100,000): the labelled texts and the routing set's 1,701 texts, varied (words dropped,
  Turkish letters removed, letters swapped), spread over Denizli's districts by population and
  over the window, 1 in 50 from a citizen who writes again.

    .venv/bin/python bench/chronic.py [--scale 100000] [--no-scale]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.reporting.chronic import (
    DEFAULT_RULES,
    ChronicInput,
    ChronicProblem,
    ChronicRules,
    citizen_key,
    find_chronic,
    mask_text,
    parse_neighbourhood,
)

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "chronic_labelled.jsonl"
ROUTING_TEXTS = ROOT / "services" / "routing" / "data" / "labelled" / "applications.jsonl"
NOW = datetime.fromisoformat("2026-06-01T09:00:00+03:00")
WINDOW = timedelta(weeks=12)
BENCH_KEY = b"bench-chronic-pseudonym-key-0032"
ASCII = str.maketrans("çğıöşüÇĞİÖŞÜ", "cgiosuCGIOSU")
# Rough shares of Denizli's population by district (TÜİK 2024, rounded), for the synthetic run.
DISTRICT_WEIGHTS = {
    "Merkezefendi": 34, "Pamukkale": 36, "Çivril": 6, "Acıpayam": 5, "Tavas": 4, "Honaz": 3,
    "Sarayköy": 3, "Buldan": 2.5, "Çal": 2, "Çardak": 1, "Serinhisar": 1.2, "Güney": 1,
    "Bozkurt": 1.1, "Kale": 1.8, "Çameli": 1.7, "Babadağ": 0.6, "Bekilli": 0.6, "Beyağaç": 0.6,
    "Baklan": 0.5,
}  # fmt: skip


@dataclass(frozen=True)
class Labelled:
    label: str
    chronic: bool
    kind: str
    record: ChronicInput


def to_input(app: dict[str, Any], key: bytes = BENCH_KEY) -> ChronicInput:
    """An application of the labelled set as reporting records it (chronic_store does the
    same from the events)."""
    applicant = app["applicant"]
    place = parse_neighbourhood(app.get("address")) or parse_neighbourhood(app["text"])
    return ChronicInput(
        application_id=app["application_id"],
        application_number=app["application_number"],
        province_code=app["province_code"],
        district=app["district"],
        neighbourhood=place.key if place else None,
        neighbourhood_name=place.name if place else None,
        heading_code=app["heading_code"],
        heading_name=app["heading_name"],
        institution_code=app["institution_code"],
        institution_name=app["institution_name"],
        citizen_key=citizen_key(applicant["phone"], key),
        received_at=datetime.fromisoformat(app["received_at"]),
        text=mask_text(app["text"], names=[applicant["first_name"], applicant["last_name"]]),
    )


def background(seed: int = 11) -> list[Labelled]:
    """The routing set's 1,701 texts as one-off applications of unrelated citizens, in their
    own districts, spread over the window: the noise a real province's problems sit in. Each is
    a label of its own, so a reported cluster of them is a false report."""
    rng = random.Random(seed)
    rows = []
    for line in ROUTING_TEXTS.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        record = ChronicInput(
            application_id=f"bg-{raw['id']}",
            application_number=f"bg-{raw['id']}",
            province_code=20,
            district=raw["district"],
            neighbourhood=None,
            heading_code=raw["heading_code"],
            heading_name=raw["heading_code"],
            institution_code=raw["institution_code"],
            institution_name=raw["institution_code"],
            citizen_key=f"bg-{raw['id']}",
            received_at=NOW - timedelta(seconds=rng.random() * WINDOW.total_seconds()),
            text=raw["text"],
        )
        place = parse_neighbourhood(raw["text"])
        if place:
            record = replace(record, neighbourhood=place.key, neighbourhood_name=place.name)
        rows.append(Labelled(f"arka-plan-{raw['id']}", False, "arka_plan", record))
    return rows


def load_labelled(path: Path = LABELLED) -> list[Labelled]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            rows.append(
                Labelled(raw["label"], raw["chronic"], raw["kind"], to_input(raw["application"]))
            )
    return rows


@dataclass(frozen=True)
class Evaluation:
    true_problems: int
    found: int
    decoys: int
    decoys_reported: int
    reported: int
    false_reports: int
    merges: int
    purity: float
    missed: tuple[str, ...]
    decoys_hit: tuple[str, ...]

    @property
    def recall(self) -> float:
        return self.found / self.true_problems if self.true_problems else 0.0

    @property
    def false_discovery_rate(self) -> float:
        return self.false_reports / self.reported if self.reported else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.decoys_reported / self.decoys if self.decoys else 0.0


def evaluate(rows: Sequence[Labelled], problems: Sequence[ChronicProblem]) -> Evaluation:
    by_id = {r.record.application_id: r for r in rows}
    truth = {r.label: r.chronic for r in rows}
    found: set[str] = set()
    decoys_hit: set[str] = set()
    false_reports = merges = pure = total = 0
    for problem in problems:
        labels = Counter(by_id[a].label for a in problem.application_ids)
        top, top_count = labels.most_common(1)[0]
        total += problem.count
        pure += top_count
        majority = top_count * 2 > problem.count
        merged = sum(1 for lb, c in labels.items() if truth[lb] and c >= 2) >= 2
        merges += merged
        if majority and truth[top] and not merged:
            found.add(top)
            continue
        false_reports += 1
        if majority and not truth[top]:
            decoys_hit.add(top)
    true_labels = sorted(lb for lb, chronic in truth.items() if chronic)
    kinds = {r.label: r.kind for r in rows}
    decoy_labels = [lb for lb, chronic in truth.items() if not chronic and kinds[lb] != "arka_plan"]
    return Evaluation(
        true_problems=len(true_labels),
        found=len(found),
        decoys=len(decoy_labels),
        decoys_reported=len(decoys_hit),
        reported=len(problems),
        false_reports=false_reports,
        merges=merges,
        purity=pure / total if total else 1.0,
        missed=tuple(lb for lb in true_labels if lb not in found),
        decoys_hit=tuple(sorted(decoys_hit)),
    )


# --- Synthetic scale ----------------------------------------------------------------------------


def _vary(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) > 4 and rng.random() < 0.6:
        for _ in range(rng.randint(1, max(1, len(words) // 5))):
            words.pop(rng.randrange(len(words)))
    if rng.random() < 0.25:
        words = [w.translate(ASCII) for w in words]
    if rng.random() < 0.3:
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 3:
            k = rng.randrange(len(w) - 1)
            words[i] = w[:k] + w[k + 1] + w[k] + w[k + 2 :]
    return " ".join(words)


def synthetic(n: int, rows: Sequence[Labelled], seed: int = 7) -> list[ChronicInput]:
    """n applications in the 12 weeks before NOW, varied from the labelled and routing texts."""
    rng = random.Random(seed)
    templates = [r.record for r in rows]
    headings = {r.record.heading_code: r.record.heading_name for r in rows}
    for line in ROUTING_TEXTS.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        heading = raw["heading_code"]
        templates.append(
            replace(
                templates[0],
                heading_code=heading,
                heading_name=headings.get(heading, heading),
                institution_code=raw["institution_code"],
                institution_name=raw["institution_code"],
                neighbourhood=None,
                neighbourhood_name=None,
                text=raw["text"],
            )
        )
    districts, weights = zip(*DISTRICT_WEIGHTS.items(), strict=True)
    span = timedelta(weeks=12).total_seconds()
    out: list[ChronicInput] = []
    for i in range(n):
        base = rng.choice(templates)
        repeat = out and rng.random() < 0.02
        number = f"20-2026-{1_000_000 + i:07d}-0"
        out.append(
            replace(
                base,
                application_id=str(uuid.UUID(int=rng.getrandbits(128))),
                application_number=number,
                district=rng.choices(districts, weights)[0],
                citizen_key=out[rng.randrange(len(out))].citizen_key if repeat else f"c{i}",
                received_at=NOW - timedelta(seconds=rng.random() * span),
                text=_vary(base.text, rng),
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--no-scale", action="store_true")
    args = parser.parse_args(argv)
    rules: ChronicRules = DEFAULT_RULES

    rows = load_labelled()
    started = time.perf_counter()
    problems = find_chronic([r.record for r in rows], now=NOW, rules=rules)
    elapsed = time.perf_counter() - started
    e = evaluate(rows, problems)
    print(f"labelled applications: {len(rows)}")
    print(f"true problems found: {e.found}/{e.true_problems}")
    print(f"recall: {e.recall:.1%}")
    print(f"reported problems: {e.reported}")
    print(f"false reports: {e.false_reports} (merges of two true problems: {e.merges})")
    print(f"false discovery rate: {e.false_discovery_rate:.1%}")
    print(f"decoys reported: {e.decoys_reported}/{e.decoys}")
    print(f"false-positive rate: {e.false_positive_rate:.1%}")
    print(f"purity of reported problems: {e.purity:.1%}")
    print(f"missed: {' '.join(e.missed) or '-'}")
    print(f"decoys reported: {' '.join(e.decoys_hit) or '-'}")
    print(f"labelled set run time: {elapsed * 1000:.0f} ms")
    # The same among 1,701 unrelated texts: are the problems still found, the decoys still not?
    noisy = rows + background()
    found_noisy = find_chronic([r.record for r in noisy], now=NOW, rules=rules)
    n = evaluate(noisy, found_noisy)
    mostly_background = sum(
        1 for p in found_noisy if sum(a.startswith("bg-") for a in p.application_ids) * 2 > p.count
    )
    print(f"with background noise, recall: {n.recall:.1%}")
    print(f"with background noise, false-positive rate: {n.false_positive_rate:.1%}")
    print(f"with background noise, problems mostly of background texts: {mostly_background}")
    if args.no_scale:
        return
    texts = synthetic(args.scale, rows)
    started = time.perf_counter()
    found = find_chronic(texts, now=NOW, rules=rules)
    elapsed = time.perf_counter() - started
    print(f"synthetic texts in the window: {len(texts)}")
    print(f"synthetic run time: {elapsed:.1f} s")
    print(f"synthetic problems reported: {len(found)}")


if __name__ == "__main__":
    main()
