"""deploy/k8s, validated offline: every manifest parses and matches its schema (Kubernetes'
own kinds through kubernetes-validate's bundled schemas, Strimzi's through the JSON schemas
extracted from its CRDs into deploy/k8s/schemas), and the deployment asks for what the code
uses: every service probed, sized, autoscaled and protected from disruption, every topic a
KafkaTopic, every Kafka user the ACLs of the local broker's table."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy.k8s import generate
from deploy.local import create_topics, kafka_acl
from services.common import kafka_auth, topics
from services.common.production import production_problems
from services.common.settings import SERVICE_PORTS, Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas" / "strimzi-0.51.0"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
TEMPLATES = "secrets.template.yaml"
# Kubernetes releases the core kinds are checked against: the oldest still supported by the
# cloud providers at the time of writing, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", "1.37")
STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
SERVICES = tuple(SERVICE_PORTS)


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


MANIFEST_FILES = sorted(
    p for p in K8S.rglob("*.yaml") if "schemas" not in p.parts and p.name != "kustomization.yaml"
)
OBJECTS = [(p.relative_to(K8S).as_posix(), obj) for p in MANIFEST_FILES for obj in load(p)]
APPLIED = [obj for name, obj in OBJECTS if name != TEMPLATES]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in APPLIED if obj["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [obj for obj in of_kind(kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def strimzi_schema(kind: str, version: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{kind.lower()}-{version}.json").read_text())


# --- files and schemas ----------------------------------------------------------------------


def test_every_manifest_is_applied_by_the_kustomization_except_the_secret_templates():
    listed = set(KUSTOMIZATION["resources"])
    files = {p.relative_to(K8S).as_posix() for p in MANIFEST_FILES}
    assert files - listed == {TEMPLATES}
    assert listed <= files, "the kustomization names a file that does not exist"
    assert len(OBJECTS) > 300


def test_the_generated_manifests_are_the_generators_output():
    assert generate.main(["--check"]) == 0, "run: python -m deploy.k8s.generate"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kubernetes_object_is_valid_strictly(version):
    checked: Counter[str] = Counter()
    for source, obj in OBJECTS:
        if obj["kind"] in STRIMZI_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{source} {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        checked[obj["kind"]] += 1
    assert checked["Deployment"] == len(SERVICES)
    assert checked["HorizontalPodAutoscaler"] == len(SERVICES)
    assert set(checked) >= {"StatefulSet", "Job", "Secret", "NetworkPolicy", "Namespace"}


def test_the_validator_refuses_what_the_api_server_would():
    """The check above can fail: an unknown field and a wrong type are refused."""
    deployment = json.loads(json.dumps(named("Deployment", "intake")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["path"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    hpa = json.loads(json.dumps(named("HorizontalPodAutoscaler", "intake")))
    hpa["spec"]["maxReplicas"] = "many"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("version", ["v1beta2", "v1"])
def test_every_strimzi_resource_matches_its_crd(version):
    """As written (v1beta2), and as Strimzi 1.x's v1 API would take it."""
    validators = {
        kind: jsonschema.Draft7Validator(strimzi_schema(kind, version)) for kind in STRIMZI_KINDS
    }
    checked: Counter[str] = Counter()
    for source, obj in OBJECTS:
        if obj["kind"] not in STRIMZI_KINDS:
            continue
        assert obj["apiVersion"] == "kafka.strimzi.io/v1beta2", source
        candidate = obj | {"apiVersion": f"kafka.strimzi.io/{version}"}
        errors = sorted(validators[obj["kind"]].iter_errors(candidate), key=str)
        assert not errors, f"{source} {obj['kind']}/{obj['metadata']['name']}: {errors[0].message}"
        checked[obj["kind"]] += 1
    assert checked["Kafka"] == 1
    assert checked["KafkaNodePool"] == 2
    assert checked["KafkaTopic"] == len(create_topics.wanted_topics(institution_codes()))
    assert checked["KafkaUser"] == len(kafka_acl.table(institution_codes())) + 1  # + admin


def test_the_strimzi_schemas_refuse_mistakes():
    topic = json.loads(json.dumps(of_kind("KafkaTopic")[0]))
    topic["spec"]["partitionz"] = 3
    assert list(
        jsonschema.Draft7Validator(strimzi_schema("KafkaTopic", "v1beta2")).iter_errors(topic)
    )
    user = json.loads(json.dumps(named("KafkaUser", "intake")))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Peek"]
    assert list(
        jsonschema.Draft7Validator(strimzi_schema("KafkaUser", "v1beta2")).iter_errors(user)
    )
    upper = json.loads(json.dumps(named("KafkaUser", "inst-deski")))
    upper["metadata"]["name"] = "inst-DESKI"
    assert list(jsonschema.Draft7Validator(strimzi_schema("KafkaUser", "v1")).iter_errors(upper))


def test_the_schemas_name_their_source_version_and_licence():
    for path in SCHEMAS.glob("*.json"):
        comment = json.loads(path.read_text())["$comment"]
        assert "Strimzi 0.51.0" in comment and "Apache License 2.0" in comment, path.name


def test_object_names_are_unique():
    keys = Counter((obj["kind"], obj["metadata"]["name"]) for obj in APPLIED)
    assert [key for key, n in keys.items() if n > 1] == []


# --- the services ---------------------------------------------------------------------------


def container(service: str) -> dict[str, Any]:
    (only,) = named("Deployment", service)["spec"]["template"]["spec"]["containers"]
    return only


def test_every_service_runs_from_the_image_with_its_own_command():
    for service in SERVICES:
        spec = container(service)
        assert spec["image"].startswith("acikkapi:"), service
        assert spec["command"] == ["python", "-m", f"services.{service}"]
        assert (ROOT / "services" / service / "__main__.py").is_file()


def test_every_service_is_probed_and_sized():
    for service in SERVICES:
        spec = container(service)
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz", service
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz", service
        for kind in ("requests", "limits"):
            assert set(spec["resources"][kind]) == {"cpu", "memory"}, service
        assert spec["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_every_service_runs_unprivileged_on_a_read_only_root():
    for service in SERVICES:
        pod = named("Deployment", service)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        context = container(service)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"] for m in container(service)["volumeMounts"]}
        assert "/tmp" in mounts  # the metrics folder and temporary files
    assert "useradd --system --uid 10001" in (ROOT / "deploy" / "Dockerfile").read_text()


def test_every_service_has_a_service_an_autoscaler_and_a_disruption_budget():
    for service in SERVICES:
        labels = named("Deployment", service)["spec"]["template"]["metadata"]["labels"]
        selector = named("Service", service)["spec"]["selector"]
        assert selector.items() <= labels.items()
        hpa = named("HorizontalPodAutoscaler", service)["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": service,
        }
        assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
        assert "replicas" not in named("Deployment", service)["spec"], "the HPA owns the count"
        pdb = named("PodDisruptionBudget", service)["spec"]
        assert pdb["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["maxUnavailable"] < hpa["minReplicas"]


def test_consumers_never_scale_past_their_topics_partitions():
    consumed = {name: rights.consumes for name, rights in kafka_acl.SERVICES.items()}
    for service in ("routing", "tracking", "notification"):
        most = max(generate.PARTITIONS[t] for t in consumed[service])
        assert named("HorizontalPodAutoscaler", service)["spec"]["maxReplicas"] <= most


def env_of(service: str) -> dict[str, Any]:
    return {e["name"]: e for e in container(service)["env"]}


def test_every_service_connects_as_its_own_kafka_and_mongo_user():
    users = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
    for service in SERVICES:
        env = env_of(service)
        assert env["AK_KAFKA_USERNAME"]["value"] == service
        secret = env["AK_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
        # Strimzi writes a SCRAM user's password into a Secret of the user's name.
        assert secret == {"name": service, "key": "password"}
        assert users[service]["spec"]["authentication"]["type"] == "scram-sha-512"
        uri = env["AK_MONGO_URI"]["value"]
        assert uri.startswith(f"mongodb://{service}:$(MONGO_PASSWORD)@")
        assert "replicaSet=rs0" in uri and "tls=true" in uri
        names = [e["name"] for e in container(service)["env"]]
        assert names.index("MONGO_PASSWORD") < names.index("AK_MONGO_URI"), "$(...) order"
        init = named("ConfigMap", "mongo-init")["data"]["init.js"]
        assert f'"{service}"' in init and "acikkapi_${name}" in init
        assert Settings().database_name(service) == f"acikkapi_{service}"


def test_every_setting_named_is_a_real_setting():
    fields = set(Settings.model_fields)
    named_settings = set(named("ConfigMap", "acikkapi-config")["data"])
    for _, obj in OBJECTS:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == "acikkapi-keys":
            named_settings |= set(obj["stringData"])
    for service in SERVICES:
        named_settings |= {n for n in env_of(service) if n.startswith("AK_")}
    assert len(named_settings) > 25
    for var in named_settings:
        assert var.startswith("AK_") and var[3:].lower() in fields, var


def config_settings(**overrides: str) -> Settings:
    data = dict(named("ConfigMap", "acikkapi-config")["data"])
    keys = next(
        obj
        for name, obj in OBJECTS
        if name == TEMPLATES and obj["metadata"]["name"] == "acikkapi-keys"
    )
    data |= keys["stringData"] | {"AK_KAFKA_USERNAME": "intake", "AK_KAFKA_PASSWORD": "x" * 43}
    data |= overrides
    return Settings(**{k[3:].lower(): v for k, v in data.items()})


def test_production_mode_refuses_every_placeholder():
    problems = " ".join(production_problems(config_settings()))
    assert config_settings().production
    for var in (
        "AK_JWT_SECRET",
        "AK_PII_KEY",
        "AK_SMS_DLR_SECRET",
        "AK_SMS_PASSWORD",
        "AK_EDEVLET_PUBLIC_KEY",
        "AK_OIDC_ISSUER",
        "AK_OIDC_AUDIENCE",
        "AK_OIDC_JWKS_URL",
    ):
        assert var in problems, var


def test_filled_in_the_configuration_starts_in_production_mode():
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n"
    settings = config_settings(
        AK_JWT_SECRET="j" * 40,
        AK_PII_KEY="p" * 40,
        AK_SMS_DLR_SECRET="d" * 40,
        AK_SMS_PASSWORD="gateway-password",
        AK_EDEVLET_PUBLIC_KEY=pem,
        AK_OIDC_ISSUER="https://kimlik.denizli.gov.tr/realms/acikkapi",
        AK_OIDC_AUDIENCE="acikkapi",
        AK_OIDC_JWKS_URL="https://kimlik.denizli.gov.tr/realms/acikkapi/protocol/openid-connect/certs",
    )
    assert production_problems(settings) == []
    assert settings.kafka_security_protocol == "SASL_SSL"


# --- Kafka ----------------------------------------------------------------------------------


def institution_codes() -> list[str]:
    return create_topics.institution_codes(create_topics.DEFAULT_TAXONOMY)


def test_kafka_runs_in_kraft_mode_with_tls_scram_and_mutual_tls_listeners():
    kafka = named("Kafka", "acikkapi")
    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/kraft": "enabled",
        "strimzi.io/node-pools": "enabled",
    }
    roles = {tuple(p["spec"]["roles"]): p["spec"]["replicas"] for p in of_kind("KafkaNodePool")}
    assert roles == {("controller",): 3, ("broker",): 3}
    listeners = {lst["port"]: lst for lst in kafka["spec"]["kafka"]["listeners"]}
    assert listeners[9093]["tls"] and listeners[9093]["authentication"]["type"] == "scram-sha-512"
    assert listeners[9094]["tls"] and listeners[9094]["authentication"]["type"] == "tls"
    assert all(lst["tls"] for lst in listeners.values()), "no listener without TLS"
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple", "superUsers": ["admin"]}
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == 2 and config["default.replication.factor"] == 3
    bootstrap = named("ConfigMap", "acikkapi-config")["data"]["AK_KAFKA_BOOTSTRAP"]
    assert bootstrap == "acikkapi-kafka-bootstrap.acikkapi.svc:9093"


def test_every_topic_the_system_uses_has_a_kafka_topic():
    declared = {t["spec"]["topicName"]: t for t in of_kind("KafkaTopic")}
    statics = {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}
    statics -= {topics.INSTITUTION_PREFIX}
    assert statics == set(topics.PARTITIONS)  # no topic left out of the partition table
    wanted = create_topics.wanted_topics(institution_codes())
    assert set(declared) == set(wanted)
    for name in statics:
        assert topics.dlq(name) in declared
    for code in institution_codes():
        assert topics.institution_topic(code) in declared
        assert topics.dlq(topics.institution_topic(code)) in declared
    for name, topic in declared.items():
        spec = topic["spec"]
        assert spec["partitions"] >= wanted[name], name
        assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2, name
        assert topic["metadata"]["labels"] == {"strimzi.io/cluster": "acikkapi"}
        for key, value in topics.CONFIGS.get(name, {}).items():
            assert spec["config"][key] == value, name
        if "cleanup.policy" not in spec["config"]:
            assert "retention.ms" in spec["config"], name


def test_topic_and_user_names_map_to_kubernetes_names_one_to_one():
    assert generate.kube_name("acikkapi.institution.DESKI") == "acikkapi.institution.deski"
    with pytest.raises(ValueError):
        generate.kube_name("acikkapi.institution.ILCE_A")
    names = [t["metadata"]["name"] for t in of_kind("KafkaTopic")]
    assert len(set(names)) == len(names)


def strimzi_rules(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    rules = set()
    for acl in user["spec"].get("authorization", {}).get("acls", []):
        resource = acl["resource"]
        assert acl.get("type", "allow") == "allow" and acl["host"] == "*"
        for operation in acl["operations"]:
            rules.add(
                (
                    resource["type"],
                    resource.get("name", "kafka-cluster"),
                    resource.get("patternType", "literal"),
                    operation,
                )
            )
    return rules


def local_rules(user: str, rights: kafka_acl.Rights) -> set[tuple[str, str, str, str]]:
    """The local broker's ACLs (deploy/local/kafka_acl.py) in Strimzi's words."""
    kinds = {2: "topic", 3: "group", 4: "cluster"}
    patterns = {3: "literal", 4: "prefix"}
    operations = {3: "Read", 4: "Write", 5: "Create", 12: "IdempotentWrite"}
    return {
        (kinds[a.resource_type], a.name, patterns[a.pattern], operations[a.operation])
        for a in kafka_acl.acls_of(user, rights)
    }


def test_every_kafka_user_has_exactly_the_local_brokers_acls():
    users = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
    table = kafka_acl.table(institution_codes())
    assert set(users) == {user.lower() for user in table} | {kafka_auth.ADMIN}
    for user, rights in table.items():
        assert strimzi_rules(users[user.lower()]) == local_rules(user, rights), user
    assert "authorization" not in users[kafka_auth.ADMIN]["spec"]  # the super user


def test_an_institution_reads_only_its_queue_in_its_groups_and_answers():
    rules = strimzi_rules(named("KafkaUser", "inst-deski"))
    assert named("KafkaUser", "inst-deski")["spec"]["authentication"]["type"] == "tls"
    assert rules == {
        ("topic", "acikkapi.institution.DESKI", "literal", "Read"),
        ("group", "inst-DESKI", "prefix", "Read"),
        ("topic", topics.RESPONSES, "literal", "Write"),
        ("cluster", "kafka-cluster", "literal", "IdempotentWrite"),
    }
    assert len(of_kind("KafkaUser")) == len(institution_codes()) + len(SERVICES) + 2


# --- MongoDB --------------------------------------------------------------------------------


def test_mongodb_is_a_three_member_replica_set_with_auth_and_tls():
    statefulset = named("StatefulSet", "mongo")
    assert statefulset["spec"]["replicas"] == 3
    assert named("Service", "mongo")["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == "mongo"
    (mongod,) = statefulset["spec"]["template"]["spec"]["containers"]
    command = mongod["command"]
    for flag in ("--replSet=rs0", "--auth", "--tlsMode=requireTLS"):
        assert flag in command
    assert any(arg.startswith("--keyFile=") for arg in command)
    job = named("Job", "mongo-init")["spec"]["template"]["spec"]
    env = job["containers"][0]["env"]
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in env if "valueFrom" in e}
    assert refs == {"admin", *SERVICES}
    assert re.search(
        r'rs\.initiate\(\{_id: "rs0"', named("ConfigMap", "mongo-init")["data"]["init.js"]
    )


# --- references between objects -------------------------------------------------------------


def secret_references(pod: dict[str, Any]) -> set[tuple[str, str | None]]:
    """(Secret, key) pairs a pod spec reads; key None for a whole Secret."""
    refs: set[tuple[str, str | None]] = set()
    for box in pod.get("initContainers", []) + pod["containers"]:
        for env in box.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
        for source in box.get("envFrom", []):
            if "secretRef" in source:
                refs.add((source["secretRef"]["name"], None))
    for volume in pod.get("volumes", []):
        secret = volume.get("secret")
        if secret:
            items = secret.get("items") or [{"key": None}]
            refs |= {(secret["secretName"], item["key"]) for item in items}
    return refs


def test_every_secret_read_is_templated_or_made_by_strimzi():
    templated = {
        obj["metadata"]["name"]: set(obj["stringData"])
        for name, obj in OBJECTS
        if name == TEMPLATES and obj["kind"] == "Secret"
    }
    users = {
        u["metadata"]["name"]: u["spec"]["authentication"]["type"] for u in of_kind("KafkaUser")
    }
    pods = [d["spec"]["template"]["spec"] for d in of_kind("Deployment") + of_kind("StatefulSet")]
    pods += [j["spec"]["template"]["spec"] for j in of_kind("Job")]
    seen = set()
    for pod in pods:
        for secret, key in secret_references(pod):
            seen.add(secret)
            if secret in templated:
                assert key is None or key in templated[secret], (secret, key)
            elif secret == "acikkapi-cluster-ca-cert":  # Strimzi's cluster CA
                assert key == "ca.crt"
            else:  # Strimzi's User Operator: a SCRAM user's password
                assert users.get(secret) == "scram-sha-512" and key == "password", (secret, key)
    assert set(templated) <= seen, "a templated Secret nobody reads"


def test_the_network_policies_let_the_probes_and_the_services_through():
    services = named("NetworkPolicy", "acikkapi-services")["spec"]
    for service in SERVICES:
        labels = named("Deployment", service)["spec"]["template"]["metadata"]["labels"]
        assert services["podSelector"]["matchLabels"].items() <= labels.items()
        mongo_peers = named("NetworkPolicy", "mongo")["spec"]["ingress"][0]["from"]
        assert any(
            peer["podSelector"]["matchLabels"].items() <= labels.items() for peer in mongo_peers
        )
    assert services["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kustomize_renders_every_object():
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert len(objects) == len(APPLIED)
    images = {
        c["image"]
        for obj in objects
        if obj["kind"] == "Deployment"
        for c in obj["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"acikkapi:1.0.0"}
    assert {obj["metadata"].get("namespace") for obj in objects} == {"acikkapi", None}
