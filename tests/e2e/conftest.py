"""Starts the five services as separate processes against the test stack, and stops them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common import topics
from services.common.settings import SERVICE_PORTS, Settings
from tests.conftest import checks_off_env, start_group_at_end

ROOT = Path(__file__).resolve().parents[2]

# The topics each service consumes (its AsyncAPI document must name them).
READS = {
    "intake": [topics.SUBMISSIONS],
    "routing": [topics.RECEIVED, topics.STATUS],
    "tracking": [topics.RECEIVED, topics.ROUTED, topics.RESPONSES, topics.NOTIFICATION_RESULTS],
    "notification": [topics.NOTIFICATION_REQUESTS],
    "reporting": [topics.RECEIVED, topics.ROUTED, topics.STATUS, topics.DEADLINES, topics.RATINGS],
}


@pytest.fixture(scope="session")
def e2e_settings() -> Settings:
    return Settings(db_prefix=f"e2e{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def service_urls(
    e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One process per service, as `python -m services.<name>`, on the test ports; they stop
    when the module ends so no later test shares their consumer groups."""
    logs = tmp_path_factory.mktemp("e2e-logs")
    env = dict(os.environ, AK_DB_PREFIX=e2e_settings.db_prefix) | checks_off_env()
    env.setdefault(
        "AK_SMS_DLR_BASE_URL", f"http://127.0.0.1:{e2e_settings.port_for('notification')}"
    )
    env.setdefault(
        "AK_PUBLIC_TRACKING_URL", f"http://127.0.0.1:{e2e_settings.port_for('tracking')}/takip"
    )
    # The services join their own consumer groups: start those at the topics' current end, so
    # the run never replays what earlier runs left on the broker (their applications were
    # numbered from other databases and would collide with this run's numbers).
    for name, reads in READS.items():
        asyncio.run(start_group_at_end(e2e_settings.kafka_bootstrap, f"acikkapi-{name}", reads))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls = {name: f"http://127.0.0.1:{e2e_settings.port_for(name)}" for name in SERVICE_PORTS}
    try:
        for name in SERVICE_PORTS:
            log = open(logs / f"{name}.log", "wb")
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        waiting = set(SERVICE_PORTS)
        while waiting and time.monotonic() < deadline:
            for name in list(waiting):
                if procs[name].poll() is not None:
                    raise RuntimeError(
                        f"{name} exited: {(logs / f'{name}.log').read_text()[-3000:]}"
                    )
                try:
                    if httpx.get(f"{urls[name]}/readyz", timeout=2).status_code == 200:
                        waiting.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        if waiting:
            tails = {n: (logs / f"{n}.log").read_text()[-2000:] for n in waiting}
            raise RuntimeError(f"not ready after 90 s: {sorted(waiting)}\n{tails}")
        yield urls
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
