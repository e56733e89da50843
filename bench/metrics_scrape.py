"""The size of each service's /metrics and the time Prometheus spends scraping it.

    make bench-metrics            (`make run` first; any stack: its `stack env` in the shell)

For each of the five services, on the ports the environment names (AK_<SERVICE>_PORT), fetches
/metrics a number of times as Prometheus does (one request at a time) and prints the body's
bytes, its lines, its samples (series values) and metric families, the families with the most
samples (where cardinality would grow first), and the scrape time (median and slowest). A
service that does not answer is reported and the others are still measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common.settings import SERVICE_PORTS, Settings

# What Prometheus asks for: the text format (it would take OpenMetrics too).
ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"


@dataclass
class Scrape:
    service: str
    bytes: int
    lines: int
    samples: int
    families: int
    biggest: list[tuple[str, int]]
    seconds: list[float]


def measure(client: httpx.Client, service: str, url: str, rounds: int) -> Scrape:
    seconds = []
    body = ""
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(url, headers={"Accept": ACCEPT})
        response.raise_for_status()
        body = response.text
        seconds.append(time.perf_counter() - started)
    per_family: Counter[str] = Counter()
    for family in text_string_to_metric_families(body):
        per_family[family.name] += len(family.samples)
    return Scrape(
        service,
        len(body.encode()),
        len(body.splitlines()),
        sum(per_family.values()),
        len(per_family),
        per_family.most_common(3),
        seconds,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="scrapes per service")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    settings = Settings()
    print(
        f"{'service':<13} {'bytes':>9} {'lines':>7} {'samples':>8} {'families':>8} "
        f"{'p50 ms':>7} {'max ms':>7}  most samples"
    )
    scrapes = []
    with httpx.Client(timeout=10) as client:
        for service in SERVICE_PORTS:
            url = f"http://{args.host}:{settings.port_for(service)}/metrics"
            try:
                scrape = measure(client, service, url, args.rounds)
            except httpx.HTTPError as exc:
                print(f"{service:<13} no answer from {url}: {type(exc).__name__} {exc}")
                continue
            scrapes.append(scrape)
            biggest = ", ".join(f"{name} {count}" for name, count in scrape.biggest)
            print(
                f"{service:<13} {scrape.bytes:>9,} {scrape.lines:>7,} {scrape.samples:>8,} "
                f"{scrape.families:>8} {statistics.median(scrape.seconds) * 1000:>7.1f} "
                f"{max(scrape.seconds) * 1000:>7.1f}  {biggest}"
            )
    if not scrapes:
        print("no service answered: start the stack (make run) and source its env", file=sys.stderr)
        return 1
    total_ms = sum(statistics.median(s.seconds) for s in scrapes) * 1000
    print(
        f"{'all':<13} {sum(s.bytes for s in scrapes):>9,} {sum(s.lines for s in scrapes):>7,} "
        f"{sum(s.samples for s in scrapes):>8,} {'':>8} {total_ms:>7.1f}  "
        f"(one scrape of every service, {args.rounds} rounds each)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
