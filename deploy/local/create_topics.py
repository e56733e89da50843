"""Creates the Kafka topics of the local stack with explicit partition counts, idempotently.

The broker runs with `auto.create.topics.enable=false`, as a production cluster should, so
every topic a service publishes to must exist first: the static topics of
services/common/topics.py, one queue per institution of the routing taxonomy, and a
dead-letter topic beside each of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from services.common import kafka_auth, topics
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TAXONOMY = ROOT / "services" / "routing" / "data" / "taxonomy_denizli.json"


def institution_codes(taxonomy: Path) -> list[str]:
    """Institution codes of the routing taxonomy; none (with a warning) if it is not there yet."""
    if not taxonomy.is_file():
        print(f"warning: {taxonomy} not found: no institution topics created", file=sys.stderr)
        return []
    data = json.loads(taxonomy.read_text(encoding="utf-8"))
    return sorted({item["code"] for item in data.get("institutions", [])})


def wanted_topics(codes: list[str]) -> dict[str, int]:
    """Every topic the stack needs, with its partition count."""
    wanted: dict[str, int] = {}
    for name, partitions in topics.PARTITIONS.items():
        wanted[name] = partitions
        wanted[topics.dlq(name)] = topics.DLQ_PARTITIONS
    for code in codes:
        name = topics.institution_topic(code)
        wanted[name] = topics.INSTITUTION_PARTITIONS
        wanted[topics.dlq(name)] = topics.DLQ_PARTITIONS
    return wanted


async def connect(kafka: Mapping[str, Any], deadline: float) -> AIOKafkaAdminClient:
    """An admin client on a broker that answers; retried until `deadline` while it boots.
    `kafka` is `kafka_auth.client_options(...)` of a user allowed to create topics."""
    bootstrap = kafka["bootstrap_servers"]
    while True:
        # Longer than create_topics' own timeout below, so the broker's answer is awaited.
        admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=70_000)
        try:
            await admin.start()
            await admin.list_topics()
            return admin
        except (KafkaError, OSError) as exc:
            await admin.close()
            if time.monotonic() > deadline:
                raise SystemExit(f"Kafka at {bootstrap} does not answer: {exc!r}") from exc
            await asyncio.sleep(0.3)


async def create_missing(
    admin: AIOKafkaAdminClient, wanted: dict[str, int], replication: int
) -> list[str]:
    existing = set(await admin.list_topics())
    new = [
        NewTopic(name, n, replication, topic_configs=topics.CONFIGS.get(name, {}))
        for name, n in sorted(wanted.items())
        if name not in existing
    ]
    if not new:
        return []
    response = await admin.create_topics(new, timeout_ms=60_000)
    for name, code, *rest in response.topic_errors:
        # Another process may have created the same topic meanwhile: that is fine.
        if code and for_code(code) is not TopicAlreadyExistsError:
            message = rest[0] if rest else ""
            raise SystemExit(f"could not create {name}: {for_code(code).__name__} {message}")
    return [t.name for t in new]


async def align_configs(admin: AIOKafkaAdminClient, names: list[str]) -> list[str]:
    """Give topics created before their settings changed (retention, compaction) the settings
    topics.py asks for now. Returns the topics altered."""
    wanted = {n: topics.CONFIGS[n] for n in names if n in topics.CONFIGS}
    if not wanted:
        return []
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
    altered = []
    for response in await admin.describe_configs(resources):
        for _, _, _, name, entries in response.resources:
            current = {entry[0]: entry[1] for entry in entries}
            if any(current.get(k) != v for k, v in wanted[name].items()):
                altered.append(name)
    if altered:
        # Kafka 2.3's AlterConfigs sets a topic's whole dynamic configuration at once.
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, configs=wanted[n]) for n in altered]
        )
    return altered


async def wait_for_leaders(
    admin: AIOKafkaAdminClient, wanted: dict[str, int], deadline: float
) -> None:
    """Block until every partition has a leader, so the first produce does not fail."""
    names = sorted(wanted)
    while True:
        pending = []
        for described in await admin.describe_topics(names):
            partitions = described.get("partitions", [])
            if (
                described.get("error_code")
                or len(partitions) < wanted[described["topic"]]
                or any(p.get("leader", -1) < 0 for p in partitions)
            ):
                pending.append(described["topic"])
        if not pending:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"topics without leaders: {', '.join(pending)}")
        await asyncio.sleep(0.2)


async def warn_on_partition_mismatch(admin: AIOKafkaAdminClient, wanted: dict[str, int]) -> None:
    # Partitions can only grow and keyed topics would reshuffle keys: report, never alter.
    for described in await admin.describe_topics(sorted(wanted)):
        have = len(described.get("partitions", []))
        if have != wanted[described["topic"]]:
            print(
                f"warning: {described['topic']} has {have} partitions, "
                f"topics.py asks for {wanted[described['topic']]}",
                file=sys.stderr,
            )


async def run(
    kafka: Mapping[str, Any], taxonomy: Path, replication: int, wait_seconds: float
) -> None:
    deadline = time.monotonic() + wait_seconds
    wanted = wanted_topics(institution_codes(taxonomy))
    admin = await connect(kafka, deadline)
    try:
        while True:
            try:
                created = await create_missing(admin, wanted, replication)
                break
            except (KafkaError, TimeoutError) as exc:
                # A busy broker may answer a large batch late; creating again is harmless.
                if time.monotonic() > deadline:
                    raise SystemExit(f"could not create topics: {exc!r}") from exc
                print(f"retrying topic creation after {exc!r}", file=sys.stderr)
        await wait_for_leaders(admin, wanted, deadline)
        await warn_on_partition_mismatch(admin, wanted)
        aligned = await align_configs(admin, sorted(wanted))
    finally:
        await admin.close()
    print(
        f"topics: {len(created)} created, {len(wanted) - len(created)} already there"
        + (f"; settings brought up to date: {', '.join(aligned)}" if aligned else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("AK_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    # 1 on the one-broker local stack; a real cluster (deploy/compose.yaml) sets 3.
    parser.add_argument(
        "--replication", type=int, default=int(os.environ.get("AK_TOPIC_REPLICATION", "1"))
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the broker")
    args = parser.parse_args()
    # As the broker's admin (AK_KAFKA_USERNAME / AK_KAFKA_PASSWORD name another such user).
    kafka = kafka_auth.client_options(Settings(), kafka_auth.ADMIN, bootstrap=args.bootstrap)
    asyncio.run(run(kafka, args.taxonomy, args.replication, args.timeout))


if __name__ == "__main__":
    main()
