"""Daily limits per person: which channels they bind, what a refusal says, and what it holds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.common.pii import PiiCipher
from services.intake.domain import validate_application
from services.intake.handlers import bundled_districts
from services.intake.limits import DailyLimitReached, DailyLimits
from tests.unit.test_intake_rules import body

# 23:00 in Istanbul (UTC+3): an hour to midnight.
LATE = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)


class Counts:
    """Places per key, in memory (DailyCounts' contract)."""

    def __init__(self) -> None:
        self.n: dict[str, int] = {}

    async def take(self, key: str, limit: int, expires_at: datetime) -> bool:
        if self.n.get(key, 0) >= limit:
            return False
        self.n[key] = self.n.get(key, 0) + 1
        return True

    async def give_back(self, key: str) -> None:
        self.n[key] -= 1


def form(**changes: object):  # type: ignore[no-untyped-def]
    return validate_application(body(**changes), bundled_districts())


async def test_the_sixth_application_of_a_day_is_refused_until_midnight() -> None:
    counts = Counts()
    limits = DailyLimits(counts, PiiCipher(b"k" * 32), per_tckn=5, per_phone=5)
    for _ in range(5):
        await limits.take(form(), LATE)

    with pytest.raises(DailyLimitReached) as refused:
        await limits.take(form(), LATE)

    assert refused.value.retry_after == 3601
    (error,) = refused.value.errors
    assert (error["field"], error["code"]) == ("applicant.tckn", "daily_limit")
    assert error["message"].startswith("Bu TC Kimlik Numarasıyla bugün 5 başvuru yapıldı")
    assert "10000000146" not in str(counts.n)  # keyed by a blind index, not the number


async def test_a_phone_over_its_limit_takes_back_the_tckn_place() -> None:
    counts = Counts()
    limits = DailyLimits(counts, PiiCipher(b"k" * 32), per_tckn=5, per_phone=1)
    await limits.take(form(), LATE)

    with pytest.raises(DailyLimitReached) as refused:
        await limits.take(form(applicant_tckn="12345678950"), LATE)

    assert refused.value.errors[0]["field"] == "applicant.phone"
    assert sorted(counts.n.values()) == [0, 1, 1]  # the second TC Kimlik No's place returned


async def test_officers_and_switched_off_limits_are_not_counted() -> None:
    counts = Counts()
    limits = DailyLimits(counts, PiiCipher(b"k" * 32), per_tckn=1, per_phone=0)
    for _ in range(3):
        assert await limits.take(form(channel="counter"), LATE) == []
    await limits.take(form(), LATE)
    assert len(counts.n) == 1  # the TC Kimlik No only: the phone limit is off
