"""A service run as two workers on one port (services/common/service.py `serve`, as the local
stack runs intake) counts every request once, whichever worker a scrape of /metrics reaches,
and keeps counting right when a worker dies and is replaced.

Runs tests/integration/workers_probe.py, a service built with services/common/service.py
that consumes nothing, against the test stack's Kafka and MongoDB."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from services.common import kafka_auth

ROOT = Path(__file__).resolve().parents[2]
HITS = 200
SCRAPES = 12
ROUTE = {"method": "POST", "route": "/deneme", "status": "200"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s: {what}")


class Probe:
    """The probe service's supervisor process, its port and its metrics folder."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, folder: Path, log: Path):
        self.process = process
        self.url = url
        self.folder = folder
        self.log = log

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """One scrape of /metrics, on a connection of its own (any worker may answer)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.samples().get((name, frozenset((labels or {}).items())))

    def workers(self) -> set[int]:
        """The pids of the workers now running: each holds a live gauge file."""
        return {
            int(path.stem.rpartition("_")[2])
            for path in self.folder.glob("gauge_livemin_*.db")
            if psutil.pid_exists(int(path.stem.rpartition("_")[2]))
        }

    def counts(self) -> tuple[float | None, float | None]:
        """One scrape's count of the probe's requests: by the HTTP middleware, by the route."""
        samples = self.samples()
        return (
            samples.get(("acikkapi_http_requests_total", frozenset(ROUTE.items()))),
            samples.get(("acikkapi_probe_hits_total", frozenset())),
        )

    def counted_by(self) -> dict[int, float]:
        """The requests each worker (living or dead) counted, from its own file."""
        counts: dict[int, float] = {}
        for path in self.folder.glob("counter_*.db"):
            for metric in MultiProcessCollector.merge([str(path)]):  # type: ignore[no-untyped-call]
                for s in metric.samples:
                    if s.name == "acikkapi_probe_hits_total":
                        counts[int(path.stem.rpartition("_")[2])] = s.value
        return counts


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[Probe]:
    port = free_port()
    log = tmp_path / "probe.log"
    env = dict(
        os.environ,
        AK_PORT=str(port),
        AK_HOST="127.0.0.1",
        AK_WORKERS="2",
        AK_DB_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        AK_KAFKA_USERNAME=kafka_auth.ADMIN,
        # The supervisor's metrics folder goes under the temporary folder: this test's own.
        TMPDIR=str(tmp_path),
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from tests.integration.workers_probe import main; main()"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started: list[psutil.Process] = []
    try:
        probe = Probe(
            process, f"http://127.0.0.1:{port}", tmp_path / f"acikkapi-metrics-probe-{port}", log
        )

        def both_ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the probe exited: {log.read_text()[-3000:]}")
            started[:] = psutil.Process(process.pid).children(recursive=True)
            try:
                # Every worker checks its own readiness: 1 only when both have.
                return len(probe.workers()) == 2 and probe.value("acikkapi_ready") == 1
            except httpx.HTTPError:
                return False

        wait_for(both_ready, "two workers up and ready", timeout=90)
        yield probe
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for child in started:  # the workers, should the supervisor have left any
            if child.is_running():
                child.kill()


def hit(probe: Probe, times: int) -> None:
    for _ in range(times):
        # A connection per request, as from many clients: the kernel hands each to a worker.
        assert httpx.post(f"{probe.url}/deneme", timeout=10).status_code == 200


def test_two_workers_count_every_request_on_every_scrape(probe: Probe) -> None:
    assert probe.counts() == (None, 0)

    hit(probe, HITS)

    scraped = [probe.counts() for _ in range(SCRAPES)]
    assert scraped == [(HITS, HITS)] * SCRAPES
    # Both workers served requests: before the fix each scrape showed one worker's share.
    shares = probe.counted_by()
    assert len(shares) == 2 and all(share > 0 for share in shares.values()), shares
    assert sum(shares.values()) == HITS
    # One series for the service, not one per worker.
    names = [key for key in probe.samples() if key[0] == "acikkapi_ready"]
    assert names == [("acikkapi_ready", frozenset())]


def test_a_dead_worker_is_replaced_and_its_counts_stay(probe: Probe) -> None:
    hit(probe, HITS)
    # A worker that counted some of the requests.
    dead = next(pid for pid in sorted(probe.counted_by()) if pid in probe.workers())

    os.kill(dead, signal.SIGKILL)

    # uvicorn's supervisor starts a new worker; `Workers` forgets the dead one's live gauges.
    wait_for(
        lambda: dead not in probe.workers() and len(probe.workers()) == 2,
        "a replacement worker",
    )
    wait_for(
        lambda: not list(probe.folder.glob(f"gauge_live*_{dead}.db")),
        "the dead worker's live gauges forgotten",
    )
    assert (probe.folder / f"counter_{dead}.db").exists()  # its counts are kept
    wait_for(lambda: probe.value("acikkapi_ready") == 1, "ready again")

    assert [probe.counts() for _ in range(5)] == [(HITS, HITS)] * 5
    hit(probe, HITS)
    scraped = [probe.counts() for _ in range(SCRAPES)]
    assert scraped == [(2 * HITS, 2 * HITS)] * SCRAPES


def test_the_supervisor_removes_its_metrics_folder_when_it_stops(probe: Probe) -> None:
    assert probe.folder.is_dir()

    probe.process.terminate()
    probe.process.wait(timeout=20)

    assert not probe.folder.exists()
