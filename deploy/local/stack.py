"""The local stack's supervisor: real Kafka and ZooKeeper, nx-27017 (MongoDB wire), Kannel with
its fake SMSC, an SMTP sink, the five services and Prometheus scraping them, all on 127.0.0.1,
all data under one folder.

    python -m deploy.local.stack start    start what is not running yet, wait until all is ready
    python -m deploy.local.stack stop     stop what this data folder's PID files name
    python -m deploy.local.stack status   one line per component; exit status 3 if one is down
    python -m deploy.local.stack env      `export AK_...=...` lines for tests and benchmarks

mirakuru starts each process in a session of its own, marked in its environment with this data
folder and its name, and waits until its check passes. A PID file is trusted, and its process
stopped, only while the PID still carries that mark: never a recycled PID, never the other stack
(`make run` and `make test` run side by side).

The services' addresses and ports are read from the services' own `Settings` (AK_KAFKA_BOOTSTRAP,
AK_MONGO_URI, AK_INTAKE_PORT, ...); what only this stack needs, from `StackSettings` below.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import yaml
from mirakuru import Executor
from mirakuru.base import ENV_UUID, cleanup_subprocesses
from mirakuru.exceptions import ExecutorError, ProcessExitedWithError
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.local import create_topics, kafka_acl
from services.common import kafka_auth
from services.common.settings import SERVICE_PORTS, Settings

# mirakuru SIGKILLs, on exit, every process whose mark contains the exiting PID as text: the
# stack's processes must outlive the supervisor, and their marks are not mirakuru's.
atexit.unregister(cleanup_subprocesses)

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "local"
KANNEL_BIN = Path("/usr/sbin")
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
PROMETHEUS = Path("/usr/bin/prometheus")  # Debian's (deploy/local/install.sh)
MONITORING = ROOT / "deploy" / "monitoring"
SERVICES = tuple(SERVICE_PORTS)

# On one small machine the five services share two cores. Intake and routing are the path a
# citizen waits on (the number, the institution's queue); notification, tracking and reporting
# run a little behind under load and catch up, so they yield the CPU first. In production each
# service has its own replicas and none of this applies.
NICENESS = {"intake": 0, "routing": 0, "tracking": 5, "notification": 5, "reporting": 10}


class StackSettings(BaseSettings):
    """What only the local stack needs (AK_ prefix); every other address is the services'."""

    model_config = SettingsConfigDict(env_prefix="AK_", extra="ignore")

    data_dir: Path = ROOT / ".ak" / "run"
    cache_dir: Path = ROOT / ".ak" / "cache"
    zookeeper_port: int = 2181
    kannel_admin_port: int = 13000
    kannel_admin_password: str = "acikkapi-admin"
    kannel_smsbox_port: int = 13001
    kannel_smsc_port: int = 10000
    # Each service an nx-27017 of its own, `mongo-<service>` on the MongoDB port + 10 + n: on
    # two cores that drained ~20 % faster (docs/performance.md). `make run` sets it; the choice
    # is remembered in the data folder, so stop, status and env follow it. Unset: as remembered.
    mongo_per_service: bool | None = None
    # Start no service: the tests start their own.
    stack_infra_only: bool = False
    # Seconds to wait for any one component.
    stack_timeout: float = 90.0
    # Intake takes the bursts: this many processes share its port.
    intake_workers: int = 2
    # Prometheus scrapes the services (not under stack_infra_only: there are none to scrape)
    # and evaluates deploy/monitoring/alerts.yml; it keeps this long a history.
    prometheus_port: int = 9090
    prometheus_retention: str = "2d"


@dataclass
class Component:
    """One process of the stack: how to start it and when it counts as ready."""

    name: str
    command: list[str]
    ready: Callable[[int], bool]  # given its PID
    what: str  # what `ready` waits for, for messages
    port: int | None = None  # the port it is known by
    also_binds: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None  # default: logs/<name>.log
    grace: float = 20.0  # seconds between TERM and KILL
    prepare: Callable[[], None] = lambda: None  # runs before a start, not when already running


class StackError(Exception):
    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


class Launch(Executor):
    """mirakuru's executor for one component: its mark in the environment, its output in its
    log, stdin closed, and ready when the component's own check says so."""

    def __init__(self, component: Component, mark: str, log: Path, timeout: float) -> None:
        self.component = component
        self._log_file = log.open("ab")
        super().__init__(
            component.command,
            envvars=component.env,
            cwd=str(ROOT),
            timeout=timeout,
            sleep=0.2,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self._uuid = mark  # mirakuru's own mark, made durable: it outlives this process

    def pre_start_check(self) -> bool:
        return False  # free ports were checked before anything started

    def start_process(self) -> int:
        """Starts the process without waiting (mirakuru's `start` also waits); its PID."""
        super(Executor, self).start()
        assert self.process is not None
        return self.process.pid

    def after_start_check(self) -> bool:
        return self.process is not None and self.component.ready(self.process.pid)

    @property
    def _popen_kwargs(self) -> dict[str, Any]:
        # A session of its own the thread-safe way: mirakuru's preexec_fn=os.setsid is not
        # safe while other threads start processes too (start() runs chains side by side).
        kwargs = dict(super()._popen_kwargs)
        kwargs.pop("preexec_fn", None)
        kwargs["start_new_session"] = True
        return kwargs

    def detach(self) -> None:
        """Leaves the process running after this supervisor exits."""
        self.process = None  # mirakuru kills what it still holds when it is collected
        self._log_file.close()


# --- checks --------------------------------------------------------------------------------


def listens(pid: int, port: int) -> bool:
    """True when that very process listens on the port: a bare "port open" would also be true
    for whatever else listens there, and call a component ready that has just died."""
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)


def service_ready(port: int, pid: int) -> bool:
    return listens(pid, port) and http_get(port, "/readyz")[0] == 200


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET on loopback; (0, "") when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        conn.close()


def port_of(url: str) -> int:
    port = urlsplit(url if "://" in url else f"//{url}").port
    if port is None:
        raise StackError(f"{url} names no port")
    return port


def unbindable(ports: Iterable[int]) -> list[int]:
    """The ports something already holds on 127.0.0.1. Binding, unlike connecting, disturbs
    nobody and also catches a port that is bound but not listening yet."""
    busy = []
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def render(name: str, values: dict[str, object], target: str) -> None:
    """Writes deploy/local/<name>.template with its @NAME@ placeholders filled in."""
    text = (HERE / f"{name}.template").read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    if unfilled := re.search(r"@[A-Z_]+@", text):
        raise StackError(f"unfilled placeholder in {name}.template: {unfilled[0]}")
    Path(target).write_text(text)


def alive(proc: psutil.Process) -> bool:
    """Still holding what it had. A zombie has let go of its ports and files: it has stopped,
    whenever its parent gets round to reaping it."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
        proc.wait(timeout=0)  # our own child (the tests' broker): reaped here
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass
    return False


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def say(text: str) -> None:
    print(f"[stack] {text}", flush=True)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- the stack -----------------------------------------------------------------------------


class Stack:
    """The components of one data folder's stack, started, stopped and reported on."""

    def __init__(self, settings: Settings | None = None, local: StackSettings | None = None):
        self.settings = settings or Settings()
        self.local = local or StackSettings()
        self.data = self.local.data_dir.resolve()
        self.python = ROOT / ".venv" / "bin" / "python"
        self.kafka_home = self.local.cache_dir / "kafka_2.12-2.3.0"
        self.zk_jars = self.local.cache_dir / "zookeeper-client" / "usr" / "share" / "java"
        remembered = self.data / "conf" / "mongo-per-service"
        per_service = self.local.mongo_per_service
        self.mongo_per_service = remembered.exists() if per_service is None else per_service
        self.kafka_port = port_of(self.settings.kafka_bootstrap)
        # How this stack's broker authenticates, whatever the shell says: SCRAM-SHA-512, every
        # user's password derived from the development secret (kafka_auth.dev_password).
        self.kafka_settings = self.settings.model_copy(
            update={
                "kafka_bootstrap": f"127.0.0.1:{self.kafka_port}",
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_username": "",
                "kafka_password": "",
            }
        )
        self.mongo_port = port_of(self.settings.mongo_uri)
        self.sendsms_port = port_of(self.settings.sms_gateway_url)
        self.service_ports = {svc: int(getattr(self.settings, f"{svc}_port")) for svc in SERVICES}
        self.own_mongo = (
            {f"mongo-{svc}": self.mongo_port + 10 + n for n, svc in enumerate(SERVICES, 1)}
            if self.mongo_per_service
            else {}
        )
        self.components = {c.name: c for c in self._components()}
        self._waiting: set[str] = set()
        self._lock = threading.Lock()

    # --- what runs ---

    def exports(self) -> dict[str, str]:
        """The settings the services, tests and benchmarks read for this stack."""
        local = self.local
        env = {
            "AK_DATA_DIR": str(self.data),
            "AK_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "AK_KAFKA_SECURITY_PROTOCOL": self.kafka_settings.kafka_security_protocol,
            "AK_KAFKA_SASL_MECHANISM": self.kafka_settings.kafka_sasl_mechanism,
            "AK_MONGO_URI": f"mongodb://127.0.0.1:{self.mongo_port}",
            "AK_SMS_GATEWAY_URL": f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms",
            "AK_SMS_USERNAME": self.settings.sms_username,
            "AK_SMS_PASSWORD": self.settings.sms_password,
            "AK_SMS_DLR_BASE_URL": f"http://127.0.0.1:{self.service_ports['notification']}",
            "AK_SMTP_HOST": "127.0.0.1",
            "AK_SMTP_PORT": str(self.settings.smtp_port),
            "AK_PUBLIC_TRACKING_URL": f"http://127.0.0.1:{self.service_ports['tracking']}/takip",
            # Quiet hours hold citizens' SMS overnight (docs/notifications.md): a local stack
            # and its tests send at any hour unless AK_SMS_QUIET_HOURS asks for them.
            "AK_SMS_QUIET_HOURS": os.environ.get("AK_SMS_QUIET_HOURS", ""),
            "AK_ZOOKEEPER_PORT": str(local.zookeeper_port),
            "AK_KANNEL_ADMIN_PORT": str(local.kannel_admin_port),
            "AK_KANNEL_SMSBOX_PORT": str(local.kannel_smsbox_port),
            "AK_KANNEL_SMSC_PORT": str(local.kannel_smsc_port),
            "AK_MONGO_PER_SERVICE": str(int(self.mongo_per_service)),
            "AK_PROMETHEUS_PORT": str(local.prometheus_port),
        }
        for svc, port in self.service_ports.items():
            env[f"AK_{svc.upper()}_PORT"] = str(port)
        for name, port in self.own_mongo.items():
            env[f"AK_{name.removeprefix('mongo-').upper()}_MONGO_URI"] = (
                f"mongodb://127.0.0.1:{port}"
            )
        return env

    def _components(self) -> list[Component]:
        data, local = self.data, self.local
        java_env = {"KAFKA_JMX_OPTS": " "}  # set but empty: no JMX ports on every interface
        components = [
            Component(
                "zookeeper",
                [
                    str(self.kafka_home / "bin" / "zookeeper-server-start.sh"),
                    self._conf("zookeeper"),
                ],
                lambda pid: listens(pid, local.zookeeper_port),
                f"port {local.zookeeper_port}",
                port=local.zookeeper_port,
                env={
                    **java_env,
                    "LOG_DIR": str(data / "logs" / "zookeeper"),
                    "KAFKA_HEAP_OPTS": "-Xmx256m -Xms256m",
                },
                prepare=self._write_zookeeper_conf,
            ),
            Component(
                "kafka",
                [str(self.kafka_home / "bin" / "kafka-server-start.sh"), self._conf("server")],
                self._kafka_started,
                f"broker started on {self.kafka_port}",
                port=self.kafka_port,
                env={
                    **java_env,
                    "LOG_DIR": str(data / "logs" / "kafka"),
                    "KAFKA_HEAP_OPTS": "-Xmx512m -Xms512m",
                    # On Java 17 the ZooKeeper 3.4 client inside Kafka 2.3 cannot resolve
                    # addresses; Debian's 3.8 client jars, first on the classpath, replace it.
                    "CLASSPATH": f"{self.zk_jars}/zookeeper.jar:{self.zk_jars}/zookeeper-jute.jar",
                },
                grace=60.0,  # a controlled shutdown moves nothing on one broker, but syncs
                prepare=self._write_kafka_conf,
            ),
            self._nx("mongo", self.mongo_port, niceness=0),
            *(
                self._nx(name, port, NICENESS[name.removeprefix("mongo-")])
                for name, port in self.own_mongo.items()
            ),
            Component(
                "bearerbox",
                [str(KANNEL_BIN / "bearerbox"), "-v", "1", self._conf("kannel")],
                self._bearerbox_ready,
                f"admin port {local.kannel_admin_port}",
                port=local.kannel_admin_port,
                also_binds=(local.kannel_smsbox_port, local.kannel_smsc_port),
                prepare=self._write_kannel_conf,
            ),
            # At -v 2 (warnings and up): at info smsbox logs every number and text (KVKK).
            Component(
                "smsbox",
                [str(KANNEL_BIN / "smsbox"), "-v", "2", self._conf("kannel")],
                lambda pid: (
                    listens(pid, self.sendsms_port)
                    and re.search(r"smsbox:.*on-line", self.kannel_status()) is not None
                ),
                f"sendsms port {self.sendsms_port}",
                port=self.sendsms_port,
            ),
            # -m 0: it makes up no SMS of its own; it prints what Kannel sends it
            # ("Got message N: <from to coding text>") into fakesmsc.out, kept across restarts.
            Component(
                "fakesmsc",
                [
                    *(str(FAKESMSC), "-H", "127.0.0.1", "-r", str(local.kannel_smsc_port)),
                    *("-i", "1", "-m", "0", "0 0 text unused"),
                ],
                lambda pid: f"FAKE:{local.kannel_smsc_port} (online" in self.kannel_status(),
                "SMSC online",
                log=data / "fakesmsc.out",
                grace=10.0,
            ),
            Component(
                "smtp",
                [
                    *(str(self.python), str(HERE / "smtp_sink.py"), "--host", "127.0.0.1"),
                    *("--port", str(self.settings.smtp_port), "--maildir", str(data / "mail")),
                ],
                lambda pid: listens(pid, self.settings.smtp_port),
                f"port {self.settings.smtp_port}",
                port=self.settings.smtp_port,
                grace=10.0,
            ),
        ]
        components.append(self._prometheus())
        for svc, port in self.service_ports.items():
            workers = self.local.intake_workers if svc == "intake" else 1
            components.append(
                Component(
                    svc,
                    ["nice", "-n", str(NICENESS[svc]), str(self.python), "-m", f"services.{svc}"],
                    partial(service_ready, port),
                    "/readyz 200",
                    port=port,
                    env={
                        **self.exports(),
                        "AK_HOST": "127.0.0.1",
                        "AK_WORKERS": str(workers),
                        # Each service as its own Kafka user, whatever the shell exported.
                        "AK_KAFKA_USERNAME": svc,
                        "AK_KAFKA_PASSWORD": "",
                    },
                )
            )
        return components

    def _nx(self, name: str, port: int, niceness: int) -> Component:
        # --data-dir: one SQLite file per logical database, so each service really owns its
        # database and writers of different services do not wait on one file lock. An own
        # database at its service's CPU priority: it works for its service, not ahead of intake.
        folder = self.data / name
        return Component(
            name,
            [
                *("nice", "-n", str(niceness), str(ROOT / ".venv" / "bin" / "nx-27017")),
                *("--data-dir", str(folder), "--host", "127.0.0.1", "-p", str(port)),
                *("--log-file", str(self._log(name)), "--pid-file", str(folder / "nx-27017.pid")),
            ],
            lambda pid: listens(pid, port),
            f"port {port}",
            port=port,
            prepare=lambda: folder.mkdir(parents=True, exist_ok=True),
        )

    def _conf(self, name: str) -> str:
        suffix = "conf" if name == "kannel" else "properties"
        return str(self.data / "conf" / f"{name}.{suffix}")

    def _log(self, name: str) -> Path:
        return self.data / "logs" / f"{name}.log"

    def _write_zookeeper_conf(self) -> None:
        (self.data / "zookeeper").mkdir(parents=True, exist_ok=True)
        Path(self._conf("zookeeper")).write_text(
            f"dataDir={self.data / 'zookeeper'}\n"
            f"clientPort={self.local.zookeeper_port}\n"
            "clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n"
        )

    def _write_kafka_conf(self) -> None:
        """The broker's configuration, and the SCRAM credentials it will check, which must be
        in ZooKeeper before it starts (the broker logs in to itself as admin)."""
        (self.data / "kafka").mkdir(parents=True, exist_ok=True)
        admin = kafka_auth.credentials(self.kafka_settings, kafka_auth.ADMIN)
        values = {
            "KAFKA_PORT": self.kafka_port,
            "DATA_DIR": self.data,
            "ZOOKEEPER_PORT": self.local.zookeeper_port,
            "KAFKA_ADMIN_USER": admin.username,
            "KAFKA_ADMIN_PASSWORD": admin.password,
        }
        conf = Path(self._conf("server"))
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        render("server.properties", values, str(conf))
        # For Kafka's own command-line tools (docs/runbook.md): `--command-config` this file.
        tools = self.data / "conf" / "admin-client.properties"
        tools.touch(mode=0o600)
        tools.chmod(0o600)
        tools.write_text(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{admin.username}" password="{admin.password}";\n'
        )
        started = time.monotonic()
        try:
            created = kafka_acl.ensure_credentials(
                self.kafka_tools(),
                kafka_acl.stack_logins(self.kafka_settings),
                self.kafka_settings.kafka_sasl_mechanism,
            )
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise StackError(f"Kafka users: {exc}") from exc
        if created:
            say(f"kafka: {created} SCRAM users set in {time.monotonic() - started:.1f} s")

    def kafka_tools(self) -> kafka_acl.KafkaTools:
        return kafka_acl.KafkaTools(
            kafka_home=self.kafka_home,
            zookeeper_jars=self.zk_jars,
            zookeeper=f"127.0.0.1:{self.local.zookeeper_port}",
            state=self.data / "zookeeper" / "acikkapi-scram-users.json",
        )

    def _prometheus(self) -> Component:
        port = self.local.prometheus_port
        return Component(
            "prometheus",
            [
                str(PROMETHEUS),
                f"--config.file={self.prometheus_dir() / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.data / 'prometheus'}",
                f"--storage.tsdb.retention.time={self.local.prometheus_retention}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            lambda pid: listens(pid, port) and http_get(port, "/-/ready")[0] == 200,
            f"/-/ready on {port}",
            port=port,
            prepare=self.write_prometheus_conf,
        )

    def prometheus_dir(self) -> Path:
        return self.data / "conf" / "prometheus"

    def prometheus_config(self) -> dict[str, Any]:
        """deploy/monitoring/prometheus.yml with this stack's service ports: one job, each
        target labelled with its service, the alert rules beside it."""
        targets = [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"service": svc}}
            for svc, port in self.service_ports.items()
        ]
        return {
            "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "acikkapi", "metrics_path": "/metrics", "static_configs": targets}
            ],
        }

    def write_prometheus_conf(self) -> None:
        if not PROMETHEUS.exists():
            raise StackError(f"{PROMETHEUS} is missing: make install (Debian's prometheus)")
        folder = self.prometheus_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (self.data / "prometheus").mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.prometheus_config(), sort_keys=False)
        (folder / "prometheus.yml").write_text(
            "# Written by deploy/local/stack.py at each start; edit deploy/monitoring/ instead.\n"
            + text
        )
        shutil.copyfile(MONITORING / "alerts.yml", folder / "alerts.yml")

    def _write_kannel_conf(self) -> None:
        local = self.local
        values: dict[str, object] = {
            "KANNEL_ADMIN_PORT": local.kannel_admin_port,
            "KANNEL_ADMIN_PASSWORD": local.kannel_admin_password,
            "KANNEL_SMSBOX_PORT": local.kannel_smsbox_port,
            "KANNEL_SENDSMS_PORT": self.sendsms_port,
            "KANNEL_SMSC_PORT": local.kannel_smsc_port,
            "SMS_USERNAME": self.settings.sms_username,
            "SMS_PASSWORD": self.settings.sms_password,
            "DATA_DIR": self.data,
        }
        render("kannel.conf", values, self._conf("kannel"))

    def _kafka_started(self, pid: int) -> bool:
        log = self._log("kafka")
        return listens(pid, self.kafka_port) and "started (kafka.server.KafkaServer)" in (
            log.read_text(errors="replace") if log.exists() else ""
        )

    def kannel_status(self) -> str:
        path = f"/status.txt?password={self.local.kannel_admin_password}"
        return http_get(self.local.kannel_admin_port, path)[1]

    # The fake SMSC's port is not probed by connecting: bearerbox would take the probe for the
    # fakesmsc client. Once status.txt lists the SMSC, its listening socket exists.
    def _bearerbox_ready(self, pid: int) -> bool:
        local = self.local
        return (
            listens(pid, local.kannel_admin_port)
            and listens(pid, local.kannel_smsbox_port)
            and f"FAKE:{local.kannel_smsc_port} " in self.kannel_status()
        )

    # --- processes ---

    def mark(self, name: str) -> str:
        return f"acikkapi:{self.data}:{name}:"

    def pid_file(self, name: str) -> Path:
        return self.data / "pids" / f"{name}.pid"

    def process(self, name: str) -> psutil.Process | None:
        """The running process of a component: the PID file's, while it carries the mark."""
        try:
            proc = psutil.Process(int(self.pid_file(name).read_text().strip()))
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc if proc.environ().get(ENV_UUID) == self.mark(name) else None
        except (OSError, ValueError, psutil.Error):
            return None

    def _marked(self, name: str) -> list[psutil.Process]:
        """Every process with the component's mark: its own, and what it started."""
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get(ENV_UUID) == self.mark(name):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    # --- start ---

    def start(self, names: Iterable[str] | None = None) -> None:
        """Starts what is not running yet, in dependency order, and waits until all is ready."""
        self._require_installed()
        wanted = list(names) if names is not None else self._default_names()
        for folder in ("conf", "logs", "pids"):
            (self.data / folder).mkdir(parents=True, exist_ok=True)
        remembered = self.data / "conf" / "mongo-per-service"
        if names is None:
            if self.mongo_per_service:
                remembered.touch()
            else:
                remembered.unlink(missing_ok=True)
        self._check_ports(wanted)
        say(f"data in {self.data}")
        started = time.monotonic()
        infra = [n for n in wanted if n not in SERVICES]
        # Four chains that do not wait for each other, then the services together.
        chains = [
            [n for n in infra if n in ("zookeeper", "kafka")],
            [n for n in infra if n == "mongo" or n in self.own_mongo],
            [n for n in infra if n in ("bearerbox", "smsbox", "fakesmsc")],
            [n for n in infra if n == "smtp"],
            [n for n in infra if n == "prometheus"],
        ]
        self._in_parallel([chain for chain in chains if chain], topics="kafka" in wanted)
        services = [n for n in wanted if n in SERVICES]
        if services:
            self._in_parallel([[svc] for svc in services], topics=False)
            say(f"services ready: {' '.join(services)}")
        say(f"stack up in {time.monotonic() - started:.0f} s")

    def _default_names(self) -> list[str]:
        names = list(self.components)
        if not self.local.stack_infra_only:
            return names
        return [n for n in names if n not in (*SERVICES, "prometheus")]

    def _require_installed(self) -> None:
        needed = [
            self.python,
            self.kafka_home / "bin" / "kafka-server-start.sh",
            self.zk_jars / "zookeeper.jar",
            KANNEL_BIN / "bearerbox",
            FAKESMSC,
        ]
        if missing := [str(p) for p in needed if not p.exists()]:
            raise StackError(f"the stack is not installed (make install): {', '.join(missing)}")

    def _check_ports(self, names: list[str]) -> None:
        """Two components given one port, or a port another process holds, would only fail
        later, halfway; both are refused before anything starts."""
        owner: dict[int, str] = {}
        for component in self.components.values():
            for port in filter(None, (component.port, *component.also_binds)):
                if port in owner:
                    raise StackError(
                        f"port {port} is given to both {owner[port]} and {component.name}"
                    )
                owner[port] = component.name
        wanted = [
            port
            for name in names
            if self.process(name) is None
            for port in filter(
                None, (self.components[name].port, *self.components[name].also_binds)
            )
        ]
        if busy := unbindable(wanted):
            held = ", ".join(f"{owner[port]}:{port}" for port in busy)
            raise StackError(
                f"port(s) already in use by another process: {held}\n"
                "choose other ports with the AK_* settings, or stop what holds them"
            )

    def _in_parallel(self, chains: list[list[str]], topics: bool) -> None:
        """Brings each chain up in order, the chains side by side; says every few seconds
        what it still waits for."""

        def run(chain: list[str]) -> None:
            for name in chain:
                self.bring_up(name)
                if name == "kafka" and topics:
                    self.create_topics()

        if not chains:
            return
        with ThreadPoolExecutor(max_workers=len(chains)) as pool:
            futures = [pool.submit(run, chain) for chain in chains]
            last_said = time.monotonic()
            while not all(f.done() for f in futures):
                time.sleep(0.2)
                if time.monotonic() - last_said >= 5 and self._waiting:
                    with self._lock:
                        say(f"waiting for: {', '.join(sorted(self._waiting))}")
                    last_said = time.monotonic()
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            error = errors[0]
            raise error if isinstance(error, StackError) else StackError(repr(error))

    def bring_up(self, name: str) -> None:
        component = self.components[name]
        started = time.monotonic()
        timeout = self.local.stack_timeout
        log = component.log or self._log(name)
        if (proc := self.process(name)) is not None:
            say(f"{name}: already running (pid {proc.pid})")
            if not wait_until(lambda: component.ready(proc.pid), timeout):
                raise StackError(f"{name}: no {component.what} after {timeout:g} s", log)
        else:
            component.prepare()
            if log.exists() and component.log is None:
                log.replace(log.with_name(log.name + ".1"))  # the earlier run's log, kept once
            launch = Launch(component, self.mark(name), log, timeout)
            self.pid_file(name).write_text(f"{launch.start_process()}\n")
            with self._lock:
                self._waiting.add(name)
            try:
                launch.wait_for(launch.check_subprocess)
            except ExecutorError as exc:
                # mirakuru has stopped what did not come up; its PID file goes with it.
                self.pid_file(name).unlink(missing_ok=True)
                if isinstance(exc, ProcessExitedWithError):
                    raise StackError(f"{name} exited while starting", log) from exc
                raise StackError(f"{name}: no {component.what} after {timeout:g} s", log) from exc
            finally:
                launch.detach()
                with self._lock:
                    self._waiting.discard(name)
        say(f"{name}: ready ({component.what}) in {time.monotonic() - started:.0f} s")

    def create_topics(self) -> None:
        """The topics, then the ACLs of kafka_acl's table (every taxonomy institution's too)."""
        say("creating topics")
        admin = kafka_auth.client_options(self.kafka_settings, kafka_auth.ADMIN)
        try:
            asyncio.run(
                create_topics.run(
                    admin,
                    create_topics.DEFAULT_TAXONOMY,
                    replication=1,
                    wait_seconds=self.local.stack_timeout,
                )
            )
        except SystemExit as exc:
            raise StackError(f"topic creation failed: {exc}", self._log("kafka")) from exc
        codes = create_topics.institution_codes(create_topics.DEFAULT_TAXONOMY)
        try:
            result = asyncio.run(kafka_acl.sync(admin, kafka_acl.table(codes)))
        except Exception as exc:
            raise StackError(f"ACLs: {exc!r}", self._log("kafka")) from exc
        say(f"ACLs: {result.created} created, {result.deleted} removed, {result.kept} kept")

    # --- stop ---

    def stop(self, names: Iterable[str] | None = None) -> None:
        """TERM, a grace period, then KILL; only ever a process this data folder's stack
        started. Newest first: services before what they use, Kafka before ZooKeeper (a
        broker's controlled shutdown needs it), Kannel's boxes before bearerbox."""
        chosen = set(names) if names is not None else set(self.components)
        order = [
            ["prometheus"],
            list(SERVICES),
            ["smtp", "fakesmsc"],
            ["smsbox"],
            ["bearerbox"],
            ["mongo", *self.own_mongo],
            ["kafka"],
            ["zookeeper"],
        ]
        for group in order:
            self._stop_together([name for name in group if name in chosen])
        if names is None:
            for pid_file in self.data.glob("mongo*/nx-27017.pid"):
                pid_file.unlink(missing_ok=True)
            say(f"stopped (data kept in {self.data})")

    def _stop_together(self, names: list[str]) -> None:
        running: dict[str, psutil.Process] = {}
        for name in names:
            if (proc := self.process(name)) is None:
                if self.pid_file(name).exists():
                    # Its main process is gone: what it started may not be (uvicorn workers).
                    for orphan in self._marked(name):
                        with contextlib.suppress(psutil.Error):
                            orphan.kill()
                self.pid_file(name).unlink(missing_ok=True)
                continue
            try:
                proc.terminate()
                running[name] = proc
            except psutil.NoSuchProcess:
                self.pid_file(name).unlink(missing_ok=True)
        if not running:
            return
        grace = max(self.components[name].grace for name in running)
        procs = list(running.values())
        wait_until(lambda: not any(map(alive, procs)), grace)
        for name, proc in running.items():
            if alive(proc):
                print(
                    f"[stack] warning: {name} (pid {proc.pid}) did not stop in {grace:g} s: KILL",
                    file=sys.stderr,
                )
                for marked in self._marked(name):
                    with contextlib.suppress(psutil.Error):
                        marked.kill()
        wait_until(lambda: not any(map(alive, procs)), 10)
        for name in running:
            self.pid_file(name).unlink(missing_ok=True)
            say(f"{name}: stopped")

    # --- status ---

    def status(self) -> int:
        """One line per component; 3 when one is not running (as `systemctl status`)."""
        code = 0
        for name, component in self.components.items():
            port = component.port or "-"
            detail = ""
            if name in SERVICES:
                detail = f" /readyz {http_get(self.service_ports[name], '/readyz', 3)[0] or '-'}"
            if (proc := self.process(name)) is not None:
                print(f"{name:<18} running  pid {proc.pid:<7} port {port!s:<6}{detail}")
            else:
                print(f"{name:<18} stopped  {'':<11} port {port}")
                code = 3
        print(f"data: {self.data}")
        return code


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) == 2 else ""
    if command not in ("start", "stop", "status", "env"):
        print("usage: python -m deploy.local.stack start|stop|status|env", file=sys.stderr)
        return 2
    # AK_PORT would put every service on one port; each takes its own AK_<NAME>_PORT.
    os.environ.pop("AK_PORT", None)
    stack = Stack()
    try:
        if command == "start":
            stack.start()
        elif command == "stop":
            stack.stop()
        elif command == "status":
            return stack.status()
        else:
            for name, value in stack.exports().items():
                print(f"export {name}={shlex.quote(value)}")
    except BrokenPipeError:  # `make status | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except StackError as exc:
        print(f"[stack] ERROR: {exc}", file=sys.stderr)
        if exc.log is not None and (lines := tail(exc.log)):
            print(f"--- last lines of {exc.log} ---\n{lines}\n---", file=sys.stderr)
        print("[stack] what did start keeps running; 'make stop' stops it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
