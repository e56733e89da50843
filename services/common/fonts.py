"""The font the services' PDFs are set in (intake's receipt, reporting's monthly report): DejaVu
Sans from Debian's fonts-dejavu-core, which deploy/local/install.sh installs, whose glyphs cover
every Turkish letter. fpdf2 embeds it, subset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fpdf import FPDF

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = {"": FONT_DIR / "DejaVuSans.ttf", "B": FONT_DIR / "DejaVuSans-Bold.ttf"}
FONT = "DejaVu"  # the family name a PDF's set_font() takes once add_fonts() has run


def add_fonts(pdf: FPDF) -> None:
    """Register the regular and bold faces with the document under the family `FONT`."""
    for style, path in FONTS.items():
        pdf.add_font(FONT, style, str(path))
