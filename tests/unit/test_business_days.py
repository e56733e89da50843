"""The answer deadline: seven business days in Türkiye, counted from the Istanbul day of receipt."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import holidays
import pytest

from services.common import business_days
from services.common.business_days import answer_deadline
from services.common.turkish_time import ISTANBUL


def istanbul(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=ISTANBUL)


def end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=ISTANBUL)


@pytest.mark.parametrize(
    ("received", "deadline", "why"),
    [
        # Ramazan Bayramı 2026: Fri 20 – Sun 22 March; Thu 19 is the half-day eve and counts.
        (istanbul(2026, 3, 16), date(2026, 3, 26), "17,18,19(arife),23,24,25,26"),
        # Kurban Bayramı 2026: Wed 27 – Sat 30 May; Tue 26 is the eve and counts.
        (istanbul(2026, 5, 22), date(2026, 6, 5), "25,26(arife),1,2,3,4,5"),
        # Ramazan Bayramı 2027: Tue 9 – Thu 11 March; Mon 8 is the eve and counts.
        (istanbul(2027, 3, 5), date(2027, 3, 19), "8(arife),12,15,16,17,18,19"),
        # Kurban Bayramı 2027: Sun 16 – Wed 19 May (19 is also a national day); the eve is a Sat.
        (istanbul(2027, 5, 13), date(2027, 5, 27), "14,20,21,24,25,26,27"),
        # 28 Ekim (half day) counts, 29 Ekim does not.
        (istanbul(2026, 10, 27), date(2026, 11, 6), "28(yarım gün),30,2,3,4,5,6"),
    ],
)
def test_seven_business_days_across_the_bayrams(received: datetime, deadline: date, why: str):
    assert answer_deadline(received) == end_of(deadline), why


def test_a_half_day_eve_is_a_business_day():
    for eve in (date(2026, 3, 19), date(2026, 5, 26), date(2027, 3, 8), date(2026, 10, 28)):
        assert eve in holidays.country_holidays("TR", years=eve.year, categories=("half_day",))
        assert business_days.is_business_day(eve)
    # The bayram days themselves are not.
    for holiday in (date(2026, 3, 20), date(2026, 5, 27), date(2027, 3, 10), date(2026, 10, 29)):
        assert not business_days.is_business_day(holiday)


def test_year_end_counts_across_new_year():
    # 31 Dec 2026 is a Thursday; 1 Ocak 2027 (Fri) is a holiday, then the weekend.
    assert answer_deadline(istanbul(2026, 12, 31, 16)) == end_of(date(2027, 1, 12))
    assert not business_days.is_business_day(date(2027, 1, 1))


def test_weekends_do_not_count_and_a_weekend_receipt_starts_on_monday():
    friday = answer_deadline(istanbul(2026, 6, 12))
    saturday = answer_deadline(istanbul(2026, 6, 13))
    sunday = answer_deadline(istanbul(2026, 6, 14))
    assert friday == saturday == sunday == end_of(date(2026, 6, 23))
    assert not business_days.is_business_day(date(2026, 6, 13))
    assert not business_days.is_business_day(date(2026, 6, 14))


def test_late_night_utc_is_already_the_next_day_in_istanbul():
    # 21:30 UTC on Monday is 00:30 on Tuesday in Istanbul: Tuesday is the day of receipt.
    before_midnight = datetime(2026, 6, 15, 20, 59, tzinfo=UTC)  # 23:59 Monday in Istanbul
    after_midnight = datetime(2026, 6, 15, 21, 30, tzinfo=UTC)  # 00:30 Tuesday in Istanbul
    assert answer_deadline(before_midnight) == end_of(date(2026, 6, 24))
    assert answer_deadline(after_midnight) == end_of(date(2026, 6, 25))


def test_the_deadline_is_the_end_of_the_day_in_istanbul_and_aware():
    deadline = answer_deadline(datetime(2026, 3, 16, 7, 0, tzinfo=UTC))
    assert deadline.utcoffset() is not None
    assert deadline.astimezone(UTC) == datetime(2026, 3, 26, 20, 59, 59, tzinfo=UTC)


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        answer_deadline(datetime(2026, 3, 16, 10, 0))


def test_extra_closed_days_are_skipped_like_holidays():
    leave = [date(2026, 3, 17), date(2026, 3, 18)]
    assert answer_deadline(istanbul(2026, 3, 16), extra_closed=leave) == end_of(date(2026, 3, 30))


def test_business_days_between_counts_from_the_next_day():
    received = istanbul(2026, 3, 16)
    assert business_days.business_days_between(received, istanbul(2026, 3, 16, 18)) == 0
    assert business_days.business_days_between(received, istanbul(2026, 3, 26)) == 7
    assert business_days.business_days_between(received, istanbul(2026, 3, 22)) == 3


def test_add_business_days_needs_at_least_one():
    with pytest.raises(ValueError):
        business_days.add_business_days(date(2026, 3, 16), 0)


# One table for the rule as the issue names its cases: the deadline of a 7-business-day
# application received at the given Istanbul moment, with and without a declared leave day.
LEAVE = business_days.Calendar(frozenset({date(2026, 12, 28)}))  # a Monday between the years


@pytest.mark.parametrize(
    ("received", "calendar", "deadline", "why"),
    [
        (istanbul(2026, 6, 12, 16), business_days.PUBLIC, date(2026, 6, 23), "Fri: 15–19, 22, 23"),
        (istanbul(2026, 6, 12, 23, 59), business_days.PUBLIC, date(2026, 6, 23), "Fri 23:59"),
        (istanbul(2026, 6, 13, 0, 0), business_days.PUBLIC, date(2026, 6, 23), "Sat 00:00"),
        (istanbul(2026, 6, 15, 23, 59), business_days.PUBLIC, date(2026, 6, 24), "Mon 23:59"),
        (istanbul(2026, 6, 16, 0, 0), business_days.PUBLIC, date(2026, 6, 25), "Tue 00:00"),
        # The eve of Ramazan Bayramı 2026 (Thu 19 March, a half day) is received on and counts.
        (istanbul(2026, 3, 19, 12), business_days.PUBLIC, date(2026, 3, 31), "23–27, 30, 31"),
        # The eve of Kurban Bayramı 2026 (Tue 26 May).
        (istanbul(2026, 5, 26, 12), business_days.PUBLIC, date(2026, 6, 9), "1–5, 8, 9"),
        # Across New Year: 1 Ocak 2027 is closed; a leave day on 28 Dec moves it one more.
        (istanbul(2026, 12, 24), business_days.PUBLIC, date(2027, 1, 5), "25,28–31,4,5"),
        (istanbul(2026, 12, 24), LEAVE, date(2027, 1, 6), "25,29–31,4,5,6 (28 idari izin)"),
    ],
)
def test_the_deadline_table(
    received: datetime, calendar: business_days.Calendar, deadline: date, why: str
) -> None:
    assert calendar.answer_deadline(received) == end_of(deadline), why


def test_a_leave_day_is_closed_only_in_the_calendar_that_declares_it() -> None:
    assert not LEAVE.is_business_day(date(2026, 12, 28))
    assert business_days.PUBLIC.is_business_day(date(2026, 12, 28))
    assert LEAVE.previous_business_day(date(2026, 12, 29)) == date(2026, 12, 25)
    assert LEAVE.answer_deadline(istanbul(2026, 12, 24), 15) > LEAVE.answer_deadline(
        istanbul(2026, 12, 24)
    )
