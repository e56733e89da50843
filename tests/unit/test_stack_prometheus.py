"""Prometheus in the local stack (deploy/local/stack.py): its configuration names the stack's
own service ports and the project's alert rules, Prometheus' own tool accepts it, `make run`
starts it and `make test`'s infrastructure-only stack does not, and a real Prometheus started
by the supervisor serves the targets and the rules."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local.stack import (
    MONITORING,
    SERVICES,
    Stack,
    StackSettings,
    http_get,
    wait_until,
)
from services.common.settings import Settings

PROMTOOL = shutil.which("promtool")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_on(tmp_path: Path, **local: Any) -> Stack:
    ports = {f"{svc}_port": 38001 + n for n, svc in enumerate(SERVICES)}
    settings = Settings(
        kafka_bootstrap="127.0.0.1:39092",
        mongo_uri="mongodb://127.0.0.1:37017",
        sms_gateway_url="http://127.0.0.1:33013/cgi-bin/sendsms",
        **ports,
    )
    local.setdefault("prometheus_port", free_port())
    return Stack(settings, StackSettings(data_dir=tmp_path, **local))


def test_prometheus_scrapes_each_service_on_the_stacks_own_port_labelled_with_its_name(
    tmp_path: Path,
) -> None:
    stack = stack_on(tmp_path)
    stack.write_prometheus_conf()

    written = yaml.safe_load((stack.prometheus_dir() / "prometheus.yml").read_text())
    (job,) = written["scrape_configs"]
    assert job["job_name"] == "acikkapi" and job["metrics_path"] == "/metrics"
    assert {c["labels"]["service"]: c["targets"] for c in job["static_configs"]} == {
        "intake": ["127.0.0.1:38001"],
        "routing": ["127.0.0.1:38002"],
        "tracking": ["127.0.0.1:38003"],
        "notification": ["127.0.0.1:38004"],
        "reporting": ["127.0.0.1:38005"],
    }
    # The rules are the project's, as they are at this start.
    assert written["rule_files"] == ["alerts.yml"]
    rules = (stack.prometheus_dir() / "alerts.yml").read_text()
    assert rules == (MONITORING / "alerts.yml").read_text()


def test_prometheus_own_tool_accepts_the_written_configuration_and_rules(tmp_path: Path) -> None:
    assert PROMTOOL, "promtool comes with Debian's prometheus package (make install)"
    stack = stack_on(tmp_path)
    stack.write_prometheus_conf()

    config = stack.prometheus_dir() / "prometheus.yml"
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rule files found" in result.stdout


def test_prometheus_listens_on_loopback_and_keeps_a_short_history_in_the_data_folder(
    tmp_path: Path,
) -> None:
    stack = stack_on(tmp_path, prometheus_port=19090, prometheus_retention="6h")
    component = stack.components["prometheus"]

    assert component.port == 19090
    assert "--web.listen-address=127.0.0.1:19090" in component.command
    assert f"--storage.tsdb.path={tmp_path.resolve() / 'prometheus'}" in component.command
    assert "--storage.tsdb.retention.time=6h" in component.command
    assert stack.exports()["AK_PROMETHEUS_PORT"] == "19090"


def test_make_run_starts_prometheus_and_the_infrastructure_only_test_stack_does_not(
    tmp_path: Path,
) -> None:
    assert "prometheus" in stack_on(tmp_path, stack_infra_only=False)._default_names()
    infra_only = stack_on(tmp_path, stack_infra_only=True)._default_names()
    assert "prometheus" not in infra_only and "kafka" in infra_only


def test_the_supervisor_starts_prometheus_with_the_services_as_targets_and_stops_it(
    tmp_path: Path,
) -> None:
    stack = stack_on(tmp_path)
    port = stack.local.prometheus_port
    stack.start(["prometheus"])
    try:
        proc = stack.process("prometheus")
        assert proc is not None and proc.cmdline()[0] == "/usr/bin/prometheus"

        def targets() -> dict[str, str]:
            status, body = http_get(port, "/api/v1/targets")
            assert status == 200
            found = json.loads(body)["data"]["activeTargets"]
            return {t["labels"]["service"]: t["scrapeUrl"] for t in found}

        wait_until(lambda: len(targets()) == len(SERVICES), 15)  # discovered a moment after
        assert targets() == {
            svc: f"http://127.0.0.1:{38001 + n}/metrics" for n, svc in enumerate(SERVICES)
        }
        status, body = http_get(port, "/api/v1/rules")
        assert status == 200
        loaded = {r["name"] for g in json.loads(body)["data"]["groups"] for r in g["rules"]}
        assert "AcikKapiServiceDown" in loaded and "AcikKapiConsumerLagGrowing" in loaded
    finally:
        stack.stop(["prometheus"])
    assert stack.process("prometheus") is None
    assert not stack.pid_file("prometheus").exists()


def test_prometheus_is_stopped_before_the_services_it_scrapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stack_on(tmp_path)
    order: list[str] = []
    monkeypatch.setattr(stack, "_stop_together", order.extend)
    stack.stop()
    assert order.index("prometheus") < min(order.index(svc) for svc in SERVICES)
