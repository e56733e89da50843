"""Prepares a Kafka cluster for the services as its super user: creates every topic
(deploy/local/create_topics.py) and makes the broker's ACLs those of deploy/local/kafka_acl.py's
table (the services, the channel adapters, each institution of the taxonomy). Idempotent.

    AK_KAFKA_USERNAME=admin AK_KAFKA_PASSWORD=... python -m deploy.kafka_setup --replication 3

deploy/compose.yaml runs it at every start, after the users' SCRAM credentials exist
(deploy/compose/kafka-users.sh). On Kubernetes, Strimzi's operators do the same from the
KafkaTopic and KafkaUser resources (deploy/k8s).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from deploy.local import create_topics, kafka_acl
from services.common import kafka_auth
from services.common.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--replication", type=int, default=int(os.environ.get("AK_TOPIC_REPLICATION", "3"))
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the brokers")
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.kafka_username or not settings.kafka_password:
        raise SystemExit("AK_KAFKA_USERNAME and AK_KAFKA_PASSWORD must name the super user")
    admin = kafka_auth.client_options(settings, kafka_auth.ADMIN)
    taxonomy = create_topics.DEFAULT_TAXONOMY
    asyncio.run(create_topics.run(admin, taxonomy, args.replication, args.timeout))
    users = kafka_acl.table(create_topics.institution_codes(taxonomy))
    result = asyncio.run(kafka_acl.sync(admin, users))
    print(f"ACLs: {result.created} created, {result.deleted} removed, {result.kept} kept")


if __name__ == "__main__":
    main()
