"""End-to-end drain: N submissions produced at once onto the intake topic, timed to every stage
of the whole running stack, beside Kannel's own sendsms rate measured in the same run.

    .venv/bin/python bench/drain.py --count 2000      # against `make run` (default ports)

A stage is done for an application when: intake announced it (`received`), routing put it on
its institution's topic, tracking announced `routed`, reporting's read model holds its routing
and a fold of the report cells ended after that (the report counts it), and notification
reported its receipt SMS as sent. Each rate is N divided by the time from the first submission
to the last application through that stage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.pipeline import application_body
from services.common import kafka_auth, topics
from services.common.messaging import topic_partitions
from services.common.settings import Settings

ROUTED_FIELD = "st_routed"  # reporting keeps when each status was reached
STAGES = ("received", "institution", "tracked", "reported", "sms_sent")


def say(text: str) -> None:
    print(text, flush=True)


def submission(rng: random.Random, run: str, n: int) -> dict:
    """An auto-routed application body of `bench/pipeline.py`, with its submission id."""
    body = application_body(rng, rng.choice(["ALT-001", "ALT-002"]))
    return {"submission_id": f"drain-{run}-{n}", **body, "channel": "web"}


async def kannel_rate(settings: Settings, count: int, concurrency: int = 16) -> float:
    """Kannel's own accepted sendsms per second: `concurrency` plain requests at a time, over
    the HTTP client notification uses (aiohttp; httpx here measured httpx, at ~600/s)."""
    params = {
        "username": settings.sms_username,
        "password": settings.sms_password,
        "from": settings.sms_sender,
        "text": "Kannel hız ölçümü",
        "charset": "UTF-8",
        "coding": "2",
    }
    queue = list(range(count))
    accepted = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:

        async def worker() -> None:
            nonlocal accepted
            while queue:
                n = queue.pop()
                to = {"to": f"90555{n:07d}"}
                async with client.get(settings.sms_gateway_url, params=params | to) as answer:
                    await answer.read()
                    accepted += answer.status in (200, 202)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted / (time.perf_counter() - started)


class Watch:
    """Follows the topics from their current end and notes when each application passes."""

    def __init__(self, settings: Settings, submissions: set[str]) -> None:
        self.settings = settings
        self.submissions = submissions
        self.app_of: dict[str, str] = {}  # submission id -> application id
        self.done: dict[str, dict[str, float]] = {stage: {} for stage in STAGES}

    async def start(self) -> None:
        admin_names = [
            topics.RECEIVED,
            topics.STATUS,
            topics.NOTIFICATION_RESULTS,
            topics.institution_topic("DESKI"),
            topics.institution_topic("MERKEZEFENDI-BLD"),
            topics.institution_topic("PAMUKKALE-BLD"),
        ]
        from aiokafka.admin import AIOKafkaAdminClient

        kafka = kafka_auth.client_options(self.settings, kafka_auth.ADMIN)
        admin = AIOKafkaAdminClient(**kafka)
        await admin.start()
        try:
            names = [
                t for t in await admin.list_topics() if t.startswith(topics.INSTITUTION_PREFIX)
            ]
        finally:
            await admin.close()
        admin_names += [n for n in names if n not in admin_names]
        self.partitions = await topic_partitions(kafka, admin_names)
        self.consumer = AIOKafkaConsumer(
            **kafka,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_end(*self.partitions)
        for tp in self.partitions:
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for tp, records in batches.items():
                for record in records:
                    self._see(tp.topic, record.value, now)

    def _see(self, topic: str, value: bytes, now: float) -> None:
        body = json.loads(value)
        if topic == topics.RECEIVED:
            if body.get("submission_id") in self.submissions:
                self.app_of[body["submission_id"]] = body["application_id"]
                self.done["received"].setdefault(body["application_id"], now)
        elif topic.startswith(topics.INSTITUTION_PREFIX):
            self.done["institution"].setdefault(body["application_id"], now)
        elif topic == topics.STATUS:
            if body.get("status") == "routed":
                self.done["tracked"].setdefault(body["application_id"], now)
        elif topic == topics.NOTIFICATION_RESULTS:
            key = body.get("idempotency_key", "")
            if key.endswith(":received:sms") and body.get("status") in ("sent", "delivered"):
                self.done["sms_sent"].setdefault(key.split(":", 1)[0], now)

    def count(self, stage: str) -> int:
        apps = set(self.app_of.values())
        return sum(1 for a in self.done[stage] if a in apps)

    async def stop(self) -> None:
        self.task.cancel()
        await self.consumer.stop()


async def drain(settings: Settings, count: int, timeout: float) -> dict[str, float]:
    """Produce `count` submissions at once and time each stage; returns applications/s."""
    rng = random.Random(7)
    run = uuid.uuid4().hex[:8]
    bodies = [submission(rng, run, n) for n in range(count)]
    watch = Watch(settings, {b["submission_id"] for b in bodies})
    await watch.start()
    mongo: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri_for("reporting"))
    reporting_db = mongo[settings.database_name("reporting")]
    read_model = reporting_db["reporting_applications"]
    in_read_model: dict[str, float] = {}  # application id → wall time first seen there
    # The submissions come as a channel adapter sends them, as the adapter's broker user.
    adapter = kafka_auth.client_options(settings, kafka_auth.ADAPTER)
    producer = AIOKafkaProducer(**adapter, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [
            await producer.send(
                topics.SUBMISSIONS, json.dumps(b).encode(), key=b["submission_id"].encode()
            )
            for b in bodies
        ]
        await asyncio.gather(*futures)
        say(f"  produced {count} submissions in {time.perf_counter() - started:.2f} s")
        last_report = 0.0
        deadline = started + timeout
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.25)
            apps = list(watch.app_of.values())
            pending = [a for a in apps if a not in in_read_model]
            for chunk in range(0, len(pending), 1000):
                ids = pending[chunk : chunk + 1000]
                found = read_model.find(
                    {
                        "_id": {"$in": ids},
                        "received_ms": {"$exists": True},
                        ROUTED_FIELD: {"$exists": True},
                    },
                    {"_id": 1},
                )
                async for doc in found:
                    in_read_model.setdefault(doc["_id"], time.time())
            # In the report once a fold of the cells ended after the document was there.
            folded = await reporting_db["reporting_meta"].find_one({"_id": "folded"})
            if folded:
                now = time.perf_counter()
                for app_id, seen in in_read_model.items():
                    if seen <= folded["at"]:
                        watch.done["reported"].setdefault(app_id, now)
            counts = {stage: watch.count(stage) for stage in STAGES}
            if time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                say("  " + "  ".join(f"{s} {n}/{count}" for s, n in counts.items()))
            if all(n >= count for n in counts.values()):
                break
    finally:
        await producer.stop()
        await watch.stop()
        await mongo.close()
    apps = set(watch.app_of.values())
    rates: dict[str, float] = {}
    for stage in STAGES:
        times = [t for a, t in watch.done[stage].items() if a in apps]
        if len(times) < count:
            say(f"  {stage}: only {len(times)}/{count} within {timeout:.0f} s")
            rates[stage] = len(times) / timeout
        else:
            rates[stage] = count / (max(times) - started)
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--kannel-count", type=int, default=1000)
    args = parser.parse_args()
    settings = Settings()
    say(f"Kannel's own sendsms rate ({args.kannel_count} SMS, 16 concurrent requests)…")
    kannel = await kannel_rate(settings, args.kannel_count)
    say(f"  {kannel:.0f} accepted/s")
    await asyncio.sleep(3)  # let fakesmsc and the delivery reports settle
    say(f"Drain: {args.count} submissions onto {topics.SUBMISSIONS}…")
    rates = await drain(settings, args.count, args.timeout)
    say("Applications per second through each stage (from the first submission):")
    for stage in STAGES:
        say(f"  {stage:<12} {rates[stage]:7.1f}/s")
    say(f"  receipt SMS / Kannel's own rate: {rates['sms_sent'] / kannel:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
