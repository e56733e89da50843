"""Exports of a report: CSV a Turkish Excel opens, an XLSX workbook, and the governor's monthly
PDF, checked by turning its pages into PNG with pdftoppm (Debian's poppler-utils)."""

from __future__ import annotations

import csv
import io
import random
import shutil
import subprocess
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from PIL import Image

from services.reporting import exports, governor_pdf
from services.reporting.query import QueryError
from tests.support import summarize

DISTRICTS = [
    "Merkezefendi", "Pamukkale", "Çivril", "Acıpayam", "Tavas", "Honaz", "Sarayköy", "Buldan",
    "Çal", "Çardak", "Bozkurt", "Güney", "Çameli", "Beyağaç", "Baklan", "Babadağ", "Bekilli",
    "Serinhisar", "Kale",
]  # fmt: skip
INSTITUTIONS = [
    ("DESKI", "Denizli Su ve Kanalizasyon İdaresi (DESKİ)", "SU_IDARESI"),
    ("DENIZLI_BB", "Denizli Büyükşehir Belediyesi", "BELEDIYE"),
    ("MERKEZEFENDI_BLD", "Merkezefendi Belediyesi", "BELEDIYE"),
    ("PAMUKKALE_BLD", "Pamukkale Belediyesi", "BELEDIYE"),
    ("ADM_ELEKTRIK", "ADM Elektrik Dağıtım A.Ş.", "ELEKTRIK"),
    ("IL_SAGLIK", "İl Sağlık Müdürlüğü", "SAGLIK"),
    ("IL_MEB", "İl Millî Eğitim Müdürlüğü", "MEB"),
    ("KARAYOLLARI_2", "Karayolları 2. Bölge Müdürlüğü", "KARAYOLLARI"),
    ("EMNIYET", "İl Emniyet Müdürlüğü", "EMNIYET"),
    ("SGK", "SGK Denizli İl Müdürlüğü", "SGK"),
    ("CIVRIL_KYM", "Çivril Kaymakamlığı", "KAYMAKAMLIK"),
    ("TARIM", "İl Tarım ve Orman Müdürlüğü", "TARIM"),
    ("ISKUR", "İŞKUR Denizli İl Müdürlüğü", "ISKUR"),
    ("TAPU", "Denizli Tapu Müdürlüğü", "TAPU"),
]
HEADINGS = [
    ("ALTYAPI", "Altyapı ve su"),
    ("ULASIM", "Ulaşım ve yol"),
    ("SAGLIK", "Sağlık"),
    ("EGITIM", "Eğitim"),
    ("SOSYAL", "Sosyal yardım"),
    ("CEVRE", "Çevre ve temizlik"),
]
CHANNELS = ["web", "edevlet", "counter", "mobile", "call_center", "kiosk", "open311"]
TYPES = ["sikayet", "istek", "bilgi_edinme", "oneri", "ihbar", "tesekkur"]


def _row(rng: random.Random, total: int) -> dict[str, Any]:
    answered = round(total * rng.uniform(0.8, 1.0))
    olumlu = round(answered * rng.uniform(0.3, 0.5))
    olumsuz = round((answered - olumlu) * rng.uniform(0.2, 0.5))
    judged = answered
    on_time = rng.uniform(0.6, 1.0) if judged else None
    rated = round(answered * 0.1)
    return {
        "total": total,
        "answered": answered,
        "open": total - answered,
        "olumlu": olumlu,
        "olumsuz": olumsuz,
        "kismen_olumlu": answered - olumlu - olumsuz,
        "overdue": round((total - answered) * 0.4),
        "on_time_ratio": on_time,
        "mean_response_business_days": round(rng.uniform(1.5, 6.5), 2) if answered else None,
        "median_response_business_days": rng.randint(1, 6) if answered else None,
        "ratings": {
            "count": rated,
            "average": round(rng.uniform(2.8, 4.8), 2) if rated else None,
            "distribution": {str(p): rated // 5 for p in range(1, 6)},
        },
    }


def _split(rng: random.Random, whole: int, parts: int) -> list[int]:
    weights = sorted((rng.paretovariate(1.2) for _ in range(parts)), reverse=True)
    scale = whole / sum(weights)
    return [max(1, round(w * scale)) for w in weights]


def make_report(
    *, categories: int = 20, overdue: int = 12, chronic: bool = True, seed: int = 7
) -> dict[str, Any]:
    """A Denizli report for March 2026 in the shape of /work/helpers/report-shape.md."""
    rng = random.Random(seed)
    total = 631
    institutions = [
        {**_row(rng, n), "institution_code": c, "institution_name": name, "kind": kind}
        for n, (c, name, kind) in zip(
            _split(rng, total - 9, len(INSTITUTIONS)), INSTITUTIONS, strict=True
        )
    ] + [{**_row(rng, 9), "institution_code": None, "institution_name": None, "kind": None}]
    headings = [
        {**_row(rng, n), "heading_code": c, "heading_name": name}
        for n, (c, name) in zip(_split(rng, total, len(HEADINGS)), HEADINGS, strict=True)
    ]
    category_rows = [
        {
            **_row(rng, n),
            "category_code": f"K{i:03d}",
            "category_name": f"Kategori {i}: {HEADINGS[i % len(HEADINGS)][1]} sorunu",
            "heading_code": HEADINGS[i % len(HEADINGS)][0],
            "heading_name": HEADINGS[i % len(HEADINGS)][1],
        }
        for i, n in enumerate(_split(rng, total, categories))
    ]
    weeks = []
    start = date(2026, 2, 23)
    for i in range(6):
        received = rng.randint(60, 160) if 0 < i < 5 else rng.randint(5, 40)
        weeks.append(
            {
                "period": f"2026-W{9 + i:02d}",
                "start": (start + timedelta(weeks=i)).isoformat(),
                "received": received,
                "answered": round(received * rng.uniform(0.75, 1.0)),
                "overdue": rng.randint(0, 4),
                "on_time_ratio": rng.uniform(0.8, 1.0),
            }
        )
    ranked = sorted(institutions[:-1], key=lambda r: -(r["on_time_ratio"] or 0))
    base = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    report: dict[str, Any] = {
        "scope": {
            "province_code": 20,
            "province_name": "Denizli",
            "district": None,
            "institution_code": None,
            "institution_name": None,
            "from": "2026-03-01",
            "to": "2026-03-31",
        },
        "generated_at": "2026-04-02T07:00:00+00:00",
        "as_of": "2026-04-02T06:59:58+00:00",
        "total": total,
        "answered": 600,
        "open": 31,
        "outcomes": {"olumlu": 263, "olumsuz": 123, "kismen_olumlu": 214},
        "overdue": overdue,
        "on_time_ratio": 0.934,
        "mean_response_business_days": 3.4,
        "median_response_business_days": 3,
        "ratings": {
            "count": 40,
            "average": 4.1,
            "distribution": {"1": 2, "2": 3, "3": 5, "4": 10, "5": 20},
        },
        "by_institution": institutions,
        "by_heading": headings,
        "by_category": category_rows,
        "by_channel": [
            {**_row(rng, n), "channel": c}
            for n, c in zip(_split(rng, total, len(CHANNELS)), CHANNELS, strict=True)
        ],
        "by_type": [
            {**_row(rng, n), "application_type": t}
            for n, t in zip(_split(rng, total, len(TYPES)), TYPES, strict=True)
        ],
        "by_district": [
            {**_row(rng, n), "district": d}
            for n, d in zip(_split(rng, total, len(DISTRICTS)), DISTRICTS, strict=True)
        ],
        "by_status": [
            {"status": "closed", "total": 560},
            {"status": "answered", "total": 40},
            {"status": "opened", "total": 20},
            {"status": "routed", "total": 8},
            {"status": "awaiting_routing", "total": 3},
        ],
        "trends": {
            "weekly": weeks,
            "monthly": [
                {
                    "period": "2026-03",
                    "start": "2026-03-01",
                    "received": total,
                    "answered": 600,
                    "overdue": overdue,
                    "on_time_ratio": 0.934,
                }
            ],
        },
        "institution_ranking": [
            {
                "rank": i,
                "institution_code": r["institution_code"],
                "institution_name": r["institution_name"],
                "kind": r["kind"],
                "judged": r["answered"],
                "on_time_ratio": r["on_time_ratio"],
                "total": r["total"],
            }
            for i, r in enumerate(ranked, start=1)
        ],
        "overdue_list": [
            {
                "application_number": f"2026-{100 + i:06d}-{i % 10}",
                "institution_code": INSTITUTIONS[i % len(INSTITUTIONS)][0],
                "institution_name": INSTITUTIONS[i % len(INSTITUTIONS)][1],
                "category_name": HEADINGS[i % len(HEADINGS)][1],
                "district": DISTRICTS[i % len(DISTRICTS)],
                "received_at": (base + timedelta(hours=7 * i)).isoformat(),
                "deadline_at": (base + timedelta(days=9, hours=7 * i)).isoformat(),
            }
            for i in range(overdue)
        ],
        "overdue_list_total": overdue,
    }
    if chronic:
        report["chronic"] = [
            {
                "count": 14,
                "district": "Merkezefendi",
                "neighbourhood": "Sırakapılar Mahallesi",
                "heading_name": "Altyapı ve su",
                "institution_name": "Denizli Su ve Kanalizasyon İdaresi (DESKİ)",
                "first_at": "2026-01-12T08:10:00+00:00",
                "last_at": "2026-03-28T15:45:00+00:00",
                "trend": "artıyor",
                "citizens": 11,
                "weekly": [
                    {"week_start": "2026-01-12", "count": c} for c in (1, 0, 2, 1, 1, 0, 2, 1, 3, 3)
                ],
                "examples": [
                    "Mahallemizde üç gündür sular akmıyor, [AD SOYAD] olarak ikinci kez yazıyorum.",
                    "Sırakapılar'da ana boru patladı, cadde göl oldu. Tel: [TELEFON]",
                    "Su kesintisi yine başladı; önceden duyuru yapılmıyor.",
                    "Dördüncü örnek gösterilmez.",
                ],
            },
            {
                "count": 6,
                "district": "Çivril",
                "neighbourhood": None,
                "heading_name": "Ulaşım ve yol",
                "institution_name": "Karayolları 2. Bölge Müdürlüğü",
                "first_at": "2026-02-03T08:00:00+00:00",
                "last_at": "2026-03-20T08:00:00+00:00",
                "trend": "sabit",
                "examples": ["Çivril–Uşak yolunda çukurlar kaza riski oluşturuyor."],
            },
        ]
    return report


def _read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))


# --- CSV --------------------------------------------------------------------------------------


def test_every_table_has_a_turkish_title_fit_for_a_sheet_name():
    assert len(exports.TABLES) == 11
    for table in exports.TABLES.values():
        assert 0 < len(table.title) <= 31
        assert not set(table.title) & set("[]:*?/\\")
    titles = [t.title for t in exports.TABLES.values()]
    assert len(set(titles)) == len(titles)
    assert "Süresi geçenler" in titles and "İlçeler" in titles


def test_institution_csv_reads_back_with_turkish_headers_and_numbers():
    report = make_report()
    rows = _read_csv(exports.to_csv(report, "by_institution"))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["Kurum kodu", "Kurum", "Kurum türü", "Toplam başvuru"]
    assert "Kısmen olumlu" in header and "Zamanında yanıt (%)" in header
    assert len(body) == len(report["by_institution"])
    first, source = dict(zip(header, body[0], strict=True)), report["by_institution"][0]
    assert first["Kurum"] == "Denizli Su ve Kanalizasyon İdaresi (DESKİ)"
    assert first["Toplam başvuru"] == str(source["total"])
    assert first["Kısmen olumlu"] == str(source["kismen_olumlu"])
    assert first["Zamanında yanıt (%)"] == f"{source['on_time_ratio'] * 100:.1f}".replace(".", ",")
    mean = source["mean_response_business_days"]
    assert first["Ortalama yanıt süresi (iş günü)"] == f"{mean:.1f}".replace(".", ",")
    unrouted = dict(zip(header, body[-1], strict=True))
    assert unrouted["Kurum"] == "Henüz belli değil" and unrouted["Kurum kodu"] == ""


def test_summary_csv_gives_the_headline_figures_with_turkish_decimals():
    rows = dict(_read_csv(exports.to_csv(make_report(), "summary"))[1:])
    assert rows["Toplam başvuru"] == "631"
    assert rows["Olumlu"] == "263"
    assert rows["Kısmen olumlu"] == "214"
    assert rows["Zamanında yanıt (%)"] == "93,4"
    assert rows["Ortalama yanıt süresi (iş günü)"] == "3,4"
    assert rows["Ortalama puan (1–5)"] == "4,10"
    assert rows["Durum: Kapandı"] == "560"
    assert rows["Durum: Yönlendirme bekliyor"] == "3"


def test_codes_are_written_as_people_read_them():
    report = make_report()
    channels = [r[0] for r in _read_csv(exports.to_csv(report, "by_channel"))[1:]]
    assert {"e-Devlet", "Açık Kapı masası", "Çağrı merkezi"} <= set(channels)
    types = [r[0] for r in _read_csv(exports.to_csv(report, "by_type"))[1:]]
    assert {"Şikâyet", "Bilgi edinme", "Teşekkür"} <= set(types)
    months = _read_csv(exports.to_csv(report, "monthly"))
    assert months[1][:2] == ["Mart 2026", "01.03.2026"]


def test_unknown_values_are_empty_cells_not_dashes():
    report = make_report()
    report["by_district"][0].update(on_time_ratio=None, mean_response_business_days=None)
    rows = _read_csv(exports.to_csv(report, "by_district"))
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["Zamanında yanıt (%)"] == ""
    assert first["Ortalama yanıt süresi (iş günü)"] == ""


def test_overdue_csv_gives_istanbul_times_and_the_delay_in_business_days():
    rows = _read_csv(exports.to_csv(make_report(), "overdue_list"))
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["Başvuru numarası"] == "2026-000100-0"
    assert first["Alındığı zaman"] == "02.03.2026 12:00"  # 09:00 UTC
    assert first["Yanıt süresinin sonu"] == "11.03.2026 12:00"
    # Wednesday 11 March to Thursday 2 April 2026: 16 weekdays, less Ramazan Bayramı (Fri 20).
    assert first["Gecikme (iş günü)"] == "15"


def test_csv_cells_cannot_become_formulas():
    report = make_report()
    report["by_institution"][0]["institution_name"] = '=HYPERLINK("http://x";"tıkla")'
    report["by_institution"][1]["institution_name"] = "+90 555"
    report["by_institution"][2]["institution_name"] = "-2+3"
    report["by_institution"][3]["institution_name"] = "@SUM(A1)"
    report["by_district"][0]["district"] = "\t=1+1"
    names = [r[1] for r in _read_csv(exports.to_csv(report, "by_institution"))[1:5]]
    assert names == ['\'=HYPERLINK("http://x";"tıkla")', "'+90 555", "'-2+3", "'@SUM(A1)"]
    assert _read_csv(exports.to_csv(report, "by_district"))[1][0] == "'\t=1+1"


def test_an_unknown_table_is_a_query_error_naming_the_field():
    with pytest.raises(QueryError) as caught:
        exports.to_csv(make_report(), "people")
    assert caught.value.errors[0]["field"] == "table"
    assert "by_institution (Kurumlar)" in caught.value.errors[0]["message"]


# --- XLSX -------------------------------------------------------------------------------------


def test_xlsx_has_a_cover_and_one_sheet_per_table_with_real_numbers():
    report = make_report()
    data = exports.to_xlsx(report)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "Kurum sıralaması" in archive.read("xl/workbook.xml").decode()
        assert "Zamanında yanıt (%)" in archive.read("xl/sharedStrings.xml").decode()
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Rapor", *(t.title for t in exports.TABLES.values())]
    cover = {row[0]: row[1] for row in book["Rapor"].iter_rows(values_only=True) if row[0]}
    assert cover["İl"] == "Denizli"
    assert cover["Dönem başlangıcı"] == datetime(2026, 3, 1)
    assert cover["Oluşturulma zamanı"] == datetime(2026, 4, 2, 10, 0)  # Istanbul's clock

    sheet = book["Kurumlar"]
    assert sheet.freeze_panes == "A2"
    assert sheet["A1"].value == "Kurum kodu" and sheet["A1"].font.b
    header = [c.value for c in sheet[1]]
    total = sheet.cell(2, header.index("Toplam başvuru") + 1)
    assert total.value == report["by_institution"][0]["total"]
    assert total.number_format == "#,##0"
    ratio = sheet.cell(2, header.index("Zamanında yanıt (%)") + 1)
    assert ratio.value == pytest.approx(report["by_institution"][0]["on_time_ratio"])
    assert ratio.number_format == "%0.0"
    assert sheet.column_dimensions["B"].width >= len("Denizli Su ve Kanalizasyon İdaresi (DESKİ)")
    assert sheet.max_row == len(report["by_institution"]) + 1

    summary = {row[0]: row[1] for row in book["Özet"].iter_rows(min_row=2, values_only=True)}
    assert summary["Toplam başvuru"] == 631
    assert summary["Zamanında yanıt (%)"] == pytest.approx(0.934)
    overdue = book["Süresi geçenler"]
    assert overdue["F2"].value == datetime(2026, 3, 2, 12, 0)
    assert overdue["F2"].number_format == "dd.mm.yyyy hh:mm"


def test_xlsx_writes_a_formula_like_name_as_text():
    report = make_report()
    report["by_institution"][0]["institution_name"] = "=1+1"
    book = openpyxl.load_workbook(io.BytesIO(exports.to_xlsx(report)))
    cell = book["Kurumlar"]["B2"]
    assert cell.value == "=1+1" and cell.data_type == "s"


def test_an_empty_report_still_exports():
    report = make_report(categories=3, overdue=0, chronic=False)
    for key in ("by_institution", "by_heading", "by_category", "by_channel", "by_type"):
        report[key] = []
    report.update(total=0, answered=0, open=0, on_time_ratio=None)
    book = openpyxl.load_workbook(io.BytesIO(exports.to_xlsx(report)))
    assert book["Kurumlar"].max_row == 1
    assert _read_csv(exports.to_csv(report, "overdue_list"))[1:] == []


# --- file names -------------------------------------------------------------------------------


def test_file_names_carry_province_and_period_with_an_ascii_fallback():
    report = make_report()
    assert (
        exports.export_filename(report, "xlsx")
        == "acikkapi-rapor-denizli-2026-03-01-2026-03-31.xlsx"
    )
    report["scope"].update(province_code=63, province_name="Şanlıurfa", district="Eyyübiye")
    name = exports.export_filename(report, "csv", table="by_heading")
    assert name == "acikkapi-rapor-şanlıurfa-eyyübiye-2026-03-01-2026-03-31-ana-başlıklar.csv"
    header = exports.content_disposition(name)
    assert header.startswith(
        'attachment; filename="acikkapi-rapor-sanliurfa-eyyubiye-2026-03-01-2026-03-31-'
        'ana-basliklar.csv"; '
    )
    assert "filename*=UTF-8''acikkapi-rapor-%C5%9Fanl%C4%B1urfa-" in header
    header.encode("latin-1")  # an HTTP header value must be latin-1 (here plain ASCII)
    report["scope"].update(province_name="İzmir", district=None, **{"from": None, "to": None})
    assert exports.export_filename(report, "xlsx") == "acikkapi-rapor-izmir-tüm-dönem.xlsx"
    assert governor_pdf.monthly_filename(report, date(2026, 3, 1)) == (
        "acikkapi-vali-raporu-izmir-2026-03.pdf"
    )


def test_month_query_is_parsed_into_the_months_days():
    month = governor_pdf.parse_month("2026-02")
    assert month == date(2026, 2, 1)
    period = governor_pdf.month_period(month)
    assert (period.start, period.end) == (date(2026, 2, 1), date(2026, 2, 28))
    assert governor_pdf.month_period(date(2024, 12, 1)).end == date(2024, 12, 31)
    for bad in ("2026-13", "2026-3", "", None, "mart"):
        with pytest.raises(QueryError) as caught:
            governor_pdf.parse_month(bad)
        assert caught.value.errors[0]["field"] == "month"


# --- PDF --------------------------------------------------------------------------------------

needs_poppler = pytest.mark.skipif(
    not (shutil.which("pdftoppm") and shutil.which("pdftotext")),
    reason="poppler-utils is not installed (deploy/local/install.sh installs it)",
)


def _ink_share(path: Path) -> float:
    """The share of the page's pixels that are not white: a blank page gives 0."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        histogram = image.convert("L").histogram()
    return 1 - sum(histogram[245:]) / sum(histogram)


def _render(pdf: bytes, tmp_path: Path, resolution: int = 60) -> list[Path]:
    source = tmp_path / "rapor.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", str(resolution), str(source), str(tmp_path / "sayfa")],
        check=True,
        timeout=60,
    )
    return sorted(tmp_path.glob("sayfa-*.png"))


def _text(pdf: bytes, tmp_path: Path) -> str:
    source = tmp_path / "metin.pdf"
    source.write_bytes(pdf)
    done = subprocess.run(
        ["pdftotext", "-layout", str(source), "-"], check=True, capture_output=True, timeout=60
    )
    return done.stdout.decode("utf-8")


@needs_poppler
def test_monthly_pdf_renders_every_page_with_ink(tmp_path):
    pdf = governor_pdf.monthly_pdf(make_report(), month=date(2026, 3, 1))
    assert pdf.startswith(b"%PDF-")
    pages = _render(pdf, tmp_path)
    assert len(pages) >= 2
    for page in pages:
        assert _ink_share(page) > 0.002, f"{page.name} is blank"


@needs_poppler
def test_monthly_pdf_says_it_in_turkish(tmp_path):
    report = make_report(overdue=45)
    report["overdue_list_total"] = 57
    text = _text(governor_pdf.monthly_pdf(report, month=date(2026, 3, 1)), tmp_path)
    for phrase in (
        "DENİZLİ VALİLİĞİ",
        "Mart 2026",
        "Kısmen olumlu",
        "Zamanında yanıt",
        "Toplam başvuru",
        "Süresi geçen",
        "Çağrı merkezi",
        "Merkezefendi",
        "Zamanında yanıt oranına göre kurum sıralaması",
        "Süresi geçtiği hâlde yanıtlanmamış 57 başvuru var; süresi en önce dolan 30 tanesi",
        "Tekrarlayan sorunlar",
        "Sırakapılar Mahallesi",
        "[AD SOYAD]",
        "eğilim: Artıyor",
        "11 farklı vatandaş",
    ):
        assert phrase in text, phrase
    assert "Dördüncü örnek" not in text  # three examples per problem
    assert "2026-000129-9" in text and "2026-000130-0" not in text  # the first 30 only
    pages = text.count("\f")
    assert f"Sayfa 1 / {pages}" in text and f"Sayfa {pages} / {pages}" in text
    assert "%93,4" in text and "3,4" in text


@needs_poppler
def test_monthly_pdf_without_answers_or_chronic_problems(tmp_path):
    report = make_report(overdue=0, chronic=False)
    report.update(
        answered=0,
        open=631,
        outcomes={"olumlu": 0, "olumsuz": 0, "kismen_olumlu": 0},
        on_time_ratio=None,
        mean_response_business_days=None,
        median_response_business_days=None,
        ratings={"count": 0, "average": None, "distribution": {}},
        institution_ranking=[],
        by_channel=[],
    )
    report["trends"]["weekly"] = []
    text = _text(governor_pdf.monthly_pdf(report, month=date(2026, 3, 1)), tmp_path)
    assert "Süresi geçtiği hâlde yanıtlanmamış başvuru yok." in text
    assert "Bu dönem için veri yok." in text
    assert "Tekrarlayan sorunlar" not in text
    assert len(_render(governor_pdf.monthly_pdf(report, month=date(2026, 3, 1)), tmp_path)) >= 2


def test_a_report_assembled_from_read_model_documents_exports(tmp_path):
    """The shape the aggregation really produces (tests.support.summarize), not only the fixture."""
    routing = {
        "e1": {
            "at_ms": 1_709_539_260_000,
            "category_code": "SU-01",
            "heading_code": "SU",
            "institution_code": "DESKI",
            "institution_kind": "SU_IDARESI",
            "institution_name": "DESKİ",
            "category_name": "İçme suyu kesintisi",
            "heading_name": "Altyapı ve Su",
        }
    }
    received = {
        "province_code": 20,
        "district": "Merkezefendi",
        "channel": "edevlet",
        "application_type": "sikayet",
        "received_ms": 1_709_539_200_000,  # Monday 4 March 2024, 08:00 UTC
        "received_day": "2024-03-04",
        "st_received": 1_709_539_200_000,
        "routings": routing,
        "deadline_ms": 1_710_363_599_000,
    }
    answered = {
        **received,
        "st_answered": 1_709_625_600_000,
        "answered_ms": 1_709_625_600_000,
        "outcome": "kismen_olumlu",
    }
    late = {**received, "application_number": "2024-000002-3", "channel": "counter", "overdue": 1}
    unrouted = {**received, "routings": {}, "district": "Çivril", "channel": "kiosk"}
    report = summarize([answered, late, unrouted], datetime(2024, 4, 1, 9, 30, tzinfo=UTC))

    summary = dict(_read_csv(exports.to_csv(report, "summary"))[1:])
    assert (summary["Toplam başvuru"], summary["Kısmen olumlu"], summary["Süresi geçen"]) == (
        "3",
        "1",
        "1",
    )
    overdue = _read_csv(exports.to_csv(report, "overdue_list"))
    assert overdue[1][:5] == [
        "2024-000002-3",
        "DESKI",
        "DESKİ",
        "İçme suyu kesintisi",
        "Merkezefendi",
    ]
    book = openpyxl.load_workbook(io.BytesIO(exports.to_xlsx(report)))
    assert book["Rapor"]["B3"].value == "Denizli"
    assert [c.value for c in book["Kanallar"]["A"][1:]] == ["Açık Kapı masası", "e-Devlet", "Kiosk"]
    pdf = governor_pdf.monthly_pdf(report, month=date(2024, 3, 1))
    if shutil.which("pdftotext"):
        text = _text(pdf, tmp_path)
        assert "DENİZLİ VALİLİĞİ" in text and "Mart 2024" in text and "2024-000002-3" in text
