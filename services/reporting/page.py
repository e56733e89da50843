"""The report as people read it: Turkish number formats, inline SVG charts drawn on the server,
and the HTML page (no scripts, no external assets, so it prints and archives as it is)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from services.common.labels import CHANNEL_LABELS, TYPE_LABELS
from services.common.turkish_time import ISTANBUL
from services.reporting.query import Period

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


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _svg(width: int, height: int, title: str, body: Sequence[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" role="img" aria-label="{escape(title)}" '
        f'font-family="system-ui, sans-serif" font-size="13">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def bar_chart(
    rows: Sequence[tuple[str, int, str]], title: str, *, width: int = 720, label_width: int = 300
) -> Markup:
    """Horizontal bars, one per (label, value, colour); the value and its share are written out."""
    if not rows:
        return _svg(width, 40, title, ['<text x="0" y="24" fill="#555">Veri yok.</text>'])
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


def week_chart(weeks: Sequence[dict[str, Any]], title: str, *, width: int = 720) -> Markup:
    """Columns per week (Monday first): applications received, and answers given."""
    if not weeks:
        return _svg(width, 40, title, ['<text x="0" y="24" fill="#555">Veri yok.</text>'])
    height, left, bottom, top = 240, 48, 40, 30
    plot_w, plot_h = width - left - 10, height - top - bottom
    peak = _nice_ceiling(max(max(w["received"], w["answered"]) for w in weeks))
    step = plot_w / len(weeks)
    col = max(1.0, min(18.0, step / 2 - 2))
    body = [
        f'<rect x="{left}" y="8" width="12" height="12" fill="{_ACCENT}"/>'
        f'<text x="{left + 18}" y="18">Gelen başvuru</text>'
        f'<rect x="{left + 140}" y="8" width="12" height="12" fill="{_ANSWERED_COLOR}"/>'
        f'<text x="{left + 158}" y="18">Yanıtlanan</text>'
    ]
    for tick in range(5):
        value = peak * tick / 4
        y = top + plot_h - plot_h * tick / 4
        body.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
            f"{fmt_int(round(value))}</text>"
        )
    label_every = max(1, math.ceil(len(weeks) / 12))
    for i, week in enumerate(weeks):
        x = left + i * step + step / 2
        for j, (key, color) in enumerate((("received", _ACCENT), ("answered", _ANSWERED_COLOR))):
            h = plot_h * week[key] / peak
            body.append(
                f'<rect x="{x - col + j * col:.1f}" y="{top + plot_h - h:.1f}" width="{col:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{fmt_date(week["week_start"])} '
                f"haftası: {fmt_int(week[key])}</title></rect>"
            )
        if i % label_every == 0:
            body.append(
                f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'fill="#555" font-size="11">{fmt_date(week["week_start"])[:5]}</text>'
            )
    return _svg(width, height, title, body)


def institution_label(item: dict[str, Any]) -> str:
    if item.get("institution_code") is None:
        return UNKNOWN
    return str(item.get("institution_name") or item["institution_code"])


def rated_institutions(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The institutions whose answers were rated, the most rated first."""
    rated = [i for i in summary["by_institution"] if i["ratings"]["count"]]
    return sorted(rated, key=lambda i: (-i["ratings"]["count"], institution_label(i)))


def charts(summary: dict[str, Any]) -> dict[str, Markup]:
    outcomes = summary["outcomes"]
    top = summary["by_institution"][:15]
    distribution = summary["ratings"]["distribution"]
    return {
        "ratings": bar_chart(
            [(RATING_LABELS[k], distribution[k], RATING_COLORS[k]) for k in RATING_LABELS],
            "Vatandaşların yanıtlara verdiği puanlar",
            label_width=220,
        ),
        "outcomes": donut_chart(
            [(OUTCOME_LABELS[k], outcomes[k], OUTCOME_COLORS[k]) for k in OUTCOME_LABELS],
            "Sonuç dağılımı (yanıtlanan başvurular)",
            "yanıtlanan",
        ),
        "institutions": bar_chart(
            [(institution_label(i), i["total"], _ACCENT) for i in top],
            "Kurumlara göre başvurular (ilk 15)",
        ),
        "channels": bar_chart(
            [
                (CHANNEL_LABELS.get(c["channel"], c["channel"] or UNKNOWN), c["total"], _ACCENT)
                for c in summary["by_channel"]
            ],
            "Kanallara göre başvurular",
        ),
        "weeks": week_chart(summary["by_week"], "Haftalara göre gelen ve yanıtlanan başvurular"),
    }


_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    int=fmt_int, decimal=fmt_decimal, percent=fmt_percent, date=fmt_date, moment=fmt_moment
)
_env.globals.update(
    CHANNEL_LABELS=CHANNEL_LABELS,
    TYPE_LABELS=TYPE_LABELS,
    OUTCOME_LABELS=OUTCOME_LABELS,
    STATUS_LABELS=STATUS_LABELS,
    UNKNOWN=UNKNOWN,
    institution_label=institution_label,
    rated_institutions=rated_institutions,
    share=fmt_share,
)


def render(
    *,
    summary: dict[str, Any] | None,
    form: dict[str, str],
    province_code: int | None,
    period: Period | None,
    errors: Sequence[dict[str, str]] = (),
    generated_at: datetime,
) -> str:
    return _env.get_template("rapor.html.j2").render(
        summary=summary,
        charts=charts(summary) if summary else {},
        form=form,
        period=period,
        province=province_name(province_code),
        errors=errors,
        generated_at=generated_at,
    )
