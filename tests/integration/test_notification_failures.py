"""Notification against real failures of its real gateways: Kannel stopped while requests flow,
an SMTP server that refuses mail (451, then is away), and a notification process SIGKILLed in
the middle of a batch. Every message must arrive once it can, and none twice.

The shared test stack's Kannel and SMTP server are never touched: this module starts its own
Kannel (bearerbox, smsbox and the fake SMSC, with the stack's own kannel.conf, written by
deploy/local/stack.py on free ports), its own nx-27017 (so no other notification process's due
loop can take these messages) and its own aiosmtpd server, and stops and starts those. Kafka is
the stack's, read in consumer groups of this module's own.

Durations (seconds), from the environment for quick local runs; CI runs the defaults:
    AK_FAILTEST_KANNEL_OUTAGE   Kannel stopped              60 (the issue's minute)
    AK_FAILTEST_SMTP_REFUSAL    SMTP answers 451            20
    AK_FAILTEST_SMTP_DOWN       then the SMTP server away   10
    AK_FAILTEST_RATE            requests a second           10
The services retry with the production back-off (1 s, doubling) but capped at 5 s here
(AK_FAILTEST_RETRY_CAP), so the last message goes at most ~5 s after the gateway is back.
Each test prints its figures: requested, sent, delivered, arrived, duplicates, retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pymongo import AsyncMongoClient

from deploy.local.stack import Stack, StackError, StackSettings
from services.common import topics
from services.common.application_number import format_number
from services.common.events import NotificationRequest
from services.common.mongo import Document
from services.common.settings import Settings
from services.notification.app import build_app
from services.notification.handlers import CHUNK, CHUNKS_IN_FLIGHT
from tests.conftest import (
    Tap,
    fresh_consumer_group,
    kafka,
    start_group_at_end,
)
from tests.support import read_fakesmsc

pytestmark = pytest.mark.integration

if not os.environ.get("AK_DATA_DIR"):
    pytest.skip("needs the local test stack's Kafka (AK_DATA_DIR)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
KANNEL_OUTAGE = float(os.environ.get("AK_FAILTEST_KANNEL_OUTAGE", "60"))
SMTP_REFUSAL = float(os.environ.get("AK_FAILTEST_SMTP_REFUSAL", "20"))
SMTP_DOWN = float(os.environ.get("AK_FAILTEST_SMTP_DOWN", "10"))
RATE = float(os.environ.get("AK_FAILTEST_RATE", "10"))
RETRY_CAP = float(os.environ.get("AK_FAILTEST_RETRY_CAP", "5"))
BEFORE = AFTER = 8.0  # requests flow this long before and after each failure
# A burst this large: the process takes it in batches of up to 500, sent at the default rate
# limit (200 a second), and is killed once KILL_AFTER of them arrived: in the middle of a batch.
KILL_BURST = 1000
KILL_AFTER = 150
KANNEL = ["bearerbox", "smsbox", "fakesmsc"]
KANNEL_STARTS = 5
TRACKING_URL = "https://acikkapi.denizli.gov.tr/takip"


def say(text: str) -> None:
    print(f"[notification-failures] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Application numbers of this run, never the same twice (SMS are told apart by them).
_SEQUENCE = itertools.count(random.randint(1, 8_000_000))


def unique_number() -> str:
    return format_number(20, 2026, next(_SEQUENCE))


# --- the infrastructure of this module's own -----------------------------------------------------


class SmtpSink:
    """A real SMTP server (aiosmtpd) that keeps what it accepts, and can refuse or be away."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.refusing = False
        self.refused = 0
        self.messages: list[EmailMessage] = []
        self._controller: Controller | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refusing:
            self.refused += 1
            return "451 4.3.0 Gecici olarak kabul edilmiyor, sonra deneyin"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


@dataclass
class Rig:
    """This module's Kannel, MongoDB and SMTP server, and the settings that point at them."""

    stack: Stack
    smtp: SmtpSink
    settings: Settings
    data: Path
    mongo: AsyncMongoClient[Document]

    @property
    def fakesmsc_out(self) -> Path:
        return self.data / "fakesmsc.out"

    def fakesmsc_parts(self, since: int) -> int:
        """SMS parts the fake SMSC printed after byte `since` of its output (cheap to ask
        often, unlike parsing the whole output)."""
        with open(self.fakesmsc_out, "rb") as output:
            output.seek(since)
            return output.read().count(b"Got message")

    def stop_kannel(self) -> None:
        # smsbox first, so nothing is accepted that bearerbox could not pass on; then the
        # bearerbox, once it has handed the fake SMSC what it holds; then the fake SMSC.
        self.stack.stop(["smsbox"])
        time.sleep(1.0)
        self.stack.stop(["bearerbox"])
        self.stack.stop(["fakesmsc"])

    def start_kannel(self) -> None:
        # Kannel 1.4.5's smsbox can panic while starting ("lock_out: Assertion `conn != NULL'")
        # when a sendsms request arrives before its link to the bearerbox is up, which is what
        # a backlog of retries does. In production a supervisor restarts it (systemd
        # Restart=on-failure); so does this test, a few times. Notification's retries carry the
        # SMS across either way.
        for attempt in range(1, KANNEL_STARTS + 1):
            try:
                self.stack.start(KANNEL)
                return
            except StackError:
                if attempt == KANNEL_STARTS:
                    raise
                say(f"smsbox died while starting (attempt {attempt}); starting it again")
                time.sleep(0.5)

    async def records(self) -> list[Document]:
        collection = self.mongo[self.settings.database_name("notification")][
            "notification_messages"
        ]
        fields = {"state": 1, "attempts": 1, "uncertain_reason": 1, "delivery_reports": 1}
        return [doc async for doc in collection.find({}, fields)]


@pytest.fixture(scope="module")
async def rig(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    data = tmp_path_factory.mktemp("notification-failures")
    mongo_port, sendsms_port, smtp_port = free_port(), free_port(), free_port()
    ours = settings.model_copy(
        update={
            "mongo_uri": f"mongodb://127.0.0.1:{mongo_port}",
            "notification_mongo_uri": "",
            "sms_gateway_url": f"http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "sms_quiet_hours": "",  # whatever the hour of the run
            "notification_retry_first_seconds": 1.0,
            "notification_retry_cap_seconds": RETRY_CAP,
            "notification_retry_max_attempts": 1000,
            "notification_retry_max_seconds": 3600.0,
        }
    )
    stack = Stack(
        settings=ours,
        local=StackSettings(
            data_dir=data,
            kannel_admin_port=free_port(),
            kannel_smsbox_port=free_port(),
            kannel_smsc_port=free_port(),
            mongo_per_service=False,
            stack_timeout=60.0,
        ),
    )
    smtp = SmtpSink(smtp_port)
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(ours.mongo_uri, tz_aware=True)
    try:
        await asyncio.to_thread(stack.start, ["mongo", *KANNEL])
        smtp.start()
        yield Rig(stack, smtp, ours, data, mongo)
    finally:
        smtp.stop()
        await mongo.close()
        await asyncio.to_thread(stack.stop, ["fakesmsc", "smsbox", "bearerbox", "mongo"])


@contextlib.asynccontextmanager
async def notification_in_process(rig: Rig) -> AsyncIterator[Settings]:
    """The notification service in this process, on a real port (Kannel calls its dlr-url),
    consuming in a group of its own parked at the end of the requests topic."""
    group = await fresh_consumer_group(
        rig.settings.kafka_bootstrap,
        "notification",
        [topics.NOTIFICATION_REQUESTS],
        [topics.NOTIFICATION_RESULTS],
    )
    port = free_port()
    own = rig.settings.model_copy(
        update={
            "sms_dlr_base_url": f"http://127.0.0.1:{port}",
            "notification_public_url": f"http://127.0.0.1:{port}",
        }
    )
    app = build_app(own, consumer_group=group)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(60):
            while not (server.started and app.state.runtime.started.is_set()):
                await asyncio.sleep(0.05)
        yield own
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


class NotificationProcess:
    """`python -m services.notification` as its own process (as the service runs), in a
    consumer group of its own, that can be SIGKILLed and started again."""

    def __init__(self, rig: Rig, group: str, logs: Path) -> None:
        self.port = free_port()
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ) | {
            "AK_DB_PREFIX": rig.settings.db_prefix,
            "AK_MONGO_URI": rig.settings.mongo_uri,
            "AK_NOTIFICATION_MONGO_URI": "",
            "AK_SMS_GATEWAY_URL": rig.settings.sms_gateway_url,
            "AK_SMTP_HOST": rig.settings.smtp_host,
            "AK_SMTP_PORT": str(rig.settings.smtp_port),
            "AK_SMS_DLR_BASE_URL": base,
            "AK_NOTIFICATION_PUBLIC_URL": base,
            "AK_NOTIFICATION_PORT": str(self.port),
            "AK_HOST": "127.0.0.1",
            "AK_WORKERS": "1",
            "AK_SMS_QUIET_HOURS": "",
            "AK_NOTIFICATION_RETRY_CAP_SECONDS": str(RETRY_CAP),
            "AK_NOTIFICATION_CONSUMER_GROUP": group,
            # As the service itself: its own Kafka user, whose groups start acikkapi-notification.
            "AK_KAFKA_USERNAME": "notification",
            "AK_KAFKA_PASSWORD": "",
        }

    def start(self) -> None:
        self.starts += 1
        log = open(self.logs / f"notification-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.notification"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout), httpx.AsyncClient() as http:
            while True:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                with contextlib.suppress(httpx.HTTPError):
                    answer = await http.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
                    if answer.status_code == 200:
                        return
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def tail(self) -> str:
        log = self.logs / f"notification-{self.starts}.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""


# --- requests, and what became of them ------------------------------------------------------------


def sms_request(number: str) -> NotificationRequest:
    application_id = str(uuid.uuid4())
    return NotificationRequest(
        application_id=application_id,
        application_number=number,
        producer="test",
        idempotency_key=f"{application_id}:received:sms",
        channel="sms",
        to=f"+90532{random.randint(0, 9_999_999):07d}",
        template="application_received",
        params={"application_number": number, "tracking_url": TRACKING_URL},
    )


def email_request(number: str) -> NotificationRequest:
    application_id = str(uuid.uuid4())
    return NotificationRequest(
        application_id=application_id,
        application_number=number,
        producer="test",
        idempotency_key=f"{application_id}:answered:email",
        channel="email",
        to=f"vatandas.{application_id[:8]}@ornek.com.tr",
        template="application_answered",
        params={
            "application_number": number,
            "outcome_label": "olumlu",
            "tracking_url": TRACKING_URL,
            "answer": "Talebiniz yerine getirildi.",
        },
    )


@dataclass
class Flow:
    """The requests a test produced, in order."""

    requests: list[NotificationRequest] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [r.idempotency_key for r in self.requests]

    @property
    def numbers(self) -> list[str]:
        return [str(r.application_number) for r in self.requests]


async def produce(
    bootstrap: str,
    flow: Flow,
    make: Callable[[str], NotificationRequest],
    *,
    seconds: float,
    rate: float,
) -> None:
    """`rate` requests a second for `seconds`, as the services would ask for them."""
    producer = AIOKafkaProducer(**kafka(bootstrap), acks="all", linger_ms=2)
    await producer.start()
    try:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            while len(flow.requests) < int(elapsed * rate) + 1:
                request = make(unique_number())
                flow.requests.append(request)
                await producer.send(
                    topics.NOTIFICATION_REQUESTS,
                    request.to_bytes(),
                    key=request.idempotency_key.encode(),
                )
            await asyncio.sleep(0.02)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class Figures:
    requested: int
    sent: int  # keys with a `sent` result
    delivered: int  # keys with a `delivered` result (SMS: the fake SMSC's delivery report)
    arrived: int  # distinct messages the fake SMSC / the SMTP server got
    duplicates: int  # messages that got there more than once
    failed: int  # keys with a `failed` result
    retried: int  # records that took more than one attempt
    most_attempts: int
    uncertain: dict[str, int]  # records left uncertain (never resent), by reason
    seconds_to_arrive: float  # from the gateway's return (or the restart) to the backlog's end

    def line(self) -> str:
        return ", ".join(f"{name} {value}" for name, value in self.__dict__.items())


async def wait_for_arrivals(
    arrivals: Callable[[], Counter[str]], numbers: list[str], timeout: float
) -> float:
    """Seconds until every number arrived (or the timeout passed)."""
    started = time.monotonic()
    wanted = set(numbers)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not wanted <= set(arrivals()):
                await asyncio.sleep(0.25)
    return time.monotonic() - started


async def figures_of(
    rig: Rig,
    flow: Flow,
    tap: Tap,
    arrivals: Counter[str],
    seconds_to_arrive: float,
) -> Figures:
    keys = set(flow.keys)
    statuses: dict[str, set[str]] = {}
    for topic, key, body in tap.seen:
        if topic == topics.NOTIFICATION_RESULTS and key in keys:
            statuses.setdefault(body["status"], set()).add(key)
    records = {doc["_id"]: doc for doc in await rig.records() if doc["_id"] in keys}
    attempts = [int(doc.get("attempts") or 0) for doc in records.values()]
    ours = {number: arrivals[number] for number in flow.numbers if arrivals[number]}
    return Figures(
        requested=len(flow.requests),
        sent=len(statuses.get("sent", set())),
        delivered=len(statuses.get("delivered", set())),
        arrived=len(ours),
        duplicates=sum(1 for count in ours.values() if count > 1),
        failed=len(statuses.get("failed", set())),
        retried=sum(1 for n in attempts if n > 1),
        most_attempts=max(attempts, default=0),
        uncertain=dict(
            Counter(
                f"{doc.get('uncertain_reason')}"
                + (" (with a delivery report)" if doc.get("delivery_reports") else "")
                for doc in records.values()
                if doc.get("state") == "uncertain"
            )
        ),
        seconds_to_arrive=round(seconds_to_arrive, 1),
    )


def sms_arrivals(rig: Rig) -> Callable[[], Counter[str]]:
    """Each application number's count in what the fake SMSC received (parts joined)."""

    def count() -> Counter[str]:
        found: Counter[str] = Counter()
        for sms in read_fakesmsc(rig.fakesmsc_out):
            for word in sms.text.replace(".", " ").split():
                if word.startswith("20-2026-"):
                    found[word] += 1
        return found

    return count


def mail_arrivals(rig: Rig) -> Callable[[], Counter[str]]:
    def count() -> Counter[str]:
        return Counter(subject.split()[2] for subject in rig.smtp.subjects())

    return count


def report(name: str, figures: Figures, record_property: Callable[[str, Any], None]) -> None:
    say(f"{name}: {figures.line()}")
    for key, value in figures.__dict__.items():
        record_property(f"{name}.{key}", value)


# --- the failures ----------------------------------------------------------------------------


async def test_kannel_stopped_for_a_minute_every_sms_arrives_once(
    rig: Rig, record_property: Callable[[str, Any], None]
):
    bootstrap = rig.settings.kafka_bootstrap
    flow = Flow()
    async with notification_in_process(rig), Tap(bootstrap, [topics.NOTIFICATION_RESULTS]) as tap:
        producing = asyncio.create_task(
            produce(bootstrap, flow, sms_request, seconds=BEFORE + KANNEL_OUTAGE + AFTER, rate=RATE)
        )
        await asyncio.sleep(BEFORE)
        stopped = time.monotonic()
        await asyncio.to_thread(rig.stop_kannel)
        during = len(flow.requests)
        await asyncio.sleep(max(0.0, KANNEL_OUTAGE - (time.monotonic() - stopped)))
        await asyncio.to_thread(rig.start_kannel)
        outage = time.monotonic() - stopped
        asked_in_outage = len(flow.requests) - during
        say(f"Kannel was away {outage:.0f} s; {asked_in_outage} SMS asked for meanwhile")
        arrivals = sms_arrivals(rig)
        # How long the backlog takes to go out once Kannel is back.
        backlog = asyncio.create_task(
            wait_for_arrivals(arrivals, list(flow.numbers), timeout=60 + RETRY_CAP)
        )
        await producing
        drained = await backlog
        await wait_for_arrivals(arrivals, flow.numbers, timeout=30)
        await asyncio.sleep(3)  # a second copy, or a late delivery report, would show by now
        figures = await figures_of(rig, flow, tap, arrivals(), drained)
    report("kannel_outage", figures, record_property)
    assert asked_in_outage >= RATE * KANNEL_OUTAGE * 0.9
    assert figures.arrived == figures.requested, figures.line()
    assert figures.duplicates == 0, figures.line()
    assert figures.sent == figures.requested and figures.failed == 0, figures.line()
    assert figures.retried > 0, "the outage was not seen: no message needed a second attempt"
    assert figures.seconds_to_arrive <= 2 * RETRY_CAP + 10, figures.line()


async def test_smtp_refusing_then_away_every_mail_arrives_once(
    rig: Rig, record_property: Callable[[str, Any], None]
):
    bootstrap = rig.settings.kafka_bootstrap
    flow = Flow()
    failure = SMTP_REFUSAL + SMTP_DOWN
    async with notification_in_process(rig), Tap(bootstrap, [topics.NOTIFICATION_RESULTS]) as tap:
        producing = asyncio.create_task(
            produce(bootstrap, flow, email_request, seconds=BEFORE + failure + AFTER, rate=RATE)
        )
        await asyncio.sleep(BEFORE)
        rig.smtp.refusing = True
        await asyncio.sleep(SMTP_REFUSAL)
        await asyncio.to_thread(rig.smtp.stop)
        await asyncio.sleep(SMTP_DOWN)
        rig.smtp.refusing = False
        await asyncio.to_thread(rig.smtp.start)
        say(f"SMTP answered 451 {rig.smtp.refused} times in {SMTP_REFUSAL:.0f} s, then was away")
        arrivals = mail_arrivals(rig)
        backlog = asyncio.create_task(
            wait_for_arrivals(arrivals, list(flow.numbers), timeout=60 + RETRY_CAP)
        )
        await producing
        drained = await backlog
        await wait_for_arrivals(arrivals, flow.numbers, timeout=30)
        await asyncio.sleep(3)
        figures = await figures_of(rig, flow, tap, arrivals(), drained)
    report("smtp_refusal", figures, record_property)
    assert rig.smtp.refused > 0
    assert figures.arrived == figures.requested, figures.line()
    assert figures.duplicates == 0, figures.line()
    assert figures.sent == figures.requested and figures.failed == 0, figures.line()
    assert figures.retried > 0
    assert figures.seconds_to_arrive <= 2 * RETRY_CAP + 10, figures.line()


async def test_a_process_killed_mid_batch_and_restarted_sends_every_sms_once(
    rig: Rig,
    tmp_path: Path,
    record_property: Callable[[str, Any], None],
):
    bootstrap = rig.settings.kafka_bootstrap
    group = f"acikkapi-notification-failtest-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, [topics.NOTIFICATION_REQUESTS])
    process = NotificationProcess(rig, group, tmp_path)
    flow = Flow()
    arrivals = sms_arrivals(rig)
    try:
        process.start()
        await process.ready()
        async with Tap(bootstrap, [topics.NOTIFICATION_RESULTS]) as tap:
            start = rig.fakesmsc_out.stat().st_size
            producing = asyncio.create_task(
                produce(bootstrap, flow, sms_request, seconds=1.0, rate=KILL_BURST)
            )
            async with asyncio.timeout(60):
                while rig.fakesmsc_parts(since=start) < KILL_AFTER:
                    await asyncio.sleep(0.005)
            process.kill()
            asked = len(flow.requests)
            killed_at = sum(1 for n in flow.numbers if arrivals()[n])
            say(f"SIGKILL with {killed_at} of the {asked} SMS asked for so far arrived")
            restarted = time.monotonic()
            process.start()
            await process.ready()
            say(f"restarted, ready after {time.monotonic() - restarted:.1f} s")
            await producing
            waited = await wait_for_arrivals(arrivals, flow.numbers, timeout=60)
            await asyncio.sleep(3)
            figures = await figures_of(rig, flow, tap, arrivals(), waited)
    finally:
        process.stop()
    report("process_killed", figures, record_property)
    assert killed_at < asked, "nothing was left to send when the process was killed"
    assert figures.duplicates == 0, figures.line()
    # Only the calls in flight at the kill can be left uncertain: never resent, since a second
    # SMS is worse than none; whether one reached Kannel before the kill depends on the
    # machine's speed. Every other SMS arrives, once.
    uncertain = sum(figures.uncertain.values())
    assert uncertain <= CHUNK * CHUNKS_IN_FLIGHT, figures.line()
    assert figures.requested - uncertain <= figures.arrived <= figures.requested, figures.line()
