"""MongoDB access through PyMongo's async client (Motor reached end of life on 2026-05-14)."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.common.settings import Settings

# The documents every store reads and writes: plain dicts, typed once here.
Document = dict[str, Any]
Client = AsyncMongoClient[Document]
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]


def make_client(settings: Settings, service: str | None = None) -> Client:
    """A client for `service`'s MongoDB (its own server if it has one), or the shared one."""
    return AsyncMongoClient(
        settings.mongo_uri_for(service) if service else settings.mongo_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=3000,
        appname="acikkapi",
    )


def service_database(client: Client, settings: Settings, service: str) -> Database:
    """Each service owns exactly one database; no service reads another's.

    Collection names also start with the service's name (`intake_applications`): nx-27017, the
    local MongoDB-wire server, keeps every database's collections in one namespace, and the
    prefix keeps the services apart there too.
    """
    return client[settings.database_name(service)]


PING_SECONDS = 2.0


async def ping(client: Client) -> bool:
    """Whether MongoDB answers within PING_SECONDS (a stopped server never would)."""
    try:
        async with asyncio.timeout(PING_SECONDS):
            await client.admin.command("ping")
        return True
    except Exception:
        return False
