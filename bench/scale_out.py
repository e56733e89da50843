"""Scale-out: the end-to-end drain with 1, 2 and 3 processes each of routing and of tracking.

    .venv/bin/python bench/scale_out.py --count 3000      # against `make run` (default ports)

The extra processes are started here, beside `make run`'s, in the same consumer groups (on
ports 8102/8202 and 8103/8203), and stopped at the end. Before each drain, the bench waits
until the group's processes hold every partition between them (`acikkapi_assigned_partitions`
on their /metrics). Printed: applications/s through each stage for 1, 2 and 3 processes, and
the ratios to one process measured in the same run. On two cores expect little: the stack
already keeps both busy; the figure shows what more cores would give and that adding a process
costs nothing in correctness (tests/e2e/test_chaos_e2e.py checks that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.drain import STAGES, drain
from services.common import kafka_auth, topics
from services.common.messaging import topic_partitions
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SCALED = {"routing": topics.RECEIVED, "tracking": topics.ROUTED}


def say(text: str) -> None:
    print(text, flush=True)


def extra_port(settings: Settings, service: str, instance: int) -> int:
    return settings.port_for(service) + 100 * (instance - 1)


def start_extra(settings: Settings, service: str, instance: int, logs: Path) -> subprocess.Popen:
    env = {**os.environ, f"AK_{service.upper()}_PORT": str(extra_port(settings, service, instance))}
    log = open(logs / f"{service}-{instance}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def assigned(http: httpx.AsyncClient, port: int, topic: str) -> float:
    try:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "acikkapi_assigned_partitions" and sample.labels["topic"] == topic:
                return sample.value
    return 0.0


async def wait_shared(settings: Settings, processes: int, timeout: float = 120.0) -> None:
    """Until each scaled group's `processes` members hold all its partitions between them."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            settled = True
            for service, topic in SCALED.items():
                admin = kafka_auth.client_options(settings, kafka_auth.ADMIN)
                wanted = len(await topic_partitions(admin, [topic]))
                ports = [extra_port(settings, service, i) for i in range(1, processes + 1)]
                held = [await assigned(http, port, topic) for port in ports]
                settled &= sum(held) == wanted and all(h > 0 for h in held)
            if settled:
                return
            await asyncio.sleep(1.0)
    raise SystemExit(f"the groups did not settle with {processes} processes in {timeout:.0f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    settings = Settings()
    logs = Path(os.environ.get("AK_DATA_DIR", ROOT / ".ak" / "run")) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    extras: list[subprocess.Popen] = []
    results: dict[int, dict[str, float]] = {}
    try:
        for processes in (1, 2, 3):
            if processes > 1:
                for service in SCALED:
                    extras.append(start_extra(settings, service, processes, logs))
            await wait_shared(settings, processes)
            say(f"{processes} process(es) each of routing and tracking: drain of {args.count}…")
            results[processes] = await drain(settings, args.count, args.timeout)
    finally:
        for process in extras:
            process.terminate()
        for process in extras:
            process.wait(timeout=20)
    say("Applications per second through each stage, by processes of routing and tracking:")
    say(f"  {'stage':<12}" + "".join(f"{n:>10}" for n in results) + "   ratio 2/1  ratio 3/1")
    for stage in STAGES:
        rates = [results[n][stage] for n in results]
        ratios = "".join(f"{r / rates[0]:>10.2f}" for r in rates[1:])
        say(f"  {stage:<12}" + "".join(f"{r:>10.1f}" for r in rates) + ratios)


if __name__ == "__main__":
    asyncio.run(main())
