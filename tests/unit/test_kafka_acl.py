"""The table of Kafka users and rights (deploy/local/kafka_acl.py) against the topics of
services/common/topics.py and the services' own subscriptions, and the credentials every client
is given (services/common/kafka_auth.py)."""

from __future__ import annotations

import importlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from deploy.local import create_topics, kafka_acl
from deploy.local.kafka_acl import Acl, Operation, PatternType, ResourceType
from deploy.local.stack import render
from services.common import compacted, kafka_auth, topics
from services.common.settings import SERVICE_PORTS, Settings

CODES = create_topics.institution_codes(create_topics.DEFAULT_TAXONOMY)
TABLE = kafka_acl.table(CODES)


def topic_acls(operation: int) -> dict[str, set[str]]:
    """topic or prefix → users with that operation on it."""
    found: dict[str, set[str]] = defaultdict(set)
    for acl in kafka_acl.desired_acls(TABLE):
        if acl.resource_type == ResourceType.TOPIC and acl.operation == operation:
            found[acl.name].add(acl.principal.removeprefix("User:"))
    return found


def allowed(operation: int, topic: str) -> set[str]:
    """Who may do `operation` on `topic`, literal and prefixed ACLs together."""
    users: set[str] = set()
    for acl in kafka_acl.desired_acls(TABLE):
        if acl.resource_type != ResourceType.TOPIC or acl.operation != operation:
            continue
        literal = acl.pattern == PatternType.LITERAL and acl.name == topic
        if literal or (acl.pattern == PatternType.PREFIXED and topic.startswith(acl.name)):
            users.add(acl.principal.removeprefix("User:"))
    return users


def test_every_topic_of_the_contract_is_created_by_the_stack() -> None:
    named = {
        value
        for name, value in vars(topics).items()
        if name.isupper() and isinstance(value, str) and value.startswith("acikkapi.")
    }
    assert named - {topics.INSTITUTION_PREFIX} == set(topics.PARTITIONS)


@pytest.mark.parametrize("topic", sorted(topics.PARTITIONS))
def test_every_topic_has_a_writer_and_a_reader(topic: str) -> None:
    assert allowed(Operation.WRITE, topic), f"nobody may write {topic}"
    assert allowed(Operation.READ, topic), f"nobody may read {topic}"


def test_every_institution_queue_is_written_by_routing_and_read_by_that_institution_alone() -> None:
    assert len(CODES) > 50
    for code in CODES:
        queue = topics.institution_topic(code)
        assert allowed(Operation.WRITE, queue) == {"routing"}
        assert allowed(Operation.READ, queue) == {kafka_auth.institution_user(code)}


def test_a_consumers_dead_letters_are_written_by_that_consumer_alone() -> None:
    for user, rights in kafka_acl.SERVICES.items():
        for topic in rights.consumes:
            assert user in allowed(Operation.WRITE, topics.dlq(topic)), (user, topic)
    readers_of = {t: allowed(Operation.READ, t) for t in topics.PARTITIONS}
    for topic, readers in readers_of.items():
        service_readers = readers & set(kafka_acl.SERVICES)
        writers = allowed(Operation.WRITE, topics.dlq(topic))
        assert writers == service_readers - _group_less_readers(topic), topic


def _group_less_readers(topic: str) -> set[str]:
    return {user for user, r in kafka_acl.SERVICES.items() if topic in r.follows}


def test_an_institution_reads_its_queue_and_writes_only_responses() -> None:
    who = "User:inst-DESKI"
    assert kafka_acl.acls_of("inst-DESKI", kafka_acl.institution_rights("DESKI")) == {
        Acl(who, ResourceType.TOPIC, "acikkapi.institution.DESKI", PatternType.LITERAL, 3),
        Acl(who, ResourceType.TOPIC, "acikkapi.applications.responses", PatternType.LITERAL, 4),
        Acl(who, ResourceType.GROUP, "inst-DESKI", PatternType.PREFIXED, Operation.READ),
        Acl(who, ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL, 12),
    }


def test_only_channel_adapters_submit_and_no_institution_does() -> None:
    assert allowed(Operation.WRITE, topics.SUBMISSIONS) == {kafka_auth.ADAPTER}
    adapter = kafka_acl.acls_of(kafka_auth.ADAPTER, kafka_acl.ADAPTER)
    assert {(a.name, a.operation) for a in adapter if a.resource_type == ResourceType.TOPIC} == {
        (topics.SUBMISSIONS, Operation.WRITE),
        (topics.REJECTIONS, Operation.READ),
    }


def test_nobody_but_routing_creates_topics_and_only_institution_queues() -> None:
    creators = topic_acls(Operation.CREATE)
    assert creators == {topics.INSTITUTION_PREFIX: {"routing"}}


def _wiring(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[set[str], set[str], set[str], set[tuple[str, str]]]:
    """What a service's code subscribes to (topics, groups), declares it publishes, and reads
    whole without a group (CompactedView: the user it connects as, and the topic)."""
    followed: set[tuple[str, str]] = set()
    original = compacted.CompactedView.__init__

    def recording(self: Any, kafka: Any, topic: str, *args: Any, **kwargs: Any) -> None:
        followed.add((kafka["sasl_plain_username"], topic))
        original(self, kafka, topic, *args, **kwargs)

    monkeypatch.setattr(compacted.CompactedView, "__init__", recording)
    app = importlib.import_module(f"services.{service}.app").build_app(Settings())
    broker = app.state.runtime.broker
    reads = {t.name for s in broker.subscribers for t in s.topics}
    groups = {s.group_id for s in broker.subscribers}
    writes = {p.topic.replace("{CODE}", "") for p in broker.publishers}
    return reads, groups, writes, followed


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_each_service_may_use_exactly_what_its_code_subscribes_to_and_publishes(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription or publication added without its ACL fails here, not on the broker."""
    reads, groups, writes, followed = _wiring(service, monkeypatch)
    rights = kafka_acl.SERVICES[service]
    assert reads == set(rights.consumes)
    assert followed == {(service, topic) for topic in rights.follows}
    assert all(group.startswith(rights.groups) for group in groups), groups
    assert writes == set(rights.produces) | set(rights.produces_prefixed)


def test_sync_plans_only_the_difference_and_leaves_other_principals_alone() -> None:
    users = {"inst-DESKI": kafka_acl.institution_rights("DESKI")}
    wanted = kafka_acl.desired_acls(users)
    stray = Acl("User:inst-DESKI", ResourceType.TOPIC, topics.SUBMISSIONS, PatternType.LITERAL, 4)
    foreign = Acl("User:someone", ResourceType.TOPIC, topics.SUBMISSIONS, PatternType.LITERAL, 4)
    # An institution given its user by hand, outside the taxonomy: its rights are kept, its
    # stray ones go.
    extra = kafka_acl.acls_of("inst-NEW", kafka_acl.institution_rights("NEW"))
    extra_stray = Acl("User:inst-NEW", ResourceType.TOPIC, topics.STATUS, PatternType.LITERAL, 3)
    existing = set(list(wanted)[:2]) | {stray, foreign, extra_stray} | extra
    create, delete = kafka_acl.plan(existing, users)
    assert create == wanted - existing
    assert delete == {stray, extra_stray}
    assert kafka_acl.plan(wanted | extra | {foreign}, users) == (set(), set())


def test_the_local_passwords_are_derived_per_user_and_secret() -> None:
    one = kafka_auth.dev_password("s1", "intake")
    assert one == kafka_auth.dev_password("s1", "intake")
    assert one != kafka_auth.dev_password("s1", "routing")
    assert one != kafka_auth.dev_password("s2", "intake")
    assert len(one) >= 40 and one.replace("-", "").replace("_", "").isalnum()


def test_a_process_connects_as_its_own_user_unless_told_otherwise() -> None:
    local = Settings(kafka_bootstrap="127.0.0.1:1")
    options = kafka_auth.client_options(local, "routing")
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "routing"
    assert options["sasl_plain_password"] == kafka_auth.dev_password(
        local.kafka_dev_secret, "routing"
    )
    configured = Settings(kafka_username="svc-routing", kafka_password="s3cret")
    login = kafka_auth.credentials(configured, "routing")
    assert (login.username, login.password) == ("svc-routing", "s3cret")
    assert "s3cret" not in repr(login)
    security = kafka_auth.broker_security(configured, "routing")
    assert security is not None and security.get_requirement() == [{"scram512": []}]
    plain = Settings(kafka_security_protocol="PLAINTEXT")
    assert "sasl_mechanism" not in kafka_auth.client_options(plain, "routing")
    assert kafka_auth.broker_security(plain, "routing") is None


def test_institution_users_are_named_from_valid_codes_only() -> None:
    assert kafka_auth.institution_user("DESKI") == "inst-DESKI"
    assert kafka_acl.institution_of("User:inst-DESKI") == "DESKI"
    assert kafka_acl.institution_of("User:intake") is None
    with pytest.raises(ValueError):
        kafka_auth.institution_user("deski; rm")


def test_many_acls_go_in_one_create_request() -> None:
    acls = kafka_acl.desired_acls(TABLE)
    request = kafka_acl._CreateAcls(acls).prepare({30: (0, 1)})
    assert request.API_VERSION == 1
    assert len(request.creations) == len(acls)


def test_the_local_broker_listens_only_for_authenticated_clients(tmp_path: Path) -> None:
    target = tmp_path / "server.properties"
    values = {"KAFKA_PORT": 9092, "DATA_DIR": tmp_path, "ZOOKEEPER_PORT": 2181}
    values |= {"KAFKA_ADMIN_USER": "admin", "KAFKA_ADMIN_PASSWORD": "pw"}
    render("server.properties", values, str(target))
    conf = dict(line.split("=", 1) for line in target.read_text().splitlines() if "=" in line[:60])
    assert conf["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092"
    assert conf["advertised.listeners"] == conf["listeners"]
    assert conf["security.inter.broker.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert conf["authorizer.class.name"] == "kafka.security.auth.SimpleAclAuthorizer"
    assert conf["allow.everyone.if.no.acl.found"] == "false"
    assert conf["super.users"] == "User:admin"
    jaas = conf["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert 'username="admin" password="pw";' in jaas
