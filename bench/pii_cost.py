"""What encrypting personal data costs intake's throughput: the same registrations with the real
PII keyring and with a pass-through one, alternating rounds in one run, as a ratio.

    .venv/bin/python bench/pii_cost.py [--path http|direct] [--rounds 16] [--applications 500]

Intake runs in this process against the stack's real Kafka and MongoDB (nx-27017), in a
database of its own. Every application goes through intake's real registration path: the
HTTP route (in-process, over ASGI) by default, or the use case itself (`--path direct`:
validate, admit, register, which is where all the encryption happens, without HTTP's cost).
What the keyring does on that path: AES-GCM of the TC Kimlik No, names, phone, e-mail and
initials at rest, the blind indexes (HMAC-SHA256), the sealed outbox entries, and the
sealed personal fields of the events on the wire (the transport keyring). The pass-through
keyring does none of it and stores values as they are; both variants read both shapes.

Each round runs both variants back to back, in ABBA order (real then plain, plain then
real, ...), so drift in the machine or the database (a growing collection, a warming cache,
other load) falls on both alike; the ratios are medians of the rounds' pairs. A round is
closed-loop with `--concurrency` requests in flight: its throughput is what intake can do.
Three numbers come out: the throughput ratio; the ratio of this process's CPU per
application (what a CPU-bound intake could carry, less sensitive to a busy database); and
the keyring's own work, timed call by call in the real rounds. Then an open-loop run at a
fixed `--rate` (ABBA halves) gives the latency at a load both carry. On a busy machine the
throughput is bounded by the database and swings between rounds: read the CPU numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common import kafka_auth, topics
from services.common.pii import PiiCipher, configure_transport, is_ciphertext
from services.common.service import Service
from services.common.settings import Settings
from services.intake import app as intake_app
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy import default_registry

BODY: dict[str, Any] = {
    "channel": "kiosk",
    "applicant": {
        "tckn": "10000000146",
        "first_name": "Ayşe",
        "last_name": "Yılmaz",
        "mother_maiden_initials": "YZ",
        "phone": "0532 123 45 67",
        "email": "ayse.yilmaz@ornek.com.tr",
    },
    "province_code": 20,
    "district": "Merkezefendi",
    "application_type": "sikayet",
    "identity_consent": False,
    "subject": "Yol çukuru",
    "text": "Sokağımızdaki yolda büyük bir çukur var; araçlar zarar görüyor.",
}


class Switch:
    """A stand-in for the keyring that either is it (`on`) or passes values through; one
    switch for the keyring and every keyring derived from it (the bus's), flipped per round."""

    def __init__(self, real: PiiCipher, state: dict[str, Any] | None = None) -> None:
        self.real = real
        self.state = state if state is not None else {"on": True, "seconds": 0.0, "calls": 0}
        self.kid = real.kid

    @property
    def kids(self) -> frozenset[str]:
        return self.real.kids

    def _timed(self, operation: Callable[[str], str], value: str) -> str:
        """The keyring's own work, timed: what the encryption itself costs, call by call."""
        started = time.perf_counter()
        try:
            return operation(value)
        finally:
            self.state["seconds"] += time.perf_counter() - started
            self.state["calls"] += 1

    def encrypt(self, plaintext: str) -> str:
        return self._timed(self.real.encrypt, plaintext) if self.state["on"] else plaintext

    def decrypt(self, token: str) -> str:
        return self._timed(self.real.decrypt, token) if is_ciphertext(token) else token

    def blind_index(self, value: str) -> str:
        return self._timed(self.real.blind_index, value) if self.state["on"] else value

    def is_stale(self, token: str) -> bool:
        return False

    def derive(self, label: bytes) -> Switch:
        return Switch(self.real.derive(label), self.state)


SWITCH: dict[str, Any] = {"on": True, "seconds": 0.0, "calls": 0}


class BenchService(Service):
    """intake's Service with its keyring behind the switch (the bus's too)."""

    def __init__(self, name: str, settings: Settings) -> None:
        super().__init__(name, settings)
        self.pii = Switch(self.pii, SWITCH)  # type: ignore[assignment]
        configure_transport(self.pii)  # type: ignore[arg-type]


async def serve_denizli(settings: Settings) -> None:
    """Routing's announcement of Denizli: intake registers only for provinces it has heard of."""
    event = taxonomy_published(default_registry().for_province(20))
    producer = AIOKafkaProducer(**kafka_auth.client_options(settings, kafka_auth.ADMIN), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.TAXONOMY, event.to_bytes(), key=b"20")
    finally:
        await producer.stop()


Register = Callable[[], Awaitable[None]]


class Refused(Exception):
    """Intake answered 503: it admits no more at the moment."""


def http_register(client: httpx.AsyncClient) -> Register:
    async def register() -> None:
        response = await client.post("/api/v1/applications", json=BODY)
        if response.status_code == 503:
            raise Refused(response.text[:200])
        if response.status_code != 201:
            raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

    return register


def direct_register(intake: Any) -> Register:
    from services.intake.channels import Vouched

    async def register() -> None:
        form = intake.validate(BODY)
        await intake.admit(Vouched(BODY), form, None)
        await intake.register(form, body=BODY)

    return register


async def closed_loop(register: Register, count: int, concurrency: int) -> tuple[float, float]:
    """Applications per second with `concurrency` in flight until `count` are registered, and
    this process's CPU milliseconds per application (less sensitive to a busy machine)."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            while True:
                try:
                    await register()
                    break
                except Refused:  # intake's admission closed for a moment: the same again
                    await asyncio.sleep(0.2)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return count / elapsed, 1000 * cpu / count


async def open_loop(register: Register, rate: float, seconds: float) -> tuple[list[float], int]:
    """Latencies (ms) of applications sent at `rate` per second whatever the answers do, and
    how many were refused (503: more than intake admits)."""
    latencies: list[float] = []
    refused = 0

    async def one() -> None:
        nonlocal refused
        started = time.perf_counter()
        try:
            await register()
        except Refused:
            refused += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies, refused


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    settings = Settings(
        db_prefix=f"benchpii{uuid.uuid4().hex[:6]}",
        kafka_username=kafka_auth.ADMIN,
        identity_verifier="off",
        phone_verification=False,
        daily_limit_per_tckn=0,
        daily_limit_per_phone=0,
        client_posts_per_minute=0,
        personal_data_retention_days=0,
    )
    intake_app.Service = BenchService  # type: ignore[misc]
    app = intake_app.build_app(settings, consumer_group=f"bench-pii-{uuid.uuid4().hex[:8]}")
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        await serve_denizli(settings)
        async with asyncio.timeout(60):
            while 20 not in app.state.served or app.state.admission.down:
                await asyncio.sleep(0.1)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            register = (
                http_register(client) if args.path == "http" else direct_register(app.state.intake)
            )
            SWITCH["on"] = True
            await closed_loop(register, args.warmup, args.concurrency)
            SWITCH["on"] = False
            await closed_loop(register, args.warmup, args.concurrency)
            rates: dict[str, list[float]] = {"encrypted": [], "plain": []}
            cpus: dict[str, list[float]] = {"encrypted": [], "plain": []}
            crypto_ms: list[float] = []
            crypto_calls: list[float] = []
            for round_ in range(args.rounds):
                for variant in (
                    ("encrypted", "plain") if round_ % 2 == 0 else ("plain", "encrypted")
                ):
                    SWITCH["on"] = variant == "encrypted"
                    before = (SWITCH["seconds"], SWITCH["calls"])
                    rate, cpu = await closed_loop(register, args.applications, args.concurrency)
                    if variant == "encrypted":
                        crypto_ms.append(1000 * (SWITCH["seconds"] - before[0]) / args.applications)
                        crypto_calls.append((SWITCH["calls"] - before[1]) / args.applications)
                    rates[variant].append(rate)
                    cpus[variant].append(cpu)
                    print(
                        f"round {round_ + 1} {variant:9s} {rate:8.1f} applications/s, "
                        f"{cpu:.3f} CPU ms each",
                        flush=True,
                    )
            latencies: dict[str, tuple[list[float], int]] = {}
            if args.rate > 0:
                # ABBA, half the time each: drift falls on both variants alike here too.
                for variant in ("encrypted", "plain", "plain", "encrypted"):
                    SWITCH["on"] = variant == "encrypted"
                    values, refused = await open_loop(register, args.rate, args.seconds / 2)
                    held, held_refused = latencies.get(variant, ([], 0))
                    latencies[variant] = (held + values, held_refused + refused)
            # What was stored, to be sure each variant did what it says.
            # (Counted here: nx-27017 0.8.1's count_documents ignores such conditions.)
            names = [
                doc["applicant"]["first_name_enc"]
                async for doc in app.state.store._applications.find({}, {"applicant": 1})
            ]
            sealed = sum(1 for name in names if is_ciphertext(name))
            clear = sum(1 for name in names if name == BODY["applicant"]["first_name"])
            # The plain rounds stored TC Kimlik Nos in the clear: nothing of the run may stay.
            await app.state.runtime.mongo.drop_database(settings.database_name("intake"))
    encrypted = statistics.median(rates["encrypted"])
    plain = statistics.median(rates["plain"])
    cpu_encrypted = statistics.median(cpus["encrypted"])
    cpu_plain = statistics.median(cpus["plain"])
    # Each round's pair ran back to back: its ratio is free of the drift between rounds.
    pairs = list(zip(rates["encrypted"], rates["plain"], strict=True))
    rate_ratio = statistics.median(e / p for e, p in pairs)
    cpu_pairs = list(zip(cpus["encrypted"], cpus["plain"], strict=True))
    cpu_ratio = statistics.median(p / e for e, p in cpu_pairs)
    print()
    print(f"path: {args.path}; {args.rounds} rounds of {args.applications} applications each,")
    print(f"{args.concurrency} in flight; stored sealed {sealed}, stored plain {clear}")
    print(f"encrypted (median): {encrypted:8.1f} applications/s")
    print(f"plain     (median): {plain:8.1f} applications/s")
    print(
        f"throughput ratio encrypted/plain, median of the rounds' pairs: {rate_ratio:.3f} "
        f"(cost {100 * (1 - rate_ratio):.1f}%)"
    )
    print(
        f"CPU per application (median): encrypted {cpu_encrypted:.3f} ms, plain "
        f"{cpu_plain:.3f} ms (+{cpu_encrypted - cpu_plain:.3f} ms each); CPU-bound capacity "
        f"ratio, median of the pairs: {cpu_ratio:.3f} (cost {100 * (1 - cpu_ratio):.1f}%)"
    )
    crypto = statistics.median(crypto_ms)
    print(
        f"the keyring's own work (AES-GCM, HMAC), timed per call: {crypto:.3f} ms per "
        f"application in {statistics.median(crypto_calls):.0f} calls, "
        f"{100 * crypto / cpu_encrypted:.1f}% of intake's CPU per application"
    )
    for variant, (values, refused) in latencies.items():
        shown = (
            f"p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms"
            if values
            else "none registered"
        )
        print(
            f"open loop {args.rate:.0f}/s for {args.seconds:.0f} s, {variant:9s}: {shown}, "
            f"{refused} refused (503)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--applications", type=int, default=500, help="per round and variant")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--path", choices=("http", "direct"), default="http")
    parser.add_argument("--rate", type=float, default=50.0, help="open loop rate; 0: none")
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
