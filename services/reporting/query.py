"""The question a report answers, read from a query string or a form: which province, which
days. Bad input becomes a `QueryError` with one Turkish message per field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class QueryError(ValueError):
    """A report question that cannot be answered; `errors` are the contract's error items."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Period:
    """Inclusive days of receipt, in Europe/Istanbul; either end may be open."""

    start: date | None = None
    end: date | None = None


def _parse_day(name: str, text: str | None, errors: list[dict[str, str]]) -> date | None:
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if not _DAY_RE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        errors.append(
            {
                "field": name,
                "code": "invalid_date",
                "message": "Tarih YYYY-AA-GG biçiminde geçerli bir gün olmalıdır (ör. 2025-03-31).",
            }
        )
        return None


def parse_period(start: str | None, end: str | None) -> Period:
    errors: list[dict[str, str]] = []
    first = _parse_day("from", start, errors)
    last = _parse_day("to", end, errors)
    if first and last and first > last:
        errors.append(
            {
                "field": "from",
                "code": "invalid_period",
                "message": "Başlangıç tarihi (from) bitiş tarihinden (to) sonra olamaz.",
            }
        )
    if errors:
        raise QueryError(errors)
    return Period(first, last)


def parse_province(text: str | None) -> int | None:
    """A plate code 1..81 given as text (the HTML form sends text), or None when left empty."""
    if text is None or not text.strip():
        return None
    try:
        code = int(text.strip())
    except ValueError:
        code = 0
    if not 1 <= code <= 81:
        raise QueryError(
            [
                {
                    "field": "province_code",
                    "code": "invalid_province",
                    "message": "İl plaka kodu 1 ile 81 arasında bir sayı olmalıdır.",
                }
            ]
        )
    return code
