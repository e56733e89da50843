"""deploy/compose.yaml must name only services and settings that exist in the code."""

from __future__ import annotations

import base64
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
            module = ROOT / command[2].replace(".", "/")
            assert (module / "__main__.py").is_file() or module.with_suffix(".py").is_file(), name
        elif command[:1] == ["python"]:
            assert (ROOT / command[1]).is_file(), name
        elif command[:1] == ["bash"]:
            # A script mounted from deploy/: the mount's source must exist.
            mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in spec["volumes"])
            source = {target: src for src, target in mounts.items()}[command[1]]
            assert (ROOT / "deploy" / source).is_file(), name


def test_every_ak_setting_is_a_real_setting():
    fields = set(Settings.model_fields)
    # Read by deploy/kafka_setup.py and deploy/local/create_topics.py, not by the services.
    extra = {"AK_TOPIC_REPLICATION"}
    named: set[str] = set()
    for spec in COMPOSE["services"].values():
        named.update(k for k in (spec.get("environment") or {}) if k.startswith("AK_"))
    assert named, "compose names no settings"
    for var in named - extra:
        assert var[3:].lower() in fields, f"{var} is not a Settings field"
    for var in extra:
        assert var in (ROOT / "deploy" / "kafka_setup.py").read_text()


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
    # A KRaft cluster id is 16 bytes of URL-safe base64, or the storage tool refuses it.
    assert len(base64.urlsafe_b64decode(kafka["CLUSTER_ID"] + "==")) == 16
    assert "zookeeper" not in yaml.safe_dump(COMPOSE).lower()
    mongo_uri = COMPOSE["services"]["intake"]["environment"]["AK_MONGO_URI"]
    assert re.search(r"replicaSet=rs0", mongo_uri)


KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")


def test_every_kafka_listener_authenticates_and_no_acl_means_no():
    for node in KAFKA_NODES:
        env = COMPOSE["services"][node]["environment"]
        protocols = dict(
            p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        )
        listeners = [entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")]
        assert {protocols[name] for name in listeners} == {"SASL_PLAINTEXT"}, node
        assert "PLAINTEXT://" not in env["KAFKA_ADVERTISED_LISTENERS"].replace("BROKER://", "")
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "SCRAM-SHA-512"
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
        assert env["KAFKA_SUPER_USERS"] == "User:admin"
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        # The admin's SCRAM credential is made when the storage is formatted.
        assert COMPOSE["services"][node]["command"] == ["bash", "/opt/acikkapi/kafka-start.sh"]
        assert "--command-config" in " ".join(COMPOSE["services"][node]["healthcheck"]["test"])
    script = (ROOT / "deploy" / "compose" / "kafka-start.sh").read_text()
    assert "--add-scram" in script and "SCRAM-SHA-512=[name=admin" in script


def property_of(variable: str) -> str:
    """The apache/kafka image's rule, as kafka-start.sh repeats it."""
    name = variable.removeprefix("KAFKA_").replace("___", "-").replace("__", "@")
    return name.replace("_", ".").replace("@", "_").lower()


def test_the_jaas_settings_name_the_listeners_they_configure():
    env = COMPOSE["services"]["kafka-1"]["environment"]
    listeners = {e.split("://")[0].lower() for e in env["KAFKA_LISTENERS"].split(",")}
    jaas = [property_of(k) for k in env if k.endswith("_SASL_JAAS_CONFIG")]
    assert sorted(jaas) == [
        "listener.name.broker.scram-sha-512.sasl.jaas.config",
        "listener.name.controller.plain.sasl.jaas.config",
    ]
    assert {p.split(".")[2] for p in jaas} == listeners


def test_every_service_signs_in_as_its_own_kafka_user():
    users = COMPOSE["services"]["kafka-users"]["environment"]
    script = (ROOT / "deploy" / "compose" / "kafka-users.sh").read_text()
    for name in SERVICES:
        env = COMPOSE["services"][name]["environment"]
        assert env["AK_ENVIRONMENT"] == "production"
        assert env["AK_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["AK_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["AK_KAFKA_USERNAME"] == name
        password = f"AK_KAFKA_PASSWORD_{name.upper()}"
        assert env["AK_KAFKA_PASSWORD"].startswith("${" + password + ":?")
        assert users[f"PASSWORD_{name}"].startswith("${" + password + ":?")
        assert name in script.split("for user in ")[1].split(";")[0]
        depends = COMPOSE["services"][name]["depends_on"]
        assert depends["kafka-setup"] == {"condition": "service_completed_successfully"}
    assert "PASSWORD_adapter" in users


def test_the_users_exist_before_the_acls_and_the_acls_before_the_services():
    setup = COMPOSE["services"]["kafka-setup"]
    assert setup["command"] == ["python", "-m", "deploy.kafka_setup"]
    assert setup["depends_on"] == {"kafka-users": {"condition": "service_completed_successfully"}}
    assert setup["environment"]["AK_KAFKA_USERNAME"] == "admin"
    assert set(COMPOSE["services"]["kafka-users"]["depends_on"]) == set(KAFKA_NODES)


def test_the_users_script_knows_every_local_kafka_user():
    from deploy.local import kafka_acl
    from services.common import kafka_auth

    script = (ROOT / "deploy" / "compose" / "kafka-users.sh").read_text()
    loop = script.split("for user in ")[1].split(";")[0].split()
    assert set(loop) == {*kafka_acl.SERVICES, kafka_auth.ADAPTER}


def test_each_service_passes_production_mode_once_its_secrets_are_filled_in():
    """Compose runs the services in production mode: with every `${VAR:?…}` given a real value,
    nothing in the file itself is refused (services/common/production.py)."""
    from services.common.production import production_problems

    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnUVPjFZEvVvF8Q4y3e6y6l5w0ww+\n"
        "-----END PUBLIC KEY-----\n"
    )
    filled = {
        "AK_EDEVLET_PUBLIC_KEY": pem,
        "AK_OIDC_JWKS_URL": "https://kimlik.denizli.gov.tr/certs",
        "AK_OIDC_ISSUER": "https://kimlik.denizli.gov.tr",
        "AK_OIDC_AUDIENCE": "acikkapi",
    }
    for name in SERVICES:
        env = {}
        for key, value in COMPOSE["services"][name]["environment"].items():
            value = str(value)
            if value.startswith("${") and ":-" in value:
                value = value[2:-1].split(":-", 1)[1]  # the file's own default
            elif value.startswith("${"):
                value = filled.get(key, f"{key.lower()}-uretim-degeri-0123456789abcdef0123")
            env[key[3:].lower()] = value
        settings = Settings(**env)
        assert settings.production
        assert production_problems(settings) == [], name
