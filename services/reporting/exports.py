"""A report taken away: each of its tables as a CSV file a Turkish Excel opens as it is, every
table at once as an XLSX workbook, and the file names and Content-Disposition they travel under.

How values are written, so that a spreadsheet reads numbers as numbers:

- CSV: UTF-8 with a byte order mark (Excel otherwise guesses a Windows code page and garbles
  ş ğ ı İ), `;` between cells (the list separator of a Turkish Windows), CRLF line ends.
  Counts are plain digits without a thousands separator ("1234"); decimals take a comma
  ("3,4"); a share is written as a percentage number with a comma ("93,4"), and its header
  says so with "(%)"; days are dd.mm.yyyy and moments dd.mm.yyyy SS:DD on Istanbul's clock.
  A value that is not known (no answer yet, so no mean) is an empty cell, never "—", so sums
  and averages in the sheet still work.
- XLSX: numbers are stored as numbers and shares as ratios (0.934) shown with the Turkish
  percent format "%93,4"; number formats are locale-neutral codes, so Excel shows Turkish
  punctuation on a Turkish machine. Days and moments are real date cells.
- Text that starts with = + - @ (or a tab or carriage return) gets a leading apostrophe in the
  CSV, so a name typed into the taxonomy cannot become a formula (CSV injection). The XLSX
  writes every text as a string cell, never as a formula.

Codes are written as people read them (channel, type, status: services/common/labels.py and
page.py); a row whose key is not known yet says "Henüz belli değil".
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any
from urllib.parse import quote

import xlsxwriter

from services.common.business_days import PUBLIC
from services.common.turkish import turkish_lower
from services.common.turkish_time import ISTANBUL, MONTHS, parse_instant
from services.reporting.page import (
    OUTCOME_LABELS,
    RATING_LABELS,
    STATUS_LABELS,
    UNKNOWN,
    channel_label,
    district_label,
    heading_label,
    institution_label,
    province_name,
    type_label,
)
from services.reporting.query import QueryError

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Row = Mapping[str, Any]


class Kind(Enum):
    """How a cell's value is written; `BY_ROW` takes the kind from the row's own "kind" key."""

    TEXT = "text"
    INT = "int"
    DAYS = "days"  # business days, one decimal
    SCORE = "score"  # a 1–5 rating average, two decimals
    RATIO = "ratio"  # 0..1, shown as a percentage
    DATE = "date"
    MOMENT = "moment"
    BY_ROW = "by_row"


@dataclass(frozen=True)
class Column:
    header: str
    kind: Kind
    value: Callable[[Row], Any]


@dataclass(frozen=True)
class Table:
    code: str  # what `?table=` names: the report's own key
    title: str  # the sheet name and what people read; at most 31 characters (Excel's limit)
    columns: tuple[Column, ...]
    rows: Callable[[Mapping[str, Any]], Sequence[Row]]


# page.py's labels take plain dicts; a row here is any mapping.
def _institution(row: Row) -> str:
    return institution_label(dict(row))


def _heading(row: Row) -> str:
    return heading_label(dict(row))


def _channel(row: Row) -> str:
    return channel_label(row.get("channel"))


def _type(row: Row) -> str:
    return type_label(row.get("application_type"))


def _district(row: Row) -> str:
    return district_label(row.get("district"))


def _category(row: Row) -> str:
    if row.get("category_code") is None:
        return UNKNOWN
    return str(row.get("category_name") or row["category_code"])


def _field(name: str) -> Callable[[Row], Any]:
    return lambda row: row.get(name)


def _rating(name: str) -> Callable[[Row], Any]:
    return lambda row: (row.get("ratings") or {}).get(name)


# The figures every breakdown row carries (report-shape.md's `row`).
_FIGURES = (
    Column("Toplam başvuru", Kind.INT, _field("total")),
    Column("Yanıtlanan", Kind.INT, _field("answered")),
    Column("Açık", Kind.INT, _field("open")),
    *(Column(label, Kind.INT, _field(code)) for code, label in OUTCOME_LABELS.items()),
    Column("Süresi geçen", Kind.INT, _field("overdue")),
    Column("Zamanında yanıt (%)", Kind.RATIO, _field("on_time_ratio")),
    Column("Ortalama yanıt süresi (iş günü)", Kind.DAYS, _field("mean_response_business_days")),
    Column("Medyan yanıt süresi (iş günü)", Kind.DAYS, _field("median_response_business_days")),
    Column("Puan veren", Kind.INT, _rating("count")),
    Column("Ortalama puan (1–5)", Kind.SCORE, _rating("average")),
)
_TREND_FIGURES = (
    Column("Gelen", Kind.INT, _field("received")),
    Column("Yanıtlanan", Kind.INT, _field("answered")),
    Column("Süresi geçen", Kind.INT, _field("overdue")),
    Column("Zamanında yanıt (%)", Kind.RATIO, _field("on_time_ratio")),
)


def _rows(name: str) -> Callable[[Mapping[str, Any]], Sequence[Row]]:
    return lambda report: report.get(name) or []


def _trend(name: str) -> Callable[[Mapping[str, Any]], Sequence[Row]]:
    return lambda report: (report.get("trends") or {}).get(name) or []


def summary_rows(report: Mapping[str, Any]) -> list[Row]:
    """The headline figures as (Gösterge, Değer) rows, each with the kind of its value."""
    ratings = report.get("ratings") or {}
    distribution = ratings.get("distribution") or {}
    outcomes = report.get("outcomes") or {}
    rows: list[Row] = [
        {"label": "Toplam başvuru", "value": report.get("total"), "kind": Kind.INT},
        {"label": "Yanıtlanan", "value": report.get("answered"), "kind": Kind.INT},
        {"label": "Açık", "value": report.get("open"), "kind": Kind.INT},
        *(
            {"label": label, "value": outcomes.get(code, 0), "kind": Kind.INT}
            for code, label in OUTCOME_LABELS.items()
        ),
        {"label": "Süresi geçen", "value": report.get("overdue"), "kind": Kind.INT},
        {"label": "Zamanında yanıt (%)", "value": report.get("on_time_ratio"), "kind": Kind.RATIO},
        {
            "label": "Ortalama yanıt süresi (iş günü)",
            "value": report.get("mean_response_business_days"),
            "kind": Kind.DAYS,
        },
        {
            "label": "Medyan yanıt süresi (iş günü)",
            "value": report.get("median_response_business_days"),
            "kind": Kind.DAYS,
        },
        {"label": "Puan veren", "value": ratings.get("count"), "kind": Kind.INT},
        {"label": "Ortalama puan (1–5)", "value": ratings.get("average"), "kind": Kind.SCORE},
        *(
            {"label": f"Puan {label}", "value": distribution.get(point, 0), "kind": Kind.INT}
            for point, label in RATING_LABELS.items()
        ),
    ]
    for item in report.get("by_status") or []:
        label = STATUS_LABELS.get(item.get("status"), str(item.get("status") or UNKNOWN))
        rows.append({"label": f"Durum: {label}", "value": item.get("total"), "kind": Kind.INT})
    return rows


def month_label(period: str | None) -> str:
    """A month as people say it: "2026-03" → "Mart 2026"."""
    if not period or not re.fullmatch(r"\d{4}-\d{2}", period):
        return period or UNKNOWN
    year, month = period.split("-")
    return f"{MONTHS[int(month) - 1]} {year}"


def overdue_business_days(row: Row, now: datetime) -> int | None:
    """Business days past the deadline at `now` (public holidays only; leave days unknown here)."""
    if row.get("overdue_business_days") is not None:
        return int(row["overdue_business_days"])
    if not row.get("deadline_at"):
        return None
    return PUBLIC.business_days_between(parse_instant(row["deadline_at"]), now)


def _overdue_rows(report: Mapping[str, Any]) -> list[Row]:
    now = parse_instant(report.get("generated_at") or datetime.now(UTC))
    return [
        {**row, "overdue_business_days": overdue_business_days(row, now)}
        for row in report.get("overdue_list") or []
    ]


def _breakdown(code: str, title: str, *keys: Column) -> Table:
    """A table of report rows (`by_…`): the columns that name a row, then the figures."""
    return Table(code, title, (*keys, *_FIGURES), _rows(code))


def _trend_table(code: str, title: str, period: Column, start: Column) -> Table:
    return Table(code, title, (period, start, *_TREND_FIGURES), _trend(code))


# An institution is named by its code and its name in every table that lists institutions.
_INSTITUTION = (
    Column("Kurum kodu", Kind.TEXT, _field("institution_code")),
    Column("Kurum", Kind.TEXT, _institution),
)
_KIND = Column("Kurum türü", Kind.TEXT, _field("kind"))

TABLES: dict[str, Table] = {
    table.code: table
    for table in (
        Table(
            "summary",
            "Özet",
            (
                Column("Gösterge", Kind.TEXT, _field("label")),
                Column("Değer", Kind.BY_ROW, _field("value")),
            ),
            summary_rows,
        ),
        _breakdown("by_institution", "Kurumlar", *_INSTITUTION, _KIND),
        _breakdown(
            "by_heading",
            "Ana başlıklar",
            Column("Ana başlık kodu", Kind.TEXT, _field("heading_code")),
            Column("Ana başlık", Kind.TEXT, _heading),
        ),
        _breakdown(
            "by_category",
            "Kategoriler",
            Column("Kategori kodu", Kind.TEXT, _field("category_code")),
            Column("Kategori", Kind.TEXT, _category),
            Column("Ana başlık", Kind.TEXT, _heading),
        ),
        _breakdown("by_channel", "Kanallar", Column("Kanal", Kind.TEXT, _channel)),
        _breakdown("by_type", "Başvuru türleri", Column("Başvuru türü", Kind.TEXT, _type)),
        _breakdown("by_district", "İlçeler", Column("İlçe", Kind.TEXT, _district)),
        _trend_table(
            "weekly",
            "Haftalık eğilim",
            Column("Hafta", Kind.TEXT, _field("period")),
            Column("Hafta başı (Pazartesi)", Kind.DATE, _field("start")),
        ),
        _trend_table(
            "monthly",
            "Aylık eğilim",
            Column("Ay", Kind.TEXT, lambda row: month_label(row.get("period"))),
            Column("Ay başı", Kind.DATE, _field("start")),
        ),
        Table(
            "institution_ranking",
            "Kurum sıralaması",
            (
                Column("Sıra", Kind.INT, _field("rank")),
                *_INSTITUTION,
                _KIND,
                Column("Zamanında yanıt (%)", Kind.RATIO, _field("on_time_ratio")),
                Column("Süresi değerlendirilen", Kind.INT, _field("judged")),
                Column("Toplam başvuru", Kind.INT, _field("total")),
            ),
            _rows("institution_ranking"),
        ),
        Table(
            "overdue_list",
            "Süresi geçenler",
            (
                Column("Başvuru numarası", Kind.TEXT, _field("application_number")),
                *_INSTITUTION,
                Column("Kategori", Kind.TEXT, _field("category_name")),
                Column("İlçe", Kind.TEXT, _district),
                Column("Alındığı zaman", Kind.MOMENT, _field("received_at")),
                Column("Yanıt süresinin sonu", Kind.MOMENT, _field("deadline_at")),
                Column("Gecikme (iş günü)", Kind.INT, _field("overdue_business_days")),
            ),
            _overdue_rows,
        ),
    )
}


def table_of(code: str) -> Table:
    """The table `?table=` names, or a QueryError that lists the ones there are."""
    if code in TABLES:
        return TABLES[code]
    raise QueryError(
        [
            {
                "field": "table",
                "code": "unknown_table",
                "message": "Böyle bir tablo yok; seçilebilenler: "
                + ", ".join(f"{t.code} ({t.title})" for t in TABLES.values())
                + ".",
            }
        ]
    )


# --- values ---------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _day(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(ISTANBUL).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _local_moment(value: Any) -> datetime | None:
    """An instant on Istanbul's wall clock, without offset (what a spreadsheet cell holds)."""
    if value is None or value == "":
        return None
    return parse_instant(value).astimezone(ISTANBUL).replace(tzinfo=None)


def _comma(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".replace(".", ",")


def csv_text(value: Any, kind: Kind) -> str:
    """One cell as the CSV writes it (see the module's note on formats)."""
    if value is None or value == "":
        return ""
    match kind:
        case Kind.INT:
            return str(int(value))
        case Kind.DAYS:
            return _comma(float(value), 1)
        case Kind.SCORE:
            return _comma(float(value), 2)
        case Kind.RATIO:
            return _comma(float(value) * 100, 1)
        case Kind.DATE:
            day = _day(value)
            return day.strftime("%d.%m.%Y") if day else ""
        case Kind.MOMENT:
            moment = _local_moment(value)
            return moment.strftime("%d.%m.%Y %H:%M") if moment else ""
        case _:
            text = str(value)
            return "'" + text if text.startswith(_FORMULA_START) else text


def _cells(table: Table, row: Row) -> list[tuple[Any, Kind]]:
    return [
        (column.value(row), row["kind"] if column.kind is Kind.BY_ROW else column.kind)
        for column in table.columns
    ]


# --- CSV ------------------------------------------------------------------------------------


def to_csv(report: Mapping[str, Any], table: str) -> bytes:
    """One table of the report as CSV: UTF-8 with BOM, `;`, Turkish decimals, a header row."""
    chosen = table_of(table)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([column.header for column in chosen.columns])
    for row in chosen.rows(report):
        writer.writerow([csv_text(value, kind) for value, kind in _cells(chosen, row)])
    return out.getvalue().encode("utf-8-sig")


# --- XLSX -----------------------------------------------------------------------------------

# Locale-neutral format codes; Excel shows "1.234", "3,4" and "%93,4" on a Turkish machine.
_NUMBER_FORMATS = {
    Kind.INT: "#,##0",
    Kind.DAYS: "#,##0.0",
    Kind.SCORE: "0.00",
    Kind.RATIO: "%0.0",
    Kind.DATE: "dd.mm.yyyy",
    Kind.MOMENT: "dd.mm.yyyy hh:mm",
}
_MIN_WIDTH, _MAX_WIDTH = 8, 60


def _scope_lines(report: Mapping[str, Any]) -> list[tuple[str, Any, Kind]]:
    scope = report.get("scope") or {}
    lines: list[tuple[str, Any, Kind]] = [("İl", report_province(report), Kind.TEXT)]
    if scope.get("district"):
        lines.append(("İlçe", scope["district"], Kind.TEXT))
    if scope.get("institution_code"):
        name = scope.get("institution_name") or scope["institution_code"]
        lines.append(("Kurum", name, Kind.TEXT))
    lines += [
        (
            "Dönem başlangıcı",
            scope.get("from") or "Baştan",
            Kind.DATE if scope.get("from") else Kind.TEXT,
        ),
        (
            "Dönem sonu",
            scope.get("to") or "Bugüne kadar",
            Kind.DATE if scope.get("to") else Kind.TEXT,
        ),
        ("Oluşturulma zamanı", report.get("generated_at"), Kind.MOMENT),
    ]
    if report.get("as_of"):
        lines.append(("Verilerin güncellendiği an", report["as_of"], Kind.MOMENT))
    return lines


class _Sheets:
    """The workbook's formats, made once, and the writing of one typed cell."""

    def __init__(self, book: Any) -> None:
        self.book = book
        self.header = book.add_format(
            {"bold": True, "bg_color": "#DCE6F1", "bottom": 1, "text_wrap": True, "valign": "top"}
        )
        self.title = book.add_format({"bold": True, "font_size": 16, "font_color": "#1F4E79"})
        self.label = book.add_format({"bold": True})
        self.note = book.add_format({"italic": True, "font_color": "#555555"})
        self.text = book.add_format({})
        self.numbers = {
            kind: book.add_format({"num_format": code}) for kind, code in _NUMBER_FORMATS.items()
        }

    def write(self, sheet: Any, row: int, col: int, value: Any, kind: Kind) -> str:
        """Write one cell; give back its text as a CSV would, to size the column."""
        if value is None or value == "":
            sheet.write_blank(row, col, None, self.numbers.get(kind, self.text))
            return ""
        match kind:
            case Kind.INT | Kind.DAYS | Kind.SCORE | Kind.RATIO:
                sheet.write_number(row, col, float(value), self.numbers[kind])
            case Kind.DATE:
                sheet.write_datetime(row, col, _day(value), self.numbers[kind])
            case Kind.MOMENT:
                sheet.write_datetime(row, col, _local_moment(value), self.numbers[kind])
            case _:
                sheet.write_string(row, col, str(value), self.text)
                return str(value)
        return csv_text(value, kind) + (" %" if kind is Kind.RATIO else "")


def _width(texts: Sequence[str]) -> float:
    return float(min(_MAX_WIDTH, max(_MIN_WIDTH, *(len(t) + 2 for t in texts))))


def _write_cover(sheets: _Sheets, report: Mapping[str, Any]) -> None:
    sheet = sheets.book.add_worksheet("Rapor")
    sheet.write_string(0, 0, "Açık Kapı başvuru raporu", sheets.title)
    row = 2
    for label, value, kind in _scope_lines(report):
        sheet.write_string(row, 0, label, sheets.label)
        sheets.write(sheet, row, 1, value, kind)
        row += 1
    row += 1
    sheet.write_string(row, 0, "Sayfalar", sheets.label)
    for table in TABLES.values():
        row += 1
        sheet.write_url(row, 0, f"internal:'{table.title}'!A1", string=table.title)
        count = len(table.rows(report))
        sheet.write_string(row, 1, f"{count} satır", sheets.text)
    listed = len(report.get("overdue_list") or [])
    total = report.get("overdue_list_total")
    if total is not None and total > listed:
        row += 2
        sheet.write_string(
            row,
            0,
            f"Süresi geçenler sayfasında {total} başvurudan ilk {listed} tanesi var.",
            sheets.note,
        )
    row += 2
    sheet.write_string(
        row,
        0,
        "Oranlar yüzde olarak gösterilir; süreler iş günüdür (hafta sonu ve resmî "
        "tatiller sayılmaz). Kişisel veri içermez.",
        sheets.note,
    )
    sheet.set_column(0, 0, 34)
    sheet.set_column(1, 1, 24)
    sheet.activate()


def _write_table(sheets: _Sheets, report: Mapping[str, Any], table: Table) -> None:
    sheet = sheets.book.add_worksheet(table.title)
    texts: list[list[str]] = [[column.header] for column in table.columns]
    for col, column in enumerate(table.columns):
        sheet.write_string(0, col, column.header, sheets.header)
    sheet.set_row(0, 30)  # room for a header wrapped onto two lines
    rows = table.rows(report)
    for r, row in enumerate(rows, start=1):
        for col, (value, kind) in enumerate(_cells(table, row)):
            texts[col].append(sheets.write(sheet, r, col, value, kind))
    for col, column_texts in enumerate(texts):
        # A long header wraps onto two lines rather than widening a column of small numbers.
        body = column_texts[1:]
        header = column_texts[0]
        width = _width([*body, header[: max(12, len(header) // 2 + 1)]])
        sheet.set_column(col, col, width)
    sheet.freeze_panes(1, 0)
    if rows:
        sheet.autofilter(0, 0, len(rows), len(table.columns) - 1)


def to_xlsx(report: Mapping[str, Any]) -> bytes:
    """Every table on a sheet of its own after a cover sheet, built in memory (no temp files)."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(
        out,
        {
            "in_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "remove_timezone": True,
        },
    )
    generated = _local_moment(report.get("generated_at"))
    book.set_properties(
        {
            "title": f"Açık Kapı başvuru raporu — {report_province(report)}",
            "author": "Açık Kapı",
            "company": f"T.C. {report_province(report)} Valiliği",
            "created": generated or datetime.now(),
        }
    )
    sheets = _Sheets(book)
    _write_cover(sheets, report)
    for table in TABLES.values():
        _write_table(sheets, report, table)
    book.close()
    return out.getvalue()


# --- file names -----------------------------------------------------------------------------

_ASCII_FOLD = str.maketrans("çğıöşüâîûÇĞİÖŞÜÂÎÛ", "cgiosuaiuCGIOSUAIU")


def report_province(report: Mapping[str, Any]) -> str:
    scope = report.get("scope") or {}
    return str(scope.get("province_name") or province_name(scope.get("province_code")))


def slug(text: str) -> str:
    """Words joined by hyphens, Turkish letters kept: "Ana başlıklar" → "ana-başlıklar"."""
    words = re.findall(r"\w+", turkish_lower(text))
    return "-".join(words)


def ascii_name(name: str) -> str:
    """The name in ASCII for old clients: Turkish letters folded, anything odd made a hyphen."""
    folded = unicodedata.normalize("NFKD", name.translate(_ASCII_FOLD))
    folded = folded.encode("ascii", "ignore").decode("ascii")
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]", "-", folded)).strip("-") or "rapor"


def export_filename(report: Mapping[str, Any], ext: str, table: str | None = None) -> str:
    """acikkapi-rapor-<il>[-<ilçe>][-<kurum>]-<from>-<to>[-<tablo>].<ext>, in Turkish letters
    (content_disposition() adds the ASCII form)."""
    scope = report.get("scope") or {}
    parts = ["acikkapi-rapor", slug(report_province(report))]
    if scope.get("district"):
        parts.append(slug(str(scope["district"])))
    if scope.get("institution_code"):
        parts.append(slug(str(scope["institution_code"])))
    start, end = scope.get("from"), scope.get("to")
    if start and end:
        parts += [str(start), str(end)]
    elif start:
        parts += [str(start), "sonrası"]
    elif end:
        parts += [str(end), "öncesi"]
    else:
        parts.append("tüm-dönem")
    if table is not None:
        parts.append(slug(table_of(table).title))
    return "-".join(parts) + "." + ext


def content_disposition(name: str, *, inline: bool = False) -> str:
    """`attachment; filename="ascii"; filename*=UTF-8''…` (RFC 6266 with RFC 5987's encoding),
    so every browser saves the file under its Turkish name and old ones under the ASCII one."""
    disposition = "inline" if inline else "attachment"
    encoded = quote(name, safe="!#$&+-.^_`|~")
    return f"{disposition}; filename=\"{ascii_name(name)}\"; filename*=UTF-8''{encoded}"
