"""What the Turkish GSM tables save on the SMS citizens get, measured offline (no stack needed).

Renders every SMS template in services/notification/templates/*.sms.j2 with realistic
parameters (a Denizli application number, the production status page, a real signed rating
link, each outcome) through notification's Renderer, and prints per message: its characters,
the encoding and segments before (GSM default alphabet, else UCS-2) and after (GSM 7-bit with
the Turkish locking shift table where Kannel carries it, UCS-2 only when no table writes the
text), the segments saved and the share of the cost saved; then the totals, and the cost of one
application's SMS (the receipt and the answer).

    make bench-sms            # or: .venv/bin/python bench/sms_encoding.py
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import meta

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.application_number import format_number
from services.common.events import NotificationChannel, Outcome
from services.notification import domain
from services.notification.domain import SmsEncoding
from services.notification.rendering import RenderedSms, Renderer
from services.tracking.domain import OUTCOME_LABELS
from services.tracking.rating import key_of, rating_url

TEMPLATES = Path(__file__).resolve().parent.parent / "services" / "notification" / "templates"
TRACKING = "https://acikkapi.denizli.gov.tr/takip"
NUMBER = format_number(20, 2026, 1_234_567)
RATING = rating_url(key_of("bench-secret"), TRACKING, NUMBER)

# The encoding logic before issue 9: the default alphabet when it writes the text, else UCS-2.
BEFORE = (SmsEncoding.gsm7, SmsEncoding.ucs2)
# The single shift table instead of the locking one, for comparison: Kannel cannot carry it
# (domain.KANNEL_ENCODINGS).
SINGLE_SHIFT = (SmsEncoding.gsm7, SmsEncoding.gsm7_tr_single, SmsEncoding.ucs2)

# Realistic values for every parameter an SMS template uses; a template with a parameter not
# here stops the benchmark (add a value rather than measure a placeholder).
VALUES: dict[str, Any] = {
    "application_number": NUMBER,
    "tracking_url": TRACKING,
    "rating_url": RATING,
    "outcome": Outcome.kismen_olumlu.value,
    "outcome_label": OUTCOME_LABELS[Outcome.kismen_olumlu],
}
# Messages worth measuring in more than one form: (label, parameters over VALUES).
VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "application_answered": [
        *(
            (OUTCOME_LABELS[outcome], {"outcome": outcome.value, "outcome_label": label})
            for outcome, label in OUTCOME_LABELS.items()
        ),
        ("puanlama bağlantısı yok", {"rating_url": None}),
    ],
}


@dataclass(frozen=True)
class Row:
    name: str
    text: str
    before: domain.SmsShape
    after: domain.SmsShape
    single_shift: int  # segments with the single shift table, were it carried

    @property
    def saved(self) -> int:
        return self.before.segments - self.after.segments


def shape(text: str, carried: tuple[SmsEncoding, ...]) -> domain.SmsShape:
    encoding = domain.choose_encoding(text, carried)
    return domain.SmsShape(
        encoding, domain.sms_units(text, encoding), domain.segment_count(text, encoding)
    )


def sms_templates(renderer: Renderer) -> list[tuple[str, set[str]]]:
    found = []
    for path in sorted(TEMPLATES.glob("*.sms.j2")):
        name = path.name.removesuffix(".sms.j2")
        source = path.read_text(encoding="utf-8")
        found.append((name, meta.find_undeclared_variables(renderer.env.parse(source))))
    return found


def measure() -> list[Row]:
    renderer = Renderer()
    rows = []
    for name, variables in sms_templates(renderer):
        missing = variables - VALUES.keys()
        if missing:
            raise SystemExit(f"{name}: no realistic value for {sorted(missing)} (bench VALUES)")
        for label, overrides in VARIANTS.get(name, [("", {})]):
            params = {key: VALUES[key] for key in variables}
            params.update(overrides)
            params = {key: value for key, value in params.items() if value is not None}
            rendered = renderer.render(name, NotificationChannel.sms, params)
            assert isinstance(rendered, RenderedSms)
            text = rendered.text
            single = shape(text, SINGLE_SHIFT).segments
            title = f"{name} ({label})" if label else name
            rows.append(
                Row(title, text, shape(text, BEFORE), shape(text, domain.KANNEL_ENCODINGS), single)
            )
    return rows


def percent(saved: int, before: int) -> str:
    return f"{100 * saved / before:5.1f} %" if before else "    -"


def main() -> None:
    rows = measure()
    width = max(len(row.name) for row in rows)
    header = (
        f"{'template':<{width}}  {'chars':>5}  {'encoding before':<15}  {'encoding after':<15}"
        f"  {'seg before':>10}  {'seg after':>9}  {'saved':>5}  {'cost saved':>10}"
        f"  {'single shift*':>13}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:<{width}}  {len(row.text):>5}  {row.before.encoding.value:<15}"
            f"  {row.after.encoding.value:<15}  {row.before.segments:>10}"
            f"  {row.after.segments:>9}  {row.saved:>5}"
            f"  {percent(row.saved, row.before.segments):>10}  {row.single_shift:>13}"
        )
    print("-" * len(header))
    before = sum(row.before.segments for row in rows)
    after = sum(row.after.segments for row in rows)
    print(
        f"{'total':<{width}}  {sum(len(r.text) for r in rows):>5}  {'':<15}  {'':<15}"
        f"  {before:>10}  {after:>9}  {before - after:>5}  {percent(before - after, before):>10}"
        f"  {sum(r.single_shift for r in rows):>13}"
    )
    print()
    receipt = next(r for r in rows if r.name == "application_received")
    answer = next(r for r in rows if r.name.startswith("application_answered ("))
    per_before = receipt.before.segments + answer.before.segments
    per_after = receipt.after.segments + answer.after.segments
    print(
        f"one application (the receipt + the answer with its rating link): {per_before} → "
        f"{per_after} "
        f"segments, {percent(per_before - per_after, per_before).strip()} of its SMS cost saved"
    )
    print(
        "* segments with the Turkish single shift table (UDH IE 0x24, 2 septets per Turkish "
        "letter): not used, Kannel 1.4.5 cannot carry it (see domain.KANNEL_ENCODINGS)."
    )
    print(
        "  Room per SMS: gsm7 160 / 153 a part, gsm7_tr_locking 155 / 149 (its 4-octet header), "
        "ucs2 70 / 67."
    )


if __name__ == "__main__":
    main()
