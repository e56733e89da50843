"""Turkish letter case: dotted and dotless I are different letters, so Python's own lower() and
upper() get them wrong ("I" lowers to "ı", "İ" to "i"; "i" uppers to "İ", "ı" to "I")."""

from __future__ import annotations

_TO_LOWER = str.maketrans({"I": "ı", "İ": "i"})
_TO_UPPER = str.maketrans({"i": "İ", "ı": "I"})


def turkish_lower(text: str) -> str:
    return text.translate(_TO_LOWER).lower()


def turkish_upper(text: str) -> str:
    return text.translate(_TO_UPPER).upper()
