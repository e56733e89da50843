"""tests/support.py reads GSM texts under a national shift header as the handset shows them:
checked against lines Kannel 1.4.5's fakesmsc printed on this machine (2026-12-04)."""

from __future__ import annotations

from urllib.parse import quote_from_bytes

from services.notification import gsm
from tests.support import parse_fakesmsc

PREFIX = "2026-12-04 22:53:32 [16877] [0] DEBUG: "
# coding=0, udh=%03%25%01%01 (Turkish locking shift), the text in its default spelling.
LOCKING_ONE_PART = (
    PREFIX + "Got message 1: <ACIKKAPI 90552481200 udh %03%25%01%01 data "
    "A%C2%BF%C3%ACk+Kap%C3%AC%3A+Ba%C3%A6vurunuz+al%C3%ACnd%C3%AC.+%C3%86i%C3%A6li%2C+A%C3%B8r"
    "%C3%AC%2C+%C2%A1%C3%B8d%C3%ACr%2C+%C2%BFi%C3%B8%2C+%C3%87%C3%98%C2%A1%C3%96%C3%86%C3%9C+"
    "%C2%BF%C3%B8%C3%AC%C3%B6%C3%A6%C3%BC.+>"
)
# 148 × ş + "{" + 10 × ş: Kannel appended its concatenation element to our header, and kept
# the escape pair of "{" whole in the second part (148 septets in the first, not 149).
LOCKING_TWO_PARTS = [
    PREFIX
    + "Got message 20: <ACIKKAPI 90552481210 udh %08%25%01%01%00%03%0A%02%01 data "
    + "%C3%A6" * 148
    + ">",
    PREFIX + "Got message 21: <ACIKKAPI 90552481210 udh %08%25%01%01%00%03%0A%02%02 data "
    "%7B" + "%C3%A6" * 10 + ">",
]
# The Turkish single shift header with the letters themselves: Kannel wrote "?" for each.
SINGLE_SHIFT_TRIED = (
    PREFIX + "Got message 9: <ACIKKAPI 90552481204 udh %03%24%01%01 data "
    "%3F%3F%3F+%3F%3F%3F+%C3%87+%E2%82%AC>"
)


def test_a_locking_shift_sms_reads_as_the_turkish_text():
    [sms] = parse_fakesmsc([LOCKING_ONE_PART])
    assert sms.text == "Açık Kapı: Başvurunuz alındı. Şişli, Ağrı, İğdır, çiğ, ÇĞİÖŞÜ çğıöşü. "
    assert (sms.parts, sms.alphabet, sms.receiver) == (1, gsm.TURKISH_LOCKING, "90552481200")


def test_locking_shift_parts_are_joined_by_the_concatenation_element_behind_it():
    [sms] = parse_fakesmsc(LOCKING_TWO_PARTS)
    assert sms.text == "ş" * 148 + "{" + "ş" * 10
    assert (sms.parts, sms.alphabet) == (2, gsm.TURKISH_LOCKING)


def test_what_kannel_made_of_single_shift_letters_reads_as_question_marks():
    [sms] = parse_fakesmsc([SINGLE_SHIFT_TRIED])
    assert sms.text == "??? ??? Ç €"
    assert sms.alphabet == gsm.TURKISH_SINGLE


def test_ucs2_parts_without_low_bytes_are_still_read_as_ucs2():
    # Emoji only: UTF-16 surrogates, no byte below 0x09, and not UTF-8 either.
    data = ("🙂" * 40).encode("utf-16-be")
    lines = [
        f"{PREFIX}Got message {n}: <ACIKKAPI 905550000001 udh %05%00%03%09%02%0{n} data "
        f"{quote_from_bytes(chunk, safe='')}>"
        for n, chunk in ((1, data[:134]), (2, data[134:]))
    ]
    [sms] = parse_fakesmsc(lines)
    assert (sms.text, sms.parts, sms.alphabet) == ("🙂" * 40, 2, None)
