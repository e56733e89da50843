"""GSM 03.38 with the Turkish national language tables (gsm.py) and the encoding notification
chooses with it (domain.py): septets per character, headers, part sizes, the choice of table,
and what Kannel is given."""

from __future__ import annotations

import pytest

from services.notification import domain, gsm
from services.notification.domain import SmsEncoding
from services.notification.gsm import (
    DEFAULT,
    ESC,
    TURKISH_LOCKING,
    TURKISH_LOCKING_AND_SINGLE,
    TURKISH_SINGLE,
)

ALPHABETS = [DEFAULT, TURKISH_SINGLE, TURKISH_LOCKING, TURKISH_LOCKING_AND_SINGLE]
ALL_GSM = (SmsEncoding.gsm7, SmsEncoding.gsm7_tr_single, SmsEncoding.gsm7_tr_locking)
RECEIPT = (
    "Açık Kapı: Başvurunuz alındı. Başvuru no: 20-2026-0000123-4. "
    "Takip: https://acikkapi.denizli.gov.tr/takip"
)


# --- the tables, against 3GPP TS 23.038 ---------------------------------------------------------


def test_the_turkish_locking_table_differs_from_the_default_in_eight_places():
    assert len(gsm.DEFAULT_ALPHABET) == len(gsm.TURKISH_LOCKING_SHIFT) == 128
    changed = {
        code: (old, new)
        for code, (old, new) in enumerate(
            zip(gsm.DEFAULT_ALPHABET, gsm.TURKISH_LOCKING_SHIFT, strict=True)
        )
        if old != new
    }
    assert changed == {  # A.3.1
        0x04: ("è", "€"),
        0x07: ("ì", "ı"),
        0x0B: ("Ø", "Ğ"),
        0x0C: ("ø", "ğ"),
        0x1C: ("Æ", "Ş"),
        0x1D: ("æ", "ş"),
        0x40: ("¡", "İ"),
        0x60: ("¿", "ç"),
    }


def test_the_turkish_single_shift_table_adds_the_seven_letters_to_the_extension_table():
    added = {
        code: char
        for code, char in gsm.TURKISH_SINGLE_SHIFT.items()
        if code not in gsm.DEFAULT_EXTENSION
    }
    assert added == {  # A.2.1
        0x47: "Ğ",
        0x49: "İ",
        0x53: "Ş",
        0x63: "ç",
        0x67: "ğ",
        0x69: "ı",
        0x73: "ş",
    }
    assert {gsm.TURKISH_SINGLE_SHIFT[code] for code in gsm.DEFAULT_EXTENSION} == set("\f^{}\\[~]|€")


# --- septets per character ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "default", "single", "locking"),
    [
        ("a", [0x61], [0x61], [0x61]),
        ("@", [0x00], [0x00], [0x00]),
        ("ş", None, [ESC, 0x73], [0x1D]),
        ("Ş", None, [ESC, 0x53], [0x1C]),
        ("ğ", None, [ESC, 0x67], [0x0C]),
        ("Ğ", None, [ESC, 0x47], [0x0B]),
        ("ı", None, [ESC, 0x69], [0x07]),
        ("İ", None, [ESC, 0x49], [0x40]),
        ("ç", None, [ESC, 0x63], [0x60]),
        ("Ç", [0x09], [0x09], [0x09]),
        ("ö", [0x7C], [0x7C], [0x7C]),
        ("Ö", [0x5C], [0x5C], [0x5C]),
        ("ü", [0x7E], [0x7E], [0x7E]),
        ("Ü", [0x5E], [0x5E], [0x5E]),
        ("€", [ESC, 0x65], [ESC, 0x65], [0x04]),
        ("^", [ESC, 0x14], [ESC, 0x14], [ESC, 0x14]),
        ("{", [ESC, 0x28], [ESC, 0x28], [ESC, 0x28]),
        ("}", [ESC, 0x29], [ESC, 0x29], [ESC, 0x29]),
        ("\\", [ESC, 0x2F], [ESC, 0x2F], [ESC, 0x2F]),
        ("[", [ESC, 0x3C], [ESC, 0x3C], [ESC, 0x3C]),
        ("~", [ESC, 0x3D], [ESC, 0x3D], [ESC, 0x3D]),
        ("]", [ESC, 0x3E], [ESC, 0x3E], [ESC, 0x3E]),
        ("|", [ESC, 0x40], [ESC, 0x40], [ESC, 0x40]),
        ("\f", [ESC, 0x0A], [ESC, 0x0A], [ESC, 0x0A]),
        ("è", [0x04], [0x04], None),  # given up for € in the locking table
        ("æ", [0x1D], [0x1D], None),
        ("¿", [0x60], [0x60], None),
        ("ب", None, None, None),
        ("🙂", None, None, None),
    ],
)
def test_each_character_costs_its_septets(
    char: str, default: list[int] | None, single: list[int] | None, locking: list[int] | None
):
    for alphabet, expected in [
        (DEFAULT, default),
        (TURKISH_SINGLE, single),
        (TURKISH_LOCKING, locking),
    ]:
        if expected is None:
            with pytest.raises(gsm.NotEncodable):
                gsm.encode(char, alphabet)
            assert gsm.septet_count(char, alphabet) is None
        else:
            assert gsm.encode(char, alphabet) == expected
            assert gsm.septet_count(char * 3, alphabet) == 3 * len(expected)
            assert gsm.decode(expected, alphabet) == char


@pytest.mark.parametrize("alphabet", ALPHABETS, ids=str)
def test_every_character_of_a_table_comes_back_from_its_septets(alphabet: gsm.Alphabet):
    basic = gsm.LOCKING_SHIFT_TABLES[alphabet.locking].replace("\x1b", "")
    extension = "".join(gsm.SINGLE_SHIFT_TABLES[alphabet.single].values())
    text = basic + extension
    assert gsm.decode(gsm.encode(text, alphabet), alphabet) == text


@pytest.mark.parametrize(
    ("septets", "alphabet", "shown"),
    [
        ([ESC, 0x73], TURKISH_SINGLE, "ş"),
        ([ESC, 0x73], DEFAULT, "s"),  # not in the default extension: read in the basic table
        ([ESC, 0x1D], TURKISH_LOCKING, "ş"),
        ([ESC, ESC], DEFAULT, " "),
        ([0x1D], DEFAULT, "æ"),
    ],
)
def test_a_handset_reads_unknown_escapes_as_23038_says(
    septets: list[int], alphabet: gsm.Alphabet, shown: str
):
    assert gsm.decode(septets, alphabet) == shown


# --- headers and room ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alphabet", "header"),
    [
        (DEFAULT, b""),
        (TURKISH_SINGLE, bytes.fromhex("03240101")),
        (TURKISH_LOCKING, bytes.fromhex("03250101")),
        (TURKISH_LOCKING_AND_SINGLE, bytes.fromhex("0624010125 0101")),
    ],
    ids=str,
)
def test_a_national_table_is_named_in_the_user_data_header(alphabet: gsm.Alphabet, header: bytes):
    assert alphabet.user_data_header() == header
    if header:
        assert gsm.read_user_data_header(header).alphabet == alphabet


@pytest.mark.parametrize(
    ("header_octets", "septets"),
    [(0, 160), (4, 155), (6, 153), (7, 152), (9, 149), (12, 146)],
)
def test_the_header_takes_whole_septets_with_fill_bits(header_octets: int, septets: int):
    assert gsm.septets_beside_header(header_octets) == septets
    # Kannel's own formula (sms.c): (140 - udh) * 8 / 7 in integer arithmetic.
    assert septets == (140 - header_octets) * 8 // 7


@pytest.mark.parametrize(
    ("alphabet", "one", "each"),
    [
        (DEFAULT, 160, 153),
        (TURKISH_SINGLE, 155, 149),
        (TURKISH_LOCKING, 155, 149),
        (TURKISH_LOCKING_AND_SINGLE, 152, 146),
    ],
    ids=str,
)
def test_septets_per_part(alphabet: gsm.Alphabet, one: int, each: int):
    assert alphabet.septets_per_part(concatenated=False) == one
    assert alphabet.septets_per_part(concatenated=True) == each


@pytest.mark.parametrize(
    ("text", "alphabet", "sizes"),
    [
        ("", DEFAULT, [0]),
        ("a" * 160, DEFAULT, [160]),
        ("a" * 161, DEFAULT, [153, 8]),
        ("a" * 306, DEFAULT, [153, 153]),
        ("a" * 307, DEFAULT, [153, 153, 1]),
        ("ş" * 155, TURKISH_LOCKING, [155]),
        ("ş" * 156, TURKISH_LOCKING, [149, 7]),
        ("ş" * 298, TURKISH_LOCKING, [149, 149]),
        ("ş" * 299, TURKISH_LOCKING, [149, 149, 1]),
        ("a" * 153 + "ş", TURKISH_SINGLE, [155]),  # 153 + ESC 0x73: exactly 155
        ("a" * 154 + "ş", TURKISH_SINGLE, [149, 7]),  # 156 septets
        ("ş" * 77 + "a", TURKISH_SINGLE, [155]),
        ("ş" * 78, TURKISH_SINGLE, [148, 8]),  # an escape pair is never split: 148, not 149
        ("a" * 148 + "€" + "a" * 6, TURKISH_SINGLE, [148, 8]),
        ("a" * 148 + "€" + "a" * 6, TURKISH_LOCKING, [155]),  # € is one septet there
    ],
)
def test_parts_fill_in_order_without_splitting_an_escape(
    text: str, alphabet: gsm.Alphabet, sizes: list[int]
):
    assert [len(part) for part in gsm.parts(text, alphabet)] == sizes
    assert gsm.part_count(text, alphabet) == len(sizes)
    assert gsm.decode([s for part in gsm.parts(text, alphabet) for s in part], alphabet) == text


def test_kannels_multipart_header_is_read_with_its_concatenation_element():
    header = gsm.read_user_data_header(bytes.fromhex("08250101000307 0201"))
    assert header == gsm.HeaderElements(TURKISH_LOCKING, reference=7, total=2, sequence=1)
    header = gsm.read_user_data_header(bytes.fromhex("050003040201"))
    assert header == gsm.HeaderElements(DEFAULT, reference=4, total=2, sequence=1)
    for malformed in ("0825010100", "0425010100", "03250201"):
        with pytest.raises(ValueError, match="malformed"):
            gsm.read_user_data_header(bytes.fromhex(malformed))


# --- the choice and what Kannel gets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kannel", "any_gsm"),
    [
        ("Basvuru alindi 20-2026-0000123-4", SmsEncoding.gsm7, SmsEncoding.gsm7),
        ("Ödeme Ümit Ç öü {x} €", SmsEncoding.gsm7, SmsEncoding.gsm7),
        (RECEIPT, SmsEncoding.gsm7_tr_locking, SmsEncoding.gsm7_tr_single),
        # One SMS either way (140 or 70 septets): the single shift, listed first, is kept.
        ("ş" * 70, SmsEncoding.gsm7_tr_locking, SmsEncoding.gsm7_tr_single),
        ("ş" * 78, SmsEncoding.gsm7_tr_locking, SmsEncoding.gsm7_tr_locking),  # 156 vs 78
        ("€" * 100, SmsEncoding.gsm7_tr_locking, SmsEncoding.gsm7_tr_locking),  # 2 parts vs 1
        # è is not in the Turkish locking table: only the single shift writes it with ş.
        ("Crème brûlée ş", SmsEncoding.ucs2, SmsEncoding.ucs2),
        ("Hélène è ş", SmsEncoding.ucs2, SmsEncoding.gsm7_tr_single),
        ("Başvuru 🙂", SmsEncoding.ucs2, SmsEncoding.ucs2),
        ("مرحبا Başvuru", SmsEncoding.ucs2, SmsEncoding.ucs2),
    ],
)
def test_the_cheapest_table_is_chosen_and_ucs2_only_when_none_writes_the_text(
    text: str, kannel: SmsEncoding, any_gsm: SmsEncoding
):
    assert domain.choose_encoding(text) is kannel
    assert domain.choose_encoding(text, (*ALL_GSM, SmsEncoding.ucs2)) is any_gsm


def test_the_receipt_is_one_sms_instead_of_two():
    shape = domain.sms_shape(RECEIPT)
    assert shape == domain.SmsShape(SmsEncoding.gsm7_tr_locking, len(RECEIPT), 1)
    assert domain.segment_count(RECEIPT, SmsEncoding.ucs2) == 2
    assert domain.segment_count(RECEIPT, SmsEncoding.gsm7_tr_single) == 1


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (155, 1), (156, 2), (298, 2), (299, 3), (447, 3), (448, 4)],
)
def test_turkish_text_segments_beside_the_locking_shift_header(length: int, segments: int):
    text = ("İşçiliği Çağrı " * 40)[:length]
    assert domain.choose_encoding(text) is SmsEncoding.gsm7_tr_locking
    assert domain.sms_units(text, SmsEncoding.gsm7_tr_locking) == length
    assert domain.segment_count(text) == segments


def test_kannel_gets_the_default_spelling_and_the_header_of_a_locking_shift_text():
    sent = domain.kannel_text("İşık çığ Şağ €", SmsEncoding.gsm7_tr_locking)
    assert sent == domain.KannelText(0, "¡æìk ¿ìø Æaø è", bytes.fromhex("03250101"))
    # Kannel maps the spelling onto the default alphabet; the handset reads the Turkish table.
    septets = gsm.encode(sent.text, DEFAULT)
    assert gsm.decode(septets, TURKISH_LOCKING) == "İşık çığ Şağ €"


def test_kannel_gets_plain_gsm_and_ucs2_texts_as_they_are():
    assert domain.kannel_text("Ödeme {x}", SmsEncoding.gsm7) == domain.KannelText(
        0, "Ödeme {x}", b""
    )
    assert domain.kannel_text("Başvuru 🙂", SmsEncoding.ucs2) == domain.KannelText(
        2, "Başvuru 🙂", b""
    )


def test_a_single_shift_text_has_no_default_spelling_so_kannel_never_gets_one():
    # ş under the single shift table is ESC 0x73; nothing Kannel maps yields that pair.
    with pytest.raises(ValueError, match="no default spelling"):
        gsm.default_spelling(gsm.encode("ş", TURKISH_SINGLE))
    with pytest.raises(ValueError, match="cannot carry"):
        domain.kannel_text("ş", SmsEncoding.gsm7_tr_single)
    assert SmsEncoding.gsm7_tr_single not in domain.KANNEL_ENCODINGS


def test_a_text_the_tables_cannot_write_is_refused_not_mangled():
    with pytest.raises(gsm.NotEncodable):
        domain.kannel_text("Başvuru 🙂", SmsEncoding.gsm7_tr_locking)
    with pytest.raises(gsm.NotEncodable):
        domain.sms_units("ş", SmsEncoding.gsm7)
