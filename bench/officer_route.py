"""From an officer's route action to the institution's topic, on the running stack.

    make bench-officer            (`make run` first)

Submits applications whose text says nothing routable, so that they wait in the officer's
queue; then routes each one as an officer would (POST /api/v1/routing/{id}/route) and times
from the request to its assignment on the institution's topic, read as the institution reads
it (its own broker user). Prints p50, p95 and p99 of that, and of the HTTP answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.pipeline import adapter_headers, application_body
from deploy.local import kafka_acl
from services.common import kafka_auth, topics
from services.common.settings import Settings

CATEGORY = "ALT-001"  # Su kesintisi: DESKİ in every district
UNCLEAR = "Merhaba, size daha önce de yazmıştım, hâlâ bir dönüş olmadı. Gereğini rica ederim."


def say(text: str) -> None:
    print(text, flush=True)


async def waiting(http: httpx.AsyncClient, routing_url: str, number: str) -> bool:
    """Whether routing has put the application in the officer's queue."""
    page = await http.get(
        f"{routing_url}/api/v1/routing/pending", params={"application_number": number}
    )
    page.raise_for_status()
    return bool(page.json()["items"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--intake-url", default="http://127.0.0.1:8001")
    parser.add_argument("--routing-url", default="http://127.0.0.1:8002")
    args = parser.parse_args()
    settings = Settings()
    officer = {"Authorization": adapter_headers()["Authorization"]}
    rng = random.Random()

    login = await kafka_acl.add_institution("DESKI")
    consumer = AIOKafkaConsumer(
        topics.institution_topic("DESKI"),
        **kafka_auth.client_options(settings, login.username),
        auto_offset_reset="latest",
    )
    await consumer.start()
    arrived: dict[str, float] = {}

    async def read() -> None:
        async for record in consumer:
            assignment = json.loads(record.value or b"{}")
            arrived.setdefault(assignment.get("application_id"), time.perf_counter())

    reader = asyncio.create_task(read())
    answers: list[float] = []
    sent: dict[str, float] = {}
    try:
        await consumer.seek_to_end()
        async with httpx.AsyncClient(timeout=10, headers=officer) as http:
            say(f"1/2 {args.count} başvuru, yönlendirilemeyecek bir metinle, görevli kuyruğuna…")
            ids = []
            for _ in range(args.count):
                body = application_body(rng, None) | {"text": UNCLEAR, "subject": "Dilekçe"}
                created = await http.post(f"{args.intake_url}/api/v1/applications", json=body)
                created.raise_for_status()
                ids.append((created.json()["application_id"], created.json()["application_number"]))
            for _, number in ids:
                async with asyncio.timeout(60):
                    while not await waiting(http, args.routing_url, number):
                        await asyncio.sleep(0.2)
            say("2/2 görevli her birini yönlendiriyor…")
            for app_id, _ in ids:
                started = time.perf_counter()
                routed = await http.post(
                    f"{args.routing_url}/api/v1/routing/{app_id}/route",
                    json={"category_code": CATEGORY},
                )
                routed.raise_for_status()
                answers.append((time.perf_counter() - started) * 1000)
                sent[app_id] = started
                await asyncio.sleep(0.2)  # an officer's pace, and one at a time
        async with asyncio.timeout(60):
            while not set(sent) <= set(arrived):
                await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        await consumer.stop()
    to_topic = sorted((arrived[i] - t) * 1000 for i, t in sent.items())
    for label, values in (("HTTP yanıtı", sorted(answers)), ("kurum konusuna", to_topic)):
        q = statistics.quantiles(values, n=100, method="inclusive")
        say(f"  {label:<15} p50 {q[49]:7.1f} ms · p95 {q[94]:7.1f} ms · p99 {q[98]:7.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
