"""The application number citizens read out on the phone: `PP-YYYY-NNNNNNN-C`.

PP is the province plate code, YYYY the year of receipt, NNNNNNN a per-province, per-year
sequence, and C a Damm check digit over the twelve digits before it. Damm catches every
single-digit error and every swap of two adjacent digits, the two mistakes people make when
they copy or dictate a number. Intake issues numbers; tracking checks them.
"""

from __future__ import annotations

import re

from stdnum import damm

SEQUENCE_DIGITS = 7
MAX_SEQUENCE = 10**SEQUENCE_DIGITS - 1
_SHAPE = re.compile(r"^(\d{2})(\d{4})(\d{7})(\d)$")


class InvalidApplicationNumber(ValueError):
    """The text is not shaped like an application number, or its check digit is wrong."""

    def __init__(self, message: str, *, shape_ok: bool) -> None:
        super().__init__(message)
        self.shape_ok = shape_ok


def format_number(province_code: int, year: int, sequence: int) -> str:
    if not 1 <= province_code <= 81:
        raise ValueError("province code must be 1..81")
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise ValueError("sequence out of range")
    body = f"{province_code:02d}{year:04d}{sequence:0{SEQUENCE_DIGITS}d}"
    check = damm.calc_check_digit(body)
    return f"{body[:2]}-{body[2:6]}-{body[6:]}-{check}"


def normalize(text: str) -> str:
    """Strip the separators people add or drop: spaces, hyphens, dots."""
    return re.sub(r"[\s\-.]", "", text)


def parse_number(text: str) -> tuple[int, int, int]:
    """Return (province_code, year, sequence); raise InvalidApplicationNumber otherwise."""
    digits = normalize(text)
    match = _SHAPE.fullmatch(digits)
    if not match:
        raise InvalidApplicationNumber(
            "Başvuru numarası 20-2026-0000123-4 biçiminde olmalıdır.", shape_ok=False
        )
    if not damm.is_valid(digits):
        raise InvalidApplicationNumber(
            "Başvuru numarasının kontrol hanesi tutmuyor; numarayı kontrol edin.", shape_ok=True
        )
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def canonical(text: str) -> str:
    province, year, sequence = parse_number(text)
    return format_number(province, year, sequence)
