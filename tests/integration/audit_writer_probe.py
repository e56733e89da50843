"""One process of a service writing audit records, for tests/integration/test_audit_log.py:
`python -m tests.integration.audit_writer_probe DB SERVICE COUNT` writes COUNT records, all at
once (they queue in the process's group commit), to SERVICE's audit log in database DB."""

from __future__ import annotations

import asyncio
import os
import sys

from services.common.audit import AuditLog
from services.common.auth import Principal, Role
from services.common.mongo import make_client
from services.common.settings import get_settings


async def write(database: str, service: str, count: int) -> None:
    client = make_client(get_settings())
    audit = AuditLog(client[database], service)
    actor = Principal(subject=f"probe-{os.getpid()}", role=Role.routing_officer, province=20)
    try:
        await asyncio.gather(
            *(
                audit.record(actor=actor, action="change", application_id=f"{os.getpid()}-{i}")
                for i in range(count)
            )
        )
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(write(sys.argv[1], sys.argv[2], int(sys.argv[3])))
