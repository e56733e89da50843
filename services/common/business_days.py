"""The answer deadline: business days in Türkiye, shared by routing (it prints the deadline on the
institution's queue) and tracking (it watches the deadline).

The rule, written down once:
- Saturdays, Sundays and the public holidays of the `holidays` package (Turkey, category
  "public": Ramazan and Kurban Bayramı included, with the dates the Diyanet announces) are
  not business days.
- Half-day eves (arife günleri and 28 Ekim, "from 1pm" in `holidays`) *are* business days:
  public offices work until 13:00 and can act on an application that morning.
- The day of receipt does not count; counting starts the next business day. The deadline is
  the end (23:59:59, Europe/Istanbul) of the Nth business day.
- Extra closed days (an administrative leave announced by the Presidency) can be added by
  the caller; they are then treated like public holidays.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import holidays

from services.common.turkish_time import ISTANBUL

ANSWER_BUSINESS_DAYS = 7


@lru_cache(maxsize=64)
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("TR", years=year, categories=("public",)))


def is_business_day(day: date, extra_closed: Iterable[date] = ()) -> bool:
    if day.weekday() >= 5:
        return False
    if day in _public_holidays(day.year):
        return False
    return day not in set(extra_closed)


def add_business_days(start: date, count: int, extra_closed: Iterable[date] = ()) -> date:
    """The `count`th business day after `start` (`start` itself never counts)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    closed = frozenset(extra_closed)
    day = start
    remaining = count
    while remaining:
        day += timedelta(days=1)
        if is_business_day(day, closed):
            remaining -= 1
    return day


def business_days_between(start: datetime, end: datetime) -> int:
    """Business days from the day after `start` up to and including the day of `end`."""
    first = start.astimezone(ISTANBUL).date()
    last = end.astimezone(ISTANBUL).date()
    count = 0
    day = first
    while day < last:
        day += timedelta(days=1)
        if is_business_day(day):
            count += 1
    return count


def answer_deadline(
    received_at: datetime,
    business_days: int = ANSWER_BUSINESS_DAYS,
    extra_closed: Iterable[date] = (),
) -> datetime:
    """End of the Nth business day after the (Istanbul) day of receipt, as an aware datetime."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    local_day = received_at.astimezone(ISTANBUL).date()
    last_day = add_business_days(local_day, business_days, extra_closed)
    return datetime.combine(last_day, time(23, 59, 59), tzinfo=ISTANBUL)
