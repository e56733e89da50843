"""When a message may go: retries after a gateway that is away, quiet hours for SMS, and the
signed unsubscribe links of informational e-mails. Pure rules, no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL

# --- retries ----------------------------------------------------------------------------------

# Each delay is drawn between (1 - JITTER) and 1 times its step, so the messages a gateway
# outage stopped together do not all come back in the same second.
JITTER = 0.2


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with a cap: first, 2×first, 4×first ... up to `cap_seconds`; after
    `max_attempts` attempts, or `max_seconds` after the first failure, the message is given up."""

    first_seconds: float = 1.0
    cap_seconds: float = 300.0
    max_attempts: int = 20
    max_seconds: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            first_seconds=settings.notification_retry_first_seconds,
            cap_seconds=settings.notification_retry_cap_seconds,
            max_attempts=settings.notification_retry_max_attempts,
            max_seconds=settings.notification_retry_max_seconds,
        )

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1 for the first)."""
        step = min(self.cap_seconds, self.first_seconds * 2.0 ** min(max(attempts, 1) - 1, 60))
        return step * (1 - JITTER * rng.random())

    def next_attempt(
        self, attempts: int, now: datetime, give_up_at: datetime | None, rng: random.Random
    ) -> RetryPlan:
        """What follows the `attempts`-th transient failure at `now`: the time of the next
        attempt, or None once the attempts or the time are spent."""
        give_up_at = give_up_at or now + timedelta(seconds=self.max_seconds)
        if attempts >= self.max_attempts or now >= give_up_at:
            return RetryPlan(None, give_up_at)
        return RetryPlan(now + timedelta(seconds=self.delay(attempts, rng)), give_up_at)


@dataclass(frozen=True)
class RetryPlan:
    due_at: datetime | None  # None: give up (failed, dead-lettered)
    give_up_at: datetime


# --- quiet hours -----------------------------------------------------------------------------


_WINDOW_RE = re.compile(r"\d\d:\d\d\s*-\s*\d\d:\d\d")


@dataclass(frozen=True)
class QuietHours:
    """A nightly window on Istanbul's clock in which non-urgent SMS wait. `start` after `end`
    (21:00-08:30) spans midnight; `start` before `end` (13:00-14:00) lies within one day."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """ "21:00-08:30" → the window; "" → None (no quiet hours)."""
        text = text.strip()
        if not text:
            return None
        first, _sep, second = text.partition("-")
        try:
            if not _WINDOW_RE.fullmatch(text):
                raise ValueError
            window = cls(time.fromisoformat(first.strip()), time.fromisoformat(second.strip()))
        except ValueError as exc:
            raise ValueError(
                f"Sessiz saatler SS:DD-SS:DD biçiminde olmalı / quiet hours must be HH:MM-HH:MM: "
                f"{text!r}"
            ) from exc
        if window.start == window.end:
            raise ValueError(f"Sessiz saatlerin başı ve sonu aynı / empty quiet hours: {text!r}")
        return window

    def release_at(self, now: datetime) -> datetime | None:
        """If `now` falls inside the window, the moment it ends (in UTC); else None."""
        local = now.astimezone(ISTANBUL)
        clock = local.time().replace(tzinfo=None)
        if self.start > self.end:  # spans midnight
            if clock >= self.start:
                day = local.date() + timedelta(days=1)
            elif clock < self.end:
                day = local.date()
            else:
                return None
        elif self.start <= clock < self.end:
            day = local.date()
        else:
            return None
        return datetime.combine(day, self.end, tzinfo=ISTANBUL).astimezone(now.tzinfo)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


# --- opting out of informational e-mail ---------------------------------------------------------


def normalise_email(address: str) -> str:
    """The form an address is known by for opting out: trimmed, lower case (mail providers treat
    the local part case-insensitively in practice, and so must an unsubscribe)."""
    return address.strip().lower()


def optout_secret(jwt_secret: str) -> bytes:
    """The key unsubscribe links are signed with: derived from the service secret, for this
    purpose alone (as the delivery-report signature is)."""
    return hashlib.sha256(b"acikkapi-email-optout:" + jwt_secret.encode()).digest()


_TOKEN_LABEL = b"optout:v1:"


def optout_token(secret: bytes, address_index: str) -> str:
    """`<blind index>.<signature>`: the link names the address only by its keyed hash (never
    the address), and only we can make one, so nobody can unsubscribe someone else."""
    signature = hmac.new(secret, _TOKEN_LABEL + address_index.encode(), hashlib.sha256).digest()
    return f"{address_index}.{base64.urlsafe_b64encode(signature[:18]).decode()}"


def optout_index(secret: bytes, token: str) -> str | None:
    """The address's blind index a token names, or None when it is not one of ours."""
    index, _, _signature = token.partition(".")
    if not index or len(index) != 64 or not all(c in "0123456789abcdef" for c in index):
        return None
    expected = optout_token(secret, index)
    return index if hmac.compare_digest(expected.encode(), token.encode()) else None
