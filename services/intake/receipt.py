"""The receipt the counter prints: an A4 PDF in Turkish that says an application was received,
under which number, and how the applicant follows it.

The text is set in DejaVu Sans (Debian's fonts-dejavu-core, which deploy/local/install.sh
installs), whose glyphs cover every Turkish letter; the fonts are embedded, subset.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos

from services.common.audit import READ_PERSONAL, audit_of
from services.common.auth import Principal, Role, forbidden, request_settings, require_roles
from services.common.fonts import FONT, add_fonts
from services.common.labels import CHANNEL_LABELS, PRIORITY_LABELS, TYPE_LABELS
from services.common.settings import Settings
from services.common.turkish import turkish_lower
from services.common.turkish_time import long_datetime
from services.intake.api import ErrorsOut, get_intake
from services.intake.domain import RegisteredApplication
from services.intake.handlers import Intake
from services.intake.pages import governorship

router = APIRouter(prefix="/api/v1", tags=["başvurular"])

TITLE = "Açık Kapı Başvuru Alındı Belgesi"
ANSWER_PROMISE = "Başvurunuz, alındığı günden sonraki 7 iş günü içinde cevaplanır."


@dataclass(frozen=True)
class Receipt:
    """What the receipt says, already in the words it prints."""

    governorship: str
    application_number: str
    received_at: str
    channel: str
    application_type: str
    district: str
    subject: str
    applicant: str
    tckn_masked: str
    priority: str | None
    recorded_by: str | None
    tracking_url: str
    printed_at: str


def receipt_of(app: RegisteredApplication, tracking_url: str, now: datetime) -> Receipt:
    applicant = app.applicant
    return Receipt(
        governorship=governorship(app.province_code),
        application_number=app.application_number,
        received_at=long_datetime(app.received_at),
        channel=CHANNEL_LABELS[app.channel],
        application_type=TYPE_LABELS[app.application_type],
        district=app.district,
        subject=app.subject,
        applicant=f"{applicant.first_name} {applicant.last_name}",
        tckn_masked=applicant.tckn_masked,
        priority=PRIORITY_LABELS[app.priority] if app.priority else None,
        recorded_by=app.recorded_by,
        tracking_url=tracking_url,
        printed_at=long_datetime(now),
    )


def render_receipt(receipt: Receipt) -> bytes:
    """The receipt as an A4 PDF (CPU only: run it off the event loop)."""
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_lang("tr")
    pdf.set_title(f"{TITLE} {receipt.application_number}")
    pdf.set_author(receipt.governorship)
    pdf.set_creator("Açık Kapı")
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(auto=True, margin=18)
    add_fonts(pdf)
    pdf.add_page()
    width = pdf.epw

    def line(
        text: str, size: float, style: str = "", height: float = 7, align: Align = Align.L
    ) -> None:
        pdf.set_font(FONT, style, size)
        pdf.multi_cell(0, height, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    line(receipt.governorship, 15, "B", 8, align=Align.C)
    line("Açık Kapı", 11, height=6, align=Align.C)
    pdf.ln(3)
    pdf.set_draw_color(11, 79, 138)
    pdf.set_line_width(0.6)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
    pdf.ln(6)
    line(TITLE, 17, "B", 9, align=Align.C)
    pdf.ln(4)

    line("Başvuru numarası", 11, height=6, align=Align.C)
    pdf.set_font(FONT, "B", 30)
    pdf.cell(0, 18, receipt.application_number, border=1, align=Align.C,
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
    pdf.ln(6)

    rows = [
        ("Başvuru tarihi", receipt.received_at),
        ("Başvuru kanalı", receipt.channel),
        ("Başvuru türü", receipt.application_type),
        ("İlçe", receipt.district),
        ("Konu", receipt.subject),
        ("Başvuru sahibi", receipt.applicant),
        ("TC Kimlik No", receipt.tckn_masked),
    ]
    if receipt.priority:
        rows.append(("Öncelik", receipt.priority))
    if receipt.recorded_by:
        rows.append(("Kaydeden görevli", receipt.recorded_by))
    label_width = 48
    for label, value in rows:
        pdf.set_font(FONT, "B", 11)
        pdf.cell(label_width, 7, label)
        pdf.set_font(FONT, "", 11)
        pdf.multi_cell(
            width - label_width, 7, value, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    pdf.ln(6)

    line(ANSWER_PROMISE, 12, "B")
    pdf.ln(1)
    line(
        f"Başvurunuzun durumunu {receipt.tracking_url} adresinden izleyebilirsiniz: başvuru "
        "numaranızı ve başvuruda verdiğiniz cep telefonu numarasının son 4 hanesini yazmanız "
        "yeterlidir. Başvurunuz cevaplandığında size SMS ile de bildirilir.",
        11,
        height=6,
    )
    pdf.ln(8)
    line(
        f"Bu belge {receipt.printed_at} tarihinde Açık Kapı sisteminde oluşturulmuştur. "
        "Başvuru numaranızı saklayınız.",
        9,
        height=5,
    )
    return bytes(pdf.output())


async def readable_application(
    intake: Intake, principal: Principal, application_id: str
) -> RegisteredApplication:
    """The application if this officer or supervisor may see it (the rule of get_application)."""
    app = await intake.application(application_id)
    if app is None:
        raise HTTPException(404, "Başvuru bulunamadı.")
    if principal.province is not None and principal.province != app.province_code:
        raise forbidden("Bu ilin başvurularını görme yetkiniz yok.")
    if principal.role is Role.counter_officer and (
        principal.province is None
        or (
            principal.district is not None
            and turkish_lower(principal.district.strip()) != turkish_lower(app.district)
        )
    ):
        # A counter officer prints the receipts of their own counter's scope only.
        raise forbidden("Bu ilçenin başvurularını görme yetkiniz yok.")
    return app


@router.get(
    "/applications/{application_id}/receipt.pdf",
    summary="Başvuru alındı belgesi, PDF (görevli, denetçi)",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "A4 PDF"},
        403: {"model": ErrorsOut},
        404: {"model": ErrorsOut},
    },
)
async def receipt(
    request: Request,
    application_id: str,
    intake: Annotated[Intake, Depends(get_intake)],
    # The counter console prints it for the applicant: the counter officer too (issue 11).
    principal: Annotated[
        Principal, Depends(require_roles(Role.officer, Role.counter_officer, Role.supervisor))
    ],
    settings: Annotated[Settings, Depends(request_settings)],
) -> Response:
    app = await readable_application(intake, principal, application_id)
    # Before the answer: the receipt shows the name and the masked TC Kimlik No.
    await audit_of(request).record(
        actor=principal,
        action=READ_PERSONAL,
        application_id=app.application_id,
        application_number=app.application_number,
        fields=["first_name", "last_name", "tckn_masked"],
        request=request,
        detail={"operation": "receipt"},
    )
    printed = receipt_of(app, settings.public_tracking_url, datetime.now(UTC))
    pdf = await asyncio.to_thread(render_receipt, printed)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="makbuz-{app.application_number}.pdf"',
            # It carries personal data: no shared cache keeps it.
            "Cache-Control": "no-store",
        },
    )
