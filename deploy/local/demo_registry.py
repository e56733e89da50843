"""Makes intake's demo population registry: synthetic people for the local identity check.

    .venv/bin/python deploy/local/demo_registry.py [--count 2000] [--seed 1923]

Writes services/intake/data/demo_registry.json, which `AK_IDENTITY_VERIFIER=registry_file` reads
when no `AK_IDENTITY_REGISTRY_FILE` is given. Every TC Kimlik No has valid check digits and is
random, so it is nobody's; the names come from the demo's sample names. Each person also has a
mobile number, which a real registry does not give and the check does not read: the demo data
loader and the benchmarks apply as these people, from these phones.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.local.seed_demo import (  # noqa: E402  (after the path fix above)
    FIRST_NAMES,
    INITIAL_LETTERS,
    LAST_NAMES,
    mobile_phone,
    tckn,
)

TARGET = ROOT / "services" / "intake" / "data" / "demo_registry.json"


def people(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(f"registry:{seed}")
    seen: set[str] = set()
    persons = []
    while len(persons) < count:
        number = tckn(rng)
        if number in seen:
            continue
        seen.add(number)
        persons.append(
            {
                "tckn": number,
                "first_name": rng.choice(FIRST_NAMES),
                "last_name": rng.choice(LAST_NAMES),
                "mother_maiden_initials": rng.choice(INITIAL_LETTERS) + rng.choice(INITIAL_LETTERS),
                "phone": mobile_phone(rng),
            }
        )
    return persons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1923)
    args = parser.parse_args()
    document = {
        "source": (
            "Açık Kapı demo nüfus kaydı: rastgele, gerçek kişilere ait olmayan kayıtlar "
            f"(deploy/local/demo_registry.py --count {args.count} --seed {args.seed})"
        ),
        "persons": people(args.count, args.seed),
    }
    # One person per line: readable, and a diff shows who changed.
    lines = ",\n".join(json.dumps(p, ensure_ascii=False) for p in document["persons"])
    source = json.dumps(document["source"], ensure_ascii=False)
    TARGET.write_text(f'{{"source": {source},\n"persons": [\n{lines}\n]}}\n', "utf-8")
    print(f"{len(document['persons'])} kişi yazıldı: {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
