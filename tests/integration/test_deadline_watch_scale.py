"""The deadline watcher against the real MongoDB-wire server and Kafka: a pass finds due work
through the index on due times (it reads the due records, not the open ones), and two watchers
on one store give each warning and each miss exactly once.

What the server examines is counted by SQLite on the database's own file (bench/nx_examined.py:
nx-27017's `explain` has no execution statistics); bench/deadlines.py measures the same at
10,000 to 1,000,000 open applications.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from bench.nx_examined import ExaminedCounter, nx_data_dir
from services.common import topics
from services.common.application_number import format_number
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationRouted,
    ApplicationType,
    Channel,
    Status,
)
from services.common.messaging import Publisher, make_broker
from services.common.mongo import Document
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.tracking import domain
from services.tracking import store as store_module
from services.tracking.handlers import Tracking
from services.tracking.store import DUE_KEYS, DUE_MARK, ApplicationStore, Write, to_doc
from tests.conftest import Tap, create_topics

pytestmark = pytest.mark.integration

OPEN = 3_000  # not due for days
DUE = 20  # half missed, half at their warning


@dataclass
class Watchers:
    settings: Settings
    database: str
    clients: list[AsyncMongoClient[Document]]
    trackings: list[Tracking]
    counter: ExaminedCounter

    @property
    def store(self) -> ApplicationStore:
        store = self.trackings[0].store
        assert isinstance(store, ApplicationStore)
        return store


@pytest.fixture
async def watchers(settings: Settings) -> AsyncIterator[Watchers]:
    """Two tracking processes' worth of watchers (each its own client and store) on a database
    of this test's own, the first client counted by the server's SQLite file."""
    own = settings.model_copy(update={"db_prefix": f"{settings.db_prefix}dl{uuid.uuid4().hex[:4]}"})
    database = own.database_name("tracking")
    uri = own.mongo_uri_for("tracking")
    data_dir = stack_data_dir(uri)
    for name in (topics.DEADLINES, topics.STATUS):
        await create_topics(own.kafka_bootstrap, [name], partitions=topics.PARTITIONS[name])
    counter = ExaminedCounter(database)
    clients: list[AsyncMongoClient[Document]] = [
        AsyncMongoClient(uri, tz_aware=True, event_listeners=[counter]),
        AsyncMongoClient(uri, tz_aware=True),
    ]
    broker = make_broker(own, "tracking")
    await broker.start()
    cipher = PiiCipher(own.pii_key_bytes())
    publisher = Publisher(broker)
    trackings = []
    for client in clients:
        store = ApplicationStore(client[database], publisher, cipher)
        await store.ensure_indexes()
        trackings.append(Tracking(store, publisher, cipher, own))
    counter.open(data_dir)
    try:
        yield Watchers(own, database, clients, trackings, counter)
    finally:
        counter.close()
        await broker.stop()
        await clients[0].drop_database(database)
        for client in clients:
            await client.close()


def stack_data_dir(uri: str) -> Path:
    """Where the test stack's nx-27017 keeps its database files (one per database)."""
    return nx_data_dir(uri, Path(os.environ.get("AK_DATA_DIR", ".ak/test")).resolve())


class Records:
    """Open applications as the domain makes them from intake's and routing's events."""

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking
        self.phone = tracking.cipher.encrypt("+905321112233")
        self.rng = random.Random(7)
        self.sequence = 0

    def received(self, at: datetime) -> domain.Application:
        self.sequence += 1
        app_id = str(uuid.uuid4())
        number = format_number(20, 2026, self.sequence)
        event = ApplicationReceived(
            application_id=app_id,
            application_number=number,
            producer="test-intake",
            channel=Channel.web,
            application_type=ApplicationType.sikayet,
            province_code=20,
            district="Merkezefendi",
            subject="Sokak lambası yanmıyor",
            text="Sokağımızdaki lamba iki haftadır yanmıyor, akşamları yol karanlık.",
            applicant=ApplicantContact(
                tckn_masked="38*******26",
                first_name="Ali",
                last_name="Yıldırım",
                phone="+905321112233",
            ),
            received_at=at,
        )
        rules = self.tracking.rules()
        receive = domain.Receive(
            event, phone_enc=self.phone, phone_index=self.tracking.phone_index(app_id, "2233")
        )
        first = domain.apply(None, receive, f"received:{event.event_id}", rules).state
        assert first is not None
        routed = ApplicationRouted(
            application_id=app_id,
            application_number=number,
            producer="test-routing",
            category_code="YOL-KALDIRIM",
            heading_code="ALTYAPI",
            institution_code="TEST-BELEDIYE",
            institution_kind="BELEDIYE",
            institution_name="Test Belediyesi",
            routed_by="auto",
            deadline_at=at + timedelta(days=9),
        )
        state = domain.apply(first, routed, f"routed:{routed.event_id}", rules).state
        assert state is not None and state.deadline_at is not None
        return replace(state, version=0)

    def later(self, now: datetime) -> domain.Application:
        """Received in the last day: nothing due for days."""
        return self.received(now - timedelta(hours=self.rng.uniform(0, 24)))

    def due(self, now: datetime, missed: bool) -> domain.Application:
        """A record whose deadline has passed (`missed`), or whose warning is due."""
        while True:
            days = self.rng.uniform(12, 20) if missed else self.rng.uniform(2, 12)
            state = self.received(now - timedelta(days=days))
            warn, miss = state.warn_due_at, state.miss_due_at
            assert miss is not None
            if (miss <= now) if missed else (warn is not None and warn <= now < miss):
                return state


async def store_all(store: ApplicationStore, states: list[domain.Application]) -> None:
    for i in range(0, len(states), 500):
        saved = await store.save_many([Write(s, 0) for s in states[i : i + 500]])
        assert not saved.conflicts


async def test_a_pass_reads_only_the_due_records_however_many_are_open(
    watchers: Watchers,
) -> None:
    now = datetime.now(UTC)
    records = Records(watchers.trackings[0])
    due = [records.due(now, missed=i % 2 == 0) for i in range(DUE)]
    await store_all(watchers.store, [records.later(now) for _ in range(OPEN)] + due)
    watchers.counter.refresh_schema()

    watchers.counter.enabled = True
    handled = await watchers.trackings[0].check_deadlines(datetime.now(UTC))
    examined = watchers.counter.take()
    idle_handled = await watchers.trackings[0].check_deadlines(datetime.now(UTC))
    idle = watchers.counter.take()
    watchers.counter.enabled = False

    assert handled == DUE and idle_handled == 0
    # Each claim read its one due record and nothing else (the last claim of each kind, which
    # found nothing, read nothing): not the open records, of which there are 150 times as many.
    assert examined.by_command["findAndModify"] == DUE, examined
    assert not examined.scanned, examined.plans
    assert any("due_epoch" in plan for plan in examined.plans), examined.plans
    # With the writes that settle them (by _id): a few reads per due record in all.
    assert examined.docs <= 3 * DUE, examined
    assert idle.docs == 0 and idle.commands == 2, idle

    settled = {
        doc["_id"]: doc
        async for doc in watchers.store.apps.find({"_id": {"$in": [s.application_id for s in due]}})
    }
    for i, state in enumerate(due):
        doc = settled[state.application_id]
        assert doc["overdue"] is (i % 2 == 0)
        assert doc[DUE_KEYS["warn_due_at"]] is None  # warned, or no longer warned of
        assert doc["watch_lease"] == 0.0  # the settling write gave the lease back


async def test_two_watchers_give_each_warning_and_each_miss_once(watchers: Watchers) -> None:
    now = datetime.now(UTC)
    records = Records(watchers.trackings[0])
    warned = [records.due(now, missed=False) for _ in range(DUE)]
    missed = [records.due(now, missed=True) for _ in range(DUE)]
    await store_all(watchers.store, [records.later(now) for _ in range(200)] + warned + missed)
    ours = {s.application_id for s in warned + missed}

    async with Tap(watchers.settings.kafka_bootstrap, [topics.DEADLINES]) as tap:
        first = await asyncio.gather(
            *(t.check_deadlines(datetime.now(UTC)) for t in watchers.trackings)
        )
        again = await asyncio.gather(
            *(t.check_deadlines(datetime.now(UTC)) for t in watchers.trackings)
        )
        await tap.caught_up()

    assert sum(first) == 2 * DUE, first
    assert all(n > 0 for n in first), f"one watcher took everything: {first}"
    assert again == [0, 0]
    events = [v for t, _, v in tap.seen if t == topics.DEADLINES and v["application_id"] in ours]
    for kind, states in (("warning", warned), ("missed", missed)):
        for state in states:
            of_it = [e for e in events if e["application_id"] == state.application_id]
            assert [e["kind"] for e in of_it].count(kind) == 1, (kind, of_it)
    assert not [
        e
        for e in events
        if e["application_id"] in {s.application_id for s in warned} and e["kind"] != "warning"
    ]


async def test_records_stored_before_the_due_times_were_numbers_are_watched(
    watchers: Watchers, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    records = Records(watchers.trackings[0])
    due = records.due(now, missed=True)
    waiting = records.later(now)
    # Answered: nothing to watch, its due times null (nx-27017 matches a null field as
    # missing: the backfill must still end). One record a batch, so each takes a round.
    answered = replace(records.later(now), status=Status.answered)
    monkeypatch.setattr(store_module, "_BACKFILL_BATCH", 1)
    store = watchers.store
    for state in (answered, due, waiting):
        # The shape an earlier release wrote: the due times as datetimes, indexed one by one.
        doc = to_doc(state, 1)
        del doc[DUE_MARK]
        for key in DUE_KEYS.values():
            del doc[key]
        doc.update({"miss_due_at": state.miss_due_at, "warn_due_at": state.warn_due_at})
        await store.apps.insert_one(doc)
    await store.apps.create_index("warn_due_at")

    async with asyncio.timeout(60):
        await store.ensure_indexes()

    docs = {d["_id"]: d async for d in store.apps.find({})}
    assert all(d[DUE_MARK] == 1 for d in docs.values())
    miss, warn = due.miss_due_at, waiting.warn_due_at
    assert miss is not None and warn is not None
    assert docs[due.application_id][DUE_KEYS["miss_due_at"]] == pytest.approx(miss.timestamp())
    assert docs[waiting.application_id][DUE_KEYS["warn_due_at"]] == pytest.approx(warn.timestamp())
    assert not {"miss_due_at", "warn_due_at"} & set(docs[due.application_id])
    indexed = [dict(i["key"]) async for i in await store.apps.list_indexes()]
    assert {"warn_due_at": 1} not in indexed
    assert await watchers.trackings[0].check_deadlines(datetime.now(UTC)) == 1
    flagged = await store.get(due.application_id)
    assert flagged is not None and flagged.overdue
