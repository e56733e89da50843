"""The report page: Turkish number formats, server-drawn SVG charts, escaped labels."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from services.reporting import page
from tests.support import summarize

NOW = datetime(2024, 4, 1, 9, 30, tzinfo=UTC)


def test_turkish_number_formats():
    assert page.fmt_int(1234) == "1.234"
    assert page.fmt_int(1234567) == "1.234.567"
    assert page.fmt_int(7) == "7"
    assert page.fmt_percent(263 / 631) == "%41,7"
    assert page.fmt_percent(1.0) == "%100,0"
    assert page.fmt_percent(None) == "—"
    assert page.fmt_decimal(1234.56, 2) == "1.234,56"
    assert page.fmt_decimal(2.5) == "2,5"
    assert page.fmt_date("2024-03-05") == "05.03.2024"
    assert page.fmt_moment(NOW) == "01.04.2024 12:30"


def test_province_names_follow_the_plate_codes():
    assert len(page.PROVINCES) == 81
    assert page.province_name(20) == "Denizli"
    assert page.province_name(34) == "İstanbul"
    assert page.province_name(81) == "Düzce"
    assert page.province_name(None) == "Tüm iller"


def test_donut_segments_add_up_to_the_whole_ring():
    svg = str(
        page.donut_chart(
            [("Olumlu", 263, "#0a0"), ("Olumsuz", 123, "#a00"), ("Kısmen olumlu", 245, "#aa0")],
            "Sonuç",
            "yanıtlanan",
        )
    )
    lengths = [float(m) for m in re.findall(r'stroke-dasharray="([\d.]+) ', svg)]
    assert len(lengths) == 3
    circumference = float(re.search(r'stroke-dasharray="[\d.]+ ([\d.]+)"', svg).group(1))
    assert abs(sum(lengths) - circumference) < 0.05
    assert "%41,7" in svg and "631" in svg


def _summary_with(name: str) -> dict:
    doc = {
        "province_code": 20,
        "district": "Merkezefendi",
        "channel": "edevlet",
        "application_type": "istek",
        "received_ms": 1_709_539_200_000,
        "st_received": 1_709_539_200_000,
        "routings": {
            "e1": {
                "at_ms": 1_709_539_260_000,
                "category_code": "SU-01",
                "heading_code": "SU",
                "institution_code": "DESKI",
                "institution_kind": "SU_IDARESI",
                "institution_name": name,
                "category_name": "İçme suyu kesintisi",
                "heading_name": "Altyapı ve Su",
            }
        },
        "st_answered": 1_709_625_600_000,
        "answered_ms": 1_709_625_600_000,
        "outcome": "olumlu",
        "deadline_ms": 1_710_363_599_000,
    }
    return summarize([doc] * 1234, NOW)
