"""What one audit record costs against the stack's MongoDB (nx-27017 locally).

    python bench/audit_cost.py            (with the stack's AK_* environment)

Writes to a throwaway database: records one at a time (a request that shows one application),
many at once in one process (a page of the officers' queue: they share one group commit),
several processes at once on one chain (a service scaled out), and the verify walk. Prints
milliseconds per record, records per second, and the races lost between processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common.audit import AuditLog
from services.common.auth import Principal, Role
from services.common.mongo import make_client
from services.common.settings import Settings

ACTOR = Principal(subject="bench-officer", role=Role.routing_officer, province=20)


def say(text: str) -> None:
    print(text, flush=True)


async def one_process(database: str, service: str, records: int, burst: int) -> None:
    """One writer process: `records` records, `burst` at a time (its requests in flight)."""
    client = make_client(Settings())
    audit = AuditLog(client[database], service)
    lost = 0
    insert_many = audit._records.insert_many

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal lost
        try:
            return await insert_many(*args, **kwargs)  # type: ignore[arg-type]
        except Exception:
            lost += 1
            raise

    audit._records.insert_many = counting  # type: ignore[method-assign]
    started = time.perf_counter()
    for _ in range(0, records, burst):
        await asyncio.gather(*(audit.record(actor=ACTOR, action="change") for _ in range(burst)))
    seconds = time.perf_counter() - started
    say(f"  process {os.getpid()}: {records / seconds:,.0f} records/s, {lost} races lost")
    await client.close()


async def main(records: int, processes: int) -> None:
    settings = Settings()
    database = f"bench_audit_{uuid.uuid4().hex[:8]}"
    client = make_client(settings)
    try:
        # The yardstick, interleaved with the records: the shared server's speed varies from
        # one second to the next, so a plain insert is timed right beside each record.
        plain = client[database]["plain"]
        single = AuditLog(client[database], "single")
        await single.ensure_indexes()
        plain_s = record_s = 0.0
        for n in range(records):
            started = time.perf_counter()
            await plain.insert_one({"n": n, "actor": ACTOR.model_dump()})
            plain_s += time.perf_counter() - started
            started = time.perf_counter()
            await single.record(actor=ACTOR, action="read_personal", application_id=str(n))
            record_s += time.perf_counter() - started
        baseline = plain_s / records * 1000
        say(
            f"one at a time: {record_s / records * 1000:.2f} ms per record, a plain insert_one "
            f"beside it {baseline:.2f} ms ({record_s / plain_s:.2f}×)"
        )
        page = AuditLog(client[database], "page")
        await page.ensure_indexes()
        started = time.perf_counter()
        for _ in range(0, records, 50):
            await asyncio.gather(
                *(page.record(actor=ACTOR, action="read_personal") for _ in range(50))
            )
        seconds = time.perf_counter() - started
        say(
            f"50 at once (a queue page): {seconds / records * 1000:.2f} ms per record, "
            f"{records / seconds:,.0f} records/s"
        )
        shared = AuditLog(client[database], "shared")
        await shared.ensure_indexes()
        say(f"{processes} processes, {records} records each, 20 in flight per process:")
        started = time.perf_counter()
        writers = [
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--writer", database, str(records)
            )
            for _ in range(processes)
        ]
        await asyncio.gather(*(w.wait() for w in writers))
        seconds = time.perf_counter() - started
        total = records * processes
        say(f"  together: {total / seconds:,.0f} records/s (process start-up included)")
        started = time.perf_counter()
        walk, head = await shared.verify()
        seconds = time.perf_counter() - started
        say(
            f"verify: {walk.checked} records checked of {head}, valid={walk.first_break is None}, "
            f"{walk.checked / seconds:,.0f} records/s"
        )
    finally:
        await client.drop_database(database)
        await client.close()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--writer":
        asyncio.run(one_process(sys.argv[2], "shared", int(sys.argv[3]), 20))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.records, args.processes))
