"""The counter's PDF receipt: what it says, in Turkish letters a PDF reader gets back, on A4,
and who may print it (the rule of GET /api/v1/applications/{id})."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.common.auth import Role
from services.common.events import ApplicantContact, ApplicationType, Channel, Priority
from services.common.fonts import FONTS
from services.common.settings import Settings
from services.intake.app import build_app
from services.intake.domain import RegisteredApplication
from services.intake.receipt import receipt_of, render_receipt
from tests.support import bearer

TRACKING = "https://acikkapi.denizli.gov.tr/takip"
RECEIVED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # 12:30 in Istanbul


def application(**changes: object) -> RegisteredApplication:
    fields: dict[str, object] = {
        "application_id": "app-1",
        "application_number": "20-2026-0000123-4",
        "channel": Channel.counter,
        "application_type": ApplicationType.sikayet,
        "province_code": 20,
        "district": "Merkezefendi",
        "subject": "Sokak lambaları yanmıyor",
        "text": "Çamlık Caddesi'ndeki sokak lambaları iki haftadır yanmıyor.",
        "received_at": RECEIVED,
        "priority": Priority.sehit_yakini,
        "recorded_by": "gorevli-ayse",
        "applicant": ApplicantContact(
            tckn_masked="10*******46",
            first_name="Şükrü",
            last_name="Öztürk",
            phone="+905321234567",
        ),
    }
    return RegisteredApplication.model_validate(fields | changes)


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """The text a reader gets back from the PDF (poppler's pdftotext, from install.sh)."""
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: deploy/local/install.sh installs poppler-utils"
    path = tmp_path / "makbuz.pdf"
    path.write_bytes(pdf)
    result = subprocess.run(
        [tool, "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    )
    return result.stdout.decode("utf-8")


def test_the_fonts_have_turkish_letters_and_are_installed():
    for path in FONTS.values():
        assert path.exists(), f"{path}: deploy/local/install.sh installs fonts-dejavu-core"


def test_the_receipt_says_what_was_received_in_turkish(tmp_path: Path):
    receipt = receipt_of(application(), TRACKING, datetime(2026, 3, 2, 9, 31, tzinfo=UTC))
    pdf = render_receipt(receipt)

    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf, tmp_path)
    assert "T.C. Denizli Valiliği" in text
    assert "Açık Kapı Başvuru Alındı Belgesi" in text
    assert "20-2026-0000123-4" in text
    assert "2 Mart 2026 Pazartesi, 12:30" in text  # Istanbul's clock
    for words in (
        "Açık Kapı masası",
        "Şikâyet",
        "Merkezefendi",
        "Sokak lambaları yanmıyor",
        "Şükrü Öztürk",
        "10*******46",
        "Şehit yakını",
        "gorevli-ayse",
        "7 iş günü içinde cevaplanır",
        TRACKING,
        "son 4 hanesini",
    ):
        assert words in text, words
    # Personal data stays masked: no phone number on paper, nor the text of the application.
    assert "5321234567" not in text
    assert "iki haftadır" not in text


def test_a_receipt_without_a_priority_or_an_officer_leaves_those_lines_out(tmp_path: Path):
    app = application(priority=None, recorded_by=None, channel=Channel.web)
    text = pdf_text(render_receipt(receipt_of(app, TRACKING, RECEIVED)), tmp_path)

    assert "Öncelik" not in text
    assert "Kaydeden görevli" not in text
    assert "Web" in text


def test_the_receipt_is_one_a4_page_even_with_the_longest_subject(tmp_path: Path):
    tool = shutil.which("pdfinfo")
    assert tool, "pdfinfo is missing: deploy/local/install.sh installs poppler-utils"
    app = application(subject="Ğ" * 200, district="Çivril")
    path = tmp_path / "makbuz.pdf"
    path.write_bytes(render_receipt(receipt_of(app, TRACKING, RECEIVED)))

    info = subprocess.run([tool, str(path)], capture_output=True, check=True, text=True).stdout
    assert "Pages:           1" in info
    assert "(A4)" in info
    assert "Ğ" * 20 in pdf_text(path.read_bytes(), tmp_path)


class Applications:
    """Intake's look-up by id, as the receipt route uses it (handlers.Intake.application)."""

    def __init__(self, *apps: RegisteredApplication) -> None:
        self._apps = {a.application_id: a for a in apps}

    async def application(self, application_id: str) -> RegisteredApplication | None:
        return self._apps.get(application_id)


class Audit:
    """The audit log as the routes use it (services/common/audit.AuditLog.record)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def record(self, **entry: Any) -> None:
        self.records.append(entry)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(public_tracking_url=TRACKING)


@pytest.fixture(scope="module")
def app(settings: Settings) -> FastAPI:
    app = build_app(settings)
    app.state.runtime.started.set()  # no lifespan: nothing here needs Kafka or MongoDB
    app.state.intake = Applications(application())
    app.state.audit = Audit()
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        yield client


async def test_an_officer_of_the_province_prints_the_receipt(
    http: httpx.AsyncClient, settings: Settings, tmp_path: Path, app: FastAPI
):
    response = await http.get(
        "/api/v1/applications/app-1/receipt.pdf",
        headers=bearer(settings, Role.officer, province=20),
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["cache-control"] == "no-store"
    assert 'filename="makbuz-20-2026-0000123-4.pdf"' in response.headers["content-disposition"]
    assert "20-2026-0000123-4" in pdf_text(response.content, tmp_path)
    # The name and the masked TC Kimlik No were shown: the reading is in the audit log.
    audit = app.state.audit
    assert audit.records[-1]["action"] == "read_personal"
    assert audit.records[-1]["application_id"] == "app-1"


async def test_only_the_provinces_officers_and_supervisors_may_print_it(
    http: httpx.AsyncClient, settings: Settings
):
    url = "/api/v1/applications/app-1/receipt.pdf"
    assert (await http.get(url)).status_code == 401
    institution = bearer(settings, Role.institution, institution="DNZ-SU")
    assert (await http.get(url, headers=institution)).status_code == 403
    other_province = await http.get(url, headers=bearer(settings, Role.officer, province=35))
    assert other_province.status_code == 403
    assert "yetkiniz yok" in other_province.json()["errors"][0]["message"]
    supervisor = await http.get(url, headers=bearer(settings, Role.supervisor))
    assert supervisor.status_code == 200

    missing = await http.get(
        "/api/v1/applications/none/receipt.pdf", headers=bearer(settings, Role.officer)
    )
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["message"] == "Başvuru bulunamadı."
