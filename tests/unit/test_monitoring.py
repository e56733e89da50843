"""The alert rules and the Prometheus config are checked by Prometheus' own tool, and every metric
the dashboard and the alerts name is one the services really export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

# Imported for their side effect: they register the metrics the rules and dashboard name.
import services.common.observability
import services.notification.metrics  # noqa: F401

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
PROMTOOL = shutil.which("promtool")


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["test", "rules", "alerts_test.yml"], id="alert-rules-pass-unit-tests"),
        pytest.param(["check", "config", "prometheus.yml"], id="prometheus-config-is-valid"),
    ],
)
def test_promtool_accepts(command: list[str]):
    assert PROMTOOL, "promtool comes with Debian's prometheus package (make install)"
    result = subprocess.run([PROMTOOL, *command], cwd=MONITORING, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_and_alerts_name_only_exported_metrics():
    exported = {m.name for m in REGISTRY.collect()} | {"up"}
    text = (MONITORING / "alerts.yml").read_text() + json.dumps(
        json.loads((MONITORING / "grafana-dashboard.json").read_text())
    )
    named = set(re.findall(r"\b(acikkapi_[a-z_]+|up)\b", text))
    assert named
    for name in named:
        base = re.sub(r"_(bucket|total|sum|count)$", "", name)
        assert name in exported or base in exported, name
