"""The calendar a tracking or routing process computes deadlines with, kept current: weekends and
public holidays (`business_days.PUBLIC`) plus the leave days (idari izin) administrators declared,
as tracking announces them on the compacted topic `acikkapi.calendar`.

Each process reads the topic to its end before its consumers start (`start`, a start-up hook),
so no deadline is computed with an older calendar than the topic holds, and then follows it: a
leave day an administrator adds reaches every process within one Kafka round trip. The topic's
newest message is the calendar. The one exception is a tracking process that has a newer version
from its own database (`install`): tracking makes the versions, so it uses its newest at once,
also while Kafka is away, and announces it again until the topic says the same
(services/tracking/calendar_store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from services.common import kafka_auth, topics
from services.common.business_days import PUBLIC, Calendar
from services.common.compacted import CompactedView
from services.common.events import CalendarPublished
from services.common.settings import Settings

# One national calendar: the Presidency declares administrative leave for the whole country.
KEY = "TR"

log = logging.getLogger("acikkapi.calendar")

Listener = Callable[[Calendar], None]


def calendar_of(event: CalendarPublished) -> Calendar:
    return Calendar(frozenset(entry.day for entry in event.leave_days), event.version)


class CalendarUnavailable(RuntimeError):
    """The topic could not be read to its end in time; the service's start is tried again."""


class _CalendarTopic(CompactedView[CalendarPublished]):
    """`acikkapi.calendar` read whole, with a signal for each message that arrives."""

    def __init__(self, kafka: dict[str, Any], client_id: str) -> None:
        super().__init__(kafka, topics.CALENDAR, CalendarPublished, client_id=client_id)
        self.arrived = asyncio.Event()

    def _apply(
        self, latest: dict[str, CalendarPublished], key: bytes | None, value: bytes | None
    ) -> None:
        super()._apply(latest, key, value)
        self.arrived.set()


class LiveCalendar:
    """`current` is the newest calendar this process knows; `app.state.calendar` in tracking and
    routing."""

    START_TIMEOUT_SECONDS = 20.0
    # A re-read after a broker outage swaps the whole view in without a message arriving: look
    # again at least this often.
    REFRESH_SECONDS = 1.0

    def __init__(self, settings: Settings, service: str) -> None:
        self.view = _CalendarTopic(
            kafka_auth.client_options(settings, service), client_id=f"acikkapi-{service}-calendar"
        )
        self._seen: CalendarPublished | None = None  # the message `_from_topic` was made from
        self._from_topic: Calendar | None = None
        self._local: Calendar | None = None
        self._current = PUBLIC
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> Calendar:
        self._refresh()
        return self._current

    def announced(self) -> CalendarPublished | None:
        """The topic's newest announcement (None: nothing announced, or the topic not read yet)."""
        return self.view.latest.get(KEY)

    def is_caught_up(self) -> bool:
        """Read to the end the topic had at start (a /readyz check)."""
        return self.view.caught_up.is_set()

    def install(self, calendar: Calendar) -> None:
        """A version from tracking's own database: used while the topic has no newer one."""
        self._local = calendar
        self._refresh()

    def on_change(self, listener: Listener) -> None:
        """Call `listener(calendar)` whenever `current` changes (in the event loop's thread; it
        must not block: schedule work, do not do it there)."""
        self._listeners.append(listener)

    # Start-up and shutdown hooks --------------------------------------------------------------

    async def start(self) -> None:
        """Follow the topic and wait until it is read to its end. Raises CalendarUnavailable
        after START_TIMEOUT_SECONDS (the service's start is then tried again, the reading goes
        on meanwhile)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="calendar-topic")
        try:
            async with asyncio.timeout(self.START_TIMEOUT_SECONDS):
                await self.view.caught_up.wait()
        except TimeoutError:
            raise CalendarUnavailable(
                f"{topics.CALENDAR} not read to its end within {self.START_TIMEOUT_SECONDS:.0f} s "
                "(is the topic there? deploy/local/create_topics.py makes it)"
            ) from None
        self._refresh()
        log.info("calendar read", extra={"version": self._current.version})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        follower = asyncio.create_task(self.view.follow(), name="calendar-follow")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.REFRESH_SECONDS):
                        await self.view.arrived.wait()
                self.view.arrived.clear()
                self._refresh()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower

    # Deciding ---------------------------------------------------------------------------------

    def _refresh(self) -> None:
        event = self.announced()
        if event is not self._seen:
            self._seen = event
            # A tombstone (the key withdrawn) leaves the public calendar.
            self._from_topic = None if event is None else calendar_of(event)
        topic, local = self._from_topic, self._local
        chosen = (
            local
            if local is not None and (topic is None or local.version >= topic.version)
            else topic or PUBLIC
        )
        if chosen == self._current:
            return
        self._current = chosen
        log.info(
            "calendar version taken",
            extra={"version": chosen.version, "leave_days": len(chosen.leave_days)},
        )
        for listener in self._listeners:
            try:
                listener(chosen)
            except Exception:
                log.exception("calendar listener failed")
