"""The short chaos form: ~300 Kafka submissions at a steady rate while every service is SIGKILLed
and restarted once and the broker restarts, then each application is checked end to end."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from deploy.local.stack import Stack
from services.common import kafka_auth, topics
from services.common.auth import Role
from services.common.settings import SERVICE_PORTS, Settings
from tests.conftest import checks_off_env, kafka, start_group_at_end, topic_partitions
from tests.e2e.conftest import READS
from tests.support import bearer, parse_fakesmsc, valid_tckn

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The short form by default; bench/chaos.py runs the long one (10,000 at 200/s) through these.
SUBMISSION_COUNT = int(os.environ.get("AK_CHAOS_COUNT", "300"))
RATE_PER_SECOND = float(os.environ.get("AK_CHAOS_RATE", "30"))
CATEGORY = "ALT-001"  # İçme suyu kesintisi: a province-wide water matter
INSTITUTION = "DESKI"
READY_TIMEOUT = 120.0
CONVERGE_TIMEOUT = 180.0 + SUBMISSION_COUNT / 20
SETTLE_SECONDS = 5.0
# When each disruption starts, as a share of the time the submissions take, spread over it.
CHAOS_SCHEDULE = [
    (0.10, "intake"),
    (0.25, "routing"),
    (0.40, "tracking"),
    (0.50, "broker"),
    (0.70, "notification"),
    (0.85, "reporting"),
]
WATCHED = [topics.RECEIVED, topics.institution_topic(INSTITUTION)]


def say(text: str) -> None:
    print(f"[chaos] {text}", flush=True)


def tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


# --- the processes under test ------------------------------------------------------------------


class ServiceFleet:
    """The five services as `python -m services.<name>` processes, as tests/e2e/conftest.py
    starts them, each of which can be SIGKILLed and started again."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.urls = {n: f"http://127.0.0.1:{settings.port_for(n)}" for n in SERVICE_PORTS}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = dict(os.environ, AK_DB_PREFIX=settings.db_prefix) | checks_off_env()
        self.env.setdefault(
            "AK_SMS_DLR_BASE_URL", f"http://127.0.0.1:{settings.port_for('notification')}"
        )
        self.env.setdefault(
            "AK_PUBLIC_TRACKING_URL", f"http://127.0.0.1:{settings.port_for('tracking')}/takip"
        )

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, instance: int = 1) -> str:
        """Start a process of service `name`; instance 2, 3… is a further process in the same
        consumer group, on a port of its own. Its key (in `procs` and `urls`) is returned."""
        key, env = name, self.env
        if instance > 1:
            key = f"{name}-{instance}"
            port = self.settings.port_for(name) + 100 * (instance - 1)
            env = {**self.env, f"AK_{name.upper()}_PORT": str(port)}
            self.urls[key] = f"http://127.0.0.1:{port}"
        with open(self.log_of(key), "ab") as log:  # a restart appends to the same log
            self.procs[key] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return key

    def kill_and_restart(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.start(name)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(self.procs)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited: {tail(self.log_of(name), 3000)}")
                try:
                    if httpx.get(f"{self.urls[name]}/readyz", timeout=2).status_code == 200:
                        waiting.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        if waiting:
            tails = {n: tail(self.log_of(n)) for n in sorted(waiting)}
            raise RuntimeError(f"not ready after {timeout:.0f} s: {sorted(waiting)}\n{tails}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class StackBroker:
    """The test stack's Kafka broker, stopped and started by the stack's own supervisor."""

    def __init__(self) -> None:
        self.stack = Stack()  # the test stack's settings, from the environment `make test` set

    def started(self) -> bool:
        proc = self.stack.process("kafka")
        return proc is not None and self.stack.components["kafka"].ready(proc.pid)

    def restart(self) -> None:
        self.stack.stop(["kafka"])  # a controlled shutdown (SIGTERM); ZooKeeper keeps running
        self.stack.start(["kafka"])

    def ensure_running(self) -> None:
        self.stack.start(["kafka"])


@dataclass
class Chaos:
    settings: Settings
    fleet: ServiceFleet
    broker: StackBroker
    data_dir: Path


@pytest.fixture
def chaos(tmp_path: Path):
    """The five services started afresh (a database prefix of their own, their groups at the
    topics' end), and the stack's broker; every process started here stops at the end, and the
    broker is left running whatever happened."""
    data_dir = Path(os.environ["AK_DATA_DIR"])
    settings = Settings(db_prefix=f"chaos{uuid.uuid4().hex[:8]}")
    broker = StackBroker()
    assert broker.started(), "the test stack's broker must be running (deploy/local/stack.py)"
    for name, reads in READS.items():
        asyncio.run(start_group_at_end(settings.kafka_bootstrap, f"acikkapi-{name}", reads))
    fleet = ServiceFleet(settings, tmp_path)
    try:
        for name in SERVICE_PORTS:
            fleet.start(name)
        fleet.wait_ready()
        yield Chaos(settings, fleet, broker, data_dir)
    finally:
        fleet.stop_all()
        broker.ensure_running()
        say(f"service logs: {tmp_path}")


# --- what is sent ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    submission_id: str
    phone: str
    body: dict[str, Any]


def submissions(count: int) -> list[Submission]:
    """Valid submissions with distinct TC Kimlik Nos and phone numbers (so each SMS is known by
    its receiver); the body is the HTTP application body plus `submission_id`."""
    rng = random.Random()
    base = rng.randint(1_000_000, 9_999_999 - count)
    tckns: set[str] = set()
    while len(tckns) < count:
        tckns.add(valid_tckn(rng))
    run = uuid.uuid4().hex[:8]
    out = []
    for i, tckn in enumerate(sorted(tckns)):
        phone = f"+90532{base + i:07d}"
        submission_id = f"chaos-{run}-{i:04d}"
        body = {
            "submission_id": submission_id,
            "channel": "web",
            "applicant": {
                "tckn": tckn,
                "first_name": "Deneme",
                "last_name": "Kullanıcı",
                "mother_maiden_initials": "AK",
                "phone": phone,
            },
            "province_code": 20,
            "district": rng.choice(["Merkezefendi", "Pamukkale", "Çivril", "Tavas"]),
            "application_type": "sikayet",
            "category_code": CATEGORY,
            "subject": "Mahallemizde içme suyu kesintisi",
            "text": "Sokağımızda dünden beri şebeke suyu akmıyor, ilgilenilmesini rica ederim.",
        }
        out.append(Submission(submission_id, phone, body))
    return out


async def produce_steadily(bootstrap: str, sent: list[Submission], rate: float) -> None:
    """One submission every 1/rate seconds; whatever the broker's restart made fail is sent
    again (intake registers a submission id once, so a second copy is harmless)."""
    # As a channel adapter: the one user, beside intake, that the submissions topic knows.
    adapter = kafka_auth.client_options(Settings(), kafka_auth.ADAPTER, bootstrap=bootstrap)
    producer = AIOKafkaProducer(
        **adapter,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=30_000,
        retry_backoff_ms=250,
    )
    await producer.start()

    async def send(item: Submission) -> asyncio.Future[Any] | None:
        try:
            return await producer.send(
                topics.SUBMISSIONS,
                json.dumps(item.body).encode(),
                key=item.submission_id.encode(),
            )
        except KafkaError:
            return None

    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        pending: dict[int, asyncio.Future[Any] | None] = {}
        for i, item in enumerate(sent):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            pending[i] = await send(item)
        for _ in range(20):
            failed = []
            for i, future in pending.items():
                try:
                    if future is None:
                        raise KafkaError("not sent")
                    await future
                except KafkaError:
                    failed.append(i)
            if not failed:
                return
            say(f"sending {len(failed)} submission(s) again")
            await asyncio.sleep(1.0)
            pending = {i: await send(sent[i]) for i in failed}
        raise AssertionError("submissions could not be produced")
    finally:
        await producer.stop()


async def disrupt(chaos: Chaos, started_at: float) -> None:
    """Each service SIGKILLed and restarted once, and the broker restarted, at their times; the
    broker's restart runs beside the kills that follow it, so some services start while the
    broker is away or just back."""
    loop = asyncio.get_running_loop()

    async def restart_broker(at: float) -> None:
        await asyncio.to_thread(chaos.broker.restart)
        up = loop.time() - started_at
        say(f"t={at:5.1f}s broker stopped (SIGTERM) and started again; up at t={up:.1f}s")

    restarts = []
    producing = SUBMISSION_COUNT / RATE_PER_SECOND
    for share, target in CHAOS_SCHEDULE:
        await asyncio.sleep(max(0.0, started_at + share * producing - loop.time()))
        now = loop.time() - started_at
        if target == "broker":
            restarts.append(asyncio.create_task(restart_broker(now)))
        else:
            await asyncio.to_thread(chaos.fleet.kill_and_restart, target)
            say(f"t={now:5.1f}s {target} SIGKILLed and started again")
    await asyncio.gather(*restarts)


# --- what came out -----------------------------------------------------------------------------


async def end_offsets(bootstrap: str, names: list[str]) -> dict[TopicPartition, int]:
    partitions = await topic_partitions(bootstrap, names)
    consumer = AIOKafkaConsumer(**kafka(bootstrap), group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def read_since(
    bootstrap: str, starts: dict[TopicPartition, int]
) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON message on the partitions from the given offsets up to their current end."""
    consumer = AIOKafkaConsumer(**kafka(bootstrap), group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        ends = await consumer.end_offsets(list(starts))
        async with asyncio.timeout(60):
            while [tp for tp in starts if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in batch.values():
                    for record in records:
                        try:
                            value = json.loads(record.value or b"")
                        except ValueError:
                            continue
                        if isinstance(value, dict):
                            out.append((record.topic, value))
    finally:
        await consumer.stop()
    return out


async def tracked_as_routed(http: httpx.AsyncClient, chaos: Chaos) -> set[str]:
    """Ids of the applications tracking lists as routed to the institution (a supervisor's
    look does not open them, so they stay routed)."""
    url = f"{chaos.fleet.urls['tracking']}/api/v1/institutions/{INSTITUTION}/applications"
    headers = bearer(chaos.settings, Role.supervisor, subject="chaos-vali-yardimcisi", province=20)
    found: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"status": "routed", "limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = await http.get(url, params=params, headers=headers)
        response.raise_for_status()
        page = response.json()
        found |= {item["application_id"] for item in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return found


async def counted_by_reporting(mongo: AsyncMongoClient, chaos: Chaos, ids: list[str]) -> set[str]:
    """Ids of the applications reporting's read model counts as received and routed to the
    institution."""
    db = mongo[chaos.settings.database_name("reporting")]
    counted = set()
    async for doc in db["reporting_applications"].find({"_id": {"$in": ids}}):
        routings = (doc.get("routings") or {}).values()
        if (
            doc.get("received_day")
            and doc.get("st_routed")
            and any(r.get("institution_code") == INSTITUTION for r in routings)
        ):
            counted.add(doc["_id"])
    return counted


def receipts_by_phone(fakesmsc_out: Path, offset: int) -> dict[str, list[str]]:
    """Receipt SMS texts (parts joined) fakesmsc got since `offset`, by receiver digits."""
    with open(fakesmsc_out, "rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    receipts: dict[str, list[str]] = defaultdict(list)
    for sms in parse_fakesmsc(lines):
        if "alındı" in sms.text:
            receipts[sms.receiver].append(sms.text)
    return receipts


@dataclass
class Figures:
    not_registered: list[str] = field(default_factory=list)
    registered_twice: list[str] = field(default_factory=list)
    not_on_institution_topic: list[str] = field(default_factory=list)
    not_routed_in_tracking: list[str] = field(default_factory=list)
    not_in_reporting: list[str] = field(default_factory=list)
    sms_missing: list[str] = field(default_factory=list)
    sms_doubled: list[str] = field(default_factory=list)
    assignments_repeated: int = 0

    @property
    def lost(self) -> set[str]:
        return {
            *self.not_registered,
            *self.not_on_institution_topic,
            *self.not_routed_in_tracking,
            *self.not_in_reporting,
        }

    def done(self) -> bool:
        return not (self.lost or self.registered_twice or self.sms_missing or self.sms_doubled)

    def summary(self) -> str:
        return (
            f"lost {len(self.lost)} (not registered {len(self.not_registered)}, "
            f"not on {INSTITUTION}'s topic {len(self.not_on_institution_topic)}, "
            f"not routed in tracking {len(self.not_routed_in_tracking)}, "
            f"not in reporting {len(self.not_in_reporting)}), "
            f"registered twice {len(self.registered_twice)}, "
            f"SMS missing {len(self.sms_missing)}, SMS doubled {len(self.sms_doubled)}, "
            f"institution assignments repeated {self.assignments_repeated}"
        )


async def observe(
    chaos: Chaos,
    sent: list[Submission],
    starts: dict[TopicPartition, int],
    sms_offset: int,
    http: httpx.AsyncClient,
    mongo: AsyncMongoClient,
) -> Figures:
    bootstrap = chaos.settings.kafka_bootstrap
    ours = {s.submission_id for s in sent}
    app_ids: dict[str, set[str]] = defaultdict(set)
    numbers: dict[str, str] = {}
    assignments: dict[str, set[str]] = defaultdict(set)  # application id -> event ids
    for topic, value in await read_since(bootstrap, starts):
        if topic == topics.RECEIVED and value.get("submission_id") in ours:
            app_ids[value["submission_id"]].add(value["application_id"])
            numbers[value["application_id"]] = value["application_number"]
        elif topic == topics.institution_topic(INSTITUTION) and value.get("application_id"):
            assignments[value["application_id"]].add(str(value.get("event_id")))
    registered = sorted({a for ids in app_ids.values() for a in ids})
    routed = await tracked_as_routed(http, chaos)
    counted = await counted_by_reporting(mongo, chaos, registered)
    receipts = receipts_by_phone(chaos.data_dir / "fakesmsc.out", sms_offset)

    figures = Figures()
    for item in sent:
        sid = item.submission_id
        ids = app_ids.get(sid, set())
        if not ids:
            figures.not_registered.append(sid)
            continue
        if len(ids) > 1:
            figures.registered_twice.append(sid)
        texts = receipts.get(item.phone.lstrip("+"), [])
        if len(texts) > 1:
            figures.sms_doubled.append(sid)
        for app_id in ids:
            if app_id not in assignments:
                figures.not_on_institution_topic.append(sid)
            if app_id not in routed:
                figures.not_routed_in_tracking.append(sid)
            if app_id not in counted:
                figures.not_in_reporting.append(sid)
            if not any(numbers[app_id] in text for text in texts):
                figures.sms_missing.append(sid)
    figures.assignments_repeated = sum(len(events) > 1 for events in assignments.values())
    return figures


async def marks(chaos: Chaos) -> tuple[dict[TopicPartition, int], int]:
    """Where the watched topics and fakesmsc's output stand before a run's first submission."""
    fakesmsc_out = chaos.data_dir / "fakesmsc.out"
    sms_offset = fakesmsc_out.stat().st_size if fakesmsc_out.exists() else 0
    return await end_offsets(chaos.settings.kafka_bootstrap, WATCHED), sms_offset


# --- the test ----------------------------------------------------------------------------------


async def test_no_application_is_lost_or_doubled_while_services_and_broker_are_killed(
    chaos: Chaos,
):
    bootstrap = chaos.settings.kafka_bootstrap
    sent = submissions(SUBMISSION_COUNT)
    starts, sms_offset = await marks(chaos)

    loop = asyncio.get_running_loop()
    started_at = loop.time()
    say(f"producing {len(sent)} submissions at {RATE_PER_SECOND:.0f}/s")
    await asyncio.gather(
        produce_steadily(bootstrap, sent, RATE_PER_SECOND), disrupt(chaos, started_at)
    )
    say(f"t={loop.time() - started_at:5.1f}s all produced; waiting for every service's /readyz")
    await asyncio.to_thread(chaos.broker.ensure_running)
    await asyncio.to_thread(chaos.fleet.wait_ready)
    say(f"t={loop.time() - started_at:5.1f}s all ready")

    mongo: AsyncMongoClient = AsyncMongoClient(chaos.settings.mongo_uri_for("reporting"))
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            deadline = started_at + CONVERGE_TIMEOUT
            next_report = 0.0
            while True:
                figures = await observe(chaos, sent, starts, sms_offset, http, mongo)
                if figures.done() or loop.time() > deadline:
                    break
                if loop.time() >= next_report:
                    say(f"t={loop.time() - started_at:5.1f}s so far: {figures.summary()}")
                    next_report = loop.time() + 15.0
                await asyncio.sleep(3.0)
            converged = loop.time() - started_at
            if figures.done():
                # Late repeats (a relay's second publication) would show up now.
                await asyncio.sleep(SETTLE_SECONDS)
                figures = await observe(chaos, sent, starts, sms_offset, http, mongo)
    finally:
        await mongo.close()

    say(f"result: {figures.summary()}; time {converged:.1f} s from the first submission")
    for name in ("not_registered", "registered_twice", "sms_missing", "sms_doubled"):
        examples = getattr(figures, name)[:5]
        if examples:
            say(f"  {name}: {examples}")
    assert len(figures.lost) == 0, figures.summary()
    assert len(figures.registered_twice) == 0, figures.summary()
    assert len(figures.sms_missing) == 0, figures.summary()
    assert len(figures.sms_doubled) == 0, figures.summary()


# --- scale-out -----------------------------------------------------------------------------------

SCALE_COUNT = 600
SCALE_RATE = 60.0
# What each scaled service shares: the topic whose every event it handles exactly once.
SHARED = {"routing": topics.RECEIVED, "tracking": topics.ROUTED}


async def process_metrics(http: httpx.AsyncClient, url: str) -> dict[tuple[str, str], float]:
    """(metric, topic) -> value, for the consumption figures of one process."""
    text = (await http.get(f"{url}/metrics")).text
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "acikkapi_assigned_partitions":
                out[("assigned", sample.labels["topic"])] = sample.value
            elif sample.name == "acikkapi_events_consumed_total":
                if sample.labels.get("outcome") == "ok":
                    out[("consumed", sample.labels["topic"])] = sample.value
    return out


async def test_three_routing_and_three_tracking_processes_share_the_work_once(chaos: Chaos):
    fleet = chaos.fleet
    for name in SHARED:
        for instance in (2, 3):
            fleet.start(name, instance)
    await asyncio.to_thread(fleet.wait_ready)
    processes = {name: [k for k in fleet.procs if k.split("-")[0] == name] for name in SHARED}
    partitions = {
        topic: len(await topic_partitions(chaos.settings.kafka_bootstrap, [topic]))
        for topic in SHARED.values()
    }

    async with httpx.AsyncClient(timeout=15) as http:
        # Each group has settled when its three processes hold all the partitions between them.
        for _ in range(120):
            shares = {
                key: (await process_metrics(http, fleet.urls[key])).get(("assigned", topic), 0)
                for name, topic in SHARED.items()
                for key in processes[name]
            }
            if all(
                sum(shares[k] for k in processes[name]) == partitions[topic]
                and all(shares[k] > 0 for k in processes[name])
                for name, topic in SHARED.items()
            ):
                break
            await asyncio.sleep(1.0)
        say(f"partitions held per process: {shares}")

        bootstrap = chaos.settings.kafka_bootstrap
        sent = submissions(SCALE_COUNT)
        starts, sms_offset = await marks(chaos)
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        await produce_steadily(bootstrap, sent, SCALE_RATE)
        mongo: AsyncMongoClient = AsyncMongoClient(chaos.settings.mongo_uri_for("reporting"))
        try:
            while True:
                figures = await observe(chaos, sent, starts, sms_offset, http, mongo)
                if figures.done() or loop.time() > started_at + 180:
                    break
                await asyncio.sleep(2.0)
        finally:
            await mongo.close()
        say(f"scale-out: {figures.summary()}; {loop.time() - started_at:.1f} s")
        consumed = {
            key: (await process_metrics(http, fleet.urls[key])).get(("consumed", topic), 0)
            for name, topic in SHARED.items()
            for key in processes[name]
        }
    say(f"events handled per process: {consumed}")

    assert figures.done(), figures.summary()
    assert figures.assignments_repeated == 0
    for name in SHARED:
        handled = [consumed[k] for k in processes[name]]
        # Every process took a share, and no event was handled by two of them.
        assert all(n > 0 for n in handled), (name, handled)
        assert sum(handled) == SCALE_COUNT, (name, handled)
