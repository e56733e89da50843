"""Metrics of a service run as several workers on one port (services/common/observability.py,
services/common/service.py): which registry /metrics exposes, how the workers' files are
merged, and the folder the supervisor prepares. The workers here are real processes that write
real prometheus_client files; nothing is faked."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from services.common.observability import (
    CONSUMER_LAG,
    MULTIPROC_ENV,
    metrics_registry,
    withdraw,
)
from services.common.service import fresh_folder, metrics_dir

ROOT = Path(__file__).resolve().parents[2]

HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}


def worker(folder: Path, body: str) -> None:
    """One worker process writing its metrics to `folder` (a UserWarning is an error there:
    prometheus_client warns when a series is removed in multiprocess mode)."""
    script = "from services.common.observability import *\n" + textwrap.dedent(body)
    subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", script],
        cwd=ROOT,
        env=dict(os.environ, **{MULTIPROC_ENV: str(folder)}),
        check=True,
        timeout=60,
    )


def test_one_process_exposes_its_own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)

    assert metrics_registry() is REGISTRY


def test_several_workers_expose_one_merged_figure_per_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker(
        tmp_path,
        """
        HTTP_REQUESTS.labels("GET", "/healthz", "200").inc(120)
        READY.set(1)
        ASSIGNED_PARTITIONS.labels("t").set(4)
        CONSUMER_LAG.labels("g", "t", "0").set(7)
        CONSUMER_LAG.labels("g", "t", "1").set(30)
        CONSUMER_LAG.labels("g", "t", "2").set(9)
        withdraw(CONSUMER_LAG, "g", "t", "1")
        withdraw(CONSUMER_LAG, "g", "t", "2")
        """,
    )
    worker(
        tmp_path,
        """
        HTTP_REQUESTS.labels("GET", "/healthz", "200").inc(80)
        READY.set(0)
        ASSIGNED_PARTITIONS.labels("t").set(2)
        CONSUMER_LAG.labels("g", "t", "0").set(3)
        CONSUMER_LAG.labels("g", "t", "1").set(12)
        CONSUMER_LAG.labels("g", "t", "2").set(5)
        withdraw(CONSUMER_LAG, "g", "t", "2")
        CONSUMER_LAG.labels("g", "t", "2").set(6)
        """,
    )
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))

    registry = metrics_registry()
    value = registry.get_sample_value

    assert isinstance(registry, CollectorRegistry) and registry is not REGISTRY
    assert value("acikkapi_http_requests_total", HEALTHZ) == 200  # counters add up
    assert value("acikkapi_ready") == 0  # one worker not ready: the service is not
    assert value("acikkapi_assigned_partitions", {"topic": "t"}) == 6
    lag = {"group": "g", "topic": "t"}
    assert value("acikkapi_consumer_lag", lag | {"partition": "0"}) == 7  # the highest
    # Withdrawn by one worker: the other's figure; withdrawn and set again: back.
    assert value("acikkapi_consumer_lag", lag | {"partition": "1"}) == 12
    assert value("acikkapi_consumer_lag", lag | {"partition": "2"}) == 6
    # No pid label anywhere: one series per label set, whichever worker answers.
    assert all(
        "pid" not in sample.labels for metric in registry.collect() for sample in metric.samples
    )


def test_a_series_every_worker_withdrew_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for figure in (40, 50):
        worker(
            tmp_path,
            f"""
            CONSUMER_LAG.labels("g", "t", "0").set({figure})
            withdraw(CONSUMER_LAG, "g", "t", "0")
            """,
        )
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))

    labels = {"group": "g", "topic": "t", "partition": "0"}
    assert metrics_registry().get_sample_value("acikkapi_consumer_lag", labels) is None


def test_one_process_withdraws_a_series_by_removing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    labels = {"group": "unit-withdraw", "topic": "t", "partition": "0"}
    CONSUMER_LAG.labels(*labels.values()).set(3)
    assert REGISTRY.get_sample_value("acikkapi_consumer_lag", labels) == 3

    withdraw(CONSUMER_LAG, *labels.values())

    assert REGISTRY.get_sample_value("acikkapi_consumer_lag", labels) is None


def test_each_instance_gets_a_folder_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again

    assert metrics_dir("intake", 8001) == Path("/var/tmp/acikkapi-metrics-intake-8001")
    assert metrics_dir("intake", 8001) != metrics_dir("intake", 18001)
    assert metrics_dir("intake", 8001) != metrics_dir("routing", 8001)


def test_the_folder_starts_empty_and_private(tmp_path: Path) -> None:
    folder = tmp_path / "acikkapi-metrics-intake-8001"
    folder.mkdir()
    (folder / "counter_4242.db").write_bytes(b"left by a killed instance")

    fresh_folder(folder)

    assert list(folder.iterdir()) == []
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_symbolic_link_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "someone-elses"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("x")
    link = tmp_path / "acikkapi-metrics-intake-8001"
    link.symlink_to(elsewhere)

    with pytest.raises(OSError):
        fresh_folder(link)

    assert (elsewhere / "keep").exists()
