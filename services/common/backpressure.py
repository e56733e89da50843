"""Back-pressure at an HTTP edge: refuse quickly and honestly what cannot be stored now.

A service that accepts work it cannot write makes callers wait, then fails them anyway, and
under an outage piles up requests until it runs out of memory. `Admission` instead answers at
once with 503 and `Retry-After` while:

- a dependency is down: a probe (the service's own readiness checks) runs every second, and a
  request that found MongoDB or Kafka failing marks it down at once; the next good probe
  clears it, so the service recovers by itself;
- too many requests are already in flight: each waits for a write, and more of them would
  only wait longer.

Nothing already accepted is affected: it is stored, and its events wait in the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from services.common.observability import ADMISSION_REFUSED

log = logging.getLogger("acikkapi.backpressure")

Probe = Callable[[], Awaitable[dict[str, bool]]]

# What a citizen or a channel adapter reads, by the dependency that is missing.
_DOWN = (
    "Başvurular şu anda kaydedilemiyor: {what} yanıt vermiyor. Başvurunuz kaydedilmedi; "
    "lütfen {seconds} saniye sonra tekrar deneyin."
)
_WHAT = {
    "mongodb": "veritabanı",
    "kafka": "mesaj altyapısı",
    "taxonomy": "yönlendirme servisi (il ve konu tablosu)",
    "probe": "sistem",
}
_BUSY = (
    "Sistem şu anda çok yoğun. Başvurunuz kaydedilmedi; lütfen {seconds} saniye sonra tekrar "
    "deneyin."
)


class Overloaded(Exception):
    """The request was not taken: `message` says why (in Turkish) and when to come back."""

    def __init__(self, reason: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class Admission:
    """Admits a request only while the dependencies answer and fewer than `max_in_flight`
    requests are being handled; run `watch()` as a background task."""

    def __init__(
        self,
        service: str,
        probe: Probe,
        *,
        max_in_flight: int,
        interval: float = 1.0,
        probe_timeout: float = 3.0,
        retry_after: int = 5,
    ) -> None:
        self.service = service
        self.probe = probe
        self.max_in_flight = max_in_flight
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.retry_after = retry_after
        self.down: set[str] = set()
        self.in_flight = 0

    def note_down(self, dependency: str) -> None:
        """A request saw `dependency` fail: refuse until a probe finds it back."""
        if dependency not in self.down:
            log.warning("dependency down: refusing new work", extra={"dependency": dependency})
        self.down.add(dependency)

    async def check(self) -> None:
        """One probe: what is down now (a probe that does not answer in time counts as down)."""
        try:
            async with asyncio.timeout(self.probe_timeout):
                checks = await self.probe()
            down = {name for name, ok in checks.items() if not ok}
        except TimeoutError:
            down = {"probe"}
        if self.down and not down:
            log.info("dependencies back: accepting work again")
        self.down = down

    async def watch(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Holds a place while the request is handled; raises Overloaded instead of waiting."""
        if self.down:
            what = _WHAT.get(sorted(self.down)[0], "sistem")
            self._refuse("dependency_down", _DOWN.format(what=what, seconds=self.retry_after))
        if self.in_flight >= self.max_in_flight:
            self._refuse("busy", _BUSY.format(seconds=self.retry_after))
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def _refuse(self, reason: str, message: str) -> None:
        ADMISSION_REFUSED.labels(self.service, reason).inc()
        raise Overloaded(reason, message, self.retry_after)
