"""Who may do what on the broker: one table of Kafka users and their topics, and the ACLs and
SCRAM credentials the local stack derives from it.

    python -m deploy.local.kafka_acl table                   the users and their rights
    python -m deploy.local.kafka_acl sync                    make the broker's ACLs the table's
    python -m deploy.local.kafka_acl add-institution CODE    an institution's user and ACLs;
                                                             prints how it connects

The broker refuses whatever no ACL allows (`allow.everyone.if.no.acl.found=false`), and only
`admin` is a super user. The table names each user's topics through services/common/topics.py
(tests/unit/test_kafka_acl.py checks that every topic has a writer and a reader, and that each
service may use exactly what its subscribers and publishers name), so a new topic or a new
subscription without its ACL fails the tests rather than the running system.

ACLs go over the Kafka protocol as `admin` (CreateAcls, DescribeAcls, DeleteAcls): one request
for all of them, and the same on any cluster. SCRAM credentials go into ZooKeeper with
`kafka-configs.sh`, the only way Kafka 2.3 has (a KRaft cluster takes them over the protocol).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v0,
    CreateAclsRequest_v1,
    DeleteAclsRequest_v0,
    DeleteAclsRequest_v1,
    DescribeAclsRequest,
)
from aiokafka.protocol.api import Request

from services.common import kafka_auth, topics
from services.common.kafka_auth import Credentials
from services.common.settings import SERVICE_PORTS, Settings

if TYPE_CHECKING:
    from deploy.local.stack import Stack

# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rights:
    """What one user may do on the broker; everything else is refused."""

    # Read in the user's consumer groups (Read on the topic; Describe is implied).
    consumes: tuple[str, ...] = ()
    # Read whole, without a group (services/common/compacted.py: every process of intake,
    # routing and tracking reads the taxonomy this way).
    follows: tuple[str, ...] = ()
    # Written (Write; Describe is implied). A service also writes `<topic>.dlq` of each topic
    # it consumes (services/common/messaging.py dead-letters there).
    produces: tuple[str, ...] = ()
    dead_letters: bool = False
    # Topics named by a prefix: written, and created (routing makes the queue of an
    # institution that a taxonomy change adds).
    produces_prefixed: tuple[str, ...] = ()
    creates_prefixed: tuple[str, ...] = ()
    # Consumer groups whose name starts with this (Read on the group).
    groups: str = ""


def service_group(service: str) -> str:
    """The prefix of a service's consumer groups (messaging.subscribe: `acikkapi-<service>`,
    intake's progress groups `acikkapi-intake-progress-...`)."""
    return f"acikkapi-{service}"


# docs/architecture.md, "Topics: who writes, who reads".
SERVICES: dict[str, Rights] = {
    "intake": Rights(
        consumes=(topics.SUBMISSIONS, topics.STATUS, topics.RESPONSES),
        follows=(topics.TAXONOMY,),
        produces=(topics.RECEIVED, topics.REJECTIONS, topics.NOTIFICATION_REQUESTS),
        dead_letters=True,
        groups=service_group("intake"),
    ),
    "routing": Rights(
        consumes=(topics.RECEIVED, topics.STATUS),
        # Its own announcements: which taxonomy version each province is on (taxonomy_store.py);
        # the leave days, for the deadline on an institution's queue (calendar_live.py).
        follows=(topics.TAXONOMY, topics.CALENDAR),
        produces=(topics.ROUTED, topics.TAXONOMY, topics.NOTIFICATION_REQUESTS),
        dead_letters=True,
        produces_prefixed=(topics.INSTITUTION_PREFIX,),
        creates_prefixed=(topics.INSTITUTION_PREFIX,),
        groups=service_group("routing"),
    ),
    "tracking": Rights(
        consumes=(topics.RECEIVED, topics.ROUTED, topics.RESPONSES, topics.NOTIFICATION_RESULTS),
        # The institutions a forward or a split may name (services/tracking/directory.py); the
        # leave days it makes itself, as every tracking process reads them (calendar_store.py).
        follows=(topics.TAXONOMY, topics.CALENDAR),
        produces=(
            topics.STATUS,
            topics.CALENDAR,
            topics.DEADLINES,
            topics.RESPONSES,
            topics.NOTIFICATION_REQUESTS,
            topics.RATINGS,
        ),
        dead_letters=True,
        groups=service_group("tracking"),
    ),
    "notification": Rights(
        consumes=(topics.NOTIFICATION_REQUESTS,),
        produces=(topics.NOTIFICATION_RESULTS,),
        dead_letters=True,
        groups=service_group("notification"),
    ),
    "reporting": Rights(
        consumes=(topics.RECEIVED, topics.ROUTED, topics.STATUS, topics.DEADLINES, topics.RATINGS),
        dead_letters=True,
        groups=service_group("reporting"),
    ),
}
assert set(SERVICES) == set(SERVICE_PORTS), "every service has its Kafka user"

# A channel adapter (web, mobile, e-Devlet gateway, ...) submits and reads its rejections.
ADAPTER = Rights(
    consumes=(topics.REJECTIONS,),
    produces=(topics.SUBMISSIONS,),
    groups=kafka_auth.ADAPTER,
)


def institution_rights(code: str) -> Rights:
    """An institution reads its own queue and answers; its groups are named `inst-<CODE>...`."""
    return Rights(
        consumes=(topics.institution_topic(code),),
        produces=(topics.RESPONSES,),
        groups=kafka_auth.institution_user(code),
    )


def table(institution_codes: Iterable[str]) -> dict[str, Rights]:
    """Every user and its rights: the services, the channel adapters, each institution."""
    users: dict[str, Rights] = dict(SERVICES)
    users[kafka_auth.ADAPTER] = ADAPTER
    for code in sorted(set(institution_codes)):
        users[kafka_auth.institution_user(code)] = institution_rights(code)
    return users


# --- ACLs ----------------------------------------------------------------------------------


class ResourceType(IntEnum):  # the Kafka protocol's codes
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class PatternType(IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    READ = 3
    WRITE = 4
    CREATE = 5
    IDEMPOTENT_WRITE = 12


class Permission(IntEnum):
    ANY = 1
    ALLOW = 3


CLUSTER = "kafka-cluster"


@dataclass(frozen=True, order=True)
class Acl:
    """One allowed operation of one user on one resource, from any host."""

    principal: str
    resource_type: int
    name: str
    pattern: int
    operation: int
    permission: int = Permission.ALLOW
    host: str = "*"

    def __str__(self) -> str:
        kind = ResourceType(self.resource_type).name.lower()
        prefix = "*" if self.pattern == PatternType.PREFIXED else ""
        operation = _name(Operation, self.operation)
        return f"{self.principal:<22} {operation:<16} {kind} {self.name}{prefix}"

    def fields(self) -> tuple[int, str, int, str, str, int, int]:
        """In the order of CreateAcls v1 and of DeleteAcls v1's filters."""
        return (
            self.resource_type,
            self.name,
            self.pattern,
            self.principal,
            self.host,
            self.operation,
            self.permission,
        )


def _name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


def principal(user: str) -> str:
    return f"User:{user}"


def acls_of(user: str, rights: Rights) -> set[Acl]:
    who = principal(user)
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    literal, prefixed = PatternType.LITERAL, PatternType.PREFIXED
    acls = {Acl(who, topic, name, literal, Operation.READ) for name in rights.consumes}
    acls |= {Acl(who, topic, name, literal, Operation.READ) for name in rights.follows}
    written = set(rights.produces)
    if rights.dead_letters:
        written |= {topics.dlq(name) for name in rights.consumes}
    acls |= {Acl(who, topic, name, literal, Operation.WRITE) for name in written}
    acls |= {Acl(who, topic, name, prefixed, Operation.WRITE) for name in rights.produces_prefixed}
    acls |= {Acl(who, topic, name, prefixed, Operation.CREATE) for name in rights.creates_prefixed}
    if rights.groups and rights.consumes:
        acls.add(Acl(who, group, rights.groups, prefixed, Operation.READ))
    if written or rights.produces_prefixed:
        # Idempotent producers (the services' and any current client's default) ask for a
        # producer id; Kafka before 2.8 wants IdempotentWrite on the cluster for that.
        acls.add(Acl(who, ResourceType.CLUSTER, CLUSTER, literal, Operation.IDEMPOTENT_WRITE))
    return acls


def desired_acls(users: Mapping[str, Rights]) -> set[Acl]:
    return set().union(*(acls_of(user, rights) for user, rights in users.items()))


class _CreateAcls(Request[CreateAclsRequest_v0 | CreateAclsRequest_v1]):  # type: ignore[misc]
    """CreateAcls with many ACLs in one request (aiokafka's own sends one at a time)."""

    API_KEY = 30

    def __init__(self, acls: Iterable[Acl]) -> None:
        self.acls = sorted(acls)

    def build(
        self, request_struct_class: type[CreateAclsRequest_v0 | CreateAclsRequest_v1]
    ) -> CreateAclsRequest_v0 | CreateAclsRequest_v1:
        if request_struct_class.API_VERSION < 1:
            raise IncompatibleBrokerVersion("prefixed ACLs need Kafka 2.0 or later")
        return request_struct_class([acl.fields() for acl in self.acls])


class _DeleteAcls(Request[DeleteAclsRequest_v0 | DeleteAclsRequest_v1]):  # type: ignore[misc]
    """DeleteAcls of exactly these ACLs (each filter matches one), in one request."""

    API_KEY = 31

    def __init__(self, acls: Iterable[Acl]) -> None:
        self.acls = sorted(acls)

    def build(
        self, request_struct_class: type[DeleteAclsRequest_v0 | DeleteAclsRequest_v1]
    ) -> DeleteAclsRequest_v0 | DeleteAclsRequest_v1:
        if request_struct_class.API_VERSION < 1:
            raise IncompatibleBrokerVersion("prefixed ACLs need Kafka 2.0 or later")
        return request_struct_class([acl.fields() for acl in self.acls])


def _raise_for(errors: Iterable[tuple[int, str | None]], what: str) -> None:
    failed = [f"{for_code(code).__name__}: {message or ''}" for code, message in errors if code]
    if failed:
        raise RuntimeError(f"{what} failed: {'; '.join(sorted(set(failed)))}")


class AclAdmin:
    """ACLs over the Kafka protocol, as a user allowed to change them (`admin`)."""

    def __init__(self, kafka: Mapping[str, Any]) -> None:
        self.client = AIOKafkaClient(**kafka, client_id="acikkapi-acl-admin")

    async def __aenter__(self) -> AclAdmin:
        await self.client.bootstrap()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def _send(self, request: Request[Any]) -> Any:
        return await self.client.send(self.client.get_random_node(), request)

    async def describe(self) -> set[Acl]:
        """Every ACL on the broker."""
        response = await self._send(
            DescribeAclsRequest(
                ResourceType.ANY, None, PatternType.ANY, None, None, Operation.ANY, Permission.ANY
            )
        )
        _raise_for([(response.error_code, response.error_message)], "DescribeAcls")
        found = set()
        for resource_type, name, pattern, entries in response.resources:
            for who, host, operation, permission in entries:
                found.add(Acl(who, resource_type, name, pattern, operation, permission, host))
        return found

    async def create(self, acls: set[Acl]) -> None:
        if acls:
            response = await self._send(_CreateAcls(acls))
            _raise_for(response.creation_responses, "CreateAcls")

    async def delete(self, acls: set[Acl]) -> None:
        if acls:
            response = await self._send(_DeleteAcls(acls))
            _raise_for([(r[0], r[1]) for r in response.filter_responses], "DeleteAcls")


def institution_of(who: str) -> str | None:
    """The code of an institution's principal (`User:inst-DESKI` → DESKI), else None."""
    prefix = principal(kafka_auth.INSTITUTION_USER_PREFIX)
    code = who.removeprefix(prefix) if who.startswith(prefix) else None
    return code if code and topics.INSTITUTION_CODE_RE.fullmatch(code) else None


@dataclass(frozen=True)
class SyncResult:
    created: int
    deleted: int
    kept: int


def plan(existing: set[Acl], users: Mapping[str, Rights]) -> tuple[set[Acl], set[Acl]]:
    """(to create, to delete) so that every user of the table, and every institution that has
    ACLs already (one added with `add-institution` and not in the taxonomy), has exactly its
    rights. Other principals' ACLs are not the table's business and stay."""
    wanted = desired_acls(users)
    managed = {principal(user) for user in users}
    for acl in existing:
        code = institution_of(acl.principal)
        if code is not None and acl.principal not in managed:
            managed.add(acl.principal)
            wanted |= acls_of(kafka_auth.institution_user(code), institution_rights(code))
    stale = {acl for acl in existing if acl.principal in managed and acl not in wanted}
    return wanted - existing, stale


async def sync(kafka: Mapping[str, Any], users: Mapping[str, Rights]) -> SyncResult:
    """Make the broker's ACLs for these users the table's; idempotent."""
    async with AclAdmin(kafka) as admin:
        existing = await admin.describe()
        missing, stale = plan(existing, users)
        await admin.create(missing)
        await admin.delete(stale)
    return SyncResult(len(missing), len(stale), len(existing) - len(stale))


async def grant(kafka: Mapping[str, Any], users: Mapping[str, Rights]) -> int:
    """Add what these users lack, touching nothing else; the number of ACLs added."""
    async with AclAdmin(kafka) as admin:
        missing = desired_acls(users) - await admin.describe()
        await admin.create(missing)
    return len(missing)


# --- SCRAM credentials ---------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaTools:
    """Kafka's command-line tools of the local installation and the ZooKeeper they talk to."""

    kafka_home: Path
    zookeeper_jars: Path  # Debian's 3.8 client jars: the bundled 3.4 client fails on Java 17
    zookeeper: str  # host:port
    state: Path  # which credentials are in place, kept beside ZooKeeper's own data

    def configs(self, *args: str) -> subprocess.CompletedProcess[str]:
        jars = self.zookeeper_jars
        env = os.environ | {
            "CLASSPATH": f"{jars}/zookeeper.jar:{jars}/zookeeper-jute.jar",
            "KAFKA_JMX_OPTS": " ",
            "KAFKA_HEAP_OPTS": "-Xmx128m",
            # A tool that runs for a second: the quick compiler and the simple collector save
            # about a third of its CPU over the broker's own options.
            "KAFKA_JVM_PERFORMANCE_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        }
        command = [str(self.kafka_home / "bin" / "kafka-configs.sh"), "--zookeeper", self.zookeeper]
        return subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )


def _fingerprint(mechanism: str, login: Credentials) -> str:
    return hashlib.sha256(f"{mechanism}:{login.username}:{login.password}".encode()).hexdigest()


def ensure_credentials(tools: KafkaTools, logins: Iterable[Credentials], mechanism: str) -> int:
    """Store each user's SCRAM credential in ZooKeeper, where the broker reads it (before or
    after it starts). `kafka-configs.sh` takes one user per JVM (about 1.5 s of CPU), so users
    whose credential is already in place are skipped and the rest run side by side. Returns
    how many were set."""
    tools.state.parent.mkdir(parents=True, exist_ok=True)
    # One writer of the state at a time, across threads and processes (two add-institution
    # calls at once); the lock is held while their credentials are set.
    with _LOCAL_LOCK, tools.state.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_credentials(tools, list(logins), mechanism)


_LOCAL_LOCK = threading.Lock()


def _ensure_credentials(tools: KafkaTools, logins: list[Credentials], mechanism: str) -> int:
    done: dict[str, str] = {}
    if tools.state.exists():
        done = json.loads(tools.state.read_text())
    todo = [login for login in logins if done.get(login.username) != _fingerprint(mechanism, login)]

    def store(login: Credentials) -> None:
        result = tools.configs(
            "--alter",
            "--add-config",
            f"{mechanism}=[password={login.password}]",
            "--entity-type",
            "users",
            "--entity-name",
            login.username,
        )
        if result.returncode != 0 or "Completed" not in result.stdout:
            # The tool repeats its arguments, the password among them, in its errors.
            said = (result.stderr or result.stdout).replace(login.password, "***")
            lines = [line for line in said.splitlines() if not line.startswith(("\tat ", "\t..."))]
            raise RuntimeError(
                f"kafka-configs.sh could not set {login.username}'s credential: "
                + "\n".join(lines[-8:])
            )

    if not todo:
        return 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(store, todo))
    done |= {login.username: _fingerprint(mechanism, login) for login in todo}
    written = tools.state.with_suffix(".tmp")
    written.write_text(json.dumps(done, indent=1, sort_keys=True))
    written.chmod(0o600)
    written.replace(tools.state)
    return len(todo)


def stack_logins(settings: Settings) -> list[Credentials]:
    """The users the local stack creates at every start: admin, the services, the adapter.
    Institutions get theirs with `add-institution` (one JVM each: 83 would take a minute)."""
    users = [kafka_auth.ADMIN, *SERVICES, kafka_auth.ADAPTER]
    return [kafka_auth.credentials(settings, user) for user in users]


# --- command line --------------------------------------------------------------------------


def _print_table(users: Mapping[str, Rights]) -> None:
    for acl in sorted(desired_acls(users), key=lambda a: (a.principal, a.resource_type, a.name)):
        print(acl)


async def add_institution(code: str, stack: Stack | None = None) -> Credentials:
    """Gives an institution its user on the local stack (by default the one the environment
    names, as `python -m deploy.local.stack` reads it): its SCRAM credential and its ACLs.
    Returns the credentials to hand over."""
    from deploy.local.stack import Stack  # the stack imports this module

    stack = stack or Stack()
    user = kafka_auth.institution_user(code)
    login = kafka_auth.credentials(stack.kafka_settings, user)
    mechanism = stack.kafka_settings.kafka_sasl_mechanism
    await asyncio.to_thread(ensure_credentials, stack.kafka_tools(), [login], mechanism)
    admin = kafka_auth.client_options(stack.kafka_settings, kafka_auth.ADMIN)
    await grant(admin, {user: institution_rights(code)})
    return login


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("table", help="every user's ACLs (services, adapter, taxonomy institutions)")
    sub.add_parser("sync", help="make the local broker's ACLs the table's")
    add = sub.add_parser("add-institution", help="an institution's user, password and ACLs")
    add.add_argument("code", help="institution code, e.g. DESKI")
    args = parser.parse_args(argv)

    from deploy.local import create_topics
    from deploy.local.stack import Stack

    codes = create_topics.institution_codes(create_topics.DEFAULT_TAXONOMY)
    if args.command == "table":
        _print_table(table(codes))
        return 0
    if args.command == "sync":
        stack = Stack()
        admin = kafka_auth.client_options(stack.kafka_settings, kafka_auth.ADMIN)
        result = asyncio.run(sync(admin, table(codes)))
        print(f"ACLs: {result.created} created, {result.deleted} removed, {result.kept} kept")
        return 0
    stack = Stack()
    settings = stack.kafka_settings
    try:
        login = asyncio.run(add_institution(args.code, stack))
    except ValueError as exc:
        print(f"geçersiz kurum kodu: {args.code!r} ({exc})", file=sys.stderr)
        return 2
    except (KafkaError, OSError, RuntimeError) as exc:
        print(
            f"kurum kullanıcısı oluşturulamadı: {exc}\n"
            f"Yerel Kafka ({settings.kafka_bootstrap}) ve ZooKeeper çalışıyor mu? "
            "(make run / make status)",
            file=sys.stderr,
        )
        return 1
    print(
        f"kurum:            {args.code}\n"
        f"kullanıcı:        {login.username}\n"
        f"parola:           {login.password}\n"
        f"bootstrap:        {settings.kafka_bootstrap}\n"
        f"güvenlik:         {settings.kafka_security_protocol}, {settings.kafka_sasl_mechanism}\n"
        f"okuyabileceği:    {topics.institution_topic(args.code)} "
        f"(tüketici grubu adı '{login.username}' ile başlamalı)\n"
        f"yazabileceği:     {topics.RESPONSES}\n"
        "bağlanma örnekleri: docs/institutions.md"
    )
    if args.code not in codes:
        print(
            f"not: {args.code} yönlendirme tablosunda yok; konusu, kurum tabloya eklenince "
            "routing tarafından açılır",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
