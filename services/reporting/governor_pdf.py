"""The monthly report the governor (Vali) reads: an A4 PDF in Turkish with the headline figures,
charts drawn with fpdf2's own shapes, the institutions ranked by on-time answers, the overdue
applications and the problems that keep coming back.

The text is set in DejaVu Sans (Debian's fonts-dejavu-core, as for intake's receipt), whose
glyphs cover every Turkish letter; the fonts are embedded, subset. Rendering is CPU only: run
`monthly_pdf` off the event loop (`asyncio.to_thread`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace

from services.common.fonts import FONT, add_fonts
from services.common.turkish import turkish_upper
from services.common.turkish_time import MONTHS, long_datetime, parse_instant
from services.reporting.chronic import shorten
from services.reporting.exports import overdue_business_days, report_province, slug
from services.reporting.page import (
    ON_TIME_FAIR,
    ON_TIME_GOOD,
    OUTCOME_COLORS,
    OUTCOME_LABELS,
    UNKNOWN,
    _nice_ceiling,
    channel_label,
    fmt_date,
    fmt_day,
    fmt_decimal,
    fmt_int,
    fmt_percent,
    fmt_share,
    institution_label,
    on_time_color,
)
from services.reporting.query import Period, QueryError

OVERDUE_SHOWN = 30
TOP_INSTITUTIONS = 12
TOP_DISTRICTS = 15
RANKING_SHOWN = 40  # more institutions than this: the first and the last 20
EXAMPLES_SHOWN = 3

Color = tuple[int, int, int]


def _rgb(hex_color: str) -> Color:
    value = hex_color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


ACCENT = _rgb("#1f4e79")
ANSWERED = _rgb("#7fa7d0")
INK = (34, 34, 34)
MUTED = (100, 100, 100)
RULE = (215, 215, 215)
PANEL = (242, 246, 251)
WHITE = (255, 255, 255)
# services/reporting/chronic.py's trend words, as a heading reads them.
TRENDS = {"artıyor": "Artıyor", "azalıyor": "Azalıyor", "sabit": "Sabit"}
EXAMPLE_LIMIT = 280


def parse_month(text: str | None) -> date:
    """`?month=YYYY-MM` as the month's first day, or a QueryError in the contract's shape."""
    if text and re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text.strip()):
        year, month = text.strip().split("-")
        return date(int(year), int(month), 1)
    raise QueryError(
        [
            {
                "field": "month",
                "code": "invalid_month",
                "message": "Ay YYYY-AA biçiminde verilmelidir (ör. 2026-03).",
            }
        ]
    )


def month_period(month: date) -> Period:
    """The month's days, first to last: the period the monthly report is asked for."""
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return Period(first, following - timedelta(days=1))


def monthly_filename(report: Mapping[str, Any], month: date) -> str:
    """acikkapi-vali-raporu-<il>[-<ilçe>]-YYYY-MM.pdf (content_disposition() adds the ASCII
    form)."""
    scope = report.get("scope") or {}
    parts = ["acikkapi-vali-raporu", slug(report_province(report))]
    if scope.get("district"):
        parts.append(slug(str(scope["district"])))
    return "-".join([*parts, f"{month:%Y-%m}"]) + ".pdf"


def on_time_rgb(ratio: float | None) -> Color:
    return _rgb(on_time_color(ratio))


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    color: Color
    note: str


class _Document(FPDF):
    """A4 pages with the governorship's running head and "Sayfa n / N" at the foot."""

    def __init__(self, running_head: str, footer_left: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.running_head = running_head
        self.footer_left = footer_left
        self.set_lang("tr")
        self.set_margins(15, 16, 15)
        self.set_auto_page_break(auto=True, margin=16)
        add_fonts(self)

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*MUTED)
        self.set_y(7)
        self.cell(0, 4, self.running_head, align=Align.L)
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(self.l_margin, 11.5, self.w - self.r_margin, 11.5)
        self.set_y(self.t_margin)

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*MUTED)
        self.cell(self.epw / 2, 4, self.footer_left, align=Align.L)
        self.cell(self.epw / 2, 4, f"Sayfa {self.page_no()} / {{nb}}", align=Align.R)

    # --- text ---------------------------------------------------------------------------

    def font(self, size: float, style: str = "", color: Color = INK) -> None:
        self.set_font(FONT, style, size)
        self.set_text_color(*color)

    def fit(self, text: str, width: float) -> str:
        """The text cut with "…" to the width, in the current font."""
        if self.get_string_width(text) <= width:
            return text
        while text and self.get_string_width(text + "…") > width:
            text = text[:-1]
        return text.rstrip() + "…"

    def paragraph(self, text: str, size: float = 9.5, style: str = "", height: float = 5) -> None:
        self.font(size, style)
        self.multi_cell(0, height, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def room(self, height: float) -> None:
        """Start a new page unless `height` millimetres still fit on this one."""
        if self.get_y() + height > self.h - self.b_margin:
            self.add_page()

    def section(self, title: str, needs: float = 40) -> None:
        self.room(needs)
        self.ln(3)
        self.start_section(title)
        self.font(13, "B", ACCENT)
        self.cell(0, 8, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*ACCENT)
        self.set_line_width(0.4)
        self.line(self.l_margin, self.get_y(), self.l_margin + 40, self.get_y())
        self.ln(3)

    def subtitle(self, title: str, needs: float = 30) -> None:
        self.room(needs)
        self.ln(1)
        self.font(10, "B")
        self.cell(0, 6, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)

    def no_data(self) -> None:
        self.font(9, "", MUTED)
        self.cell(0, 6, "Bu dönem için veri yok.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # --- charts -------------------------------------------------------------------------

    def cards(self, items: Sequence[tuple[str, str, str]], per_row: int = 4) -> None:
        """Figure cards: (big value, label, small note) in rows of `per_row`."""
        gap, height = 3.0, 21.0
        width = (self.epw - gap * (per_row - 1)) / per_row
        for start in range(0, len(items), per_row):
            self.room(height + gap)
            y = self.get_y()
            for i, (value, label, note) in enumerate(items[start : start + per_row]):
                x = self.l_margin + i * (width + gap)
                self.set_fill_color(*PANEL)
                self.rect(x, y, width, height, style="F", round_corners=True, corner_radius=1.5)
                self.set_fill_color(*ACCENT)
                self.rect(x, y, 1.2, height, style="F")
                self.font(16, "B", ACCENT)
                self.set_xy(x + 3.5, y + 2.5)
                self.cell(width - 5, 8, self.fit(value, width - 5))
                self.font(8, "B")
                self.set_xy(x + 3.5, y + 11)
                self.cell(width - 5, 4, self.fit(label, width - 5))
                self.font(7, "", MUTED)
                self.set_xy(x + 3.5, y + 15.5)
                self.cell(width - 5, 3.5, self.fit(note, width - 5))
            self.set_xy(self.l_margin, y + height + gap)

    def donut(self, parts: Sequence[tuple[str, int, Color]], centre_label: str) -> None:
        """A ring split by share, the total inside, a legend with counts and shares beside it."""
        radius, height = 24.0, 54.0
        self.room(height)
        top = self.get_y()
        cx, cy = self.l_margin + 8 + radius, top + 3 + radius
        whole = sum(value for _, value, _ in parts)
        self.set_fill_color(*RULE)
        self.circle(cx, cy, radius, style="F")
        # fpdf2's arc takes the bounding box's width and measures angles on the page, whose y
        # axis points down: -90° is twelve o'clock and growing angles run clockwise.
        angle = -90.0
        for _, value, color in parts:
            if not whole or not value:
                continue
            sweep = 360.0 * value / whole
            self.set_fill_color(*color)
            if sweep >= 359.99:
                self.circle(cx, cy, radius, style="F")
            else:
                self.solid_arc(
                    cx - radius, cy - radius, 2 * radius, angle, angle + sweep, style="F"
                )
            angle += sweep
        self.set_fill_color(*WHITE)
        self.circle(cx, cy, radius * 0.58, style="F")
        self.font(15, "B")
        self.set_xy(cx - radius, cy - 6)
        self.cell(2 * radius, 7, fmt_int(whole), align=Align.C)
        self.font(7.5, "", MUTED)
        self.set_xy(cx - radius, cy + 1)
        self.cell(2 * radius, 4, centre_label, align=Align.C)
        legend_x = self.l_margin + 2 * radius + 24
        for i, (label, value, color) in enumerate(parts):
            y = top + 8 + i * 12
            self.set_fill_color(*color)
            self.rect(legend_x, y, 5, 5, style="F", round_corners=True, corner_radius=0.8)
            self.font(10, "B")
            self.set_xy(legend_x + 8, y - 0.5)
            self.cell(45, 6, label)
            self.font(10)
            self.cell(25, 6, fmt_int(value), align=Align.R)
            self.font(10, "", MUTED)
            self.cell(25, 6, fmt_share(value, whole), align=Align.R)
        self.set_xy(self.l_margin, top + height)

    def bars(
        self, rows: Sequence[Bar], *, label_width: float = 62, row_height: float = 5.6
    ) -> None:
        """Horizontal bars, one per row, the value and its note written after each."""
        if not rows:
            self.no_data()
            return
        note_width = 48.0
        room = self.epw - label_width - note_width - 4
        peak = max(row.value for row in rows) or 1
        for row in rows:
            self.room(row_height)
            y = self.get_y()
            self.font(8)
            self.set_xy(self.l_margin, y)
            self.cell(label_width - 2, row_height, self.fit(row.label, label_width - 3),
                      align=Align.R)  # fmt: skip
            length = max(0.6, room * row.value / peak) if row.value else 0.0
            self.set_fill_color(*row.color)
            x = self.l_margin + label_width
            self.rect(x, y + 0.8, length, row_height - 1.6, style="F")
            self.font(7.5, "", INK)
            self.set_xy(x + length + 1.5, y)
            self.cell(note_width + room - length, row_height, row.note)
            self.set_xy(self.l_margin, y + row_height)
        self.ln(2)

    def weeks(self, weeks: Sequence[Mapping[str, Any]], height: float = 62) -> None:
        """Columns per week of receipt: applications received and answered, on a round axis."""
        if not weeks:
            self.no_data()
            return
        self.room(height + 4)
        top = self.get_y()
        left, bottom, legend = 14.0, 8.0, 8.0
        plot_x, plot_w = self.l_margin + left, self.epw - left
        plot_y, plot_h = top + legend, height - legend - bottom
        peak = _nice_ceiling(max(max(w.get("received", 0), w.get("answered", 0)) for w in weeks))
        peak = peak or 4
        for i, (label, color) in enumerate((("Gelen başvuru", ACCENT), ("Yanıtlanan", ANSWERED))):
            x = plot_x + i * 40
            self.set_fill_color(*color)
            self.rect(x, top + 1, 3.5, 3.5, style="F")
            self.font(8)
            self.set_xy(x + 5, top)
            self.cell(32, 5.5, label)
        self.set_draw_color(*RULE)
        self.set_line_width(0.15)
        for tick in range(5):
            y = plot_y + plot_h - plot_h * tick / 4
            self.line(plot_x, y, plot_x + plot_w, y)
            self.font(7, "", MUTED)
            self.set_xy(self.l_margin, y - 2)
            self.cell(left - 2, 4, fmt_int(round(peak * tick / 4)), align=Align.R)
        step = plot_w / len(weeks)
        column = max(0.6, min(6.0, step / 2 - 0.6))
        label_every = max(1, -(-len(weeks) // 14))
        for i, week in enumerate(weeks):
            centre = plot_x + i * step + step / 2
            for j, (key, color) in enumerate((("received", ACCENT), ("answered", ANSWERED))):
                value = week.get(key) or 0
                h = plot_h * value / peak
                self.set_fill_color(*color)
                if h:
                    self.rect(centre - column + j * column, plot_y + plot_h - h, column, h, "F")
            if i % label_every == 0:
                self.font(6.5, "", MUTED)
                self.set_xy(centre - 8, plot_y + plot_h + 1)
                self.cell(16, 4, fmt_date(week.get("start"))[:5], align=Align.C)
        self.set_xy(self.l_margin, top + height + 2)

    def spark(self, counts: Sequence[int], x: float, y: float, w: float, h: float) -> None:
        """Tiny columns, one per week, on a baseline: the shape of a count over time."""
        peak = max(counts) or 1
        step = w / len(counts)
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(x, y + h, x + w, y + h)
        self.set_fill_color(*ACCENT)
        for i, count in enumerate(counts):
            height = h * count / peak
            if height:
                self.rect(x + i * step + step * 0.15, y + h - height, step * 0.7, height, "F")
        self.font(6, "", MUTED)
        self.set_xy(x, y + h)
        self.cell(w, 3, f"haftalık, son {len(counts)} hafta", align=Align.C)

    # --- tables -------------------------------------------------------------------------

    def table_of(
        self,
        headings: Sequence[str],
        rows: Sequence[Sequence[str]],
        widths: Sequence[float],
        aligns: Sequence[str],
        size: float = 7.5,
    ) -> None:
        self.font(size)
        # fpdf2 2.8.9 fills a striped row's text cell with the current fill colour, not with
        # cell_fill_color alone: set both.
        self.set_fill_color(*PANEL)
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        with self.table(
            col_widths=tuple(widths),
            width=self.epw,
            text_align=tuple(aligns),
            line_height=4.2,
            borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            headings_style=FontFace(emphasis="BOLD", color=WHITE, fill_color=ACCENT),
            cell_fill_color=PANEL,
            cell_fill_mode="ROWS",
            padding=(0.8, 1.2),
            repeat_headings=1,
        ) as table:
            table.row(list(headings))
            for cells in rows:
                table.row(list(cells))
        self.ln(2)


# --- the report's parts ---------------------------------------------------------------------


def _scope_text(report: Mapping[str, Any]) -> str:
    scope = report.get("scope") or {}
    parts = [f"{report_province(report)} ili"]
    parts.append(f"{scope['district']} ilçesi" if scope.get("district") else "tüm ilçeler")
    if scope.get("institution_code"):
        parts.append(str(scope.get("institution_name") or scope["institution_code"]))
    else:
        parts.append("tüm kurumlar")
    return ", ".join(parts)


def _days(value: float | None) -> str:
    """3 → "3", 3.45 → "3,5": a whole number of days needs no decimals."""
    if value is not None and float(value).is_integer():
        return fmt_int(int(value))
    return fmt_decimal(value)


def _figures(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    total, answered = report.get("total") or 0, report.get("answered") or 0
    ratings = report.get("ratings") or {}
    average = ratings.get("average")
    return [
        (fmt_int(total), "Toplam başvuru", "bu ay alınan"),
        (fmt_int(answered), "Yanıtlanan", f"başvuruların {fmt_share(answered, total)}"),
        (fmt_int(report.get("open")), "Açık", "henüz yanıtlanmamış"),
        (fmt_int(report.get("overdue")), "Süresi geçen", "süresinde yanıtlanmayan"),
        (fmt_percent(report.get("on_time_ratio")), "Zamanında yanıt", "süresi içinde yanıtlanan"),
        (_days(report.get("mean_response_business_days")), "Ortalama yanıt süresi", "iş günü"),
        (_days(report.get("median_response_business_days")), "Medyan yanıt süresi", "iş günü"),
        (
            f"{fmt_decimal(average)} / 5" if average is not None else "—",
            "Memnuniyet",
            f"{fmt_int(ratings.get('count') or 0)} vatandaş puan verdi",
        ),
    ]


def _highlights(report: Mapping[str, Any], month_name: str) -> list[str]:
    """A few sentences a reader takes in before the figures (no number carries a suffix)."""
    total, answered = report.get("total") or 0, report.get("answered") or 0
    lines = [
        f"{month_name} ayında {fmt_int(total)} başvuru alındı; bunlardan {fmt_int(answered)} "
        f"tanesi yanıtlandı, {fmt_int(report.get('open') or 0)} tanesi açık."
    ]
    outcomes = report.get("outcomes") or {}
    decided = sum(outcomes.get(code, 0) for code in OUTCOME_LABELS)
    if decided:
        lines.append(
            "Yanıtlarda sonuç dağılımı: "
            + ", ".join(
                f"{label.lower()} {fmt_share(outcomes.get(code, 0), decided)}"
                for code, label in OUTCOME_LABELS.items()
            )
            + "."
        )
    institutions = [
        row for row in report.get("by_institution") or [] if row.get("institution_code")
    ]
    if institutions:
        top = institutions[0]
        lines.append(
            f"En çok başvuru yöneltilen kurum: {institution_label(top)} "
            f"({fmt_int(top.get('total'))} başvuru, "
            f"zamanında yanıt {fmt_percent(top.get('on_time_ratio'))})."
        )
    ranking = report.get("institution_ranking") or []
    if len(ranking) >= 2:
        first, last = ranking[0], ranking[-1]
        lines.append(
            f"Zamanında yanıtta ilk sırada {institution_label(first)} "
            f"({fmt_percent(first.get('on_time_ratio'))}), son sırada {institution_label(last)} "
            f"({fmt_percent(last.get('on_time_ratio'))}) var."
        )
    districts = [row for row in report.get("by_district") or [] if row.get("district")]
    if districts:
        lines.append(
            f"En çok başvuru gelen ilçe: {districts[0]['district']} "
            f"({fmt_int(districts[0].get('total'))} başvuru)."
        )
    still_open = report.get("overdue_list_total")
    if still_open is None:
        still_open = len(report.get("overdue_list") or [])
    lines.append(
        f"Süresi geçtiği hâlde yanıtlanmamış {fmt_int(still_open)} başvuru var; listesi 4. bölümde."
        if still_open
        else "Süresi geçtiği hâlde yanıtlanmamış başvuru yok."
    )
    chronic = report.get("chronic")
    if isinstance(chronic, list) and chronic:
        lines.append(f"Aynı yerde tekrarlayan {fmt_int(len(chronic))} sorun bulundu; 5. bölümde.")
    return lines


def _cover(pdf: _Document, report: Mapping[str, Any], month: date) -> None:
    pdf.add_page()
    band = 46.0
    pdf.set_fill_color(*ACCENT)
    pdf.rect(0, 0, pdf.w, band, style="F")
    pdf.font(10, "B", WHITE)
    pdf.set_xy(pdf.l_margin, 10)
    pdf.cell(0, 5, "T.C.")
    pdf.set_xy(pdf.l_margin, 15.5)
    pdf.font(15, "B", WHITE)
    pdf.cell(0, 8, turkish_upper(f"{report_province(report)} Valiliği"))
    pdf.set_xy(pdf.l_margin, 25)
    pdf.font(12, "", WHITE)
    pdf.cell(0, 6, "Açık Kapı — Aylık Başvuru Raporu")
    pdf.set_xy(pdf.l_margin, 32)
    pdf.font(20, "B", WHITE)
    pdf.cell(0, 10, f"{MONTHS[month.month - 1]} {month.year}")
    pdf.set_xy(pdf.l_margin, band + 5)

    scope = report.get("scope") or {}
    generated = report.get("generated_at")
    facts = [
        ("Kapsam", _scope_text(report)),
        ("Dönem", f"{fmt_date(scope.get('from'))} – {fmt_date(scope.get('to'))}"),
        ("Oluşturulma", long_datetime(parse_instant(generated)) if generated else "—"),
    ]
    if report.get("as_of"):
        facts.append(("Veriler", f"{long_datetime(parse_instant(report['as_of']))} itibarıyla"))
    for label, value in facts:
        pdf.font(8.5, "B", MUTED)
        pdf.cell(26, 4.8, label)
        pdf.font(8.5, "", INK)
        pdf.cell(0, 4.8, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)

    pdf.section("1. Genel görünüm", needs=60)
    pdf.cards(_figures(report))
    pdf.ln(1)
    pdf.subtitle("Öne çıkanlar", needs=30)
    for line in _highlights(report, MONTHS[month.month - 1]):
        pdf.room(10)
        pdf.font(9)
        pdf.set_x(pdf.l_margin + 2)
        pdf.cell(4, 5, "•")
        pdf.multi_cell(pdf.epw - 6, 5, line, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    outcomes = report.get("outcomes") or {}
    pdf.ln(2)
    pdf.subtitle("Sonuç dağılımı (yanıtlanan başvurular)", needs=62)
    pdf.donut(
        [
            (label, outcomes.get(code, 0), _rgb(OUTCOME_COLORS[code]))
            for code, label in OUTCOME_LABELS.items()
        ],
        "yanıtlanan",
    )


def _distribution(pdf: _Document, report: Mapping[str, Any]) -> None:
    pdf.add_page()
    pdf.section("2. Eğilim ve dağılım")
    pdf.subtitle("Haftalara göre gelen ve yanıtlanan başvurular (alındığı haftaya göre)")
    pdf.weeks((report.get("trends") or {}).get("weekly") or [])

    def share_bars(rows: Sequence[Mapping[str, Any]], label_of: Any) -> list[Bar]:
        whole = sum(row.get("total") or 0 for row in rows)
        return [
            Bar(
                label_of(row),
                row.get("total") or 0,
                ACCENT,
                f"{fmt_int(row.get('total'))} ({fmt_share(row.get('total') or 0, whole)})",
            )
            for row in rows
        ]

    channels = report.get("by_channel") or []
    pdf.subtitle("Kanallara göre başvurular")
    pdf.bars(
        share_bars(
            channels,
            lambda row: channel_label(row.get("channel")),
        )
    )
    districts = list(report.get("by_district") or [])
    shown = districts[:TOP_DISTRICTS]
    bars = share_bars(districts, lambda row: row.get("district") or UNKNOWN)[: len(shown)]
    rest = districts[TOP_DISTRICTS:]
    if rest:
        whole = sum(row.get("total") or 0 for row in districts)
        others = sum(row.get("total") or 0 for row in rest)
        bars.append(
            Bar(
                f"Diğer {len(rest)} ilçe",
                others,
                on_time_rgb(None),
                f"{fmt_int(others)} ({fmt_share(others, whole)})",
            )
        )
    pdf.subtitle("İlçelere göre başvurular", needs=20 + 5.6 * min(len(bars), 8))
    pdf.bars(bars)


def _institutions(pdf: _Document, report: Mapping[str, Any]) -> None:
    pdf.section("3. Kurumlar", needs=90)
    pdf.subtitle(
        f"En çok başvuru yöneltilen {TOP_INSTITUTIONS} kurum ve zamanında yanıt oranları",
        needs=80,
    )
    rows = (report.get("by_institution") or [])[:TOP_INSTITUTIONS]
    pdf.bars(
        [
            Bar(
                institution_label(row),
                row.get("total") or 0,
                on_time_rgb(row.get("on_time_ratio")),
                f"{fmt_int(row.get('total'))} · zamanında {fmt_percent(row.get('on_time_ratio'))}",
            )
            for row in rows
        ],
        label_width=70,
    )
    if rows:
        pdf.font(7, "", MUTED)
        x, y = pdf.l_margin + 70, pdf.get_y()
        for label, ratio in (
            (f"{fmt_percent(ON_TIME_GOOD, 0)} ve üstü", ON_TIME_GOOD),
            (f"{fmt_percent(ON_TIME_FAIR, 0)} – {fmt_percent(ON_TIME_GOOD, 0)}", ON_TIME_FAIR),
            (f"{fmt_percent(ON_TIME_FAIR, 0)} altı", 0.0),
            ("değerlendirilemedi", None),
        ):
            pdf.set_fill_color(*on_time_rgb(ratio))
            pdf.rect(x, y + 1, 3, 3, style="F")
            pdf.set_xy(x + 4, y)
            pdf.cell(26, 5, label)
            x += 28
        pdf.set_xy(pdf.l_margin, y + 8)

    ranking = report.get("institution_ranking") or []
    pdf.subtitle("Zamanında yanıt oranına göre kurum sıralaması", needs=30)
    if not ranking:
        pdf.no_data()
        return
    shown = list(ranking)
    if len(ranking) > RANKING_SHOWN:
        half = RANKING_SHOWN // 2
        shown = [*ranking[:half], {}, *ranking[-half:]]
        pdf.paragraph(
            f"{fmt_int(len(ranking))} kurumdan ilk {half} ve son {half} kurum; tamamı XLSX "
            "dışa aktarımının Kurum sıralaması sayfasında.",
            size=8.5,
        )
    pdf.table_of(
        ("Sıra", "Kurum", "Zamanında yanıt", "Süresi değerlendirilen", "Toplam başvuru"),
        [
            (
                str(row.get("rank", "")),
                institution_label(row),
                fmt_percent(row.get("on_time_ratio")),
                fmt_int(row.get("judged")),
                fmt_int(row.get("total")),
            )
            if row
            else ("", "…", "", "", "")
            for row in shown
        ],
        (10, 86, 28, 30, 26),
        ("RIGHT", "LEFT", "RIGHT", "RIGHT", "RIGHT"),
    )


def _overdue(pdf: _Document, report: Mapping[str, Any]) -> None:
    listed = report.get("overdue_list") or []
    total = report.get("overdue_list_total")
    total = len(listed) if total is None else total
    pdf.section("4. Süresi geçmiş, yanıt bekleyen başvurular", needs=40)
    if not total:
        pdf.paragraph("Süresi geçtiği hâlde yanıtlanmamış başvuru yok.")
        return
    shown = listed[:OVERDUE_SHOWN]
    pdf.paragraph(
        f"Süresi geçtiği hâlde yanıtlanmamış {fmt_int(total)} başvuru var"
        + (
            f"; süresi en önce dolan {fmt_int(len(shown))} tanesi aşağıda."
            if total > len(shown)
            else "; hepsi aşağıda."
        )
        + " Gecikme, süre sonundan bu rapora kadar geçen iş günüdür.",
        size=8.5,
    )
    pdf.ln(1)
    now = parse_instant(report.get("generated_at") or datetime.now(UTC))
    pdf.table_of(
        ("Başvuru no", "Kurum", "Kategori", "İlçe", "Alındı", "Süre sonu", "Gecikme (iş günü)"),
        [
            (
                str(row.get("application_number") or ""),
                institution_label(row),
                str(row.get("category_name") or UNKNOWN),
                str(row.get("district") or UNKNOWN),
                fmt_day(row.get("received_at")),
                fmt_day(row.get("deadline_at")),
                fmt_int(overdue_business_days(row, now)),
            )
            for row in shown
        ],
        (24, 44, 38, 22, 17, 17, 18),
        ("LEFT", "LEFT", "LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT"),
        size=7,
    )


def _weekly_counts(problem: Mapping[str, Any]) -> list[int]:
    """The problem's applications per week, oldest first, when the report gives them."""
    counts = []
    for week in problem.get("weekly") or []:
        count = week.get("count") if isinstance(week, Mapping) else week
        if isinstance(count, int):
            counts.append(count)
    return counts


def _chronic(pdf: _Document, problems: Sequence[Mapping[str, Any]]) -> None:
    pdf.section("5. Tekrarlayan sorunlar", needs=50)
    pdf.paragraph(
        "Aynı mahalle ya da ilçeden, aynı ana başlıkta, birkaç hafta boyunca farklı "
        "vatandaşlarca yapılan benzer başvurular. Örnek metinlerde kişisel veriler gizlenmiştir.",
        size=8.5,
    )
    pdf.ln(2)
    spark_width = 34.0
    for i, problem in enumerate(problems, start=1):
        pdf.room(30)
        place = " / ".join(
            str(part) for part in (problem.get("district"), problem.get("neighbourhood")) if part
        )
        top = pdf.get_y()
        weekly = _weekly_counts(problem)
        if weekly:
            pdf.spark(weekly, pdf.l_margin + pdf.epw - spark_width, top, spark_width, 8)
            pdf.set_xy(pdf.l_margin, top)
        pdf.font(9.5, "B", ACCENT)
        pdf.multi_cell(
            pdf.epw - (spark_width + 4 if weekly else 0),
            5,
            f"{i}. {place or UNKNOWN} — {problem.get('heading_name') or UNKNOWN}",
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        trend = str(problem.get("trend") or "")
        facts = [f"{fmt_int(problem.get('count'))} başvuru"]
        if problem.get("citizens") is not None:
            facts.append(f"{fmt_int(problem['citizens'])} farklı vatandaş")
        facts += [
            f"ilk {fmt_day(problem.get('first_at'))}",
            f"son {fmt_day(problem.get('last_at'))}",
            f"eğilim: {TRENDS.get(trend, trend or '—')}",
            f"kurum: {problem.get('institution_name') or UNKNOWN}",
        ]
        pdf.font(8.5, "", MUTED)
        pdf.multi_cell(
            pdf.epw - (spark_width + 4 if weekly else 0),
            4.6,
            " · ".join(facts),
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.set_y(max(pdf.get_y(), top + 10 if weekly else 0))
        for example in list(problem.get("examples") or [])[:EXAMPLES_SHOWN]:
            pdf.font(8.5, "", INK)
            pdf.set_x(pdf.l_margin + 4)
            pdf.multi_cell(
                pdf.epw - 4,
                4.4,
                f"“{shorten(str(example), EXAMPLE_LIMIT)}”",
                align=Align.L,
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
        pdf.set_draw_color(*ACCENT)
        pdf.set_line_width(0.6)
        if pdf.get_y() > top:
            pdf.line(pdf.l_margin - 2.5, top + 0.5, pdf.l_margin - 2.5, pdf.get_y())
        pdf.ln(3)


def monthly_pdf(report: Mapping[str, Any], *, month: date) -> bytes:
    """The governor's monthly report for `report`, which covers `month` (see month_period)."""
    province = report_province(report)
    month_name = f"{MONTHS[month.month - 1]} {month.year}"
    generated = report.get("generated_at")
    pdf = _Document(
        running_head=f"T.C. {province} Valiliği · Açık Kapı aylık başvuru raporu · {month_name}",
        footer_left=(f"Açık Kapı · {province} · {month_name} · oluşturulma {fmt_day(generated)}"),
    )
    pdf.set_title(f"Açık Kapı aylık başvuru raporu — {province}, {month_name}")
    pdf.set_author(f"T.C. {province} Valiliği")
    pdf.set_subject("Aylık başvuru raporu")
    pdf.set_creator("Açık Kapı")
    if generated:
        pdf.set_creation_date(parse_instant(generated))
    _cover(pdf, report, month)
    _distribution(pdf, report)
    _institutions(pdf, report)
    _overdue(pdf, report)
    chronic = report.get("chronic")
    if isinstance(chronic, list) and chronic:
        _chronic(pdf, [problem for problem in chronic if isinstance(problem, Mapping)])
    return bytes(pdf.output())
