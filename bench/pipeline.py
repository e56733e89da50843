"""Pushes applications through the running stack and prints what it can take, as ratios of the
stack's own limits measured in the same run.

    .venv/bin/python bench/pipeline.py            # against `make run` (default ports)
    .venv/bin/python bench/pipeline.py --rate 100 --seconds 20 --load-seconds 15

Figures printed:
  1. resident memory of each service at rest (from the PID files of the local stack);
  2. raw Kafka produce rate (aiokafka, acks=all, batched) and raw MongoDB insert rate
     (insert_one, serial and 32 concurrent) of this very stack;
  3. intake-to-institution-topic latency (p50/p95/p99) at a steady rate (default 100/s),
     measured by a plain Kafka consumer on every acikkapi.institution.* topic;
  4. intake throughput under load from wrk (a load generator in C, so it is not the bottleneck),
     and what that is as a share of the raw MongoDB insert rate;
  5. the end-to-end drain of `bench/drain.py`: N submissions on the intake topic timed through
     every stage to the receipt SMS and the report, beside Kannel's own sendsms rate.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common import kafka_auth
from services.common.auth import Role, issue_token
from services.common.messaging import topic_partitions
from services.common.settings import Settings
from services.intake.identity import demo_persons
from services.intake.verification import phone_token_for

SERVICES = ("intake", "routing", "tracking", "notification", "reporting")


def say(text: str) -> None:
    print(text, flush=True)


@functools.cache
def _settings() -> Settings:
    return Settings()  # the stack's environment (`make bench` evals `stack env`)


def kafka_as(user: str, bootstrap: str | None = None) -> dict[str, Any]:
    """aiokafka's options for the stack's broker as `user`: the benchmarks read and time every
    topic as its admin, and send their submissions as a channel adapter."""
    return kafka_auth.client_options(_settings(), user, bootstrap=bootstrap)


@functools.cache
def _persons() -> list[dict[str, str]]:
    return demo_persons()


def application_body(rng: random.Random, category: str | None) -> dict:
    """A web or mobile application from a person of intake's demo registry (the identity check
    knows them), with the token a confirmed phone code gives: the SMS code step is left out,
    every check after it runs as for a citizen."""
    person = rng.choice(_persons())
    body = {
        # No e-Devlet: its assertion is signed per application by the gateway, not by us.
        "channel": rng.choice(["web", "mobile"]),
        "applicant": {
            key: person[key]
            for key in ("tckn", "first_name", "last_name", "mother_maiden_initials", "phone")
        },
        "phone_verification": phone_token_for(_settings(), person["phone"]),
        "province_code": 20,
        "district": rng.choice(["Merkezefendi", "Pamukkale", "Çivril", "Tavas"]),
        "application_type": "sikayet",
        "subject": "Yük testi başvurusu",
        "text": "Bu başvuru bench/pipeline.py tarafından yük ölçümü için gönderildi.",
    }
    if category:
        body["category_code"] = category
    return body


def adapter_headers() -> dict[str, str]:
    """The benchmark posts for many citizens from one address, as a channel adapter does: a
    staff token keeps it out of the rate per client address (the daily limits still count)."""
    token = issue_token(_settings(), subject="bench", role=Role.officer)
    return {"Authorization": f"Bearer {token}"}


def check_limits(intake_url: str, category: str | None) -> None:
    """Stop with a clear word if the running stack has a demo's daily limits (5 applications a
    day per TC Kimlik No): a benchmark applies as each of 2,000 people many times over. Six
    applications from one person tell."""
    probe = application_body(random.Random(), category)
    with httpx.Client(timeout=10, headers=adapter_headers()) as http:
        for _ in range(6):
            answer = http.post(f"{intake_url}/api/v1/applications", json=probe)
            if answer.status_code == 429:
                raise SystemExit(
                    "Yığın günlük başvuru sınırlarıyla çalışıyor (kişi başı günde 5); ölçüm "
                    "bunları hemen aşar. `make stop` ve `make run BENCH=1` ile başlatın: "
                    "sınırlar yine sayılır, ama 1.000.000'da."
                )
            answer.raise_for_status()


def _rss_mb(pid: str) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def _children(pid: str) -> list[str]:
    found: list[str] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += task.read_text().split()
    return found


def rss_at_rest(data_dir: Path) -> dict[str, float]:
    """Resident memory of each service process; a service with several workers is listed once
    per worker (each must stay under the target), its supervisor apart."""
    out = {}
    for name in SERVICES:
        for pid_file in sorted((data_dir / "pids").glob(f"{name}*.pid")):
            pid = pid_file.read_text().strip()
            workers = [c for c in _children(pid) if _rss_mb(c) and _rss_mb(c) > 30]
            label = pid_file.stem
            if workers:
                for i, child in enumerate(workers, 1):
                    out[f"{label}[{i}]"] = _rss_mb(child) or 0.0
                label = f"{label}(süpervizör)"
            mb = _rss_mb(pid)
            if mb is not None:
                out[label] = mb
    return out


async def raw_kafka_rate(bootstrap: str, count: int) -> float:
    topic = "bench.raw"
    admin = AIOKafkaAdminClient(**kafka_as(kafka_auth.ADMIN, bootstrap))
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, 6, 1)])
    finally:
        await admin.close()
    payload = json.dumps(application_body(random.Random(1), "X")).encode()
    producer = AIOKafkaProducer(**kafka_as(kafka_auth.ADMIN, bootstrap), acks="all", linger_ms=5)
    await producer.start()
    try:
        start = time.perf_counter()
        futures = [await producer.send(topic, payload, key=str(i).encode()) for i in range(count)]
        await asyncio.gather(*futures)
        return count / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def raw_mongo_rates(uri: str, count: int) -> tuple[float, float]:
    client = AsyncMongoClient(uri)
    db = client[f"bench_{uuid.uuid4().hex[:6]}"]
    doc = {"subject": "x" * 60, "text": "y" * 300, "n": 0}
    try:
        start = time.perf_counter()
        for i in range(count):
            await db.serial.insert_one(dict(doc, n=i))
        serial = count / (time.perf_counter() - start)
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await db.concurrent.insert_one(dict(doc, n=i))

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        concurrent = count / (time.perf_counter() - start)
        return serial, concurrent
    finally:
        await client.drop_database(db.name)
        await client.close()


async def steady_latency(args, category: str | None) -> dict[str, float]:
    kafka = kafka_as(kafka_auth.ADMIN, args.bootstrap)
    consumer = AIOKafkaConsumer(**kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        names = [
            t
            for t in await consumer.topics()
            if t.startswith("acikkapi.institution.") and not t.endswith(".dlq")
        ]
        partitions = await topic_partitions(kafka, names)
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets before the first request is sent
            await consumer.position(tp)

        sent: dict[str, float] = {}
        answered: list[float] = []  # the HTTP answer's time, ms
        seen: dict[str, float] = {}
        errors = 0
        total = int(args.rate * args.seconds)

        async def reader() -> None:
            while len(seen) < total:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.perf_counter()
                for records in batch.values():
                    for record in records:
                        key = record.key.decode() if record.key else ""
                        seen.setdefault(key, now)

        reading = asyncio.create_task(reader())
        rng = random.Random(7)
        async with httpx.AsyncClient(
            timeout=10, limits=httpx.Limits(max_connections=50), headers=adapter_headers()
        ) as http:
            url = f"{args.intake_url}/api/v1/applications"

            async def post(body: dict) -> None:
                nonlocal errors
                t0 = time.perf_counter()
                try:
                    response = await http.post(url, json=body)
                except httpx.HTTPError as exc:  # counted, and said: a dropped connection
                    errors += 1
                    say(f"  HTTP hatası: {exc!r}")
                    return
                answered.append((time.perf_counter() - t0) * 1000)
                if response.status_code == 201:
                    sent[response.json()["application_id"]] = t0
                else:
                    errors += 1

            start = time.perf_counter()
            tasks = []
            for i in range(total):
                await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
                tasks.append(asyncio.create_task(post(application_body(rng, category))))
                if (i + 1) % int(args.rate * 5) == 0:
                    say(f"  sabit hız: {i + 1}/{total} gönderildi")
            await asyncio.gather(*tasks)
        try:
            await asyncio.wait_for(reading, timeout=30)
        except TimeoutError:
            reading.cancel()
        latencies = sorted((seen[k] - t0) * 1000 for k, t0 in sent.items() if k in seen)
    finally:
        await consumer.stop()
    if not latencies:
        return {"matched": 0, "sent": len(sent), "errors": errors}
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    http_q = statistics.quantiles(answered, n=100, method="inclusive")
    return {
        "http_p50": http_q[49],
        "http_p99": http_q[98],
        "sent": len(sent),
        "matched": len(latencies),
        "errors": errors,
        "p50": q[49],
        "p95": q[94],
        "p99": q[98],
        "max": latencies[-1],
    }


def wrk_throughput(args, category: str | None) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk bulunamadı: `make install` kurar (Debian paketi wrk).")
    # A new person of the demo registry on each request (in turn, 2,000 of them), each with
    # their confirmed phone's token: the checks a citizen's application passes, minus the SMS.
    rng = random.Random(3)
    bodies = ",\n".join(
        f"[=[{json.dumps(application_body(rng, category), ensure_ascii=False)}]=]"
        for _ in range(2000)
    )
    script = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "{adapter_headers()["Authorization"]}"\n'
        f"local bodies = {{\n{bodies}\n}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[n % #bodies + 1])\n"
        "end\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    result = subprocess.run(
        [
            wrk,
            "-t2",
            f"-c{args.connections}",
            f"-d{args.load_seconds}s",
            "--latency",
            "-s",
            f.name,
            f"{args.intake_url}/api/v1/applications",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", result).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", result)
    total = int(re.search(r"(\d+) requests in", result).group(1))
    bad = int(non2xx.group(1)) if non2xx else 0
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", result)
    return {
        "requests_per_s": rps,
        "requests": total,
        "non_2xx": bad,
        "accepted_per_s": rps * (total - bad) / max(total, 1),
        "p99": f"{p99.group(1)}{p99.group(2)}" if p99 else "?",
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--intake-url", default=os.environ.get("AK_INTAKE_URL", "http://127.0.0.1:8001")
    )
    parser.add_argument(
        "--routing-url", default=os.environ.get("AK_ROUTING_URL", "http://127.0.0.1:8002")
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("AK_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument(
        "--mongo-uri", default=os.environ.get("AK_MONGO_URI", "mongodb://127.0.0.1:27017")
    )
    parser.add_argument("--data-dir", default=os.environ.get("AK_DATA_DIR", ".ak/run"))
    parser.add_argument("--rate", type=float, default=100.0, help="steady rate, applications/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady phase length")
    parser.add_argument("--load-seconds", type=int, default=15, help="wrk phase length")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--raw-kafka", type=int, default=20_000)
    parser.add_argument("--raw-mongo", type=int, default=3_000)
    parser.add_argument("--drain", type=int, default=2_000, help="submissions to drain")
    args = parser.parse_args()

    async with httpx.AsyncClient(timeout=10) as http:
        taxonomy = (await http.get(f"{args.routing_url}/api/v1/taxonomy")).json()
    category = taxonomy["headings"][0]["categories"][0]["code"]
    check_limits(args.intake_url, category)

    say("1/5 Servislerin boştaki bellek kullanımı (RSS, MB):")
    rss = rss_at_rest(Path(args.data_dir))
    for name, mb in rss.items():
        say(f"  {name:<14} {mb:7.1f} MB {'✓' if mb < 150 else '✗ (hedef < 150 MB)'}")

    say("2/5 Bu yığının ham sınırları ölçülüyor…")
    kafka_rate = await raw_kafka_rate(args.bootstrap, args.raw_kafka)
    mongo_serial, mongo_concurrent = await raw_mongo_rates(args.mongo_uri, args.raw_mongo)
    say(f"  Kafka ham üretim     : {kafka_rate:10.0f} mesaj/s (acks=all, toplu)")
    say(f"  MongoDB insert seri  : {mongo_serial:10.0f} kayıt/s")
    say(f"  MongoDB insert eşzam.: {mongo_concurrent:10.0f} kayıt/s (32 eşzamanlı)")

    say(f"3/5 Sabit hızda gecikme: {args.rate:.0f} başvuru/s, {args.seconds:.0f} s…")
    latency = await steady_latency(args, category)
    if latency.get("matched"):
        say(
            f"  HTTP yanıtı: p50 {latency['http_p50']:.1f} ms · p99 {latency['http_p99']:.1f} ms "
            f"{'✓' if latency['http_p99'] <= 50 else '✗ (hedef p99 ≤ 50 ms)'}"
        )
        say(
            f"  başvuru→kurum konusu: p50 {latency['p50']:.1f} ms · p95 {latency['p95']:.1f} ms · "
            f"p99 {latency['p99']:.1f} ms · en çok {latency['max']:.1f} ms "
            f"({latency['matched']}/{latency['sent']} eşleşti, {latency['errors']} hata) "
            f"{'✓' if latency['p99'] <= 100 else '✗ (hedef p99 ≤ 100 ms)'}"
        )
    else:
        say(f"  kurum konusunda eşleşen başvuru yok: {latency}")

    say(f"4/5 Yük altında intake: wrk, {args.connections} bağlantı, {args.load_seconds} s…")
    load = wrk_throughput(args, category)
    say(
        f"  kabul edilen: {load['accepted_per_s']:.0f} başvuru/s "
        f"({load['requests']} istek, {load['non_2xx']} başarısız, p99 {load['p99']}) "
        f"{'✓' if load['accepted_per_s'] >= 1300 else '✗ (hedef ≥ 1300/s)'}"
    )
    say(
        f"  oran: intake / MongoDB eşzamanlı insert = "
        f"{load['accepted_per_s'] / mongo_concurrent:.2f}; "
        f"intake / Kafka ham üretim = {load['accepted_per_s'] / kafka_rate:.3f}"
    )

    from bench import drain as drain_bench  # it builds its bodies with this module's

    say(f"5/5 Uçtan uca boşaltma: {args.drain} gönderim başvuru konusuna…")
    settings = Settings()
    kannel = await drain_bench.kannel_rate(settings, 1000)
    rates = await drain_bench.drain(settings, args.drain, timeout=300)
    for stage, rate in rates.items():
        say(f"  {stage:<12} {rate:7.1f} başvuru/s")
    say(f"  alındı SMS'i / Kannel'in kendi hızı ({kannel:.0f}/s): {rates['sms_sent'] / kannel:.2f}")

    summary = {
        "drain_per_s": rates,
        "kannel_sendsms_per_s": kannel,
        "rss_mb": rss,
        "kafka_produce_per_s": kafka_rate,
        "mongo_insert_serial_per_s": mongo_serial,
        "mongo_insert_concurrent_per_s": mongo_concurrent,
        "latency_ms": latency,
        "intake_load": load,
    }
    say("JSON " + json.dumps(summary, ensure_ascii=False, default=str))


if __name__ == "__main__":
    asyncio.run(main())
