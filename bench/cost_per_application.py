"""What one application costs the running stack: CPU seconds per component and Kafka messages
per topic, at a steady rate, read from /proc and the topics' end offsets.

    .venv/bin/python bench/cost_per_application.py --rate 30 --seconds 10

Run it on a quiet stack (`make run`, nothing else loading it): the CPU of every component of the
local stack is counted while the applications are sent and until `--settle` seconds after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.pipeline import _children, adapter_headers, application_body, kafka_as
from services.common import kafka_auth
from services.common.messaging import topic_partitions

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(data_dir: Path) -> dict[str, float]:
    """CPU seconds used so far by each component (a service's workers included)."""
    out: dict[str, float] = {}
    for pid_file in (data_dir / "pids").glob("*.pid"):
        pid = pid_file.read_text().strip()
        total = 0.0
        for p in [pid, *_children(pid)]:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / TICK
        out[pid_file.stem] = total
    return out


async def topic_ends(bootstrap: str) -> dict[str, int]:
    kafka = kafka_as(kafka_auth.ADMIN, bootstrap)
    consumer = AIOKafkaConsumer(**kafka)
    await consumer.start()
    try:
        names = [t for t in await consumer.topics() if t.startswith("acikkapi.")]
        ends = await consumer.end_offsets(await topic_partitions(kafka, names))
    finally:
        await consumer.stop()
    out: dict[str, int] = {}
    for tp, offset in ends.items():
        name = (
            "acikkapi.institution.*" if tp.topic.startswith("acikkapi.institution.") else tp.topic
        )
        out[name] = out.get(name, 0) + offset
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--intake-url", default=os.environ.get("AK_INTAKE_URL", "http://127.0.0.1:8001")
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("AK_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--data-dir", default=os.environ.get("AK_DATA_DIR", ".ak/run"))
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--settle", type=float, default=20.0, help="seconds to let consumers finish"
    )
    parser.add_argument("--category", default="ALT-001")
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    count = int(args.rate * args.seconds)

    cpu_before, ends_before = cpu_seconds(data_dir), await topic_ends(args.bootstrap)
    rng = random.Random(11)
    async with httpx.AsyncClient(timeout=10, headers=adapter_headers()) as http:
        start = time.perf_counter()
        tasks = []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
            body = application_body(rng, args.category)
            tasks.append(
                asyncio.create_task(http.post(f"{args.intake_url}/api/v1/applications", json=body))
            )
        answers = await asyncio.gather(*tasks)
    accepted = sum(a.status_code == 201 for a in answers)
    print(
        f"{accepted}/{count} başvuru kabul edildi; "
        f"tüketicilerin bitirmesi için {args.settle:.0f} s bekleniyor…"
    )
    await asyncio.sleep(args.settle)
    cpu_after, ends_after = cpu_seconds(data_dir), await topic_ends(args.bootstrap)

    print("\nBaşvuru başına işlemci süresi:")
    total = 0.0
    for name in sorted(cpu_after, key=lambda n: cpu_before.get(n, 0) - cpu_after[n]):
        ms = 1000 * (cpu_after[name] - cpu_before.get(name, 0)) / max(accepted, 1)
        total += ms
        print(f"  {name:<13} {ms:7.2f} ms")
    print(
        f"  {'toplam':<13} {total:7.2f} ms → "
        f"2 çekirdekte en çok ~{2000 / max(total, 0.01):.0f} başvuru/s"
    )
    print("\nBaşvuru başına Kafka mesajı:")
    for name in sorted(ends_after):
        per = (ends_after[name] - ends_before.get(name, 0)) / max(accepted, 1)
        if per:
            print(f"  {name:<45} {per:5.2f}")


if __name__ == "__main__":
    asyncio.run(main())
