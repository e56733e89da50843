"""deploy/compose.yaml must name only services and settings that exist in the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
SERVICES = ("intake", "routing", "tracking", "notification", "reporting")


def test_every_application_service_is_deployed_with_replicas_and_a_health_check():
    for name in SERVICES:
        spec = COMPOSE["services"][name]
        assert spec["command"] == ["python", "-m", f"services.{name}"]
        assert spec["deploy"]["replicas"] >= 2
        assert "/readyz" in " ".join(spec["healthcheck"]["test"])


def test_every_command_names_code_that_exists():
    for name, spec in COMPOSE["services"].items():
        command = spec.get("command") or []
        if command[:2] == ["python", "-m"]:
            module = command[2].replace(".", "/")
            assert (ROOT / module / "__main__.py").is_file(), name
        elif command[:1] == ["python"]:
            assert (ROOT / command[1]).is_file(), name


def test_every_ak_setting_is_a_real_setting():
    fields = set(Settings.model_fields)
    extra = {"AK_TOPIC_REPLICATION"}  # read by deploy/local/create_topics.py, not by services
    named: set[str] = set()
    for spec in COMPOSE["services"].values():
        named.update(k for k in (spec.get("environment") or {}) if k.startswith("AK_"))
    assert named, "compose names no settings"
    for var in named - extra:
        assert var[3:].lower() in fields, f"{var} is not a Settings field"
    for var in extra:
        assert var in (ROOT / "deploy" / "local" / "create_topics.py").read_text()


def test_contract_settings_are_all_wired():
    env = COMPOSE["services"]["intake"]["environment"]
    for var in (
        "AK_KAFKA_BOOTSTRAP",
        "AK_MONGO_URI",
        "AK_JWT_SECRET",
        "AK_PII_KEY",
        "AK_SMTP_HOST",
        "AK_SMTP_PORT",
        "AK_SMS_GATEWAY_URL",
    ):
        assert var in env


def test_kafka_runs_in_kraft_mode_and_mongo_as_a_replica_set():
    kafka = COMPOSE["services"]["kafka-1"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]
    assert "zookeeper" not in yaml.safe_dump(COMPOSE).lower()
    mongo_uri = COMPOSE["services"]["intake"]["environment"]["AK_MONGO_URI"]
    assert re.search(r"replicaSet=rs0", mongo_uri)
