"""How many applications one person may make in a day on the citizens' own channels.

The limits are per TC Kimlik No and per phone, counted by Istanbul calendar day. Each is
set in the settings (`AK_DAILY_LIMIT_PER_TCKN`, `AK_DAILY_LIMIT_PER_PHONE`; 0 turns one off).
An officer at the counter or in the call centre is not limited: they judge the case in front
of them. A refused application gets the reason in Turkish and `Retry-After`, the seconds
until midnight.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Protocol

from services.common.events import Channel
from services.common.pii import PiiCipher
from services.common.turkish_time import ISTANBUL
from services.intake.domain import ApplicationForm

OFFICER_CHANNELS = (Channel.counter, Channel.call_center)


class Counts(Protocol):
    """Places per key (`store.DailyCounts`)."""

    async def take(self, key: str, limit: int, expires_at: datetime) -> bool: ...
    async def give_back(self, key: str) -> None: ...


class DailyLimitReached(Exception):
    def __init__(self, errors: list[dict[str, Any]], retry_after: int) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors
        self.retry_after = retry_after


class DailyLimits:
    def __init__(self, counts: Counts, cipher: PiiCipher, *, per_tckn: int, per_phone: int):
        self._counts = counts
        self._cipher = cipher
        self._limits = (
            ("applicant.tckn", "Bu TC Kimlik Numarasıyla", per_tckn),
            ("applicant.phone", "Bu telefon numarasıyla", per_phone),
        )

    async def take(self, form: ApplicationForm, now: datetime) -> list[str]:
        """A place today for this applicant under every limit, or DailyLimitReached (and
        nothing taken). Returns the keys, for `give_back`."""
        if form.channel in OFFICER_CHANNELS:
            return []
        day = now.astimezone(ISTANBUL).date()
        midnight = datetime.combine(day + timedelta(days=1), time(), ISTANBUL)
        values = {"applicant.tckn": form.applicant.tckn, "applicant.phone": form.applicant.phone}
        taken: list[str] = []
        for field, whose, limit in self._limits:
            if limit <= 0:
                continue
            key = f"{field}:{self._cipher.blind_index(values[field])}:{day.isoformat()}"
            if not await self._counts.take(key, limit, midnight + timedelta(days=1)):
                await self.give_back(taken)
                message = (
                    f"{whose} bugün {limit} başvuru yapıldı; bir günde en çok {limit} başvuru "
                    "alınır. Yeni başvurunuzu yarın yapabilir ya da Açık Kapı masasına "
                    "gelebilirsiniz."
                )
                error = {"field": field, "code": "daily_limit", "message": message}
                raise DailyLimitReached([error], int((midnight - now).total_seconds()) + 1)
            taken.append(key)
        return taken

    async def give_back(self, keys: list[str]) -> None:
        for key in keys:
            await self._counts.give_back(key)
