"""Open311 GeoReport v2, the pure parts: the standard's JSON and XML shapes, how a posted form
becomes intake's application, and that the public answer carries no personal data."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from services.common.events import CategoryBrief, HeadingBrief, TaxonomyPublished
from services.common.settings import Settings
from services.intake.open311 import (
    Open311Error,
    Posted,
    application_body,
    application_type_of,
    client_of,
    closed_filter,
    keywords,
    open311_errors,
    render,
    render_error,
    service_definition,
    service_list,
    service_request,
    to_xml,
    window,
)

TAXONOMY = TaxonomyPublished(
    province_code=20,
    province="Denizli",
    version="v1",
    districts=["Merkezefendi", "Pamukkale", "Çivril"],
    category_codes=["YOL-001", "SU-001"],
    headings=[
        HeadingBrief(
            code="ULS",
            name="Ulaşım ve Yollar",
            categories=[CategoryBrief(code="YOL-001", name="Yol çukuru ve bozuk asfalt")],
        ),
        HeadingBrief(
            code="ALT",
            name="Altyapı ve Su",
            categories=[CategoryBrief(code="SU-001", name="İçme suyu kesintisi")],
        ),
    ],
)
NAMES = {"YOL-001": ("Yol çukuru ve bozuk asfalt", "Ulaşım ve Yollar")}
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def form(**changes: str | None) -> Posted:
    fields: dict[str, str | None] = {
        "service_code": "YOL-001",
        "lat": "37.77652",
        "long": "29.08641",
        "address_string": "Çamlık Mah. 12. Sk. No 4",
        "description": "Sokağımızdaki yolda büyük bir çukur var.",
        "first_name": "Ayşe",
        "last_name": "Yılmaz",
        "phone": "0532 123 45 67",
        "attribute[tckn]": "10000000146",
        "attribute[anne_kizlik_harfleri]": "YZ",
        "attribute[ilce]": "Merkezefendi",
        "attribute[basvuru_turu]": "sikayet",
    }
    fields.update(changes)
    pairs = [(k, v) for k, v in fields.items() if v is not None]
    return Posted.parse(urlencode(pairs).encode())


# --- shapes ------------------------------------------------------------------------------------


def test_lists_become_wrapped_elements_as_the_standard_shows() -> None:
    document = to_xml("services", service_list(TAXONOMY))
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<services>')
    root = ET.fromstring(document)
    services = root.findall("service")
    assert [s.findtext("service_code") for s in services] == ["YOL-001", "SU-001"]
    first = services[0]
    assert first.findtext("service_name") == "Yol çukuru ve bozuk asfalt"
    assert first.findtext("group") == "Ulaşım ve Yollar"
    assert first.findtext("metadata") == "true"
    assert first.findtext("type") == "realtime"
    assert [child.tag for child in first] == [
        "service_code",
        "service_name",
        "description",
        "metadata",
        "type",
        "keywords",
        "group",
    ]


def test_the_definition_asks_what_a_turkish_application_needs() -> None:
    definition = service_definition(TAXONOMY, "YOL-001")
    attributes = {a["code"]: a for a in definition["attributes"]}
    assert {"tckn", "anne_kizlik_harfleri", "ilce", "basvuru_turu", "konu"} <= set(attributes)
    assert attributes["ilce"]["datatype"] == "singlevaluelist"
    assert attributes["ilce"]["values"] == [
        {"key": d, "name": d} for d in ["Merkezefendi", "Pamukkale", "Çivril"]
    ]
    assert {v["key"]: v["name"] for v in attributes["basvuru_turu"]["values"]} == {
        "istek": "İstek",
        "sikayet": "Şikâyet",
        "oneri": "Öneri",
        "bilgi_edinme": "Bilgi edinme",
        "ihbar": "İhbar",
        "tesekkur": "Teşekkür",
    }
    assert attributes["tckn"]["required"] is True
    assert attributes["konu"]["required"] is False
    orders = [a["order"] for a in definition["attributes"]]
    assert sorted(orders) == list(range(1, len(orders) + 1))

    root = ET.fromstring(to_xml("service_definition", definition))
    district = next(a for a in root.iter("attribute") if a.findtext("code") == "ilce")
    assert [v.findtext("key") for v in district.iter("value")][-1] == "Çivril"
    assert root.find("attributes/attribute/datatype_description") is not None


def test_an_unknown_service_code_is_404() -> None:
    with pytest.raises(Open311Error) as raised:
        service_definition(TAXONOMY, "YOK-999")
    assert raised.value.status == 404


def test_xml_escapes_markup_and_drops_what_xml_cannot_carry() -> None:
    content = [{"code": 400, "description": 'a < b & "c" > d\x00\x07 ş'}]
    document = to_xml("errors", content)
    assert b"&lt;" in document and b"&amp;" in document
    root = ET.fromstring(document)  # parses: no control characters left
    assert root.findtext("error/description") == 'a < b & "c" > d ş'
    assert root.findtext("error/code") == "400"


def test_errors_come_in_the_standards_shape_in_either_format() -> None:
    error = Open311Error(403, "api_key eksik veya geçersiz.")
    as_json = render_error("json", error)
    assert as_json.status_code == 403
    assert json.loads(bytes(as_json.body)) == [
        {"code": 403, "description": "api_key eksik veya geçersiz."}
    ]
    as_xml = render_error("xml", error)
    assert as_xml.headers["content-type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(bytes(as_xml.body))
    assert (root.tag, root.findtext("error/code")) == ("errors", "403")
    assert render("json", "x", []).headers["content-type"] == "application/json; charset=utf-8"


def test_none_is_an_empty_element_and_null_in_json() -> None:
    root = ET.fromstring(to_xml("service_requests", [{"account_id": None}]))
    element = root.find("request/account_id")
    assert element is not None and element.text is None
    assert json.loads(bytes(render("json", "x", [{"account_id": None}]).body)) == [
        {"account_id": None}
    ]


def test_keywords_are_the_names_words() -> None:
    assert keywords("Yol çukuru ve bozuk asfalt", "Ulaşım ve Yollar") == (
        "yol, çukuru, bozuk, asfalt, ulaşım, yollar"
    )


# --- posting -----------------------------------------------------------------------------------


def test_a_form_becomes_intakes_application() -> None:
    body = application_body(form(), TAXONOMY, "YOL-001")
    assert body == {
        "channel": "open311",
        "applicant": {
            "tckn": "10000000146",
            "first_name": "Ayşe",
            "last_name": "Yılmaz",
            "mother_maiden_initials": "YZ",
            "phone": "0532 123 45 67",
        },
        "province_code": 20,
        "district": "Merkezefendi",
        "application_type": "sikayet",
        "category_code": "YOL-001",
        "subject": "Yol çukuru ve bozuk asfalt",  # no konu: the service's name
        "text": "Sokağımızdaki yolda büyük bir çukur var.",
        "location": {"lat": 37.77652, "lon": 29.08641, "address": "Çamlık Mah. 12. Sk. No 4"},
    }


def test_blank_arguments_count_as_absent_and_attributes_are_read_by_code() -> None:
    posted = Posted.parse(
        b"email=&attribute%5Bkonu%5D=Asfalt+%C3%A7%C3%B6kt%C3%BC&attribute[ilce][]=Pamukkale"
        b"&device_id=abc&media_url=http%3A%2F%2Fx"
    )
    assert posted.fields == {"device_id": "abc", "media_url": "http://x"}
    assert posted.attributes == {"konu": "Asfalt çöktü", "ilce": "Pamukkale"}


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(Open311Error) as raised:
        Posted.parse(b"description=\xff\xfe")
    assert raised.value.status == 400


def test_an_address_without_coordinates_goes_with_the_text() -> None:
    body = application_body(form(lat=None, long=None), TAXONOMY, "YOL-001")
    assert "location" not in body
    assert body["text"].endswith("\n\nAdres: Çamlık Mah. 12. Sk. No 4")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lat": None, "long": None, "address_string": None}, "lat, long, address_string"),
        ({"long": None}, "lat, long"),
        ({"lat": "kuzey"}, "lat"),
        ({"long": "nan"}, "long"),
    ],
)
def test_a_request_without_a_usable_location_is_400(
    changes: dict[str, str | None], field: str
) -> None:
    with pytest.raises(Open311Error) as raised:
        application_body(form(**changes), TAXONOMY, "YOL-001")
    assert raised.value.status == 400
    assert raised.value.descriptions[0].startswith(f"{field}:")


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("Şikâyet", "sikayet"),
        ("ŞİKAYET", "sikayet"),
        ("Bilgi edinme", "bilgi_edinme"),
        ("teşekkür", "tesekkur"),
        ("ihbar", "ihbar"),
        ("dilekçe", "dilekçe"),  # unknown: left for the rules to refuse
    ],
)
def test_the_type_is_taken_by_key_or_turkish_name(given: str, key: str) -> None:
    assert application_type_of(given) == key


def test_rule_errors_name_the_clients_own_fields() -> None:
    errors: list[dict[str, Any]] = [
        {"field": "applicant.tckn", "code": "invalid_tckn", "message": "TC Kimlik No geçersiz."},
        {"field": "district", "code": "unknown_district", "message": "Böyle bir ilçe yok."},
        {"field": "text", "code": "invalid_text", "message": "Metin kısa."},
        {"field": None, "code": "x", "message": "Genel hata."},
    ]
    assert open311_errors(errors) == [
        "attribute[tckn]: TC Kimlik No geçersiz.",
        "attribute[ilce]: Böyle bir ilçe yok.",
        "description: Metin kısa.",
        "istek: Genel hata.",
    ]


def test_api_keys_name_their_client() -> None:
    settings = Settings(open311_api_keys="cepte:s3cret, belediye-app:k2 ,bozuk")
    assert client_of(settings, "s3cret") == "cepte"
    assert client_of(settings, "k2") == "belediye-app"
    assert client_of(settings, "s3cre") is None
    assert client_of(settings, "") is None
    assert client_of(settings, None) is None
    assert client_of(Settings(open311_api_keys=""), "s3cret") is None


# --- reading -----------------------------------------------------------------------------------


def application_document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": "a1",
        "application_number": "20-2026-0000007-5",
        "province_code": 20,
        "district": "Merkezefendi",
        "category_code": None,
        "application_type": "sikayet",
        "location": {"lat": 37.776524, "lon": 29.086419, "address": "Çamlık Mah. 12. Sk. No 4"},
        "received_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        "recorded_by": "open311:cepte",
    }
    doc.update(changes)
    return doc


def answered() -> dict[str, Any]:
    return {
        "progress": {
            "status": "answered",
            "institution_code": "MERKEZEFENDI-BLD",
            "outcome": "olumlu",
            "category_code": "YOL-001",
            "deadline_at": datetime(2026, 4, 1, 9, 0, tzinfo=UTC),
            "at": datetime(2026, 3, 5, 10, 0, tzinfo=UTC),
            "updated_at": datetime(2026, 3, 5, 10, 0, 1, tzinfo=UTC),
            "order": 1,
        },
        "progress_answers": {
            "MERKEZEFENDI-BLD": {"text": "Çukur onarıldı.", "at": NOW, "outcome": "olumlu"}
        },
    }


def test_a_new_request_is_open_and_shows_no_personal_data() -> None:
    shown = service_request(application_document(), NAMES)
    assert shown["service_request_id"] == "20-2026-0000007-5"
    assert shown["status"] == "open"
    assert shown["status_notes"] == "Başvuru alındı; ilgili kuruma yönlendiriliyor."
    assert shown["service_code"] is None and shown["service_name"] is None
    assert shown["description"] == "Şikâyet"
    assert shown["address"] == "Merkezefendi, Denizli"
    assert (shown["lat"], shown["long"]) == (37.777, 29.086)
    assert shown["requested_datetime"] == "2026-03-02T12:00:00+03:00"
    assert shown["updated_datetime"] == shown["requested_datetime"]
    assert "Çamlık" not in json.dumps(shown, ensure_ascii=False)


def test_an_answered_request_is_closed_with_its_outcome() -> None:
    shown = service_request(application_document(**answered()), NAMES)
    assert shown["status"] == "closed"
    assert shown["service_code"] == "YOL-001"
    assert shown["service_name"] == "Yol çukuru ve bozuk asfalt"
    assert shown["description"] == "Şikâyet: Yol çukuru ve bozuk asfalt"
    assert shown["agency_responsible"] == "MERKEZEFENDI-BLD"
    assert shown["updated_datetime"] == "2026-03-05T13:00:00+03:00"
    assert shown["expected_datetime"] == "2026-04-01T12:00:00+03:00"
    assert shown["status_notes"].startswith(
        "Başvuru MERKEZEFENDI-BLD tarafından yanıtlandı. Sonuç: olumlu."
    )
    assert "Çukur onarıldı." not in shown["status_notes"]  # public: not the answer itself


def test_the_posting_client_reads_the_answer() -> None:
    shown = service_request(application_document(**answered()), NAMES, reveal_answer=True)
    assert shown["status_notes"].endswith("Sonuç: olumlu. Yanıt: Çukur onarıldı.")


def test_the_window_defaults_to_ninety_days_and_never_exceeds_them() -> None:
    assert window(None, None, NOW) == (NOW - timedelta(days=90), NOW)
    start, end = window("2026-01-01T00:00:00Z", None, NOW)
    assert end - start == timedelta(days=90)
    assert window(None, "2026-03-01T00:00:00+03:00", NOW)[1].utcoffset() == timedelta(hours=3)
    with pytest.raises(Open311Error):
        window("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", NOW)  # over 90 days
    with pytest.raises(Open311Error):
        window("2026-01-01T00:00:00", None, NOW)  # no offset
    with pytest.raises(Open311Error):
        window("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z", NOW)  # backwards


def test_status_takes_open_closed_or_both() -> None:
    assert closed_filter(None) is None
    assert closed_filter("open") is False
    assert closed_filter("closed") is True
    assert closed_filter("open,closed") is None
    with pytest.raises(Open311Error):
        closed_filter("pending")
