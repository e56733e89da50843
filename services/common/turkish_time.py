"""Turkey's clock (Europe/Istanbul) and the two ways Turkish readers see a moment written."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

ISTANBUL = ZoneInfo("Europe/Istanbul")

MONTHS = "Ocak Şubat Mart Nisan Mayıs Haziran Temmuz Ağustos Eylül Ekim Kasım Aralık".split()
DAYS = "Pazartesi Salı Çarşamba Perşembe Cuma Cumartesi Pazar".split()


def parse_instant(value: str | datetime) -> datetime:
    """An ISO 8601 instant; a value without offset is taken as UTC (storage is UTC)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"Geçersiz tarih / invalid date: {value!r} (ISO 8601 bekleniyor)"
            ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def short_datetime(value: str | datetime) -> str:
    """dd.mm.yyyy HH:MM on Istanbul's clock: 2026-03-02T09:30:00Z -> 02.03.2026 12:30."""
    return parse_instant(value).astimezone(ISTANBUL).strftime("%d.%m.%Y %H:%M")


def long_datetime(value: datetime | None) -> str:
    """In words, on Istanbul's clock: 2 Mart 2026 Pazartesi, 12:30 ("—" for no value)."""
    if value is None:
        return "—"
    local = value.astimezone(ISTANBUL)
    return (
        f"{local.day} {MONTHS[local.month - 1]} {local.year} {DAYS[local.weekday()]}, {local:%H:%M}"
    )
