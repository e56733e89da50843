"""The alert rules and the Prometheus config are checked by Prometheus' own tool, every alert is
tested firing and not firing, the dashboards import into Grafana cleanly and their queries
parse, and every metric the dashboards and the alerts name is one the services really export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

# Imported for their side effect: they register the metrics the rules and dashboards name.
import services.common.observability
import services.intake.handlers
import services.notification.metrics
import services.reporting.metrics
import services.tracking.metrics
import services.tracking.rating_handlers  # noqa: F401

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
PROMTOOL = shutil.which("promtool")
DASHBOARDS = ["grafana-operations.json", "grafana-governorship.json"]
# Grafana's own variables, and the dashboards' template variables, as a query runs them.
VARIABLES = {
    "$__rate_interval": "1m",
    "$service": ".*",
    "$province": ".*",
    "$institution": ".*",
}


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool comes with Debian's prometheus package (make install)"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["test", "rules", "alerts_test.yml"], id="alert-rules-pass-unit-tests"),
        pytest.param(["check", "rules", "alerts.yml"], id="alert-rules-are-valid"),
        pytest.param(["check", "config", "prometheus.yml"], id="prometheus-config-is-valid"),
    ],
)
def test_promtool_accepts(command: list[str]) -> None:
    result = promtool(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def alert_names() -> list[str]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_is_tested_both_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    stays_quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = alert_names()
    assert len(names) >= 10
    assert not set(names) - fires, "never tested firing"
    assert not set(names) - stays_quiet, "never tested quiet"


def test_every_alert_has_a_summary_and_links_its_own_runbook_section() -> None:
    runbook = (MONITORING.parents[1] / "docs" / "runbook.md").read_text()
    sections = set(re.findall(r"^#+ (\S+)$", runbook, re.MULTILINE))
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert f"docs/runbook.md#{rule['alert'].lower()}" in annotations["description"]
        assert rule["alert"] in sections, f"docs/runbook.md has no section {rule['alert']}"
        assert rule["labels"]["severity"] in ("critical", "warning")


def dashboard(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MONITORING / name).read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: its panels' and its variables'."""
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+), \w+\)", variable["definition"])
            assert found, variable["definition"]
            exprs.append(found[1])
    return exprs


@pytest.mark.parametrize("name", DASHBOARDS)
def test_a_dashboard_imports_with_a_prometheus_datasource_input(name: str) -> None:
    board = dashboard(name)
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    assert board["schemaVersion"] >= 36  # Grafana 10
    uses = [p for p in panels(board) if p["type"] != "row"]
    uses += [t for p in uses for t in p.get("targets", [])]
    uses += [v for v in board["templating"]["list"] if v["type"] == "query"]
    assert uses and all(u["datasource"]["uid"] == "${DS_PROMETHEUS}" for u in uses)
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["title"].strip()


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_dashboard_query_is_valid_promql(name: str, tmp_path: Path) -> None:
    """promtool parses PromQL in rule files: each query becomes a recording rule."""
    rules = []
    for n, expr in enumerate(queries(dashboard(name))):
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": name, "rules": rules}]}, allow_unicode=True)
    )
    result = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboards_show_what_operators_and_the_governorship_asked_for() -> None:
    operations = " ".join(queries(dashboard("grafana-operations.json")))
    for metric in [
        "up",
        "acikkapi_http_requests_total",
        "acikkapi_http_request_seconds_bucket",
        "acikkapi_events_consumed_total",
        "acikkapi_consumer_lag",
        "acikkapi_dead_letters_total",
        "acikkapi_notifications_sent_total",
        "acikkapi_notifications_failed_total",
        "acikkapi_sms_segments_sum",
        "acikkapi_notifications_waiting",
    ]:
        assert re.search(rf"\b{metric}\b", operations), metric
    governorship = " ".join(queries(dashboard("grafana-governorship.json")))
    for metric in [
        "acikkapi_applications_open",
        "acikkapi_applications_overdue",
        "acikkapi_deadline_misses_total",
        "acikkapi_intake_applications_total",
        "acikkapi_ratings_total",
    ]:
        assert re.search(rf"\b{metric}\b", governorship), metric


def test_dashboards_and_alerts_name_only_exported_metrics() -> None:
    exported = {m.name for m in REGISTRY.collect()} | {"up"}
    text = (MONITORING / "alerts.yml").read_text() + " ".join(
        expr for name in DASHBOARDS for expr in queries(dashboard(name))
    )
    named = set(re.findall(r"\b(acikkapi_[a-z_]+|up)\b", text))
    assert len(named) > 20
    for name in named:
        base = re.sub(r"_(bucket|total|sum|count)$", "", name)
        assert name in exported or base in exported, name
