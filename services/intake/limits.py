"""How much one person, one phone and one client address may submit (docs/limits.md: the values
and why).

- Daily limits per TC Kimlik No and per phone, on the channels where citizens apply by themselves
  (web, mobile, kiosk, e-Devlet, Open311); an officer at the counter or the call centre is not
  limited. A day is a Turkish calendar day (Europe/Istanbul). The counters live in MongoDB,
  shared by every intake process, keyed by a keyed hash of the number, never the number.
- A rate per client address on the citizens' POSTs (applications, codes, attachments), a token
  bucket in each process's memory: with N processes an address gets up to N times the rate.

The daily counters are taken in groups: what arrives while one group is being written goes into
the next, as the application inserts do (store.GroupCommit). A group is one `bulk_write` of `$inc`
per counter and one `find` that reads the totals back; within a group the takes of one counter
are numbered in arrival order, and a take numbered past the limit is refused. Two processes
taking the same counter at the same instant may each read the other's increment too, so a
person at their limit can be refused one application early, never admitted one too many.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from services.common.events import Channel
from services.common.mongo import Collection, Database
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL

LIMITED = Counter(
    "acikkapi_intake_limited_total",
    "Submissions refused by a limit, by limit (tckn, phone, address)",
    ["limit"],
)

# Channels where the citizen applies by themselves; officers' channels are not limited.
SELF_SERVICE = frozenset(
    {Channel.web, Channel.mobile, Channel.kiosk, Channel.edevlet, Channel.open311}
)


class LimitExceeded(Exception):
    """Refused by a limit: `code` and `message` for the citizen, `retry_after` in seconds."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = max(1, retry_after)


def istanbul_day(now: datetime) -> tuple[str, int]:
    """The Turkish calendar day of `now` and the seconds until it ends."""
    local = now.astimezone(ISTANBUL)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.date().isoformat(), math.ceil((midnight - local).total_seconds())


class DailyCounters:
    """Counters that group concurrent takes into one round trip (see the module docstring)."""

    def __init__(self, db: Database, max_batch: int = 256) -> None:
        self._counters: Collection = db["intake_daily_counters"]
        self._max_batch = max_batch
        self._queue: list[tuple[list[str], datetime, asyncio.Future[list[int]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def ensure_indexes(self) -> None:
        await self._counters.create_index("expires_at", expireAfterSeconds=0)

    async def take(self, keys: list[str], expires_at: datetime) -> list[int]:
        """Count one more for each key; returns this take's number on each (1 = the first)."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, expires_at, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="daily-limits")
        return await future

    async def _write_queued(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                numbered = await self._number(batch)
            except Exception as exc:  # MongoDB unreachable: every take of the group fails
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), numbers in zip(batch, numbered, strict=True):
                if not future.done():
                    future.set_result(numbers)

    async def _number(
        self, batch: list[tuple[list[str], datetime, asyncio.Future[list[int]]]]
    ) -> list[list[int]]:
        """Each take's number on each of its counters, in arrival order within the group."""
        per_key = Tally(k for keys, _, _ in batch for k in keys)
        totals = await self._increment(per_key, max(e for _, e, _ in batch))
        taken = Tally[str]()
        numbered = []
        for keys, _, _ in batch:
            numbers = []
            for key in keys:
                taken[key] += 1
                # A counter gone before the read-back (expired) counts only this group.
                numbers.append(totals.get(key, per_key[key]) - per_key[key] + taken[key])
            numbered.append(numbers)
        return numbered

    async def _increment(self, amounts: Tally[str], expires_at: datetime) -> dict[str, int]:
        operations = [
            UpdateOne(
                {"_id": key},
                {"$inc": {"n": n}, "$setOnInsert": {"expires_at": expires_at}},
                upsert=True,
            )
            for key, n in amounts.items()
        ]
        try:
            await self._counters.bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            # Another process created one of these counters at the same instant: the upsert
            # lost the race, and the increment, made again, is now a plain update.
            failed = [operations[e["index"]] for e in exc.details.get("writeErrors", [])]
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
            await self._counters.bulk_write(failed, ordered=False)
        found = self._counters.find({"_id": {"$in": list(amounts)}}, {"n": 1})
        return {doc["_id"]: int(doc["n"]) async for doc in found}


@dataclass(frozen=True)
class Applicant:
    """Who a submission counts against: keyed hashes of the TC Kimlik No and the phone."""

    channel: Channel
    tckn_key: str
    phone_key: str


class Counters(Protocol):
    """Daily counters (`DailyCounters`; a dict in unit tests)."""

    async def take(self, keys: list[str], expires_at: datetime) -> list[int]: ...


class DailyLimits:
    """The daily limits per TC Kimlik No and per phone (0: that limit is off)."""

    def __init__(
        self,
        counters: Counters,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._counters = counters
        self._limits = {
            "tckn": settings.daily_limit_per_tckn,
            "phone": settings.daily_limit_per_phone,
        }
        self._clock = clock

    async def admit(self, applicant: Applicant) -> None:
        """Counts the submission, or raises LimitExceeded if it is one too many today."""
        if applicant.channel not in SELF_SERVICE:
            return
        day, seconds_left = istanbul_day(self._clock())
        kinds = [kind for kind, limit in self._limits.items() if limit]
        if not kinds:
            return
        values = {"tckn": applicant.tckn_key, "phone": applicant.phone_key}
        keys = [f"{kind}:{values[kind]}:{day}" for kind in kinds]
        expires = self._clock() + timedelta(seconds=seconds_left + 3600)
        numbers = await self._counters.take(keys, expires)
        for kind, number in zip(kinds, numbers, strict=True):
            if number > self._limits[kind]:
                LIMITED.labels(kind).inc()
                raise LimitExceeded(
                    "daily_limit", _daily_message(kind, self._limits[kind]), seconds_left
                )


def _daily_message(kind: str, limit: int) -> str:
    who = "Bu TC Kimlik No ile" if kind == "tckn" else "Bu cep telefonu numarasıyla"
    return (
        f"{who} bugün en çok {limit} başvuru yapılabilir ve bu sayıya ulaşıldı. Yeni başvurunuzu "
        "yarın yapabilirsiniz; acil durumlarda Açık Kapı masasına başvurabilirsiniz."
    )


RATE_MESSAGE = (
    "Bu adresten çok kısa sürede çok fazla istek geldi. Lütfen {seconds} saniye sonra tekrar "
    "deneyin."
)


class AddressRate:
    """A token bucket per client address, in this process: `burst` at once, then
    `per_minute` a minute. Addresses idle for ten minutes are forgotten."""

    IDLE_SECONDS = 600.0

    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._last_sweep = clock()

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def take(self, address: str) -> None:
        """One request from `address`, or LimitExceeded with the seconds until the next."""
        if not self.enabled:
            return
        now = self._clock()
        self._sweep(now)
        tokens, last = self._buckets.get(address, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self._rate)
            LIMITED.labels("address").inc()
            raise LimitExceeded("rate_limited", RATE_MESSAGE.format(seconds=wait), wait)
        self._buckets[address] = (tokens - 1.0, now)

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self.IDLE_SECONDS:
            return
        self._last_sweep = now
        idle = [a for a, (_, last) in self._buckets.items() if now - last > self.IDLE_SECONDS]
        for address in idle:
            del self._buckets[address]


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted reverse proxy, the last
    address its X-Forwarded-For names (the one the proxy itself saw)."""
    address = peer or "unknown"
    if forwarded_for and address in set(trusted):
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return address


def trusted_proxies(settings: Settings) -> frozenset[str]:
    return frozenset(a.strip() for a in settings.trusted_proxies.split(",") if a.strip())


def rate_limit_headers(exc: LimitExceeded) -> dict[str, Any]:
    return {"Retry-After": str(exc.retry_after)}
