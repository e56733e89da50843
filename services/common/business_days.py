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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING

import holidays

from services.common.events import ApplicationType
from services.common.turkish_time import ISTANBUL

if TYPE_CHECKING:
    from services.common.settings import Settings

ANSWER_BUSINESS_DAYS = 7
# Law 4982 (Bilgi Edinme Hakkı Kanunu) art. 11: an information request is answered within 15
# business days.
INFORMATION_REQUEST_BUSINESS_DAYS = 15


@lru_cache(maxsize=64)
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("TR", years=year, categories=("public",)))


@dataclass(frozen=True)
class Calendar:
    """Which days are business days: weekdays that are neither public holidays nor one of the
    administrative leave days (idari izin) an admin declared. One value is one version of the
    calendar; a deadline computed with it can be computed again with the next one."""

    leave_days: frozenset[date] = frozenset()
    version: int = 0

    def is_business_day(self, day: date) -> bool:
        return (
            day.weekday() < 5
            and day not in _public_holidays(day.year)
            and day not in self.leave_days
        )

    def add_business_days(self, start: date, count: int) -> date:
        """The `count`th business day after `start` (`start` itself never counts)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        day = start
        remaining = count
        while remaining:
            day += timedelta(days=1)
            if self.is_business_day(day):
                remaining -= 1
        return day

    def previous_business_day(self, day: date) -> date:
        day -= timedelta(days=1)
        while not self.is_business_day(day):
            day -= timedelta(days=1)
        return day

    def business_days_between(self, start: datetime, end: datetime) -> int:
        """Business days from the day after `start` up to and including the day of `end`."""
        first = start.astimezone(ISTANBUL).date()
        last = end.astimezone(ISTANBUL).date()
        count = 0
        day = first
        while day < last:
            day += timedelta(days=1)
            if self.is_business_day(day):
                count += 1
        return count

    def answer_deadline(
        self, received_at: datetime, business_days: int = ANSWER_BUSINESS_DAYS
    ) -> datetime:
        """End of the Nth business day after the (Istanbul) day of receipt, aware."""
        if received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        local_day = received_at.astimezone(ISTANBUL).date()
        last_day = self.add_business_days(local_day, business_days)
        return datetime.combine(last_day, time(23, 59, 59), tzinfo=ISTANBUL)


# Public holidays and weekends only: what a process knows before an admin's leave days reach it.
PUBLIC = Calendar()


@dataclass(frozen=True)
class DeadlineRules:
    """How long an institution has, written once (docs/deadlines.md).

    - The service level: `by_category` for the application's category, else `by_type` for its
      type (bilgi edinme: 15 business days, Law 4982 art. 11), else `default_days` (7).
    - A supervisor's one extension adds its business days.
    - Waiting for the citizen gives the time back: for each question, the business days after
      the day it was asked, up to and including the day of the reply (or the day the
      institution went on without one). While a question is open, the deadline is not watched.
    - The deadline is the end (23:59:59, Istanbul) of that many business days after the day of
      receipt, on `calendar` (public holidays and the admins' leave days).
    - The institution is warned `warning_days` business days before: the same clock time that
      many business days earlier (2: it has that day and the last one left).
    """

    calendar: Calendar = PUBLIC
    default_days: int = ANSWER_BUSINESS_DAYS
    by_type: Mapping[ApplicationType, int] = field(
        default_factory=lambda: MappingProxyType(
            {ApplicationType.bilgi_edinme: INFORMATION_REQUEST_BUSINESS_DAYS}
        )
    )
    by_category: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    warning_days: int = 2

    def service_days(
        self, application_type: ApplicationType | None, category_code: str | None
    ) -> int:
        if category_code is not None and category_code in self.by_category:
            return self.by_category[category_code]
        if application_type is not None and application_type in self.by_type:
            return self.by_type[application_type]
        return self.default_days

    def with_calendar(self, calendar: Calendar) -> DeadlineRules:
        return self if calendar == self.calendar else replace(self, calendar=calendar)

    def first_deadline(
        self,
        received_at: datetime,
        application_type: ApplicationType | None,
        category_code: str | None,
    ) -> datetime:
        """The deadline before any extension or question: what routing prints on the queue."""
        return self.calendar.answer_deadline(
            received_at, self.service_days(application_type, category_code)
        )


def rules_from(settings: Settings, calendar: Calendar = PUBLIC) -> DeadlineRules:
    """The service levels the settings give, on `calendar`."""
    return DeadlineRules(
        calendar=calendar,
        default_days=settings.answer_business_days,
        by_type=MappingProxyType(
            {ApplicationType(k): v for k, v in settings.answer_business_days_by_type.items()}
        ),
        by_category=MappingProxyType(dict(settings.answer_business_days_by_category)),
        warning_days=settings.deadline_warning_business_days,
    )


def is_business_day(day: date, extra_closed: Iterable[date] = ()) -> bool:
    return Calendar(frozenset(extra_closed)).is_business_day(day)


def add_business_days(start: date, count: int, extra_closed: Iterable[date] = ()) -> date:
    """The `count`th business day after `start` (`start` itself never counts)."""
    return Calendar(frozenset(extra_closed)).add_business_days(start, count)


def business_days_between(start: datetime, end: datetime) -> int:
    """Business days from the day after `start` up to and including the day of `end`."""
    return PUBLIC.business_days_between(start, end)


def answer_deadline(
    received_at: datetime,
    business_days: int = ANSWER_BUSINESS_DAYS,
    extra_closed: Iterable[date] = (),
) -> datetime:
    """End of the Nth business day after the (Istanbul) day of receipt, as an aware datetime."""
    return Calendar(frozenset(extra_closed)).answer_deadline(received_at, business_days)
