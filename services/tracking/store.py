"""Tracking's own MongoDB collections: one document per application, and a counter per
application number of the guesses made on the status page in the current window (the lock).

Every change to an application is one conditional write (`version` must still be what was read),
so several tracking processes can work on the same application without losing an update.
Datetimes are only ever written whole (insert/replace): nx-27017 0.8.1 stores a datetime given
to `$set` as a string, so the watcher's lease is a number of epoch seconds.

The deadline watcher finds due work through an index on its due times, never by reading the open
applications: each record carries them as numbers of epoch seconds (`miss_due_epoch`,
`warn_due_epoch`, null when nothing is to be watched), indexed with the lease. Numbers, because
nx-27017 0.8.1 compares a datetime condition of `findAndModify` through SQLite's `datetime()`,
which no index answers: the claim would read every record (bench/deadlines.py measures it).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from pymongo import ASCENDING, DESCENDING, InsertOne, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from services.common.application_number import normalize
from services.common.events import ApplicationType, Channel, Outcome, Priority, Status
from services.common.messaging import Outgoing, Publisher
from services.common.mongo import Database, Document
from services.common.outbox import Delivery, Outbox, Pending
from services.common.pii import PiiCipher
from services.tracking.domain import (
    Application,
    DeadlineChange,
    DraftAnswer,
    InformationRequest,
    Part,
    SentMessage,
    TimelineEntry,
    Unmasking,
)
from services.tracking.workflow import Stage, Step, search_key, unit_key

log = logging.getLogger("acikkapi.tracking")

# How long a failed look-up counts against an application number.
MISS_WINDOW = timedelta(minutes=15)
# A guess counter contended so hard that it never settles counts as locked.
_GUESS_RETRIES = 20
_SATURATED = 1 << 30

_ENUMS: dict[str, type[StrEnum]] = {
    "status": Status,
    "channel": Channel,
    "application_type": ApplicationType,
    "outcome": Outcome,
    "priority": Priority,
}
_RENAMED = {"application_id": "_id", "application_number": "number"}
# Written as lists of sub-documents, each whole (see the module's note on datetimes).
_STRUCTURED = (
    "timeline",
    "information_requests",
    "drafts",
    "parts",
    "deadline_changes",
    "messages",
    "unmaskings",
)
_SCALARS = [
    f.name
    for f in fields(Application)
    if f.name not in (*_STRUCTURED, "outbox", "version", *_RENAMED)
]
# Backfilled at start in records written before a derived field existed, this many at a time.
_BACKFILL_BATCH = 500

DueField = Literal["miss_due_at", "warn_due_at"]
# The stored, indexed form of each due time the watcher claims by (epoch seconds).
DUE_KEYS: dict[DueField, str] = {"miss_due_at": "miss_due_epoch", "warn_due_at": "warn_due_epoch"}
WATCH_LEASE = "watch_lease"
# Set on every record whose due times are numbers. The backfill looks for records without it:
# nx-27017 matches `{field: {"$exists": false}}` for a field stored as null, which a due time
# with nothing to watch is, so the due fields themselves cannot say what is done.
DUE_MARK = "due_epochs"


class NumberTaken(Exception):
    """Another application already holds this application number (an intake fault)."""


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Guess:
    """One guess taken from a number's window: its place in the window (1, 2, …) and the
    window's start (epoch seconds), so that a right guess gives back its own place."""

    count: int
    window: float


def to_doc(state: Application, version: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": state.application_id, "number": state.application_number}
    for name in _SCALARS:
        value = getattr(state, name)
        doc[name] = value.value if isinstance(value, StrEnum) else value
    doc["version"] = version
    doc["number_key"] = normalize(state.application_number)
    doc["timeline"] = [
        {
            "status": e.status.value,
            "at": e.at,
            "previous": e.previous.value if e.previous else None,
            "round": e.round,
            "source": e.source,
            "institution_code": e.institution_code,
            "reason": e.reason,
            "announced": e.announced,
            "step": e.step.value if e.step else None,
            "actor": e.actor,
            "detail": e.detail,
        }
        for e in state.timeline
    ]
    doc["information_requests"] = [asdict(r) for r in state.information_requests]
    doc["drafts"] = [{**asdict(d), "outcome": d.outcome.value} for d in state.drafts]
    doc["parts"] = [
        {**asdict(p), "outcome": p.outcome.value if p.outcome else None} for p in state.parts
    ]
    doc["deadline_changes"] = [asdict(c) for c in state.deadline_changes]
    doc["messages"] = [asdict(m) for m in state.messages]
    doc["unmaskings"] = [asdict(u) for u in state.unmaskings]
    doc.update(derived(state))
    # Derived, indexed for the deadline watcher; a write always releases the watcher's lease.
    # The institution's list: escorted applicants first (1), then the rest (0).
    doc["priority_first"] = 1 if state.priority else 0
    doc.update(due_times(state))
    doc[DUE_MARK] = 1
    doc[WATCH_LEASE] = 0.0
    return doc


def due_times(state: Application) -> dict[str, float | None]:
    """When the deadline watcher must look at the record again, as indexed numbers (see the
    module's note), None when there is nothing to watch."""
    return {key: _epoch(getattr(state, due)) for due, key in DUE_KEYS.items()}


def _epoch(when: datetime | None) -> float | None:
    return None if when is None else _stamp(when)


def _stamp(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def from_doc(doc: dict[str, Any]) -> Application:
    values: dict[str, Any] = {
        "application_id": doc["_id"],
        "application_number": doc["number"],
    }
    for name in _SCALARS:
        if name not in doc:
            continue
        value = doc[name]
        enum = _ENUMS.get(name)
        values[name] = enum(value) if enum and value is not None else value
    values["version"] = doc.get("version", 0)
    values["outbox"] = tuple(doc.get("outbox") or ())
    values["timeline"] = tuple(
        TimelineEntry(
            status=Status(e["status"]),
            at=e["at"],
            previous=Status(e["previous"]) if e.get("previous") else None,
            round=e.get("round", 0),
            source=e.get("source", ""),
            institution_code=e.get("institution_code"),
            reason=e.get("reason"),
            announced=e.get("announced", True),
            step=Step(e["step"]) if e.get("step") else None,
            actor=e.get("actor"),
            detail=e.get("detail"),
        )
        for e in doc.get("timeline", ())
    )
    values["information_requests"] = tuple(
        InformationRequest(**r) for r in doc.get("information_requests") or ()
    )
    values["drafts"] = tuple(
        DraftAnswer(**{**d, "outcome": Outcome(d["outcome"])}) for d in doc.get("drafts") or ()
    )
    values["parts"] = tuple(
        Part(**{**p, "outcome": Outcome(p["outcome"]) if p.get("outcome") else None})
        for p in doc.get("parts") or ()
    )
    values["deadline_changes"] = tuple(
        DeadlineChange(**c) for c in doc.get("deadline_changes") or ()
    )
    values["messages"] = tuple(SentMessage(**m) for m in doc.get("messages") or ())
    values["unmaskings"] = tuple(Unmasking(**u) for u in doc.get("unmaskings") or ())
    return Application(**values)


def derived(state: Application) -> dict[str, Any]:
    """Fields kept beside the record for the inbox's filters and search."""
    return {
        "stage": state.stage.value,
        "search_key": search_key(f"{state.application_number} {state.subject or ''}"),
        # The sub-unit it is assigned to, as a unit's staff are scoped (workflow.in_unit).
        "unit_key": unit_key(state.unit),
    }


def encode_cursor(state: Application) -> str:
    deadline = state.deadline_at.isoformat() if state.deadline_at else ""
    first = 1 if state.priority else 0
    raw = json.dumps([first, deadline, state.application_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, datetime | None, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        first, deadline, application_id = json.loads(raw)
        when = datetime.fromisoformat(deadline) if deadline else None
        return int(first), when, str(application_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor(cursor) from exc


@dataclass(frozen=True)
class InstitutionPage:
    """One page of an institution's list (or, with no institution, of a province's approval
    queue): its filters, its size and where it starts."""

    institution_code: str | None
    status: Status | None = None
    overdue: bool | None = None
    limit: int = 50
    cursor: str | None = None
    stages: frozenset[Stage] = frozenset()
    district: str | None = None
    application_type: ApplicationType | None = None
    # True: only escorted applicants (şehit yakını, gazi, engelli, yaşlı); False: only others.
    priority: bool | None = None
    # Words of the subject or the number (compared as `workflow.search_key` folds them).
    text: str | None = None
    province_code: int | None = None
    # Only what the institution assigned to this sub-unit (a unit's staff: workflow.in_unit).
    unit: str | None = None

    def query(self) -> dict[str, Any]:
        """The page's filters as a MongoDB query (without the cursor)."""
        query: dict[str, Any] = {}
        if self.institution_code is not None:
            query["institution_code"] = self.institution_code
        if self.province_code is not None:
            query["province_code"] = self.province_code
        if self.unit is not None:
            query["unit_key"] = unit_key(self.unit)
        if self.status is not None:
            query["status"] = self.status.value
        if len(self.stages) == 1:
            query["stage"] = next(iter(self.stages)).value
        elif self.stages:
            query["stage"] = {"$in": sorted(s.value for s in self.stages)}
        if self.overdue is not None:
            query["overdue"] = self.overdue
        if self.district:
            query["district"] = self.district
        if self.application_type is not None:
            query["application_type"] = self.application_type.value
        if self.priority is not None:
            query["priority_first"] = 1 if self.priority else 0
        words = search_key(self.text or "").split()
        if words:
            # Every word, anywhere in the subject or the number.
            query["$and"] = [{"search_key": {"$regex": re.escape(w)}} for w in words[:8]]
        return query


@dataclass(frozen=True)
class Write:
    """A state to store over the version it was read at, with the events it causes."""

    state: Application
    expected_version: int
    messages: Sequence[Outgoing] = ()


@dataclass(frozen=True)
class Saved:
    """What a batch of writes did: delivered later, or lost to a concurrent writer."""

    pending: list[Pending]
    conflicts: set[str]


class TrackingStore(Protocol):
    """Tracking's records as the use cases see them (`ApplicationStore`; a fake in unit tests)."""

    @property
    def outbox(self) -> Delivery: ...

    async def get(self, application_id: str) -> Application | None: ...
    async def by_number(self, number_key: str) -> Application | None: ...
    async def get_many(self, application_ids: Sequence[str]) -> dict[str, Application]: ...
    async def save(self, write: Write) -> tuple[bool, Pending | None]: ...
    async def save_many(self, writes: Sequence[Write]) -> Saved: ...
    async def list_for_institution(self, page: InstitutionPage) -> list[Application]: ...
    async def count_for_institution(self, page: InstitutionPage) -> int: ...
    async def claim_due(
        self, due: DueField, now: datetime, lease_seconds: float
    ) -> Application | None: ...
    async def reserve_guess(self, number_key: str, now: datetime) -> Guess: ...
    async def release_guess(self, number_key: str, guess: Guess) -> None: ...


class ApplicationStore:
    def __init__(self, db: Database, publisher: Publisher, cipher: PiiCipher) -> None:
        # Named after the service although the database is its own (see service_database).
        self.apps = db["tracking_applications"]
        # One document per application number guessed lately (its window's start and count);
        # replaces tracking_track_misses, whose records expire by their TTL.
        self.guesses = db["tracking_guess_counters"]
        self.outbox = Outbox(self.apps, publisher, cipher)

    async def ensure_indexes(self) -> None:
        await self.outbox.ensure_indexes()
        await self.apps.create_index("number_key", unique=True)
        # (nx-27017 refuses `_id` inside a compound index; the tie-break sorts without one.)
        await self.apps.create_index(
            [
                ("institution_code", ASCENDING),
                ("priority_first", DESCENDING),
                ("deadline_at", ASCENDING),
            ]
        )
        # Records written before the priority mark existed are ordinary ones (and a cursor's
        # conditions only match a field that is there).
        await self.apps.update_many(
            {"priority_first": {"$exists": False}}, {"$set": {"priority_first": 0}}
        )
        await self.apps.create_index([("stage", ASCENDING), ("province_code", ASCENDING)])
        await self._backfill_derived()
        await self._index_due_times()
        await self._backfill_unit_keys()
        # `at` is the window's start: a counter goes once its window is over.
        await self.guesses.create_index("at", expireAfterSeconds=int(MISS_WINDOW.total_seconds()))

    async def _index_due_times(self) -> None:
        """The deadline watcher's indexes: each due time with the lease, so a claim reads only
        what is due and not leased. Records written before the due times were numbers get them;
        the datetime fields they replace lose their indexes."""
        for key in DUE_KEYS.values():
            await self.apps.create_index([(key, ASCENDING), (WATCH_LEASE, ASCENDING)])
        while True:
            found = self.apps.find({DUE_MARK: {"$exists": False}})
            docs = [doc async for doc in found.limit(_BACKFILL_BATCH)]
            if docs:
                result = await self.apps.bulk_write(
                    [
                        UpdateOne(
                            {"_id": doc["_id"], "version": doc.get("version", 0)},
                            {
                                "$set": {
                                    **due_times(from_doc(doc)),
                                    DUE_MARK: 1,
                                    WATCH_LEASE: doc.get(WATCH_LEASE) or 0.0,
                                },
                                "$unset": {due: "" for due in DUE_KEYS},
                            },
                        )
                        for doc in docs
                    ],
                    ordered=False,
                )
                if result.matched_count == 0:
                    break  # each was rewritten meanwhile, by a process that marks it
            if len(docs) < _BACKFILL_BATCH:
                break
        # By the name the server lists (nx-27017 names its indexes its own way).
        stale = [{due: 1} for due in DUE_KEYS]
        async for index in await self.apps.list_indexes():
            if dict(index["key"]) in stale:
                try:
                    await self.apps.drop_index(index["name"])
                except OperationFailure as exc:  # left behind, it only costs its upkeep
                    log.warning(
                        "old deadline index kept", extra={"index": index["name"], "error": str(exc)}
                    )

    async def _backfill_derived(self) -> None:
        """Records written before the inbox's derived fields existed get them (their state is
        unchanged, so the version stays)."""
        while True:
            found = self.apps.find({"stage": {"$exists": False}}).limit(_BACKFILL_BATCH)
            docs = [doc async for doc in found]
            for doc in docs:
                await self.apps.update_one({"_id": doc["_id"]}, {"$set": derived(from_doc(doc))})
            if len(docs) < _BACKFILL_BATCH:
                return

    async def _backfill_unit_keys(self) -> None:
        """Records assigned to a sub-unit before units scoped staff get the unit's key (one pass:
        a record rewritten meanwhile has it already)."""
        found = self.apps.find(
            {"unit": {"$ne": None}, "unit_key": {"$exists": False}}, {"unit": 1, "version": 1}
        )
        async for doc in found:
            await self.apps.update_one(
                {"_id": doc["_id"], "version": doc.get("version", 0)},
                {"$set": {"unit_key": unit_key(doc.get("unit"))}},
            )

    async def get(self, application_id: str) -> Application | None:
        doc = await self.apps.find_one({"_id": application_id})
        return from_doc(doc) if doc else None

    async def by_number(self, number_key: str) -> Application | None:
        doc = await self.apps.find_one({"number_key": number_key})
        return from_doc(doc) if doc else None

    async def get_many(self, application_ids: Sequence[str]) -> dict[str, Application]:
        found = self.apps.find({"_id": {"$in": list(application_ids)}})
        return {doc["_id"]: from_doc(doc) async for doc in found}

    def _document(self, write: Write) -> tuple[dict[str, Any], Pending | None]:
        state = write.state
        doc = to_doc(state, write.expected_version + 1)
        fields, pending = self.outbox.fields(state.application_id, write.messages, state.outbox)
        doc.update(fields)
        doc["write_id"] = uuid.uuid4().hex  # tells, after a bulk write, whose write landed
        return doc, pending

    async def save(self, write: Write) -> tuple[bool, Pending | None]:
        """Write the new state if nobody changed it since it was read; False if somebody did."""
        doc, pending = self._document(write)
        if write.expected_version == 0:
            try:
                await self.apps.insert_one(doc)
                return True, pending
            except DuplicateKeyError:
                if await self.apps.find_one({"_id": doc["_id"]}, {"_id": 1}) is None:
                    raise NumberTaken(write.state.application_number) from None
                return False, None
        result = await self.apps.replace_one(
            {"_id": doc["_id"], "version": write.expected_version}, doc
        )
        return result.matched_count == 1, pending if result.matched_count == 1 else None

    async def save_many(self, writes: Sequence[Write]) -> Saved:
        """One bulk write for a batch; the applications another writer changed meanwhile are
        returned as conflicts (the caller applies their inputs again, one by one)."""
        if not writes:
            return Saved([], set())
        built = [self._document(w) for w in writes]
        ops: list[InsertOne[Document] | ReplaceOne[Document]] = [
            InsertOne(doc)
            if w.expected_version == 0
            else ReplaceOne({"_id": doc["_id"], "version": w.expected_version}, doc)
            for w, (doc, _) in zip(writes, built, strict=True)
        ]
        conflicts: set[str] = set()
        try:
            result = await self.apps.bulk_write(ops, ordered=False)
            landed = result.inserted_count + result.matched_count
        except BulkWriteError as exc:
            conflicts = {built[e["index"]][0]["_id"] for e in exc.details.get("writeErrors", [])}
            landed = -1
        if landed != len(ops):
            # Some replace found another version: ask the database whose writes landed.
            ids = [doc["_id"] for doc, _ in built]
            found = self.apps.find({"_id": {"$in": ids}}, {"write_id": 1})
            landed_ids = {d["write_id"] async for d in found}
            conflicts |= {doc["_id"] for doc, _ in built if doc["write_id"] not in landed_ids}
        pending = [p for doc, p in built if p is not None and doc["_id"] not in conflicts]
        return Saved(pending, conflicts)

    async def list_for_institution(self, page: InstitutionPage) -> list[Application]:
        """That institution's applications: escorted applicants first, then nearest deadline."""
        query = page.query()
        if page.cursor:
            first, deadline, after_id = decode_cursor(page.cursor)
            query = {
                "$and": [
                    query,
                    {
                        "$or": [
                            {"priority_first": {"$lt": first}},
                            {"priority_first": first, "deadline_at": {"$gt": deadline}},
                            {
                                "priority_first": first,
                                "deadline_at": deadline,
                                "_id": {"$gt": after_id},
                            },
                        ]
                    },
                ]
            }
        order = [("priority_first", DESCENDING), ("deadline_at", ASCENDING), ("_id", ASCENDING)]
        found = self.apps.find(query).sort(order)
        return [from_doc(doc) async for doc in found.limit(page.limit)]

    async def count_for_institution(self, page: InstitutionPage) -> int:
        """How many applications the page's filters match, on every page together."""
        return await self.apps.count_documents(page.query())

    async def claim_due(
        self, due: DueField, now: datetime, lease_seconds: float
    ) -> Application | None:
        """Take one application whose `due` time has come, so that no other process takes it.

        Answered from the index on (due time, lease): only due records are read, however many
        are open; the write that settles one clears its due time and the lease together.
        """
        stamp = _stamp(now)
        doc = await self.apps.find_one_and_update(
            {DUE_KEYS[due]: {"$lte": stamp}, WATCH_LEASE: {"$lte": stamp}},
            {"$set": {WATCH_LEASE: stamp + lease_seconds}},
            return_document=ReturnDocument.AFTER,
        )
        return from_doc(doc) if doc else None

    async def reserve_guess(self, number_key: str, now: datetime) -> Guess:
        """Take a place for one guess of the number's phone digits in the current window,
        before the guess is checked: each step is one atomic write, so parallel guesses each
        get a place of their own and no more than the lock allows are ever checked. A window
        starts with the first guess after the last one ended and lasts MISS_WINDOW."""
        stamp = _stamp(now)
        since = stamp - MISS_WINDOW.total_seconds()
        for _ in range(_GUESS_RETRIES):
            doc = await self.guesses.find_one_and_update(
                {"_id": number_key, "start": {"$gt": since}},
                {"$inc": {"count": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return Guess(int(doc["count"]), float(doc["start"]))
            # No window, or an ended one: start a new one (unless a parallel guess just did).
            fresh = {"start": stamp, "count": 1, "at": now}
            ended = await self.guesses.find_one_and_replace(
                {"_id": number_key, "start": {"$lte": since}}, fresh
            )
            if ended is not None:
                return Guess(1, stamp)
            try:
                await self.guesses.insert_one({"_id": number_key, **fresh})
                return Guess(1, stamp)
            except DuplicateKeyError:
                continue
        return Guess(_SATURATED, stamp)

    async def release_guess(self, number_key: str, guess: Guess) -> None:
        """A right guess gives its place back: a citizen who looks up their own application
        never locks it."""
        await self.guesses.update_one(
            {"_id": number_key, "start": guess.window, "count": {"$gt": 0}},
            {"$inc": {"count": -1}},
        )
