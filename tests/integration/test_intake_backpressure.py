"""Back-pressure against a real store that stops: intake answers 503 with Retry-After and a
Turkish message instead of accepting what it cannot store, /readyz turns red, nothing it
accepted is lost, and it recovers by itself.

The test runs its own nx-27017 process (the MongoDB-wire server of the local stack), so it can
freeze it (SIGSTOP: "too slow"), thaw it, kill it ("down") and start it again without
disturbing the other tests, which share the stack's server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from services.common import topics
from services.common.settings import Settings
from services.intake import api
from services.intake.app import build_app
from tests.conftest import Tap, fresh_consumer_group, intake_serves_denizli
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

NX = Path(sys.executable).with_name("nx-27017")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Store:
    """An nx-27017 process of the test's own, on a port and data folder of its own."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(NX), "--data-dir", str(self.data), "--host", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                raise RuntimeError("nx-27017 did not start")
            time.sleep(0.1)
        raise RuntimeError("nx-27017 did not open its port")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    if not NX.exists():
        pytest.skip("nx-27017 is installed with the project (make install)")
    own = Store(tmp_path / "mongo")
    own.data.mkdir()
    own.start()
    try:
        yield own
    finally:
        own.kill()


@pytest.fixture
async def intake(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Tap, Settings]]:
    monkeypatch.setattr(api, "REGISTER_TIMEOUT", 2.0)
    own = settings.model_copy(update={"mongo_uri": f"mongodb://127.0.0.1:{store.port}"})
    group = await fresh_consumer_group(
        own.kafka_bootstrap, "intake", [topics.SUBMISSIONS], [topics.RECEIVED]
    )
    tap = Tap(own.kafka_bootstrap, [topics.RECEIVED])
    await tap.start()
    app = build_app(own, consumer_group=group)
    try:
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app.state.runtime.started.wait(), 60)
            await intake_serves_denizli(app, own)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://intake", timeout=30
            ) as http:
                yield http, tap, own
    finally:
        await tap.stop()


async def submit(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.post("/api/v1/applications", json=body(), headers={"Idempotency-Key": key})


async def wait_until(http: httpx.AsyncClient, path: str, status: int, seconds: float) -> None:
    for _ in range(int(seconds * 5)):
        if (await http.get(path)).status_code == status:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} did not answer {status} within {seconds} s")


async def submit_until_accepted(http: httpx.AsyncClient, key: str) -> httpx.Response:
    """What a client does with a 503: come back with the same key (sooner than Retry-After)."""
    for _ in range(50):
        response = await submit(http, key)
        if response.status_code != 503:
            return response
        await asyncio.sleep(0.2)
    raise AssertionError("still refused 10 s after the store came back")


def assert_refused(response: httpx.Response) -> str:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    [error] = response.json()["errors"]
    assert error["code"] == "unavailable"
    return str(error["message"])


async def test_a_stopped_store_is_refused_quickly_and_recovered_from(
    intake: tuple[httpx.AsyncClient, Tap, Settings], store: Store
) -> None:
    http, tap, settings = intake
    accepted: dict[str, str] = {}  # Idempotency-Key -> application id

    first = await submit(http, key := f"bp-{uuid.uuid4()}")
    assert first.status_code == 201, first.text
    accepted[key] = first.json()["application_id"]

    # Too slow: the store takes the request and never answers.
    store.signal(signal.SIGSTOP)
    frozen_key = f"bp-{uuid.uuid4()}"
    started = asyncio.get_running_loop().time()
    message = assert_refused(await submit(http, frozen_key))
    assert asyncio.get_running_loop().time() - started < api.REGISTER_TIMEOUT + 3
    assert "kaydedilmiş olabilir" in message and "Idempotency-Key" in message
    await wait_until(http, "/readyz", 503, 10)
    # While it is away, new submissions are refused at once, without waiting on the store.
    started = asyncio.get_running_loop().time()
    message = assert_refused(await submit(http, f"bp-{uuid.uuid4()}"))
    assert asyncio.get_running_loop().time() - started < 1.0
    assert "veritabanı yanıt vermiyor" in message and "kaydedilmedi" in message

    # Back by itself once the store answers again.
    store.signal(signal.SIGCONT)
    await wait_until(http, "/readyz", 200, 20)
    # The same key: registered once, whether or not the frozen write landed.
    again = await submit_until_accepted(http, frozen_key)
    assert again.status_code == 201, again.text
    accepted[frozen_key] = again.json()["application_id"]

    # Down: the process is gone; then it comes back on the same data.
    store.kill()
    refused = await submit(http, f"bp-{uuid.uuid4()}")
    assert_refused(refused)
    await wait_until(http, "/readyz", 503, 10)
    store.start()
    await wait_until(http, "/readyz", 200, 30)
    last = await submit_until_accepted(http, key := f"bp-{uuid.uuid4()}")
    assert last.status_code == 201, last.text
    accepted[key] = last.json()["application_id"]

    # Nothing accepted was lost: each is stored once and announced.
    mongo: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        collection = mongo[settings.database_name("intake")]["intake_applications"]
        for key, application_id in accepted.items():
            assert await collection.count_documents({"idempotency_key": key}) == 1
            await tap.wait_for(
                topics.RECEIVED, lambda e, a=application_id: e.get("application_id") == a, 30
            )
    finally:
        await mongo.close()
    metrics = (await http.get("/metrics")).text
    assert 'acikkapi_admission_refused_total{reason="dependency_down",service="intake"}' in metrics
