"""The report as people read it: Turkish number formats and labels, inline SVG charts drawn on
the server, and the pages' templates (no scripts, no external assets, so a page works on a closed
network and prints and archives as it is)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from services.common.labels import CHANNEL_LABELS, TYPE_LABELS
from services.common.turkish import turkish_lower
from services.common.turkish_time import ISTANBUL, MONTHS, parse_instant, short_datetime

OUTCOME_LABELS = {"olumlu": "Olumlu", "olumsuz": "Olumsuz", "kismen_olumlu": "Kısmen olumlu"}
OUTCOME_COLORS = {"olumlu": "#2e7d32", "olumsuz": "#c62828", "kismen_olumlu": "#f9a825"}
STATUS_LABELS = {
    "received": "Alındı",
    "awaiting_routing": "Yönlendirme bekliyor",
    "routed": "Kuruma yönlendirildi",
    "opened": "İnceleniyor",
    "returned": "Kurumdan iade edildi",
    "answered": "Yanıtlandı",
    "closed": "Kapandı",
}
UNKNOWN = "Henüz belli değil"
# The words the rating page gives each point (services/tracking/rating_page.py), red to green.
RATING_LABELS = {
    "1": "1 — Hiç memnun değilim",
    "2": "2 — Memnun değilim",
    "3": "3 — Kararsızım",
    "4": "4 — Memnunum",
    "5": "5 — Çok memnunum",
}
RATING_COLORS = {"1": "#c62828", "2": "#ef6c00", "3": "#f9a825", "4": "#7cb342", "5": "#2e7d32"}
PROVINCES = (
    "Adana Adıyaman Afyonkarahisar Ağrı Amasya Ankara Antalya Artvin Aydın Balıkesir Bilecik "
    "Bingöl Bitlis Bolu Burdur Bursa Çanakkale Çankırı Çorum Denizli Diyarbakır Edirne Elazığ "
    "Erzincan Erzurum Eskişehir Gaziantep Giresun Gümüşhane Hakkâri Hatay Isparta Mersin "
    "İstanbul İzmir Kars Kastamonu Kayseri Kırklareli Kırşehir Kocaeli Konya Kütahya Malatya "
    "Manisa Kahramanmaraş Mardin Muğla Muş Nevşehir Niğde Ordu Rize Sakarya Samsun Siirt Sinop "
    "Sivas Tekirdağ Tokat Trabzon Tunceli Şanlıurfa Uşak Van Yozgat Zonguldak Aksaray Bayburt "
    "Karaman Kırıkkale Batman Şırnak Bartın Ardahan Iğdır Yalova Karabük Kilis Osmaniye Düzce"
).split()
_ACCENT = "#1f4e79"
_ANSWERED_COLOR = "#7fa7d0"


# Turkish number punctuation: 1.234,5 (thousands with a dot, decimals with a comma).
_TURKISH_DIGITS = str.maketrans(",.", ".,")


def province_name(code: int | None) -> str:
    if code is None:
        return "Tüm iller"
    return PROVINCES[code - 1] if 1 <= code <= len(PROVINCES) else str(code)


def fmt_int(value: int | None) -> str:
    """1234567 → 1.234.567 (Turkish thousands separator)."""
    if value is None:
        return "—"
    return f"{value:,}".replace(",", ".")


def fmt_decimal(value: float | None, digits: int = 1) -> str:
    """1234.5 → 1.234,5."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    return text.translate(_TURKISH_DIGITS)


def fmt_percent(ratio: float | None, digits: int = 1) -> str:
    """0.417 → %41,7 (the percent sign comes first in Turkish)."""
    if ratio is None:
        return "—"
    return "%" + fmt_decimal(ratio * 100, digits)


def fmt_share(part: int, whole: int) -> str:
    return fmt_percent(part / whole) if whole else "—"


def fmt_date(day: date | str | None) -> str:
    if day is None:
        return "—"
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return day.strftime("%d.%m.%Y")


def fmt_moment(moment: datetime) -> str:
    return moment.astimezone(ISTANBUL).strftime("%d.%m.%Y %H:%M")


def fmt_instant(value: str | datetime | None) -> str:
    """An ISO instant as Istanbul's clock reads it: 05.12.2026 13:00."""
    return short_datetime(value) if value else "—"


def period_text(start: str | None, end: str | None) -> str:
    """A report's period as a sentence fragment: both ends, one of them, or every record."""
    if start and end:
        return f"{fmt_date(start)} – {fmt_date(end)}"
    if start:
        return f"{fmt_date(start)} ve sonrası"
    if end:
        return f"{fmt_date(end)} ve öncesi"
    return "tüm kayıtlar"


def fmt_day(value: str | datetime | None) -> str:
    """A day ("2026-03-02") or the Istanbul day of an instant, as 02.03.2026."""
    if not value:
        return "—"
    if isinstance(value, str) and len(value) == 10:
        return fmt_date(value)
    return parse_instant(value).astimezone(ISTANBUL).strftime("%d.%m.%Y")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _svg(width: int, height: int, title: str, body: Sequence[str]) -> Markup:
    # No style attribute: the pages' Content-Security-Policy allows only the service's own
    # style sheet, which shrinks a chart to its box (svg.chart { max-width: 100%; height: auto }).
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" class="chart" role="img" '
        f'aria-label="{escape(title)}" font-family="system-ui, sans-serif" font-size="13">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _no_data(width: int, title: str) -> Markup:
    return _svg(width, 40, title, ['<text x="0" y="24" fill="#555">Veri yok.</text>'])


def bar_chart(
    rows: Sequence[tuple[str, int, str]], title: str, *, width: int = 720, label_width: int = 300
) -> Markup:
    """Horizontal bars, one per (label, value, colour); the value and its share are written out."""
    if not rows:
        return _no_data(width, title)
    row_height, gap = 22, 6
    height = len(rows) * (row_height + gap) + gap
    bar_room = width - label_width - 120
    peak = max(value for _, value, _ in rows) or 1
    whole = sum(value for _, value, _ in rows)
    body = []
    for i, (label, value, color) in enumerate(rows):
        y = gap + i * (row_height + gap)
        length = max(1.0, bar_room * value / peak) if value else 0.0
        body.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(_short(label, 42))}</text>"
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{row_height}" '
            f'fill="{color}" rx="2"/>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 15}" fill="#222">'
            f"{fmt_int(value)} ({escape(fmt_share(value, whole))})</text>"
        )
    return _svg(width, height, title, body)


def donut_chart(rows: Sequence[tuple[str, int, str]], title: str, centre_label: str) -> Markup:
    """A ring split by share, with the total in the middle and a legend beside it."""
    width, height, cx, cy, r, stroke = 520, 200, 100, 100, 70, 28
    whole = sum(value for _, value, _ in rows)
    body = [
        f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="#e6e6e6" '
        f'stroke-width="{stroke}"/>'
    ]
    circumference = 2 * math.pi * r
    offset = 0.0
    for label, value, color in rows:
        if not whole or not value:
            continue
        length = circumference * value / whole
        # Segments start at twelve o'clock and run clockwise.
        body.append(
            f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="{color}" '
            f'stroke-width="{stroke}" stroke-dasharray="{length:.2f} {circumference:.2f}" '
            f'stroke-dashoffset="{-offset:.2f}" transform="rotate(-90 {cx} {cy})">'
            f"<title>{escape(label)}: {fmt_int(value)}</title></circle>"
        )
        offset += length
    body.append(
        f'<text x="{cx}" y="{cy - 2}" text-anchor="middle" font-size="24" font-weight="bold">'
        f"{fmt_int(whole)}</text>"
        f'<text x="{cx}" y="{cy + 18}" text-anchor="middle" fill="#555">{escape(centre_label)}'
        "</text>"
    )
    for i, (label, value, color) in enumerate(rows):
        y = 50 + i * 34
        body.append(
            f'<rect x="220" y="{y - 13}" width="16" height="16" fill="{color}" rx="2"/>'
            f'<text x="244" y="{y}">{escape(label)}: <tspan font-weight="bold">'
            f"{fmt_int(value)}</tspan> ({escape(fmt_share(value, whole))})</text>"
        )
    return _svg(width, height, title, body)


def _nice_ceiling(value: int) -> int:
    """The top of a four-step axis at or above `value`, with round steps (1, 2, 2.5, 5 × 10^k)."""
    for exponent in range(16):
        for factor in (1, 2, 2.5, 5):
            step = factor * 10**exponent
            if step == int(step) and 4 * step >= value:
                return int(4 * step)
    return value


# On-time share bands, as the governor's PDF colours them: green from 90 %, amber from 75 %.
ON_TIME_GOOD, ON_TIME_FAIR = 0.9, 0.75
_GOOD, _FAIR, _POOR, _NONE = "#2e7d32", "#f9a825", "#c62828", "#9e9e9e"
_SHARE_LINE = "#e65100"


_BAND_COLORS = {"good": _GOOD, "fair": _FAIR, "poor": _POOR, "none": _NONE}


def on_time_band(ratio: float | None) -> str:
    """good, fair, poor, or none while nothing was judged (the pages' CSS classes)."""
    if ratio is None:
        return "none"
    return "good" if ratio >= ON_TIME_GOOD else "fair" if ratio >= ON_TIME_FAIR else "poor"


def on_time_color(ratio: float | None) -> str:
    return _BAND_COLORS[on_time_band(ratio)]


def month_short(day: str) -> str:
    """ "2026-03-01" → "Mar 26" (Turkish month abbreviations are the first three letters)."""
    first = date.fromisoformat(day)
    return f"{MONTHS[first.month - 1][:3]} {first:%y}"


def month_long(day: str) -> str:
    first = date.fromisoformat(day)
    return f"{MONTHS[first.month - 1]} {first.year}"


def trend_chart(
    points: Sequence[dict[str, Any]], title: str, *, monthly: bool = False, width: int = 720
) -> Markup:
    """Columns per week or month of receipt (received, answered) and a line for the share
    answered on time, read on the right-hand axis (0–100 %); a period with nothing judged
    breaks the line."""
    if not points:
        return _no_data(width, title)
    height, left, right, bottom, top = 260, 48, 52, 36, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_ceiling(max(max(p["received"], p["answered"]) for p in points))
    step = plot_w / len(points)
    col = max(1.0, min(18.0, step / 2 - 2))
    body = [
        f'<rect x="{left}" y="8" width="12" height="12" fill="{_ACCENT}"/>'
        f'<text x="{left + 18}" y="18">Gelen başvuru</text>'
        f'<rect x="{left + 140}" y="8" width="12" height="12" fill="{_ANSWERED_COLOR}"/>'
        f'<text x="{left + 158}" y="18">Yanıtlanan</text>'
        f'<line x1="{left + 260}" x2="{left + 282}" y1="14" y2="14" stroke="{_SHARE_LINE}" '
        f'stroke-width="3"/><text x="{left + 288}" y="18">Süresinde yanıt payı (sağ eksen)</text>'
    ]
    for tick in range(5):
        y = top + plot_h - plot_h * tick / 4
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
            f"{fmt_int(round(peak * tick / 4))}</text>"
            f'<text x="{width - right + 6}" y="{y + 4:.1f}" fill="{_SHARE_LINE}">'
            f"%{tick * 25}</text>"
        )
    label_every = max(1, math.ceil(len(points) / 12))
    segments: list[list[str]] = [[]]
    for i, point in enumerate(points):
        x = left + i * step + step / 2
        name = month_long(point["start"]) if monthly else f"{fmt_date(point['start'])} haftası"
        for j, (key, color, what) in enumerate(
            (("received", _ACCENT, "gelen"), ("answered", _ANSWERED_COLOR, "yanıtlanan"))
        ):
            h = plot_h * point[key] / peak
            body.append(
                f'<rect x="{x - col + j * col:.1f}" y="{top + plot_h - h:.1f}" width="{col:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{escape(name)}: {fmt_int(point[key])} '
                f"{what}</title></rect>"
            )
        ratio = point.get("on_time_ratio")
        if ratio is None:
            segments.append([])
        else:
            y = top + plot_h * (1 - ratio)
            segments[-1].append(f"{x:.1f},{y:.1f}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_SHARE_LINE}"><title>'
                f"{escape(name)}: süresinde yanıt {escape(fmt_percent(ratio))}</title></circle>"
            )
        if i % label_every == 0:
            short = month_short(point["start"]) if monthly else fmt_date(point["start"])[:5]
            body.append(
                f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'fill="#555" font-size="11">{escape(short)}</text>'
            )
    for segment in segments:
        if len(segment) > 1:
            body.append(
                f'<polyline points="{" ".join(segment)}" fill="none" stroke="{_SHARE_LINE}" '
                'stroke-width="2"/>'
            )
    return _svg(width, height, title, body)


def ranking_chart(
    rows: Sequence[dict[str, Any]],
    title: str,
    *,
    width: int = 720,
    label_width: int = 290,
    limit: int = 30,
) -> Markup:
    """The institutions ranked by the share answered on time, each bar coloured by its band;
    with more than `limit` the best and the worst halves are drawn and the middle is counted."""
    if not rows:
        return _svg(
            width,
            40,
            title,
            ['<text x="0" y="24" fill="#555">Süresi değerlendirilebilen yanıt yok.</text>'],
        )
    shown: list[dict[str, Any] | None] = list(rows)
    if len(rows) > limit:
        half = limit // 2
        shown = [*rows[:half], None, *rows[-half:]]
    row_height, gap, top = 22, 6, 26
    height = top + len(shown) * (row_height + gap) + gap
    bar_room = width - label_width - 150
    body = []
    for band, color in ((ON_TIME_FAIR, _FAIR), (ON_TIME_GOOD, _GOOD)):
        x = label_width + bar_room * band
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{height}" stroke="{color}" '
            f'stroke-dasharray="4 3"/><text x="{x:.1f}" y="{top - 10}" text-anchor="middle" '
            f'fill="#555" font-size="11">{escape(fmt_percent(band, 0))}</text>'
        )
    for i, row in enumerate(shown):
        y = top + gap + i * (row_height + gap)
        if row is None:
            body.append(
                f'<text x="{label_width}" y="{y + 15}" fill="#555">… '
                f"{fmt_int(len(rows) - 2 * (limit // 2))} kurum daha (tam liste tabloda) …</text>"
            )
            continue
        ratio = float(row["on_time_ratio"] or 0.0)
        name = f"{row['rank']}. {institution_label(row)}"
        length = max(1.0, bar_room * ratio) if ratio else 0.0
        figure = f"{fmt_percent(ratio)} · {fmt_int(row['judged'])} yanıt"
        body.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(_short(name, 40))}</text>"
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{row_height}" '
            f'fill="{on_time_color(row["on_time_ratio"])}" rx="2">'
            f"<title>{escape(name)}: {escape(figure)}</title></rect>"
            f'<text x="{label_width + length + 6:.1f}" y="{y + 15}" fill="#222">'
            f"{escape(figure)}</text>"
        )
    return _svg(width, height, title, body)


def sparkline(values: Sequence[int], title: str, *, width: int = 160, height: int = 36) -> Markup:
    """A small line of weekly counts, the last week marked."""
    if not values:
        return _svg(width, height, title, [])
    pad = 4
    peak = max(values) or 1
    gaps = max(1, len(values) - 1)
    points = [
        (pad + i * (width - 2 * pad) / gaps, height - pad - (height - 2 * pad) * v / peak)
        for i, v in enumerate(values)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    last_x, last_y = points[-1]
    return _svg(
        width,
        height,
        title,
        [
            f'<polyline points="{line}" fill="none" stroke="{_ACCENT}" stroke-width="2"/>',
            f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="3" fill="{_ACCENT}"/>',
        ],
    )


def institution_label(item: dict[str, Any]) -> str:
    if item.get("institution_code") is None:
        return UNKNOWN
    return str(item.get("institution_name") or item["institution_code"])


def rated_institutions(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The institutions whose answers were rated, the most rated first."""
    rated = [i for i in summary["by_institution"] if i["ratings"]["count"]]
    return sorted(rated, key=lambda i: (-i["ratings"]["count"], institution_label(i)))


def heading_label(row: dict[str, Any]) -> str:
    if row.get("heading_code") is None:
        return UNKNOWN
    return str(row.get("heading_name") or row["heading_code"])


def channel_label(code: str | None) -> str:
    return CHANNEL_LABELS.get(code, code) if code else UNKNOWN  # type: ignore[call-overload]


def type_label(code: str | None) -> str:
    return TYPE_LABELS.get(code, code) if code else UNKNOWN  # type: ignore[call-overload]


def district_label(name: str | None) -> str:
    return name or UNKNOWN


# Turkish alphabetical order (ç after c, ğ after g, ı before i, ö after o, ş after s, ü after u).
_ORDER = {letter: i for i, letter in enumerate("abcçdefgğhıijklmnoöpqrsştuüvwxyz")}


def turkish_sort_key(text: str) -> list[int]:
    return [_ORDER.get(char, 100 + ord(char)) for char in turkish_lower(text)]


# A chart drawn beside another on a wide screen: narrower, so its text stays readable.
_HALF: dict[str, Any] = {"width": 560, "label_width": 200}


def _bars(rows: Sequence[dict[str, Any]], label: Any, limit: int | None = None) -> list[Any]:
    return [(label(row), row["total"], _ACCENT) for row in rows[:limit]]


def _outcomes(report: dict[str, Any]) -> Markup:
    outcomes = report["outcomes"]
    return donut_chart(
        [(OUTCOME_LABELS[k], outcomes[k], OUTCOME_COLORS[k]) for k in OUTCOME_LABELS],
        "Sonuç dağılımı (yanıtlanan başvurular)",
        "yanıtlanan",
    )


def public_charts(report: dict[str, Any]) -> dict[str, Markup]:
    """The public summary's charts (/rapor): aggregate counts only, nothing about one person.
    The staff dashboard shows them too, among its own."""
    return {
        "outcomes": _outcomes(report),
        "monthly": trend_chart(
            report["trends"]["monthly"],
            "Aylara göre gelen ve yanıtlanan başvurular",
            monthly=True,
        ),
        "headings": bar_chart(
            _bars(report["by_heading"], heading_label), "Ana başlıklara göre başvurular", **_HALF
        ),
        "districts": bar_chart(
            _bars(report["by_district"], lambda r: district_label(r["district"])),
            "İlçelere göre başvurular",
            **_HALF,
        ),
        "channels": bar_chart(
            _bars(report["by_channel"], lambda r: channel_label(r["channel"])),
            "Kanallara göre başvurular",
            **_HALF,
        ),
    }


def dashboard_charts(report: dict[str, Any]) -> dict[str, Markup]:
    """Every chart of the staff dashboard (/pano): the public ones and the staff's own."""
    distribution = report["ratings"]["distribution"]
    return {
        **public_charts(report),
        "weekly": trend_chart(
            report["trends"]["weekly"], "Haftalara göre gelen ve yanıtlanan başvurular"
        ),
        "ranking": ranking_chart(
            report["institution_ranking"], "Kurumlar: süresinde yanıt payına göre sıralama"
        ),
        "institutions": bar_chart(
            _bars(report["by_institution"], institution_label, 15),
            "En çok başvuru alan kurumlar (ilk 15)",
        ),
        "types": bar_chart(
            _bars(report["by_type"], lambda r: type_label(r["application_type"])),
            "Başvuru türlerine göre",
            **_HALF,
        ),
        "ratings": bar_chart(
            [(RATING_LABELS[k], distribution[k], RATING_COLORS[k]) for k in RATING_LABELS],
            "Vatandaşların yanıtlara verdiği puanlar",
            **_HALF,
        ),
    }


_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    int=fmt_int,
    decimal=fmt_decimal,
    percent=fmt_percent,
    date=fmt_date,
    moment=fmt_moment,
    instant=fmt_instant,
    day=fmt_day,
)
_env.globals.update(
    OUTCOME_LABELS=OUTCOME_LABELS,
    STATUS_LABELS=STATUS_LABELS,
    RATING_LABELS=RATING_LABELS,
    UNKNOWN=UNKNOWN,
    institution_label=institution_label,
    heading_label=heading_label,
    channel_label=channel_label,
    type_label=type_label,
    district_label=district_label,
    rated_institutions=rated_institutions,
    on_time_band=on_time_band,
    month_long=month_long,
    share=fmt_share,
    period_text=period_text,
)


def render_page(template: str, **context: Any) -> str:
    """One of reporting's pages (templates/<template>) with the formats and labels above."""
    return _env.get_template(template).render(**context)
