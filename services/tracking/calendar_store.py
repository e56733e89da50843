"""Tracking's calendar of leave days (idari izin): every version in MongoDB, and its announcement
on `acikkapi.calendar`, which every tracking process keeps current.

A version is one document of `tracking_calendar_versions`, `_id` its number, never rewritten: who
added or removed which day, when and why, the difference to the version before, and the whole
list of leave days after the change. The newest version is the calendar. A change inserts version
n+1; two administrators who both changed version n race for that one `_id`, and the second gets
`VersionConflict` instead of overwriting the first (optimistic locking without a lock).

The process that made a version announces it at once (the whole calendar, key "TR"). Every
tracking process also compares the topic with its database (`CalendarKeeper.run`): when the
topic says something else than the newest version (a crash between the insert and the
announcement, Kafka away, two announcements overtaking each other), it announces the newest
version again after `GRACE_SECONDS`, as routing does for the taxonomy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
import uuid
from enum import StrEnum
from typing import Any, Literal, Protocol

from faststream.kafka import KafkaBroker
from pydantic import BaseModel
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from services.common import messaging, topics
from services.common.business_days import Calendar
from services.common.calendar_live import KEY, LiveCalendar
from services.common.events import CalendarPublished, LeaveDayEntry
from services.common.messaging import EventPublisher, Outgoing
from services.common.mongo import Database

SERVICE = "tracking"
COLLECTION = "tracking_calendar_versions"
_CALENDAR_IDS = uuid.UUID("5c0f3e1a-7d2b-5b8e-9a41-2f6e8c1d9b37")

log = logging.getLogger("acikkapi.tracking.calendar")


class LeaveKind(StrEnum):
    idari_izin = "idari_izin"  # administrative leave the Presidency declares (a circular)
    kopru = "kopru"  # a bridge day between a holiday and a weekend, given as idari izin
    ek_tatil = "ek_tatil"  # a one-off public holiday by law, not (yet) in `holidays`
    diger = "diger"


KIND_NAMES = {
    LeaveKind.idari_izin: "İdari izin",
    LeaveKind.kopru: "Köprü günü (idari izin)",
    LeaveKind.ek_tatil: "Ek resmî tatil",
    LeaveKind.diger: "Diğer",
}


class LeaveDay(BaseModel):
    date: dt.date
    kind: LeaveKind
    reason: str
    added_by: str
    added_at: dt.datetime


class CalendarChange(BaseModel):
    """One line of a version's difference to the one before."""

    op: Literal["added", "removed"]
    date: dt.date
    kind: LeaveKind
    reason: str  # the leave day's own reason


Action = Literal["leave_day.add", "leave_day.remove"]


class VersionInfo(BaseModel):
    """One line of the change log."""

    version: int
    author: str
    author_role: str
    at: dt.datetime
    action: Action
    date: dt.date  # the day added or removed
    reason: str  # why the change was made
    summary: str
    changes: list[CalendarChange]


class CalendarVersion(VersionInfo):
    """One version as stored: the change log line and the whole calendar after the change."""

    leave_days: list[LeaveDay]

    def calendar(self) -> Calendar:
        return Calendar(frozenset(d.date for d in self.leave_days), self.version)

    def event(self) -> CalendarPublished:
        """Its announcement; the same version with the same days is always the same event."""
        entries = [
            LeaveDayEntry(day=d.date, kind=d.kind.value, reason=d.reason) for d in self.days()
        ]
        content = "|".join(f"{e.day}:{e.kind}:{e.reason}" for e in entries)
        digest = hashlib.sha256(content.encode()).hexdigest()[:16]
        return CalendarPublished(
            event_id=uuid.uuid5(_CALENDAR_IDS, f"{self.version}:{digest}"),
            producer=SERVICE,
            version=self.version,
            leave_days=entries,
            changed_at=self.at,
        )

    def days(self) -> list[LeaveDay]:
        return sorted(self.leave_days, key=lambda d: d.date)

    def leave_day(self, day: dt.date) -> LeaveDay | None:
        return next((d for d in self.leave_days if d.date == day), None)


class VersionConflict(Exception):
    """Someone else made a version first; `current` is the newest one now (None: none)."""

    def __init__(self, current: VersionInfo | None) -> None:
        super().__init__(f"calendar changed meanwhile: now {current.version if current else 0}")
        self.current = current


class CalendarVersions(Protocol):
    """The versions as the use cases see them (`CalendarStore`; a fake in unit tests)."""

    async def head(self) -> CalendarVersion | None: ...
    async def log(self, limit: int, offset: int) -> tuple[list[VersionInfo], int]: ...
    async def append(self, version: CalendarVersion) -> None: ...


class CalendarStore:
    """`tracking_calendar_versions`: one document per version of the calendar."""

    def __init__(self, db: Database) -> None:
        self._versions = db[COLLECTION]

    async def head(self) -> CalendarVersion | None:
        found = await self._versions.find_one({}, sort=[("_id", DESCENDING)])
        return None if found is None else CalendarVersion.model_validate(_aware(found))

    async def log(self, limit: int, offset: int) -> tuple[list[VersionInfo], int]:
        """The change log, newest first, without the whole calendars."""
        cursor = (
            self._versions.find({}, {"leave_days": 0})
            .sort("_id", DESCENDING)
            .skip(offset)
            .limit(limit)
        )
        lines = [VersionInfo.model_validate(_aware(d)) for d in await cursor.to_list(limit)]
        return lines, await self._versions.count_documents({})

    async def append(self, version: CalendarVersion) -> None:
        """Store a new version; VersionConflict if its number is taken (a concurrent change)."""
        document = version.model_dump(mode="json")
        document["_id"] = version.version
        document["at"] = version.at  # a date for MongoDB, not text
        for day, stored in zip(version.leave_days, document["leave_days"], strict=True):
            stored["added_at"] = day.added_at
        try:
            await self._versions.insert_one(document)
        except DuplicateKeyError:
            raise VersionConflict(await self.head()) from None


def _aware(document: dict[str, Any]) -> dict[str, Any]:
    """Datetimes as UTC-aware (a client without tz_aware, or a store that drops the zone)."""

    def aware(value: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value

    document["at"] = aware(document.get("at"))
    for day in document.get("leave_days") or []:
        day["added_at"] = aware(day.get("added_at"))
    return document


def declare(broker: KafkaBroker) -> None:
    """Show the announcement in tracking's AsyncAPI document (and in its Kafka rights)."""
    messaging.declare_publisher(
        broker,
        topics.CALENDAR,
        CalendarPublished,
        "İdari izin günleri: her yönetici değişikliği takvimin yeni bir sürümüdür ve bütünüyle "
        "duyurulur; konu en yeni sürümü göstermiyorsa yeniden duyurulur. Konu sıkıştırılmıştır "
        '(anahtar: "TR").',
    )


class CalendarKeeper:
    """Keeps this process's calendar at the database's newest version, and the topic saying it."""

    GRACE_SECONDS = 2.0
    POLL_SECONDS = 30.0
    TICK_SECONDS = 0.5
    MAX_BACKOFF_SECONDS = 60.0

    def __init__(
        self, store: CalendarVersions, live: LiveCalendar, publisher: EventPublisher
    ) -> None:
        self.store = store
        self.live = live
        self._publisher = publisher
        self.held: CalendarVersion | None = None  # the database's newest, as last read
        self._event: CalendarPublished | None = None  # its announcement
        self._checked: uuid.UUID | None = None  # the topic's message last checked against it
        self._behind_since: float | None = None
        self._backoff: tuple[float, float] = (0.0, 0.0)  # next allowed, current back-off
        self._announced_at_start = False

    async def load(self) -> None:
        """Take the database's newest version (a start-up hook: before the consumers start)."""
        await self.sync()

    async def sync(self) -> bool:
        """Read the newest version; True if it is another than the one held."""
        newest = await self.store.head()
        if newest is None or (self.held is not None and newest.version == self.held.version):
            return False
        self._hold(newest)
        return True

    def _hold(self, version: CalendarVersion) -> None:
        self.held, self._event = version, version.event()
        self.live.install(version.calendar())

    async def adopt(self, version: CalendarVersion) -> bool:
        """A version this process just stored: use it and announce it. False when the
        announcement failed (`run` repeats it once Kafka answers)."""
        self._hold(version)
        try:
            await self.announce()
        except Exception as exc:
            log.warning(
                "calendar version stored, announcement left to the keeper",
                extra={"version": version.version, "error": type(exc).__name__},
            )
            return False
        return True

    async def announce(self) -> None:
        if self._event is not None:
            await self._publisher.send_all([Outgoing.of(topics.CALENDAR, self._event, KEY)])

    async def reconcile(self, now: float | None = None) -> bool:
        """Announce the held version again if the topic says something else for longer than
        the grace. True if it was announced."""
        if self.held is None or self._event is None or not self.live.is_caught_up():
            return False
        now = time.monotonic() if now is None else now
        seen = self.live.announced()
        if seen is not None and seen.event_id != self._event.event_id:
            # Perhaps another process made a newer version: read the database once per message.
            if seen.event_id != self._checked:
                await self.sync()
                self._checked = seen.event_id
        if seen is not None and seen.event_id == self._event.event_id:
            self._behind_since = None
            self._backoff = (0.0, 0.0)
            self._announced_at_start = True
            return False
        since = self._behind_since = self._behind_since or now
        allowed, backoff = self._backoff
        # At start, or when the topic has nothing, at once; otherwise give the process that
        # made the version time to announce it itself.
        at_once = not self._announced_at_start or seen is None
        if now < allowed or not (at_once or now - since >= self.GRACE_SECONDS):
            return False
        await self.announce()
        self._announced_at_start = True
        # Two deployments that disagree on one topic must not outshout each other in a loop.
        backoff = min(max(backoff * 2, self.GRACE_SECONDS), self.MAX_BACKOFF_SECONDS)
        self._backoff = (now + backoff, backoff)
        log.info("calendar announced again", extra={"version": self.held.version})
        return True

    async def run(self) -> None:
        """The background loop: the topic checked every tick (in memory), the database every
        POLL_SECONDS (a version another process stored but could not announce)."""
        polled = time.monotonic()
        while True:
            await asyncio.sleep(self.TICK_SECONDS)
            try:
                if time.monotonic() - polled >= self.POLL_SECONDS:
                    polled = time.monotonic()
                    await self.sync()
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store or Kafka away: try again on the next tick
                log.warning("calendar keeping failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(1.0)
