"""GSM 03.38 text for SMS: the default alphabet and the Turkish national language tables of
3GPP TS 23.038 (annex A), encoding and decoding septets, the user data header that names the
tables, and how many septets each part of a message holds once that header took its room.
Pure: no I/O.

A 7-bit message is read with two tables: the *locking shift* table gives every septet its
character, and a septet after ESC (0x1B) is read in the *single shift* table. Without a header
both are the default ones (the default alphabet and its extension table). A header information
element names a national table instead: IE 0x25 a locking shift table, IE 0x24 a single shift
table, each with its national language identifier (Turkish = 0x01).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

ESC = 0x1B
TURKISH = 0x01  # national language identifier (3GPP TS 23.038 section 6.2.1.2.4)

IE_CONCATENATION = 0x00  # 8-bit reference, total, sequence: 3 octets of data
IE_SINGLE_SHIFT = 0x24
IE_LOCKING_SHIFT = 0x25
CONCATENATION_IE_OCTETS = 5  # identifier, length, reference, total, sequence
SHIFT_IE_OCTETS = 3  # identifier, length, language

USER_DATA_OCTETS = 140  # TP-UD of one SMS: 160 septets without a header

# 6.2.1 GSM 7 bit Default Alphabet; position 0x1B is the escape, never a character.
DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# A.3.1 Turkish National Language Locking Shift Table: the default alphabet with
# è ì Ø ø Æ æ ¡ ¿ replaced by € ı Ğ ğ Ş ş İ ç.
TURKISH_LOCKING_SHIFT = (
    "@£$¥€éùıòÇ\nĞğ\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "İABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§çabcdefghijklmnopqrstuvwxyzäöñüà"
)
# 6.2.1.1 GSM 7 bit Default Alphabet Extension Table (the septet after ESC).
DEFAULT_EXTENSION: Mapping[int, str] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
# A.2.1 Turkish National Language Single Shift Table: the extension table plus Ğ İ Ş ç ğ ı ş.
TURKISH_SINGLE_SHIFT: Mapping[int, str] = {
    **DEFAULT_EXTENSION,
    0x47: "Ğ",
    0x49: "İ",
    0x53: "Ş",
    0x63: "ç",
    0x67: "ğ",
    0x69: "ı",
    0x73: "ş",
}

LOCKING_SHIFT_TABLES: Mapping[int, str] = {0: DEFAULT_ALPHABET, TURKISH: TURKISH_LOCKING_SHIFT}
SINGLE_SHIFT_TABLES: Mapping[int, Mapping[int, str]] = {
    0: DEFAULT_EXTENSION,
    TURKISH: TURKISH_SINGLE_SHIFT,
}


class NotEncodable(ValueError):
    """A character the tables cannot write."""

    def __init__(self, char: str, alphabet: Alphabet) -> None:
        super().__init__(f"{char!r} (U+{ord(char):04X}) is not in {alphabet}")
        self.char = char


@dataclass(frozen=True)
class Alphabet:
    """The pair of tables a message is written with: national language identifiers, 0 for the
    default table (which needs no header)."""

    locking: int = 0
    single: int = 0

    def __post_init__(self) -> None:
        if self.locking not in LOCKING_SHIFT_TABLES or self.single not in SINGLE_SHIFT_TABLES:
            raise ValueError(f"no such national language table: {self.locking}/{self.single}")

    def __str__(self) -> str:
        return f"GSM 7-bit (locking shift {self.locking}, single shift {self.single})"

    @property
    def header_elements(self) -> bytes:
        """The information elements that name the national tables (none for the default)."""
        elements = b""
        if self.single:
            elements += bytes((IE_SINGLE_SHIFT, 1, self.single))
        if self.locking:
            elements += bytes((IE_LOCKING_SHIFT, 1, self.locking))
        return elements

    def user_data_header(self) -> bytes:
        """The whole header of a one-part message, length octet (UDHL) first; b"" if none.
        A gateway that cuts a long message adds the concatenation element to it."""
        elements = self.header_elements
        return bytes((len(elements),)) + elements if elements else b""

    def septets_per_part(self, *, concatenated: bool) -> int:
        """How many septets one SMS holds beside this alphabet's header (plus concatenation's)."""
        elements = len(self.header_elements) + (CONCATENATION_IE_OCTETS if concatenated else 0)
        return septets_beside_header(1 + elements if elements else 0)


DEFAULT = Alphabet()
TURKISH_SINGLE = Alphabet(single=TURKISH)
TURKISH_LOCKING = Alphabet(locking=TURKISH)
TURKISH_LOCKING_AND_SINGLE = Alphabet(locking=TURKISH, single=TURKISH)


def septets_beside_header(header_octets: int) -> int:
    """Septets left in the 140 octets of user data after a header of `header_octets` (UDHL
    included). The text starts on the next septet boundary (fill bits), so a 4-octet header
    (32 bits) takes 5 septets (35 bits): 160 - 5 = 155. Equal to Kannel's (140 - udh) * 8 / 7."""
    header_septets = -(-header_octets * 8 // 7)  # ceil
    return (USER_DATA_OCTETS * 8) // 7 - header_septets


@functools.cache
def _writer(alphabet: Alphabet) -> dict[str, tuple[int, ...]]:
    """Character → its septets: one from the locking shift table, else ESC and one from the
    single shift table."""
    codes: dict[str, tuple[int, ...]] = {}
    for code, char in SINGLE_SHIFT_TABLES[alphabet.single].items():
        codes[char] = (ESC, code)
    for code, char in enumerate(LOCKING_SHIFT_TABLES[alphabet.locking]):
        if code != ESC:
            codes[char] = (code,)
    return codes


def char_septets(
    text: str, alphabet: Alphabet, *, unknown: str | None = None
) -> list[tuple[int, ...]]:
    """Each character's septets (an escaped one is a pair, never split between parts).

    `unknown` stands in for a character the tables lack (as a gateway writes "?"); without it
    such a character raises NotEncodable.
    """
    codes = _writer(alphabet)
    stand_in = codes[unknown] if unknown is not None else None
    out: list[tuple[int, ...]] = []
    for char in text:
        septets = codes.get(char, stand_in)
        if septets is None:
            raise NotEncodable(char, alphabet)
        out.append(septets)
    return out


def encode(text: str, alphabet: Alphabet, *, unknown: str | None = None) -> list[int]:
    """The text as septet values (unpacked: one septet per int)."""
    return [septet for group in char_septets(text, alphabet, unknown=unknown) for septet in group]


def septet_count(text: str, alphabet: Alphabet) -> int | None:
    """Septets the text takes, or None when the tables cannot write it."""
    codes = _writer(alphabet)
    total = 0
    for char in text:
        septets = codes.get(char)
        if septets is None:
            return None
        total += len(septets)
    return total


def decode(septets: Iterable[int], alphabet: Alphabet) -> str:
    """Septet values back to text, as a handset reads them (23.038 6.2.1.1): after ESC, a
    septet the single shift table lacks reads as in the locking shift table, and a second ESC
    as a space."""
    basic = LOCKING_SHIFT_TABLES[alphabet.locking]
    extension = SINGLE_SHIFT_TABLES[alphabet.single]
    chars: list[str] = []
    escaped = False
    for septet in septets:
        if not 0 <= septet < 0x80:
            raise ValueError(f"not a septet: {septet}")
        if escaped:
            escaped = False
            chars.append(extension.get(septet) or (" " if septet == ESC else basic[septet]))
        elif septet == ESC:
            escaped = True
        else:
            chars.append(basic[septet])
    return "".join(chars)


def parts(text: str, alphabet: Alphabet) -> list[list[int]]:
    """The septets of each SMS the text goes out as: one part when it fits beside the header,
    else parts of septets_per_part(concatenated=True), filled in order without splitting an
    escape pair (the rule Kannel's splitter and handsets follow). An empty text is one part."""
    groups = char_septets(text, alphabet)
    if sum(map(len, groups)) <= alphabet.septets_per_part(concatenated=False):
        return [[septet for group in groups for septet in group]]
    return list(_fill(groups, alphabet.septets_per_part(concatenated=True)))


def _fill(groups: Sequence[tuple[int, ...]], room: int) -> Iterator[list[int]]:
    part: list[int] = []
    for group in groups:
        if len(part) + len(group) > room:
            yield part
            part = []
        part.extend(group)
    yield part


def part_count(text: str, alphabet: Alphabet) -> int | None:
    """How many SMS the text costs in this alphabet, None if the tables cannot write it."""
    total = septet_count(text, alphabet)
    if total is None:
        return None
    if total <= alphabet.septets_per_part(concatenated=False):
        return 1
    return len(parts(text, alphabet))


def default_spelling(septets: Iterable[int]) -> str:
    """The septets spelled with the default tables' characters: what a gateway that maps
    Unicode onto the default alphabet (Kannel's 7-bit text) turns back into exactly these
    septets. Under a national table header the handset then reads the national characters
    (Turkish locking shift: "ş" is septet 0x1D, spelled "æ").

    ESC followed by a septet the default extension table lacks has no spelling: Kannel would
    send "?" for it, so it raises ValueError.
    """
    chars: list[str] = []
    escaped = False
    for septet in septets:
        if escaped:
            escaped = False
            if septet not in DEFAULT_EXTENSION:
                raise ValueError(f"ESC 0x{septet:02X} has no default spelling")
            chars.append(DEFAULT_EXTENSION[septet])
        elif septet == ESC:
            escaped = True
        else:
            chars.append(DEFAULT_ALPHABET[septet])
    if escaped:
        raise ValueError("the septets end with ESC")
    return "".join(chars)


@dataclass(frozen=True)
class HeaderElements:
    """What a received part's user data header says (the elements this module knows)."""

    alphabet: Alphabet
    reference: int | None = None  # concatenation: the message's reference
    total: int = 1
    sequence: int = 1


def read_user_data_header(udh: bytes) -> HeaderElements:
    """Walks the information elements of a header (UDHL first): concatenation (8- or 16-bit
    reference) and the national shift tables; others are skipped."""
    if not udh or udh[0] + 1 != len(udh):
        raise ValueError(f"malformed user data header: {udh.hex()}")
    locking = single = 0
    reference: int | None = None
    total = sequence = 1
    position = 1
    while position + 2 <= len(udh):
        identifier, length = udh[position], udh[position + 1]
        data = udh[position + 2 : position + 2 + length]
        if len(data) != length:
            raise ValueError(f"malformed user data header: {udh.hex()}")
        if identifier == IE_CONCATENATION and length == 3:
            reference, total, sequence = data[0], data[1], data[2]
        elif identifier == 0x08 and length == 4:  # concatenation, 16-bit reference
            reference, total, sequence = data[0] << 8 | data[1], data[2], data[3]
        elif identifier == IE_LOCKING_SHIFT and length == 1:
            locking = data[0] if data[0] in LOCKING_SHIFT_TABLES else 0
        elif identifier == IE_SINGLE_SHIFT and length == 1:
            single = data[0] if data[0] in SINGLE_SHIFT_TABLES else 0
        position += 2 + length
    if position != len(udh):
        raise ValueError(f"malformed user data header: {udh.hex()}")
    return HeaderElements(Alphabet(locking, single), reference, total, sequence)
