"""Each institution's morning e-mail: on every business day, at `digest_time` (Istanbul), one
e-mail to each institution that holds open applications, with its open and overdue lists.

One process sends a day's lists: it claims the day in `tracking_digests` with a lease, and a
process that dies half-way leaves the day to the next one once the lease ends. Each e-mail's
idempotency key names the institution and the day, so what was sent before the crash is not
sent again (notification keeps the keys)."""

from __future__ import annotations

import logging
import time as clock
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.common import topics
from services.common.business_days import Calendar
from services.common.events import (
    InstitutionEntry,
    NotificationChannel,
    NotificationRequest,
    Status,
)
from services.common.messaging import EventPublisher
from services.common.mongo import Database
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.tracking import domain
from services.tracking.deadlines import inbox_url
from services.tracking.directory import Directory

log = logging.getLogger("acikkapi.tracking.digest")

TEMPLATE = "institution_digest"
# Each list names at most this many applications (nearest deadline first); the rest are counted.
LIST_LIMIT = 50
LEASE_SECONDS = 600.0
HELD = [Status.routed.value, Status.opened.value]


def due_day(now: datetime, settings: Settings, calendar: Calendar) -> date | None:
    """The business day whose lists are due at `now` (None: a closed day, or too early)."""
    local = now.astimezone(ISTANBUL)
    hour, minute = (int(part) for part in settings.digest_time.split(":"))
    if not calendar.is_business_day(local.date()) or local.time() < time(hour, minute):
        return None
    return local.date()


@dataclass(frozen=True)
class Line:
    application_number: str
    subject: str | None
    deadline_at: datetime | None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Line:
        return cls(doc["number"], doc.get("subject"), doc.get("deadline_at"))

    def params(self) -> dict[str, Any]:
        return {
            "application_number": self.application_number,
            "subject": self.subject or "",
            "deadline_at": self.deadline_at.isoformat() if self.deadline_at else None,
        }


def digest_email(
    institution: InstitutionEntry,
    day: date,
    open_lines: Sequence[Line],
    overdue_lines: Sequence[Line],
    counts: tuple[int, int],
    settings: Settings,
) -> NotificationRequest:
    """One institution's morning e-mail."""
    if institution.email is None:
        raise ValueError(f"{institution.code} has no address")
    key = f"digest:{institution.code}:{day.isoformat()}:email"
    return NotificationRequest(
        event_id=domain.event_id(f"digest:{institution.code}", day.isoformat()),
        producer=domain.PRODUCER,
        idempotency_key=key,
        channel=NotificationChannel.email,
        to=institution.email,
        template=TEMPLATE,
        params={
            "institution_name": institution.name,
            "day": day.isoformat(),
            "open_count": counts[0],
            "overdue_count": counts[1],
            "open": [line.params() for line in open_lines[:LIST_LIMIT]],
            "overdue": [line.params() for line in overdue_lines[:LIST_LIMIT]],
            "inbox_url": inbox_url(settings),
        },
    )


class MorningLists:
    def __init__(
        self,
        db: Database,
        publisher: EventPublisher,
        directory: Directory,
        settings: Settings,
        calendar: Callable[[], Calendar],
    ) -> None:
        self.apps = db["tracking_applications"]
        self.runs = db["tracking_digests"]
        self.publisher = publisher
        self.directory = directory
        self.settings = settings
        self.calendar = calendar

    async def ensure_indexes(self) -> None:
        await self.apps.create_index(
            [("institution_code", ASCENDING), ("status", ASCENDING), ("overdue", ASCENDING)]
        )

    async def run(self, now: datetime) -> int:
        """Send the day's lists if they are due and no other process sent them; how many."""
        day = due_day(now, self.settings, self.calendar())
        if day is None or not await self._claim(day):
            return 0
        sent = 0
        for taxonomy in self.directory.provinces():
            for institution in taxonomy.institutions:
                if institution.email and await self._send(institution, day):
                    sent += 1
        await self.runs.update_one({"_id": day.isoformat()}, {"$set": {"done": True, "sent": sent}})
        log.info("morning lists sent", extra={"day": day.isoformat(), "sent": sent})
        return sent

    async def _claim(self, day: date) -> bool:
        """This process sends the day's lists (a lease: epoch seconds, see store.py's note)."""
        until = clock.time() + LEASE_SECONDS
        try:
            await self.runs.insert_one({"_id": day.isoformat(), "done": False, "lease": until})
            return True
        except DuplicateKeyError:
            pass
        taken = await self.runs.find_one_and_update(
            {"_id": day.isoformat(), "done": False, "lease": {"$lt": clock.time()}},
            {"$set": {"lease": until}},
            return_document=ReturnDocument.AFTER,
        )
        return taken is not None

    async def _send(self, institution: InstitutionEntry, day: date) -> bool:
        held = {"institution_code": institution.code, "status": {"$in": HELD}}
        open_count = await self.apps.count_documents(held)
        if open_count == 0:
            return False
        overdue = {**held, "overdue": True}
        overdue_count = await self.apps.count_documents(overdue)
        fields = {"number": 1, "subject": 1, "deadline_at": 1}
        open_docs = self.apps.find({**held, "overdue": False}, fields)
        late_docs = self.apps.find(overdue, fields)
        open_lines = [
            Line.of(d) async for d in open_docs.sort("deadline_at", ASCENDING).limit(LIST_LIMIT)
        ]
        late_lines = [
            Line.of(d) async for d in late_docs.sort("deadline_at", ASCENDING).limit(LIST_LIMIT)
        ]
        mail = digest_email(
            institution, day, open_lines, late_lines, (open_count, overdue_count), self.settings
        )
        await self.publisher.send(topics.NOTIFICATION_REQUESTS, mail, mail.idempotency_key)
        return True
