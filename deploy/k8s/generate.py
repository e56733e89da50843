"""Writes the generated part of the Kubernetes deployment from the code's own tables, so the
cluster asks for exactly what the services use:

- `generated/services.yaml`: per service a ServiceAccount, Deployment, Service,
  HorizontalPodAutoscaler, PodDisruptionBudget (sizes: `SIZING` below, docs/capacity.md);
- `generated/kafka-topics.yaml`: a Strimzi KafkaTopic for every topic of
  services/common/topics.py, one queue per institution of the routing taxonomy, and the
  dead-letter topic beside each (partitions: `PARTITIONS` below, docs/capacity.md);
- `generated/kafka-users.yaml`: a Strimzi KafkaUser per service, for the channel adapters, per
  institution, and the operators' `admin`, with the ACLs of deploy/local/kafka_acl.py's table
  (the local broker's), so the two cannot drift.

    python -m deploy.k8s.generate            write the files
    python -m deploy.k8s.generate --check    exit 1 if a committed file differs

tests/unit/test_k8s_manifests.py runs the check, so a new topic, service or institution without
its regenerated manifests fails the tests.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.local import create_topics, kafka_acl
from services.common import kafka_auth, topics
from services.common.settings import SERVICE_PORTS

HERE = Path(__file__).resolve().parent
OUT = HERE / "generated"
NAMESPACE = "acikkapi"
CLUSTER = "acikkapi"  # the Strimzi Kafka resource's name (kafka/kafka.yaml)
IMAGE = "acikkapi:1.0.0"  # kustomization.yaml's `images` points it at the registry
PORT = 8000
PART_OF = "acikkapi"
STRIMZI_API = "kafka.strimzi.io/v1beta2"
REPLICAS = 3  # every topic on 3 brokers, acknowledged by 2 (min.insync.replicas)
MIN_INSYNC = 2
DAY_MS = 24 * 3600 * 1000

# Partitions in production (docs/capacity.md gives the arithmetic): a topic read at more than
# about 1,000 messages a second at the design load of 500 applications a second gets 12, so
# the slowest consumer group can run 12 processes; quiet topics 3; the compacted ones, read whole
# by every process, 1. Never fewer than the local stack's (topics.PARTITIONS).
PARTITIONS: dict[str, int] = {
    topics.SUBMISSIONS: 12,
    topics.REJECTIONS: 3,
    topics.RECEIVED: 12,
    topics.ROUTED: 12,
    topics.RESPONSES: 6,
    topics.STATUS: 12,
    topics.DEADLINES: 3,
    topics.NOTIFICATION_REQUESTS: 12,
    topics.NOTIFICATION_RESULTS: 12,
    topics.TAXONOMY: 1,
    topics.CALENDAR: 1,
    topics.RATINGS: 3,
}
INSTITUTION_PARTITIONS = topics.INSTITUTION_PARTITIONS
DLQ_PARTITIONS = topics.DLQ_PARTITIONS

# Retention of the topics topics.CONFIGS does not keep forever or compact: two weeks outlast a
# consumer stopped over the longest public holiday (Kurban Bayramı with bridge days, 9 days);
# an institution's queue and the dead letters a month, the time to notice and replay them.
TRANSIENT_RETENTION_MS = 14 * DAY_MS
INSTITUTION_RETENTION_MS = 30 * DAY_MS
DLQ_RETENTION_MS = 30 * DAY_MS


@dataclass(frozen=True)
class Sizing:
    """One service's pods: CPU and memory per process, and the autoscaler's range."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    min_replicas: int
    max_replicas: int


# docs/capacity.md: one process is about one core's work (one Python event loop); resident
# memory at rest was 75-126 MB per process (docs/performance.md). The autoscaler stops at the
# partitions of the busiest topic the service consumes (more consumers than partitions idle),
# except intake, whose HTTP path scales past its consumers, and reporting, whose fold runs in one
# leader (lease) and whose extra processes serve only the dashboards.
SIZING: dict[str, Sizing] = {
    "intake": Sizing("500m", "1", "256Mi", "512Mi", 2, 20),
    "routing": Sizing("250m", "1", "256Mi", "512Mi", 2, 12),
    "tracking": Sizing("500m", "1", "256Mi", "512Mi", 2, 12),
    "notification": Sizing("500m", "1", "256Mi", "512Mi", 2, 12),
    "reporting": Sizing("250m", "1", "384Mi", "1Gi", 2, 6),
}
CPU_TARGET = 70  # percent of the request, averaged over the pods

KAFKA_CA = "/etc/acikkapi/kafka-ca"
MONGO_CA = "/etc/acikkapi/mongo-ca"
MONGO_HOSTS = ",".join(f"mongo-{i}.mongo.{NAMESPACE}.svc:27017" for i in range(3))


def labels(service: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": service,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": "service",
    }


def meta(name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": extra or {}}


def mongo_uri(service: str) -> str:
    """The service's own MongoDB user (deploy/k8s/mongo: readWrite on its database only); the
    password comes from $(MONGO_PASSWORD), which Kubernetes fills in from the Secret."""
    return (
        f"mongodb://{service}:$(MONGO_PASSWORD)@{MONGO_HOSTS}/?replicaSet=rs0&authSource=admin"
        f"&tls=true&tlsCAFile={MONGO_CA}/ca.crt"
    )


def deployment(service: str) -> dict[str, Any]:
    size = SIZING[service]
    container = {
        "name": service,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", f"services.{service}"],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [
            {"configMapRef": {"name": "acikkapi-config"}},
            {"secretRef": {"name": "acikkapi-keys"}},
        ],
        "env": [
            {"name": "AK_KAFKA_USERNAME", "value": service},
            # Strimzi's User Operator writes the SCRAM password into a Secret named after the
            # KafkaUser (generated/kafka-users.yaml).
            {
                "name": "AK_KAFKA_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": service, "key": "password"}},
            },
            {
                "name": "MONGO_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "acikkapi-mongo-users", "key": service}},
            },
            {"name": "AK_MONGO_URI", "value": mongo_uri(service)},
        ],
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        # 503 until Kafka and MongoDB answer and the consumers run (services/common/service.py).
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": size.cpu_request, "memory": size.memory_request},
            "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "kafka-ca", "mountPath": KAFKA_CA, "readOnly": True},
            {"name": "mongo-ca", "mountPath": MONGO_CA, "readOnly": True},
        ],
    }
    pod = {
        "serviceAccountName": service,
        "automountServiceAccountToken": False,
        # uvicorn finishes its requests within 10 s (timeout_graceful_shutdown), FastStream
        # commits what it consumed.
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,  # the image's `acikkapi` user (deploy/Dockerfile)
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": service}},
            }
        ],
        "containers": [container],
        "volumes": [
            # prometheus_client's multiprocess folder and Python's temporary files.
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            # The Strimzi cluster CA that signed the brokers' certificates.
            {
                "name": "kafka-ca",
                "secret": {
                    "secretName": f"{CLUSTER}-cluster-ca-cert",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            },
            {
                "name": "mongo-ca",
                "secret": {
                    "secretName": "acikkapi-mongo-tls",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            },
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(service, labels(service)),
        "spec": {
            # No `replicas`: the HorizontalPodAutoscaler owns the count.
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app.kubernetes.io/name": service}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": labels(service)}, "spec": pod},
        },
    }


def service_objects(service: str) -> list[dict[str, Any]]:
    size = SIZING[service]
    selector = {"app.kubernetes.io/name": service}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(service, labels(service)),
            "automountServiceAccountToken": False,
        },
        deployment(service),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(service, labels(service)),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta(service, labels(service)),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service},
                "minReplicas": size.min_replicas,
                "maxReplicas": size.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": CPU_TARGET},
                        },
                    }
                ],
                # Consumers rebalance their partitions on every change: scale down slowly.
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 300,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                    }
                },
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(service, labels(service)),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        },
    ]


# --- Kafka ----------------------------------------------------------------------------------


def kube_name(name: str) -> str:
    """A Kafka name as a Kubernetes object name (lower case; DNS-1123 allows `.` and `-`)."""
    lowered = name.lower()
    if not all(c.isalnum() or c in ".-" for c in lowered):
        raise ValueError(f"{name!r} cannot name a Kubernetes object (only A-Z, 0-9, '.', '-')")
    return lowered


def topic_config(name: str) -> dict[str, str | int]:
    config: dict[str, str | int] = {"min.insync.replicas": MIN_INSYNC}
    base = name.removesuffix(".dlq")
    if name.endswith(".dlq"):
        config["retention.ms"] = DLQ_RETENTION_MS
    elif base in topics.CONFIGS:
        config |= topics.CONFIGS[base]
    elif base.startswith(topics.INSTITUTION_PREFIX):
        config["retention.ms"] = INSTITUTION_RETENTION_MS
    else:
        config["retention.ms"] = TRANSIENT_RETENTION_MS
    return config


def wanted_topics(codes: list[str]) -> dict[str, int]:
    """Every topic and its partitions: create_topics' list, with production's partitions."""
    local = create_topics.wanted_topics(codes)
    wanted = {}
    for name in local:
        if name.endswith(".dlq"):
            wanted[name] = DLQ_PARTITIONS
        elif name.startswith(topics.INSTITUTION_PREFIX):
            wanted[name] = INSTITUTION_PARTITIONS
        else:
            wanted[name] = PARTITIONS[name]
    return wanted


def kafka_topic(name: str, partitions: int) -> dict[str, Any]:
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaTopic",
        "metadata": meta(kube_name(name), {"strimzi.io/cluster": CLUSTER}),
        "spec": {
            "topicName": name,
            "partitions": partitions,
            "replicas": REPLICAS,
            "config": topic_config(name),
        },
    }


RESOURCE_TYPES = {
    kafka_acl.ResourceType.TOPIC: "topic",
    kafka_acl.ResourceType.GROUP: "group",
    kafka_acl.ResourceType.CLUSTER: "cluster",
}
PATTERNS = {kafka_acl.PatternType.LITERAL: "literal", kafka_acl.PatternType.PREFIXED: "prefix"}
OPERATIONS = {
    kafka_acl.Operation.READ: "Read",
    kafka_acl.Operation.WRITE: "Write",
    kafka_acl.Operation.CREATE: "Create",
    kafka_acl.Operation.IDEMPOTENT_WRITE: "IdempotentWrite",
}


def strimzi_acls(acls: set[kafka_acl.Acl]) -> list[dict[str, Any]]:
    """kafka_acl's ACLs of one user as a KafkaUser's `authorization.acls`, one rule per
    resource with its operations."""
    by_resource: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for acl in acls:
        kind = RESOURCE_TYPES[kafka_acl.ResourceType(acl.resource_type)]
        pattern = PATTERNS[kafka_acl.PatternType(acl.pattern)]
        by_resource[(kind, acl.name, pattern)].add(OPERATIONS[kafka_acl.Operation(acl.operation)])
    rules = []
    for (kind, name, pattern), operations in sorted(by_resource.items()):
        resource: dict[str, str] = {"type": kind}
        if kind != "cluster":
            resource |= {"name": name, "patternType": pattern}
        rules.append({"resource": resource, "operations": sorted(operations), "host": "*"})
    return rules


def user_name(user: str) -> str:
    """The KafkaUser (and so the broker's principal) of one user of kafka_acl's table: the
    same name, lower case (`inst-DESKI` → `inst-deski`), as Kubernetes names must be."""
    return kube_name(user)


def kafka_user(user: str, rights: kafka_acl.Rights | None, authentication: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"authentication": {"type": authentication}}
    if rights is not None:
        acls = kafka_acl.acls_of(user, rights)
        spec["authorization"] = {"type": "simple", "acls": strimzi_acls(acls)}
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": meta(user_name(user), {"strimzi.io/cluster": CLUSTER}),
        "spec": spec,
    }


def users(codes: list[str]) -> list[dict[str, Any]]:
    """The services and the channel adapters sign in with SCRAM-SHA-512 over TLS (port 9093);
    each institution with its own client certificate (mutual TLS, port 9094), which Strimzi's
    clients CA issues into the Secret named after the user. `admin` is the cluster's super
    user (kafka/kafka.yaml) for the operators' tools: no ACLs needed."""
    table = kafka_acl.table(codes)
    out = [kafka_user(kafka_auth.ADMIN, None, "scram-sha-512")]
    for user, rights in table.items():
        institution = user.startswith(kafka_auth.INSTITUTION_USER_PREFIX)
        out.append(kafka_user(user, rights, "tls" if institution else "scram-sha-512"))
    return out


# --- output ---------------------------------------------------------------------------------

HEADER = (
    "# Generated by `python -m deploy.k8s.generate` from the code's tables: do not edit by hand.\n"
    "# {what}\n"
)


class _NoAliases(yaml.SafeDumper):  # type: ignore[misc]
    """Writes a repeated value out again rather than as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(objects: list[dict[str, Any]], what: str) -> str:
    body: str = yaml.dump_all(
        objects, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=100
    )
    return HEADER.format(what=what) + "---\n" + body


def files() -> dict[Path, str]:
    codes = create_topics.institution_codes(create_topics.DEFAULT_TAXONOMY)
    services = [obj for name in SERVICE_PORTS for obj in service_objects(name)]
    topic_objects = [kafka_topic(n, p) for n, p in sorted(wanted_topics(codes).items())]
    return {
        OUT / "services.yaml": render(
            services, "The five services (sizes: SIZING in deploy/k8s/generate.py)."
        ),
        OUT / "kafka-topics.yaml": render(
            topic_objects,
            f"{len(topic_objects)} topics: services/common/topics.py, "
            f"{len(codes)} institutions of the taxonomy, a .dlq beside each.",
        ),
        OUT / "kafka-users.yaml": render(
            users(codes), "Users and ACLs: deploy/local/kafka_acl.py's table."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for path, text in files().items():
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.relative_to(HERE))
            continue
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE)}")
    if stale:
        print(
            "out of date: " + ", ".join(map(str, stale)) + " (run: python -m deploy.k8s.generate)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
