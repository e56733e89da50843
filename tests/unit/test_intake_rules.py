"""Intake's rules: each field's check and normalisation, and one Turkish error per bad field."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from pydantic import ValidationError

from services.common.turkish import turkish_lower, turkish_upper
from services.intake.domain import (
    ApplicationForm,
    DistrictDirectory,
    RuleViolation,
    check_category_code,
    check_email,
    check_initials,
    check_name,
    check_phone,
    check_subject,
    check_tckn,
    check_text,
    validate_application,
)
from services.intake.handlers import bundled_districts, field_errors

VALID_TCKN = "10000000146"

DENIZLI = [
    "Acıpayam", "Babadağ", "Baklan", "Bekilli", "Beyağaç", "Bozkurt", "Buldan", "Çal", "Çameli",
    "Çardak", "Çivril", "Güney", "Honaz", "Kale", "Merkezefendi", "Pamukkale", "Sarayköy",
    "Serinhisar", "Tavas",
]  # fmt: skip


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "channel": "web",
        "applicant": {
            "tckn": VALID_TCKN,
            "first_name": "Ayşe",
            "last_name": "Yılmaz",
            "mother_maiden_initials": "YZ",
            "phone": "0532 123 45 67",
        },
        "province_code": 20,
        "district": "Merkezefendi",
        "application_type": "sikayet",
        "subject": "Yol çukuru",
        "text": "Sokağımızdaki yolda büyük bir çukur var.",
    }
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if key.startswith("applicant_"):
            result["applicant"][key.removeprefix("applicant_")] = value
        else:
            result[key] = value
    return result


def validate(raw: Any) -> ApplicationForm:
    return validate_application(raw, bundled_districts())


def errors_of(raw: Any) -> list[dict[str, Any]]:
    try:
        validate(raw)
    except ValidationError as exc:
        return field_errors(exc)
    raise AssertionError("the body was accepted")


# --- TC Kimlik No ------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["10000000146", "12345678950", " 98765432150 "])
def test_valid_tckn_passes(number: str) -> None:
    assert check_tckn(number) == number.strip()


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("01234567840", "TC Kimlik No 0 ile başlayamaz."),  # checksum right, leading zero
        ("10000000156", "TC Kimlik No geçersiz: kontrol haneleri tutmuyor."),  # wrong 10th digit
        ("10000000147", "TC Kimlik No geçersiz: kontrol haneleri tutmuyor."),  # wrong 11th digit
        ("1000000014", "TC Kimlik No 11 haneli olmalıdır."),
        ("100000001466", "TC Kimlik No 11 haneli olmalıdır."),
        ("1000000014a", "TC Kimlik No yalnızca rakamlardan oluşmalıdır."),
        ("", "TC Kimlik No yalnızca rakamlardan oluşmalıdır."),
    ],
)
def test_invalid_tckn_is_refused_with_the_reason(number: str, message: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        check_tckn(number)
    assert caught.value.code == "invalid_tckn"
    assert caught.value.message == message


def test_a_tckn_sent_as_a_json_number_is_checked_as_text() -> None:
    form = validate(body(applicant_tckn=10000000146))
    assert form.applicant.tckn == VALID_TCKN


# --- names and initials ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Ayşe", "Ayşe"),
        ("  Çağrı   İlkay ", "Çağrı İlkay"),
        ("O'Neil", "O'Neil"),
        ("Öztürk-Güneş", "Öztürk-Güneş"),
        ("Nâzım", "Nâzım"),
        ("IŞIK", "IŞIK"),
        ("Ab", "Ab"),
        ("A" * 50, "A" * 50),
        ("Ali ", "Ali"),
    ],
)
def test_names_with_turkish_letters_are_accepted(raw: str, clean: str) -> None:
    assert check_name(raw, "Ad") == clean


@pytest.mark.parametrize(
    "raw", ["A", "A" * 51, "Ali3", "Ali_Veli", "-Ali", "Ali--Veli", "Ali@", "  "]
)
def test_bad_names_are_refused(raw: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        check_name(raw, "Soyad")
    assert caught.value.code == "invalid_name"
    assert caught.value.message.startswith("Soyad ")


@pytest.mark.parametrize(
    ("raw", "upper"),
    [("yz", "YZ"), ("iş", "İŞ"), ("ıi", "Iİ"), ("çğ", "ÇĞ"), ("ÖÜ", "ÖÜ"), (" y.z. ", "YZ")],
)
def test_initials_are_uppercased_by_turkish_rules(raw: str, upper: str) -> None:
    assert check_initials(raw) == upper


@pytest.mark.parametrize("raw", ["Y", "XYZ", "qw", "Y1", "ab c", "", "éa"])
def test_initials_must_be_two_turkish_letters(raw: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        check_initials(raw)
    assert caught.value.code == "invalid_initials"


def test_turkish_case_mapping() -> None:
    assert turkish_upper("istanbul ılgaz") == "İSTANBUL ILGAZ"
    assert turkish_lower("İSTANBUL ILGAZ") == "istanbul ılgaz"


# --- phone and e-mail --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["05321234567", "5321234567", "+90 532 123 45 67", "0 (532) 123-45-67", "905321234567"]
)
def test_turkish_mobile_numbers_are_normalised_to_e164(raw: str) -> None:
    assert check_phone(raw) == "+905321234567"


@pytest.mark.parametrize(
    "raw",
    [
        "02582123456",  # a Denizli landline
        "08501234567",  # not a mobile
        "+15551234567",  # not Turkish
        "0532123456",  # a digit short
        "123",
        "telefon",
    ],
)
def test_other_numbers_are_refused(raw: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        check_phone(raw)
    assert caught.value.code == "invalid_phone"
    assert "cep telefonu" in caught.value.message


def test_email_is_optional_and_checked() -> None:
    assert check_email(None) is None
    assert check_email("  ") is None
    assert check_email("Ayse.Yilmaz@Ornek.COM.tr") == "Ayse.Yilmaz@ornek.com.tr"
    for bad in ["ayse", "ayse@", "@ornek.com", "ayse@ornek", "a..b@ornek.com", "a b@ornek.com"]:
        with pytest.raises(RuleViolation):
            check_email(bad)


# --- application fields ------------------------------------------------------------------------


def test_subject_and_text_lengths_count_after_trimming() -> None:
    with pytest.raises(RuleViolation):
        check_subject("   Yol   ")
    assert check_subject(" Yol çukuru ") == "Yol çukuru"
    assert check_subject("x" * 200) == "x" * 200
    with pytest.raises(RuleViolation):
        check_subject("x" * 201)
    with pytest.raises(RuleViolation):
        check_text("   kısa    ")
    assert check_text("x" * 5000) == "x" * 5000
    with pytest.raises(RuleViolation):
        check_text("x" * 5001)


def test_category_code_is_optional_and_shaped() -> None:
    assert check_category_code(None) is None
    assert check_category_code("") is None
    assert check_category_code("yol-001") == "YOL-001"
    for bad in ["Y-001", "YOLLAR-001", "YOL-01", "YOL001", "YOL-0001"]:
        with pytest.raises(RuleViolation):
            check_category_code(bad)


# --- districts ---------------------------------------------------------------------------------


def test_the_bundled_list_has_denizlis_nineteen_districts() -> None:
    raw = resources.files("services.intake").joinpath("data/districts.json").read_text("utf-8")
    assert sorted(json.loads(raw)["provinces"]["20"]["districts"]) == sorted(DENIZLI)
    directory = bundled_districts()
    assert [directory.canonical(20, turkish_upper(name)) for name in DENIZLI] == DENIZLI


@pytest.mark.parametrize(
    ("typed", "official"),
    [
        ("merkezefendi", "Merkezefendi"),
        ("MERKEZEFENDİ", "Merkezefendi"),
        ("MERKEZEFENDI", "Merkezefendi"),  # typed on an English keyboard
        ("  pamukkale ", "Pamukkale"),
        ("ÇİVRİL", "Çivril"),
        ("civril", "Çivril"),
        ("saraykoy", "Sarayköy"),
        ("ACIPAYAM", "Acıpayam"),
        ("acıpayam", "Acıpayam"),
    ],
)
def test_districts_match_the_way_people_type_them(typed: str, official: str) -> None:
    assert bundled_districts().canonical(20, typed) == official


def test_an_unknown_district_of_a_listed_province_is_refused() -> None:
    with pytest.raises(RuleViolation) as caught:
        bundled_districts().canonical(20, "Kadıköy")
    assert caught.value.code == "unknown_district"
    assert caught.value.message == "Denizli iline bağlı böyle bir ilçe bulunamadı."


def test_a_province_without_a_list_accepts_any_named_district() -> None:
    directory = bundled_districts()
    assert directory.canonical(35, "  Karşıyaka ") == "Karşıyaka"
    with pytest.raises(RuleViolation):
        directory.canonical(35, "   ")


def test_ascii_folding_is_not_used_when_it_would_be_ambiguous() -> None:
    directory = DistrictDirectory({1: ("Deneme", ["Işık", "Isik"])})
    assert directory.canonical(1, "IŞIK") == "Işık"
    assert directory.canonical(1, "ısik") == "Isik"
    with pytest.raises(RuleViolation):
        directory.canonical(1, "ISIK")  # "isik" once folded to ASCII: either of the two


# --- the whole form ----------------------------------------------------------------------------


def test_a_valid_body_comes_back_normalised() -> None:
    form = validate(
        body(
            district="merkezefendi",
            applicant_mother_maiden_initials="iş",
            applicant_phone="+90 532 123 45 67",
            applicant_email="",
            subject="  Yol çukuru  ",
            category_code="yol-001",
            location={"lat": 37.77, "lon": 29.08, "address": "Bahçelievler"},
        )
    )
    assert form.district == "Merkezefendi"
    assert form.applicant.mother_maiden_initials == "İŞ"
    assert form.applicant.phone == "+905321234567"
    assert form.applicant.email is None
    assert form.subject == "Yol çukuru"
    assert form.category_code == "YOL-001"
    assert form.location is not None and form.location.lat == 37.77


def test_every_bad_field_gets_exactly_one_turkish_error() -> None:
    errors = errors_of(
        body(
            channel="fax",
            applicant_tckn="10000000147",
            applicant_first_name="A",
            applicant_phone="123",
            district="Kadıköy",
            application_type="dilekce",
            subject=42,
            text="kısa",
            location={"lat": 123, "lon": 29.0},
        )
    )
    fields = [e["field"] for e in errors]
    assert len(fields) == len(set(fields))
    assert set(fields) == {
        "channel",
        "applicant.tckn",
        "applicant.first_name",
        "applicant.phone",
        "district",
        "application_type",
        "subject",
        "text",
        "location.lat",
    }
    by_field = {e["field"]: e for e in errors}
    assert by_field["applicant.tckn"]["code"] == "invalid_tckn"
    assert by_field["district"]["message"] == "Denizli iline bağlı böyle bir ilçe bulunamadı."
    assert by_field["channel"]["message"].startswith("Geçersiz değer; izin verilenler:")
    assert by_field["subject"]["message"] == "Bu alan metin olmalıdır."
    assert by_field["location.lat"]["message"].startswith("Bu alan en fazla 90")


def test_missing_fields_are_listed_once_each() -> None:
    raw = body()
    del raw["applicant"]["phone"], raw["subject"]
    errors = errors_of(raw)
    assert errors == [
        {"field": "applicant.phone", "code": "missing", "message": "Bu alan zorunludur."},
        {"field": "subject", "code": "missing", "message": "Bu alan zorunludur."},
    ]


@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_province_is_not_a_plate_code(flag: bool) -> None:
    errors = errors_of(body(province_code=flag))
    assert [(e["field"], e["code"]) for e in errors] == [("province_code", "int_type")]
    assert errors[0]["message"] == "Bu alan tam sayı olmalıdır."


def test_a_bad_province_does_not_also_blame_the_district() -> None:
    errors = errors_of(body(province_code=99, district="Merkezefendi"))
    assert errors == [
        {
            "field": "province_code",
            "code": "invalid_province",
            "message": "İl plaka kodu 1 ile 81 arasında olmalıdır.",
        }
    ]


def test_a_province_routing_does_not_serve_is_refused_by_name() -> None:
    raw = body(province_code=34, district="Kadıköy")
    with pytest.raises(ValidationError) as refused:
        validate_application(raw, bundled_districts(), served={20})

    assert field_errors(refused.value) == [
        {
            "field": "province_code",
            "code": "province_not_served",
            "message": "İstanbul için Açık Kapı'da henüz başvuru alınmıyor: bu ilin konu ve kurum "
            "tablosu yüklenmemiş. Başvurunuzu ilgili valiliğe iletebilirsiniz.",
        }
    ]
    assert validate_application(raw, bundled_districts(), served={20, 34}).province_code == 34


def test_only_the_counter_officer_marks_an_applicant_for_priority() -> None:
    marked = validate(body(channel="counter", priority="engelli"))
    assert marked.priority == "engelli"
    errors = errors_of(body(channel="web", priority="engelli"))
    assert [(e["field"], e["code"]) for e in errors] == [("priority", "priority_counter_only")]
    assert errors[0]["message"] == (
        "Öncelik işaretini yalnız Açık Kapı masasındaki görevli koyabilir."
    )
    assert [e["field"] for e in errors_of(body(channel="counter", priority="vip"))] == ["priority"]


def test_the_calling_number_belongs_to_the_call_centre_and_may_be_a_landline() -> None:
    assert validate(body(channel="call_center", caller_number="0258 212 34 56")).caller_number == (
        "+902582123456"
    )
    assert [e["code"] for e in errors_of(body(channel="call_center"))] == ["missing"]
    wrong = errors_of(body(channel="web", caller_number="02582123456"))
    assert [(e["field"], e["code"]) for e in wrong] == [
        ("caller_number", "caller_number_call_centre_only")
    ]
    bad = errors_of(body(channel="call_center", caller_number="12"))
    assert [e["code"] for e in bad] == ["invalid_caller_number"]


def test_a_body_that_is_not_an_object_is_one_error() -> None:
    assert [e["code"] for e in errors_of([1, 2])] == ["model_type"]
