"""Chronic problems: masking a citizen's text, reading a neighbourhood from an address, the
clustering rules, and the detection's rates on the hand-labelled set (bench/chronic.py)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from bench.chronic import LABELLED, NOW, evaluate, load_labelled
from services.reporting.chronic import (
    ChronicInput,
    ChronicRules,
    citizen_key,
    find_chronic,
    fold,
    mask_text,
    neighbourhood_of,
    parse_neighbourhood,
    shorten,
    trend_of,
)

# --- Masking ------------------------------------------------------------------------------------


def test_an_eleven_digit_tc_kimlik_no_is_masked():
    assert mask_text("TC: 12345678950 olan benim", names=[]) == "TC: [TC kimlik no] olan benim"


@pytest.mark.parametrize(
    "phone",
    [
        "0532 123 45 67",
        "05321234567",
        "5321234567",
        "+905321234567",
        "+90 532 123 45 67",
        "0090 532 123 4567",
        "(0532) 123-4567",
        "0258 211 22 33",
    ],
)
def test_turkish_phone_numbers_in_any_usual_shape_are_masked(phone):
    assert mask_text(f"Beni {phone} numarasından arayın.", names=[]) == (
        "Beni [telefon] numarasından arayın."
    )


def test_an_email_address_is_masked():
    assert mask_text("Yanıtı ayse.kaya_58@posta.com.tr adresime yollayın", names=[]) == (
        "Yanıtı [e-posta] adresime yollayın"
    )


@pytest.mark.parametrize(
    "iban",
    [
        "TR33 0006 1005 1978 6457 8413 26",
        "TR330006100519786457841326",
        "tr33 0006 1005 1978 6457 8413 26",
    ],
)
def test_an_iban_spaced_or_not_is_masked(iban):
    assert mask_text(f"İade için IBAN: {iban}.", names=[]) == "İade için IBAN: [IBAN]."


def test_licence_plates_street_numbers_and_amounts_are_kept():
    text = "20 ABC 123 plakalı araç 1453 Sokak No:12 önüne park ediyor, 1.850 TL ceza yazılsın"
    assert mask_text(text, names=["Ali", "Kaya"]) == text


def test_the_applicants_names_are_masked_in_any_turkish_casing_and_without_turkish_letters():
    names = ["İsmail", "Işık"]
    assert mask_text("Ben İsmail Işık, başvuru sahibi.", names=names) == (
        "Ben [ad soyad], başvuru sahibi."
    )
    assert mask_text("BEN İSMAİL IŞIK", names=names) == "BEN [ad soyad]"
    assert mask_text("ben ismail isik", names=names) == "ben [ad soyad]"
    assert mask_text("Işık'ın evi", names=names) == "[ad]'ın evi"


def test_a_name_inside_another_word_stays():
    # "Deniz" is the applicant; "Denizli" is the province.
    assert mask_text("Denizli'de oturuyorum, adım Deniz.", names=["Deniz"]) == (
        "Denizli'de oturuyorum, adım [ad]."
    )


def test_other_peoples_names_stay():
    assert mask_text("Muhtar Hasan Bey ilgilenmedi", names=["Ayşe", "Kara"]) == (
        "Muhtar Hasan Bey ilgilenmedi"
    )


def test_the_citizen_pseudonym_is_keyed_and_ignores_the_phone_format():
    key = b"k" * 32
    assert citizen_key("+905321234567", key) == citizen_key("0532 123 45 67", key)
    assert citizen_key("+905321234567", key) != citizen_key("+905321234568", key)
    assert citizen_key("+905321234567", key) != citizen_key("+905321234567", b"x" * 32)
    assert "5321234567" not in citizen_key("+905321234567", key)


# --- Neighbourhoods -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "Sırakapılar Mah. 1520 Sk. No:4 Merkezefendi/Denizli",
        "Sırakapılar Mahallesi 1520 Sokak",
        "SIRAKAPILAR MH. 1520. SK. NO:4",
        "sirakapilar mah 1520 sk",
        "Merkezefendi/Denizli, Sırakapılar Mh. 1520 Sk.",
        "Sırakapılar Mahallesi'nde su yok",
        "Evimizin bulunduğu Sırakapılar Mahallesinde su yok",
        "Ben Sırakapılar Mahallesi'nde oturuyorum",
        "Sayın Yetkili, Sırakapılar mahallesinde su yok",
    ],
)
def test_the_neighbourhood_of_an_address_is_one_key_however_it_is_written(address):
    assert neighbourhood_of(address) == "sirakapilar"


def test_a_neighbourhood_keeps_its_turkish_name_for_display():
    found = parse_neighbourhood("SIRAKAPILAR MH. 1520. SK.")
    assert found is not None and found.name == "Sırakapılar"
    two_words = parse_neighbourhood("Fatih Sultan Mahallesi, 12 sokak")
    assert two_words is not None and two_words.key == "fatih sultan"


@pytest.mark.parametrize(
    "text", [None, "", "1520 Sokak No:4", "bizim mahalle çok kirli", "mahallemizde su yok"]
)
def test_no_neighbourhood_when_none_is_named(text):
    assert neighbourhood_of(text) is None


# --- Clustering rules ---------------------------------------------------------------------------

WATER_CUT = [
    "Akşamları sular kesiliyor, sabaha kadar gelmiyor.",
    "aksamlari sular kesiliyor, bulasik yikayamiyoruz",
    "Her akşam sular kesiliyor, haber verilmiyor.",
    "Akşam saatlerinde sular kesiliyor, çocukları yıkayamıyoruz.",
    "Sular akşamları yine kesiliyor, ne zaman düzelecek?",
]
WATER_BILL = [
    "Su faturam bu ay iki katı geldi, tahakkuka itiraz ediyorum.",
    "Su faturası çok yüksek, sayaç okuması hatalı.",
    "Bu ayki su faturası fahiş, tahakkuk yanlış yapılmış.",
]


def record(
    n: int,
    text: str,
    *,
    citizen: str | None = None,
    week: int = 0,
    district: str = "Merkezefendi",
    heading: str = "ALT",
    neighbourhood: str | None = None,
    at: datetime | None = None,
) -> ChronicInput:
    return ChronicInput(
        application_id=f"app-{n}",
        application_number=f"20-2026-{n:07d}-0",
        province_code=20,
        district=district,
        neighbourhood=neighbourhood,
        heading_code=heading,
        heading_name="Altyapı ve Su" if heading == "ALT" else heading,
        institution_code="DESKI",
        institution_name="DESKİ",
        citizen_key=citizen or f"citizen-{n}",
        received_at=at or NOW - timedelta(weeks=10 - week, days=1),
        text=text,
    )


def water_cuts(weeks: list[int], **kwargs: object) -> list[ChronicInput]:
    return [
        record(i, WATER_CUT[i % len(WATER_CUT)], week=w, **kwargs)  # type: ignore[arg-type]
        for i, w in enumerate(weeks)
    ]


def test_three_citizens_in_three_weeks_are_a_chronic_problem():
    [problem] = find_chronic(water_cuts([0, 2, 4]), now=NOW)
    assert (problem.count, problem.citizens, problem.weeks) == (3, 3, 3)
    assert problem.district == "Merkezefendi" and problem.heading_code == "ALT"
    assert problem.institution_code == "DESKI"
    assert problem.application_numbers == (
        "20-2026-0000000-0",
        "20-2026-0000001-0",
        "20-2026-0000002-0",
    )
    assert problem.first_at < problem.last_at
    assert "sular" in problem.keywords and "kesiliyor" in problem.keywords
    assert len(problem.examples) == 3


def test_two_weeks_are_not_enough():
    assert find_chronic(water_cuts([0, 0, 2]), now=NOW) == []


def test_two_applications_are_not_enough():
    rules = ChronicRules(min_applications=3, min_citizens=2, min_weeks=2)
    assert find_chronic(water_cuts([0, 3]), now=NOW, rules=rules) == []


def test_the_same_citizen_writing_again_is_one_citizen():
    again = water_cuts([0, 2, 4, 6], citizen="same-phone")
    assert find_chronic(again, now=NOW) == []
    two_and_one = [*water_cuts([0, 2, 4])[:2], record(9, WATER_CUT[3], citizen="citizen-0", week=6)]
    assert find_chronic(two_and_one, now=NOW) == []


def test_applications_before_the_window_do_not_count():
    old = [record(i, WATER_CUT[i], at=NOW - timedelta(weeks=13 + i)) for i in range(3)]
    assert find_chronic(old, now=NOW) == []
    assert find_chronic(old, now=NOW, rules=ChronicRules(window_weeks=20)) != []


def test_different_neighbourhoods_are_different_problems():
    places = ["sirakapilar", "sumer", "bereketler", "sirakapilar", "sumer", "bereketler"]
    records = [
        record(i, WATER_CUT[i % 5], week=i, neighbourhood=place) for i, place in enumerate(places)
    ]
    assert find_chronic(records, now=NOW) == []
    same_place = [
        record(i, WATER_CUT[i % 5], week=i, neighbourhood="sirakapilar" if i % 2 else None)
        for i in range(4)
    ]
    [problem] = find_chronic(same_place, now=NOW)
    assert problem.count == 4 and problem.neighbourhood == "sirakapilar"


def test_a_text_naming_a_known_neighbourhood_belongs_to_it():
    records = [
        record(0, "Bağbaşı'nda akşamları sular kesiliyor.", week=0),
        record(1, WATER_CUT[1], week=2, neighbourhood="bagbasi"),
        record(2, "Sümer'de akşamları sular kesiliyor.", week=4),
        record(3, WATER_CUT[3], week=6, neighbourhood="sumer"),
    ]
    # Two places with two applications each: nothing; one place would have had four.
    assert find_chronic(records, now=NOW) == []


def test_different_districts_and_headings_are_not_merged():
    spread = [
        record(0, WATER_CUT[0], week=0, district="Merkezefendi"),
        record(1, WATER_CUT[1], week=2, district="Pamukkale"),
        record(2, WATER_CUT[2], week=4, district="Merkezefendi", heading="BEL"),
        record(3, WATER_CUT[3], week=6, district="Merkezefendi", heading="ENR"),
    ]
    assert find_chronic(spread, now=NOW) == []


def test_similar_words_for_a_different_problem_do_not_join():
    cuts = water_cuts([0, 3, 6])
    bills = [record(10 + i, t, week=1 + 3 * i) for i, t in enumerate(WATER_BILL)]
    problems = find_chronic(cuts + bills, now=NOW)
    assert sorted(sorted(p.application_numbers) for p in problems) == [
        sorted(r.application_number for r in cuts),
        sorted(r.application_number for r in bills),
    ]


def test_the_examples_are_masked_texts_shortened_and_one_per_citizen():
    long_text = (WATER_CUT[0] + " ") * 8
    records = [record(0, long_text, week=0), *water_cuts([2, 4, 6])[1:]]
    records.append(record(7, WATER_CUT[2], citizen="citizen-1", week=7))
    [problem] = find_chronic(records, now=NOW)
    assert all(len(e) <= 200 for e in problem.examples)
    assert len(problem.examples) == 3 and len(set(problem.examples)) == 3


def test_weekly_counts_run_from_the_first_week_to_now_with_zeros():
    [problem] = find_chronic(water_cuts([0, 2, 2, 4]), now=NOW)
    counts = [w.count for w in problem.weekly]
    assert sum(counts) == 4 and counts[:5] == [1, 0, 2, 0, 1]
    assert all(w.week_start.weekday() == 0 for w in problem.weekly)
    assert problem.weekly[-1].week_start <= NOW.date()


@pytest.mark.parametrize(
    ("counts", "trend"),
    [
        ([1, 0, 0, 1, 2, 3], "artıyor"),
        ([3, 2, 1, 0, 0, 1], "azalıyor"),
        ([1, 2, 0, 0, 2, 1], "sabit"),
        ([2], "sabit"),
        ([0, 1], "artıyor"),
    ],
)
def test_the_trend_compares_the_last_third_with_the_first(counts, trend):
    assert trend_of(counts) == trend


def test_the_problem_id_is_stable_across_runs_and_input_order():
    records = water_cuts([0, 2, 4, 6])
    first = find_chronic(records, now=NOW)
    again = find_chronic(list(reversed(records)), now=NOW + timedelta(hours=1))
    assert [p.id for p in first] == [p.id for p in again]


def test_shorten_cuts_at_a_word():
    assert shorten("kısa metin", 200) == "kısa metin"
    cut = shorten("kelime " * 60, 50)
    assert len(cut) <= 50 and cut.endswith("…") and "kelim…" not in cut


# --- The labelled set ---------------------------------------------------------------------------


def test_the_labelled_set_is_found_with_recall_at_least_80_and_false_positives_at_most_10_percent():
    rows = load_labelled()
    assert sum(1 for lb in {r.label for r in rows if r.chronic}) >= 30
    assert sum(1 for lb in {r.label for r in rows if not r.chronic}) >= 30
    result = evaluate(rows, find_chronic([r.record for r in rows], now=NOW))
    assert result.recall >= 0.8, result.missed
    assert result.false_positive_rate <= 0.1, result.decoys_hit


def test_the_labelled_sets_texts_keep_no_personal_data_after_masking():
    raw = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    masked = {r.record.application_id: r.record.text for r in load_labelled()}
    names_written = 0
    for row in raw:
        app = row["application"]
        applicant = app["applicant"]
        text = fold(masked[app["application_id"]])
        names_written += fold(applicant["last_name"]) in fold(app["text"])
        assert fold(applicant["first_name"]) not in text.split()
        assert fold(applicant["last_name"]) not in text.split()
        assert applicant["phone"][-7:] not in re.sub(r"\D", "", text)
        assert "@" not in text
        assert not re.search(r"\d{11}", re.sub(r"\s", "", text))
    assert names_written >= 10  # the set does exercise the masking


# --- Masking: numbers written in groups, phone shapes, names with an ending ---------------------


@pytest.mark.parametrize(
    "tckn",
    [
        "123 456 789 50",
        "1234567895 0",
        "12345-678-950",
        "123.456.789.50",
        "123 - 456 - 789 - 50",
        "172 917 160 60",
        "10000000146",
    ],
)
def test_a_tc_kimlik_no_written_in_groups_is_masked(tckn):
    assert mask_text(f"T.C. kimlik no {tckn} olan benim", names=[]) == (
        "T.C. kimlik no [TC kimlik no] olan benim"
    )


def test_a_grouped_tc_kimlik_no_next_to_another_number_is_masked_alone():
    assert mask_text("kimlik 123 456 789 50 5 yıldır bekliyorum", names=[]) == (
        "kimlik [TC kimlik no] 5 yıldır bekliyorum"
    )


def test_grouped_digits_failing_the_tc_kimlik_check_digits_stay():
    text = "Sayaç no 123 456 789 01, abone 1234567890 1"
    assert mask_text(text, names=[]) == text


def test_a_phone_number_after_tel_and_a_zero_before_brackets_is_masked():
    assert mask_text("Ulaşım tel:0(532)1234567", names=[]) == "Ulaşım tel:[telefon]"


@pytest.mark.parametrize(
    "phone",
    [
        "0 (532) 123 45 67",
        "0(532) 123 45 67",
        "+90 (532) 123-45-67",
        "0532-123-4567",
        "532 123 45 67",
        "0 532 123 45 67",
    ],
)
def test_phone_numbers_with_a_separate_zero_or_brackets_are_masked(phone):
    assert mask_text(f"Beni {phone} arayın.", names=[]) == "Beni [telefon] arayın."


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Ayşenin evinin önü", "[ad] evinin önü"),
        ("AYŞENİN EVİNİN ÖNÜ", "[ad] EVİNİN ÖNÜ"),
        ("Ayşe'nin evinin önü", "[ad]'nin evinin önü"),
        ("aysenin evinin onu", "[ad] evinin onu"),
        ("Yılmazlara su gelmiyor", "[ad] su gelmiyor"),
        ("YILMAZLARIN bahçesi", "[ad] bahçesi"),
        ("Ayşe Yılmazın kapısı", "[ad soyad] kapısı"),
        ("Ayşeye söylediler", "[ad] söylediler"),
        ("Ayşegilde su yok", "[ad] su yok"),
        ("Yılmazdan haber yok", "[ad] haber yok"),
    ],
)
def test_the_applicants_names_with_a_turkish_ending_and_no_apostrophe_are_masked(text, masked):
    assert mask_text(text, names=["Ayşe", "Yılmaz"]) == masked


def test_a_name_ending_in_p_t_or_k_is_masked_softened_before_a_vowel():
    assert mask_text("Muradın ve Burağa yazdılar", names=["Murat", "Burak"]) == (
        "[ad] ve [ad] yazdılar"
    )


def test_a_two_letter_name_takes_no_ending():
    # "Su" and "Ay" are names and words: "suyun", "Aya", "Ayda" stay, the bare name goes.
    assert mask_text("Suyun basıncı yok, Aya sordum, Ayda bir, adım Su Ay", names=["Su Ay"]) == (
        "Suyun basıncı yok, Aya sordum, Ayda bir, adım [ad soyad]"
    )


def test_a_word_made_from_a_name_is_not_an_ending():
    text = "Denizlinin merkezinde, Denizliye giden yol"
    assert mask_text(text, names=["Deniz"]) == text


@pytest.mark.parametrize(
    "text",
    [
        "20 ABC 123 plakalı araç",
        "20 AB 1234 plaka",
        "1453 Sokak No:12/3 önü",
        "Cumhuriyet Cad. No 125 Daire 4",
        "1.250 TL ceza",
        "1.250.000,50 TL ödendi",
        "12.03.2026 tarihinde",
        "12.03.2026 - 15.03.2026 arası",
        "2026-03-12 saat 14.30",
        "12/03/2026 günü 3 kez",
        "abone no 1234 5678",
    ],
)
def test_plates_street_numbers_amounts_and_dates_stay(text):
    assert mask_text(text, names=["Ayşe", "Yılmaz"]) == text
