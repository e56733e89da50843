"""The local stack's supervisor (deploy/local/stack.py): the settings it hands on, the ports it
refuses, the PIDs it trusts, and one real component started and stopped."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from deploy.local.stack import Stack, StackError, StackSettings
from services.common.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_on(tmp_path: Path, **local: Any) -> Stack:
    settings = Settings(
        kafka_bootstrap="127.0.0.1:39092",
        mongo_uri="mongodb://127.0.0.1:37017",
        sms_gateway_url="http://127.0.0.1:33013/cgi-bin/sendsms",
        smtp_port=free_port(),
        notification_port=38004,
        tracking_port=38003,
    )
    return Stack(settings, StackSettings(data_dir=tmp_path, **local))


def test_the_services_get_the_stacks_addresses_and_reading_them_back_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stack_on(tmp_path, mongo_per_service=True)
    exported = stack.exports()

    assert exported["AK_KAFKA_BOOTSTRAP"] == "127.0.0.1:39092"
    assert exported["AK_SMS_DLR_BASE_URL"] == "http://127.0.0.1:38004"
    assert exported["AK_PUBLIC_TRACKING_URL"] == "http://127.0.0.1:38003/takip"
    # An nx-27017 of its own per service, beside the shared one.
    assert exported["AK_INTAKE_MONGO_URI"] == "mongodb://127.0.0.1:37028"
    assert exported["AK_REPORTING_MONGO_URI"] == "mongodb://127.0.0.1:37032"

    # `make test` sources these lines and calls the supervisor again: the same stack.
    for name, value in exported.items():
        monkeypatch.setenv(name, value)
    assert Stack().exports() == exported


def test_two_components_given_one_port_are_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    stack = stack_on(tmp_path, zookeeper_port=39092)  # Kafka's

    with pytest.raises(StackError, match="port 39092 is given to both zookeeper and kafka"):
        stack.start(["zookeeper"])
    assert not (tmp_path / "pids" / "zookeeper.pid").exists()


def test_a_port_another_process_holds_is_refused_with_its_owner(tmp_path: Path) -> None:
    stack = stack_on(tmp_path)
    port = stack.settings.smtp_port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(StackError, match=f"already in use by another process: smtp:{port}"):
            stack.start(["smtp"])
    assert stack.process("smtp") is None


def test_a_pid_file_naming_a_process_the_stack_did_not_start_is_not_trusted(
    tmp_path: Path,
) -> None:
    stack = stack_on(tmp_path)
    (tmp_path / "pids").mkdir()
    stack.pid_file("kafka").write_text(f"{os.getpid()}\n")  # alive, but not the broker

    assert stack.process("kafka") is None
    stack.stop(["kafka"])  # so it is never signalled
    assert not stack.pid_file("kafka").exists()


def test_a_component_starts_in_a_session_of_its_own_and_stops_by_its_pid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = stack_on(tmp_path)

    stack.start(["smtp"])  # the SMTP sink: a real process, ready when it listens

    proc = stack.process("smtp")
    assert proc is not None
    assert proc.pid != os.getpid() and os.getsid(proc.pid) == proc.pid
    assert "smtp_sink.py" in " ".join(proc.cmdline())
    assert stack.status() == 3  # the others are not running
    assert f"smtp               running  pid {proc.pid}" in capsys.readouterr().out

    stack.stop(["smtp"])

    assert not proc.is_running()
    assert not stack.pid_file("smtp").exists()
