"""The rate towards each provider (Kannel, the SMTP relay): a token bucket per provider, shared
by every send of one process.

It is per process: N notification processes send up to N times the rate. Set
`AK_SMS_RATE_PER_SECOND` / `AK_SMTP_RATE_PER_SECOND` to the provider's limit divided by the
number of processes (docs/notifications.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up (one second's worth by default).

    `reserve` takes a token even when none is there yet and says how long to wait for it, so
    concurrent senders queue in order instead of polling; `delay` only looks.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def delay(self) -> float:
        """Seconds until a token would be free for a new sender (0: now)."""
        if self.unlimited:
            return 0.0
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it (0: use it now)."""
        if self.unlimited:
            return 0.0
        self._refill()
        self._tokens -= 1
        return max(0.0, -self._tokens / self.rate)
