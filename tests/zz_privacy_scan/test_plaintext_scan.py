"""The plaintext scan, after everything else `make test` runs (this folder sorts last): no TC
Kimlik No in clear in the test stack's stores, topics or logs, and no applicant (name, phone)
on an institution topic for a shielded application without consent (scanner.py has the rules).

Where it looks:
- MongoDB: every database and collection of the stack, every document, every string and
  number in it (recursively);
- Kafka: every topic from the beginning, every partition, the raw bytes of each record's key,
  value and headers;
- logs: the stack's own (`$AK_DATA_DIR/logs`, fakesmsc's output, the SMTP sink's Maildir), the
  end-to-end ring's service processes (`e2e-logs*` under this pytest run's temporary folder),
  and any folder named in `AK_SCAN_LOG_DIRS` (os.pathsep-separated).

Known exceptions, each with its reason (EXEMPT_TOPICS, EXEMPT_DATABASES): nothing else is
skipped. Every hit is reported by place (db.collection._id path, topic:partition:offset part,
file:line) with the number masked, also in `$AK_DATA_DIR/privacy-scan.txt`; any hit fails.

`test_the_scan_finds_what_is_planted` plants a TC Kimlik No in each kind of place and checks
that the same code finds it, so a scan that reads nothing cannot pass.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from services.common import messaging, topics
from tests.conftest import create_topics, kafka
from tests.support import valid_tckn
from tests.zz_privacy_scan.scanner import (
    Hit,
    consent_of,
    scan_document,
    scan_lines,
    scan_record,
    shield_hits,
    tckns_in,
)

pytestmark = pytest.mark.integration

DATA_DIR = os.environ.get("AK_DATA_DIR")
if not DATA_DIR:
    pytest.skip("needs the local test stack (AK_DATA_DIR)", allow_module_level=True)

MONGO_URI = os.environ.get("AK_MONGO_URI", "mongodb://127.0.0.1:27018")
BOOTSTRAP = os.environ.get("AK_KAFKA_BOOTSTRAP", "127.0.0.1:19092")

# Topics whose content is the outside world's input by contract, not something the system
# wrote: the channel adapters (SMS gateway, call centre, kiosk, e-Devlet) put the citizen's
# submission on `acikkapi.intake.submissions` as they received it, TC Kimlik No included, as
# the HTTPS body carries it to intake; intake reads it, seals what it keeps and never writes
# it anywhere else. Its retention is the topic's (deploy/k8s KafkaTopic), and only intake and
# the adapters may read it (ACLs). Its dead letters are not exempt: the event core masks the
# TC Kimlik No in every dead letter (services/common/messaging.py).
EXEMPT_TOPICS = {topics.SUBMISSIONS: "the channel adapters' raw input (contract)"}
# tests/integration/test_messaging.py's own topics put a TC Kimlik No in an undecodable message
# on purpose, to prove that its dead letter masks it: the source topics are exempt, their
# dead-letter topics (`….dlq`) are scanned like any other.
EXEMPT_TOPIC_PATTERN = re.compile(r"test\.(poison|replay)\.[0-9a-f]{8}")
# The scan's own canaries (test_the_scan_finds_what_is_planted), removed after it, exempt in
# case a removal fails.
CANARY = "zzscan"
_CANARY_INSTITUTION = f"{topics.INSTITUTION_PREFIX}{CANARY.upper()}"
EXEMPT_DATABASES = {"admin", "local", "config"}
# GridFS buckets (intake's attachment bytes, `intake_attachment_bytes.files/.chunks`): what
# citizens uploaded, as they uploaded it, like the submissions topic; and nx-27017 serves a
# bucket through the GridFS commands only (a plain find on its collections hangs or fails).
GRIDFS_SUFFIXES = ("_files", "_chunks", ".files", ".chunks")


def _gridfs(collection: str, collections: list[str]) -> bool:
    """A bucket's `files` or `chunks` collection (both of the pair are there)."""
    pairs = zip(GRIDFS_SUFFIXES, ("_chunks", "_files", ".chunks", ".files"), strict=True)
    for suffix, other in pairs:
        if collection.endswith(suffix):
            return collection.removesuffix(suffix) + other in collections
    return False


# A collection that cannot be read within this long is a finding ("unread"), not a pass.
COLLECTION_SECONDS = 120.0
MAX_LISTED = 300
Mongo = AsyncMongoClient[Any]
RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)
# A partition that yields nothing this long before its end counts as unreadable.
STALL_SECONDS = 20.0


def _exempt_topic(name: str) -> bool:
    canary = name.startswith(f"{CANARY}-") or name.startswith(_CANARY_INSTITUTION)
    fixture = EXEMPT_TOPIC_PATTERN.fullmatch(name) is not None
    return name in EXEMPT_TOPICS or name.startswith("__") or canary or fixture


# --- Sources ------------------------------------------------------------------------------


async def mongo_hits(client: Mongo, only: str | None = None) -> tuple[list[Hit], int]:
    """Every document of every database (or of `only`); returns the hits and the count read."""
    hits: list[Hit] = []
    read = 0
    for database in await client.list_database_names():
        if database in EXEMPT_DATABASES or (only is not None and database != only):
            continue
        if only is None and database.startswith(CANARY):
            continue
        collections = await client[database].list_collection_names()
        for collection in collections:
            if _gridfs(collection, collections):
                continue
            try:
                async with asyncio.timeout(COLLECTION_SECONDS):
                    found, count = await _collection_hits(client, database, collection)
            except (TimeoutError, PyMongoError) as exc:
                where = f"{database}.{collection}"
                hits.append(Hit("mongo", where, "unread", type(exc).__name__))
                continue
            hits += found
            read += count
    return hits, read


async def _collection_hits(client: Mongo, database: str, collection: str) -> tuple[list[Hit], int]:
    hits: list[Hit] = []
    read = 0
    raw = client[database][collection].with_options(codec_options=RAW)
    async for document in raw.find({}, batch_size=2000):
        read += 1
        # The raw BSON first (strings are UTF-8 in it): decoded only when it holds one.
        if tckns_in(document.raw):
            hits += scan_document(database, collection, bson.decode(document.raw))
    return hits, read


async def kafka_hits(only: list[str] | None = None) -> tuple[list[Hit], int]:
    """Every record of every topic (or of `only`) from the beginning; the hits and the count."""
    options = kafka(BOOTSTRAP)
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        names = only if only is not None else await admin.list_topics()
    finally:
        await admin.close()
    names = [n for n in names if only is not None or not _exempt_topic(n)]
    consumer = AIOKafkaConsumer(
        **options, group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await consumer.start()
    hits: list[Hit] = []
    institution: list[tuple[str, int, int, bytes | None]] = []
    consents: dict[str, bool] = {}
    read = 0
    try:
        partitions = await messaging.topic_partitions(options, names)
        if not partitions:
            return [], 0
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        waiting = {tp for tp, end in ends.items() if end > 0}
        last_progress = asyncio.get_running_loop().time()
        while waiting:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for r in records:
                    read += 1
                    hits += scan_record(r.topic, r.partition, r.offset, r.key, r.value, r.headers)
                    if r.topic.startswith(topics.INSTITUTION_PREFIX):
                        institution.append((r.topic, r.partition, r.offset, r.value))
                    elif r.topic == topics.RECEIVED and (found := consent_of(r.value)):
                        consents[found[0]] = consents.get(found[0], False) or found[1]
            now = asyncio.get_running_loop().time()
            if batches:
                last_progress = now
            for tp in list(waiting):
                if await consumer.position(tp) >= ends[tp]:
                    waiting.discard(tp)
                    consumer.pause(tp)
            if waiting and now - last_progress > STALL_SECONDS:
                # Nothing more comes from these (the broker's control records or a lost
                # leader): what could not be read is a finding of its own.
                for tp in sorted(waiting):
                    position = await consumer.position(tp)
                    hits.append(
                        Hit(
                            "kafka",
                            f"{tp.topic}:{tp.partition}:{position}",
                            "unread",
                            f"stopped {ends[tp] - position} before the end",
                        )
                    )
                break
    finally:
        await consumer.stop()
    for topic, partition, offset, value in institution:
        hits += shield_hits(topic, partition, offset, value, consents)
    return hits, read


def log_files(extra: list[Path] | None = None) -> list[Path]:
    """The stack's logs, the e2e ring's, and AK_SCAN_LOG_DIRS's (regular files, recursively)."""
    assert DATA_DIR
    data = Path(DATA_DIR)
    roots = [data / "logs", data / "fakesmsc.out", data / "mail", *(extra or [])]
    roots += [Path(p) for p in os.environ.get("AK_SCAN_LOG_DIRS", "").split(os.pathsep) if p]
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.rglob("*") if p.is_file())
    return files


def file_hits(files: list[Path]) -> tuple[list[Hit], int]:
    hits: list[Hit] = []
    for path in files:
        with path.open("rb") as handle:
            hits += scan_lines(str(path), handle)
    return hits, len(files)


# --- The scan -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def mongo() -> AsyncIterator[Mongo]:
    client: Mongo = AsyncMongoClient[Any](MONGO_URI, serverSelectionTimeoutMS=5000)
    try:
        await client.admin.command("ping")
    except Exception as exc:  # the stack is not there: nothing to scan
        await client.close()
        pytest.skip(f"the test stack's MongoDB does not answer: {exc}")
    yield client
    await client.close()


def _place(hit: Hit) -> str:
    """Where a hit is, without the record: db.collection field, topic, file."""
    where, _, part = hit.location.partition(" ")
    if hit.source == "mongo":
        database, collection = where.split(".")[:2]
        return f"{hit.source}/{hit.kind} {database}.{collection} {part}"
    if hit.source == "kafka":
        return f"{hit.source}/{hit.kind} {where.split(':')[0]} {part}"
    return f"{hit.source}/{hit.kind} {where.rsplit(':', 1)[0]}"


def report(hits: list[Hit], counts: dict[str, int]) -> str:
    by_source = Counter(h.source for h in hits)
    by_kind = Counter(f"{h.source}/{h.kind}" for h in hits)
    lines = [
        f"plaintext scan: {len(hits)} hit(s) "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(by_kind.items())) or 'none'})",
        f"read: {', '.join(f'{k} {v}' for k, v in counts.items())}",
        f"exempt topics: {EXEMPT_TOPICS}, {EXEMPT_TOPIC_PATTERN.pattern}",
        f"exempt collections: GridFS buckets (*{', *'.join(GRIDFS_SUFFIXES)})",
    ]
    lines.append("-- by place (count, source/kind, where):")
    lines += [f"{n:>8} {place}" for place, n in Counter(map(_place, hits)).most_common(60)]
    for source in ("mongo", "kafka", "log"):
        listed = [h for h in hits if h.source == source]
        if listed:
            lines.append(f"-- {source}: {by_source[source]}")
            lines += [str(h) for h in listed[:MAX_LISTED]]
            if len(listed) > MAX_LISTED:
                lines.append(f"   … and {len(listed) - MAX_LISTED} more")
    return "\n".join(lines)


async def test_the_scan_finds_what_is_planted(mongo: Mongo, tmp_path: Path) -> None:
    """A TC Kimlik No planted in a database, on a topic and in a log is found, masked, with
    its place; and an applicant on an institution topic for a şikayet without consent."""
    tckn = valid_tckn(random.Random())
    masked = tckn[:2] + "*" * 7 + tckn[-2:]
    run = uuid.uuid4().hex[:8]
    database, topic = f"{CANARY}{run}", f"{CANARY}-{run}"
    institution = f"{_CANARY_INSTITUTION}{run.upper()}"
    await create_topics(BOOTSTRAP, [topic, institution])

    await mongo[database]["canary"].insert_one({"_id": "c1", "nested": [{"note": f"TC {tckn}"}]})
    producer = AIOKafkaProducer(**kafka(BOOTSTRAP), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, f'{{"tckn": "{tckn}"}}'.encode(), key=b"k")
        shielded = (
            '{"application_id": "zz", "application_type": "sikayet", "applicant": '
            '{"first_name": "Ayşe", "last_name": "Yılmaz", "phone": "+905321234567"}}'
        )
        await producer.send_and_wait(institution, shielded.encode())
    finally:
        await producer.stop()
    log = tmp_path / "service.log"
    log.write_text(f"first line\nrequest body tckn={tckn} end\n")
    try:
        found_db, _ = await mongo_hits(mongo, only=database)
        found_topic, _ = await kafka_hits(only=[topic, institution])
        found_log, _ = file_hits([log])
    finally:
        await mongo.drop_database(database)
        admin = AIOKafkaAdminClient(**kafka(BOOTSTRAP))
        await admin.start()
        try:
            await admin.delete_topics([topic, institution])
        except Exception:  # exempt by name anyway (_exempt_topic)
            pass
        finally:
            await admin.close()

    assert [str(h) for h in found_db] == [
        f"[mongo] {database}.canary._id=c1 nested[0].note: tckn {masked}"
    ]
    assert [str(h) for h in found_log] == [f"[log] {log}:2: tckn {masked}"]
    kinds = sorted((h.location.split(" ")[0].split(":")[0], h.kind) for h in found_topic)
    assert kinds == [
        (institution, "shielded_applicant"),
        (institution, "shielded_phone"),
        (topic, "tckn"),
    ]
    assert all(tckn not in str(h) and "Ayşe" not in str(h) for h in found_topic)


async def test_no_plaintext_personal_data_anywhere(
    mongo: Mongo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    e2e_logs = sorted(tmp_path_factory.getbasetemp().glob("e2e-logs*"))
    clock = time.monotonic()
    db_hits, documents = await mongo_hits(mongo)
    topic_hits, records = await kafka_hits()
    files = log_files(e2e_logs)
    log_hits, _ = file_hits(files)
    hits = db_hits + topic_hits + log_hits
    counts = {"documents": documents, "records": records, "files": len(files)}
    counts["seconds"] = round(time.monotonic() - clock)
    text = report(hits, counts)
    assert DATA_DIR
    (Path(DATA_DIR) / "privacy-scan.txt").write_text(text + "\n")
    print("\n" + text)
    assert documents and records, "the scan read nothing: is the stack the test stack?"
    assert not hits, text
