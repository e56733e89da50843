"""When a message may go: quiet hours on Istanbul's clock, exponential back-off with a cap and
jitter, the give-up rule, the provider's token bucket, and signed unsubscribe tokens."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pytest

from services.common.turkish_time import ISTANBUL
from services.notification.policy import (
    JITTER,
    QuietHours,
    RetryPolicy,
    normalise_email,
    optout_index,
    optout_secret,
    optout_token,
)
from services.notification.ratelimit import TokenBucket

NIGHT = QuietHours(time(21, 0), time(8, 30))


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A moment of March 2026 on Istanbul's clock, in UTC (as the service handles them)."""
    return datetime(2026, 3, day, hour, minute, second, tzinfo=ISTANBUL).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "release"),
    [
        (at(2, 10, 0), None),  # a Monday morning
        (at(2, 20, 59, 59), None),
        (at(2, 21, 0), at(3, 8, 30)),  # quiet hours start
        (at(2, 23, 59, 59), at(3, 8, 30)),
        (at(3, 0, 0), at(3, 8, 30)),  # past midnight: the same morning
        (at(3, 8, 29, 59), at(3, 8, 30)),
        (at(3, 8, 30), None),  # they end
        (at(31, 22, 0), datetime(2026, 4, 1, 5, 30, tzinfo=UTC)),  # across a month's end
    ],
)
def test_night_quiet_hours(now: datetime, release: datetime | None):
    assert NIGHT.release_at(now) == release


def test_release_is_in_utc_and_the_window_can_lie_within_a_day():
    lunch = QuietHours.parse("12:30-13:30")
    assert lunch is not None
    assert lunch.release_at(at(2, 12, 45)) == at(2, 13, 30)
    assert lunch.release_at(at(2, 13, 30)) is None and lunch.release_at(at(2, 12, 29)) is None
    released = NIGHT.release_at(at(2, 22))
    assert released is not None and released.tzinfo is not None
    assert released.utcoffset() == timedelta(0) and released.hour == 5  # 08:30 at UTC+3


def test_quiet_hours_setting():
    assert QuietHours.parse("") is None and QuietHours.parse("  ") is None
    assert QuietHours.parse("21:00-08:30") == NIGHT
    assert str(NIGHT) == "21:00-08:30"
    for wrong in ("21:00", "21-08", "25:00-08:00", "08:00-08:00"):
        with pytest.raises(ValueError, match=r"(?i)sessiz"):
            QuietHours.parse(wrong)


def test_backoff_doubles_from_one_second_to_the_cap_with_jitter():
    policy = RetryPolicy(first_seconds=1, cap_seconds=300, max_attempts=50, max_seconds=1e9)
    top = random.Random(1)
    top.random = lambda: 0.0  # type: ignore[method-assign]
    steps = [policy.delay(n, top) for n in range(1, 12)]
    assert steps == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    bottom = random.Random(1)
    bottom.random = lambda: 0.9999999  # type: ignore[method-assign]
    assert policy.delay(1, bottom) == pytest.approx(1 - JITTER, abs=1e-6)
    rng = random.Random(7)
    for attempt in range(1, 30):
        step = min(300.0, 2.0 ** (attempt - 1))
        assert step * (1 - JITTER) <= policy.delay(attempt, rng) <= step


def test_jitter_spreads_messages_that_failed_together():
    policy = RetryPolicy()
    rng = random.Random(3)
    delays = {round(policy.delay(5, rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_give_up_after_the_attempts_or_the_time():
    policy = RetryPolicy(first_seconds=1, cap_seconds=300, max_attempts=3, max_seconds=600)
    rng = random.Random(0)
    now = at(2, 10)
    first = policy.next_attempt(1, now, None, rng)
    assert first.due_at is not None and first.give_up_at == now + timedelta(seconds=600)
    second = policy.next_attempt(2, now + timedelta(seconds=1), first.give_up_at, rng)
    assert second.due_at is not None and second.give_up_at == first.give_up_at
    assert policy.next_attempt(3, now + timedelta(seconds=5), first.give_up_at, rng).due_at is None
    late = now + timedelta(seconds=600)
    assert policy.next_attempt(2, late, first.give_up_at, rng).due_at is None


def test_unsubscribe_tokens_are_signed_and_name_no_address():
    secret = optout_secret("sır")
    index = "ab" * 32
    token = optout_token(secret, index)
    assert optout_index(secret, token) == index
    assert "@" not in token and len(token) < 100
    assert optout_index(optout_secret("başka sır"), token) is None
    forged = index[:-1] + "c" + token[64:]
    assert optout_index(secret, forged) is None
    for wrong in ("", "x", index, index + ".", token + "x", "ğ" * 64 + token[64:]):
        assert optout_index(secret, wrong) is None


def test_addresses_are_known_by_their_normal_form():
    assert normalise_email("  Ayse.YILMAZ@Ornek.com.TR ") == "ayse.yilmaz@ornek.com.tr"


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate():
    clock = FakeTime()
    bucket = TokenBucket(10, clock=clock)
    assert [bucket.reserve() for _ in range(10)] == [0.0] * 10  # one second's worth at once
    assert bucket.delay() == pytest.approx(0.1)
    waits = [bucket.reserve() for _ in range(3)]
    assert waits == pytest.approx([0.1, 0.2, 0.3])  # later senders queue behind
    clock.now += 0.3
    assert bucket.delay() == pytest.approx(0.1)
    clock.now += 10
    assert bucket.delay() == 0.0 and bucket.reserve() == 0.0  # never more than the burst saved
    assert [bucket.reserve() for _ in range(9)] == [0.0] * 9
    assert bucket.reserve() > 0


def test_a_rate_of_zero_is_no_limit():
    bucket = TokenBucket(0)
    assert bucket.unlimited
    assert all(bucket.reserve() == 0.0 for _ in range(10_000)) and bucket.delay() == 0.0


def test_a_slow_rate_still_sends_one_at_a_time():
    clock = FakeTime()
    bucket = TokenBucket(0.5, clock=clock)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(2.0)
