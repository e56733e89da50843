"""Chaos, long form: 10,000 applications at 200/s onto the intake topic while every service is
SIGKILLed and restarted once and the broker restarts, then every application checked end to end.

    .venv/bin/python bench/chaos.py                       # 10,000 at 200/s (several minutes)
    .venv/bin/python bench/chaos.py --count 2000 --rate 100

It is the scenario of `tests/e2e/test_chaos_e2e.py` (whose short form runs in `make test`),
run on an infrastructure stack of its own (data in .ak/chaos, ports apart from `make run` and
`make test`, so both may be up meanwhile), stopped at the end. It prints, as it goes and at the
end: lost, registered twice, SMS missing, SMS doubled, and how long the stack took to converge.
Exit status 0 when all four are zero.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK = [sys.executable, "-m", "deploy.local.stack"]
# Ports of its own: 2xxxx where `make test` uses 1xxxx and `make run` the defaults.
CHAOS_STACK_ENV = {
    "AK_DATA_DIR": str(ROOT / ".ak" / "chaos"),
    "AK_KAFKA_BOOTSTRAP": "127.0.0.1:29092",
    "AK_MONGO_URI": "mongodb://127.0.0.1:27019",
    "AK_SMS_GATEWAY_URL": "http://127.0.0.1:24013/cgi-bin/sendsms",
    "AK_SMTP_PORT": "2527",
    "AK_ZOOKEEPER_PORT": "22181",
    "AK_KANNEL_ADMIN_PORT": "24000",
    "AK_KANNEL_SMSBOX_PORT": "24001",
    "AK_KANNEL_SMSC_PORT": "20100",
    "AK_INTAKE_PORT": "28001",
    "AK_ROUTING_PORT": "28002",
    "AK_TRACKING_PORT": "28003",
    "AK_NOTIFICATION_PORT": "28004",
    "AK_REPORTING_PORT": "28005",
    "AK_STACK_INFRA_ONLY": "1",
}


def say(text: str) -> None:
    print(f"[bench/chaos] {text}", flush=True)


def stack(command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [*STACK, command], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0 and command != "stop":
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"deploy.local.stack {command} failed")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()

    env = {**os.environ, **CHAOS_STACK_ENV}
    say(f"a clean infrastructure stack in {env['AK_DATA_DIR']}")
    stack("stop", env)
    subprocess.run(["rm", "-rf", env["AK_DATA_DIR"]], check=True)
    started = time.monotonic()
    try:
        stack("start", env)
        for line in stack("env", env).splitlines():
            name, _, value = shlex.split(line)[-1].partition("=")
            if name.startswith("AK_"):
                env[name] = value
        env["AK_CHAOS_COUNT"] = str(args.count)
        env["AK_CHAOS_RATE"] = str(args.rate)
        say(f"{args.count} submissions at {args.rate:g}/s, every service killed once")
        test = (
            ROOT / "tests" / "e2e" / "test_chaos_e2e.py::"
            "test_no_application_is_lost_or_doubled_while_services_and_broker_are_killed"
        )
        pytest = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(test)]
        result = subprocess.run(pytest, env=env, cwd=ROOT, check=False)
    finally:
        stack("stop", env)
    verdict = "held" if result.returncode == 0 else "FAILED"
    say(f"{verdict}: whole run {time.monotonic() - started:.0f} s (stack start included)")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
