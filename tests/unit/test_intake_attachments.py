"""What intake takes as an attachment, decided without I/O: the type from the bytes, the name a
file is kept under, the download's Content-Disposition, and the body limit of the upload path."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.common.middleware import BodyAllowance, BodyLimitMiddleware, allow_larger_body
from services.intake.attachments import (
    JPEG,
    NAME_MAX,
    PDF,
    PNG,
    TooLarge,
    UnsupportedType,
    detect_type,
    megabytes,
    safe_name,
)
from services.intake.attachments_api import content_disposition

PDF_BYTES = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@pytest.mark.parametrize(
    ("head", "expected"),
    [(PDF_BYTES, PDF), (JPEG_BYTES, JPEG), (b"\xff\xd8\xff\xdb", JPEG), (PNG_BYTES, PNG)],
)
def test_pdf_jpeg_and_png_are_known_by_their_first_bytes(head, expected):
    assert detect_type(head) is expected


@pytest.mark.parametrize(
    "head",
    [
        b"MZ\x90\x00\x03\x00\x00\x00",  # a Windows program
        b"\x7fELF\x02\x01\x01\x00",  # a Linux one
        b"<!DOCTYPE html><html><script>",
        b"<svg xmlns='http://www.w3.org/2000/svg'>",
        b"PK\x03\x04\x14\x00",  # a .docx (a zip)
        b"GIF89a\x01\x00",
        b" %PDF-1.7",  # the signature not at the start
        b"%PDF",  # cut short: five bytes are needed
        b"\x89PNG\r\n\x1a",
        b"",
    ],
)
def test_anything_else_is_unknown_whatever_it_is_called(head):
    assert detect_type(head) is None


def test_the_unsupported_type_message_names_the_allowed_types_in_turkish():
    refused = UnsupportedType()
    assert refused.status == 415
    [error] = refused.errors
    assert error["code"] == "unsupported_type" and error["field"] == "file"
    assert "PDF, JPEG veya PNG" in error["message"]
    assert "içeriğine göre" in error["message"]


def test_the_too_large_message_gives_the_limit_in_megabytes():
    [error] = TooLarge(5 * 1_048_576).errors
    assert error["code"] == "too_large"
    assert error["message"] == "Dosya en fazla 5 MB olabilir."
    assert megabytes(1_572_864) == "1,5"
    assert megabytes(10 * 1_048_576 - 1) == "9,9"  # rounded down: never more than allowed


@pytest.mark.parametrize(
    ("raw", "file_type", "kept"),
    [
        ("dilekçe.pdf", PDF, "dilekçe.pdf"),
        ("Fotoğraf.JPEG", JPEG, "Fotoğraf.JPEG"),
        ("../../etc/passwd.png", PNG, "passwd.png"),
        ("C:\\Users\\Ayşe\\Masaüstü\\tapu.pdf", PDF, "tapu.pdf"),
        ("rapor.docx", PDF, "rapor.docx.pdf"),  # the extension always says what it is
        ("resim.pdf", PNG, "resim.pdf.png"),
        ("a\x00b\r\nc\td.pdf", PDF, "a b c d.pdf"),
        ("fatura\u202efdp.exe", PDF, "fatura fdp.exe.pdf"),  # a right-to-left override
        ("   .pdf", PDF, "ek.pdf"),
        ("", JPEG, "ek.jpg"),
        (None, PNG, "ek.png"),
        ("..", PDF, "ek.pdf"),
        (".gizli.pdf", PDF, "gizli.pdf"),  # no hidden file on the officer's disk
        ("s\u0327ikayet.pdf", PDF, "şikayet.pdf"),  # decomposed, as macOS sends it
    ],
)
def test_a_stored_name_has_no_folders_no_control_characters_and_the_right_extension(
    raw, file_type, kept
):
    assert safe_name(raw, file_type) == kept


def test_a_long_name_is_cut_to_the_limit_keeping_its_extension():
    name = safe_name("ş" * 500 + ".pdf", PDF)
    assert len(name) == NAME_MAX
    assert name.endswith("ş.pdf")


def test_the_download_offers_the_name_in_utf8_and_in_ascii():
    header = content_disposition('Işık "dilekçe" şikâyet.pdf')
    assert header == (
        'attachment; filename="Isik _dilekce_ sikayet.pdf"; '
        "filename*=UTF-8''I%C5%9F%C4%B1k%20%22dilek%C3%A7e%22%20%C5%9Fik%C3%A2yet.pdf"
    )


def _app(allowance: BodyAllowance) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"read": len(await request.body())})

    app = Starlette(
        routes=[Route("/upload", echo, methods=["POST"]), Route("/other", echo, methods=["POST"])]
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=1000)
    allow_larger_body(app, "/upload", allowance)
    return app


async def test_one_path_may_take_a_larger_body_and_says_no_its_own_way():
    refused: list[str] = []
    error = {"field": "file", "code": "too_large", "message": "Dosya en fazla 1 MB olabilir."}
    app = _app(BodyAllowance(3000, error, on_refuse=lambda: refused.append("x")))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        upload_ok = await http.post("/upload", content=b"x" * 3000)
        other_big = await http.post("/other", content=b"x" * 1001)
        upload_big = await http.post("/upload", content=b"x" * 3001)

        async def chunks():
            for _ in range(10):
                yield b"x" * 500

        streamed = await http.post("/upload", content=chunks())  # no Content-Length

    assert upload_ok.json() == {"read": 3000}
    assert other_big.status_code == 413
    assert other_big.json()["errors"][0]["code"] == "payload_too_large"
    assert upload_big.status_code == streamed.status_code == 413
    assert upload_big.json() == streamed.json() == {"errors": [error]}
    assert refused == ["x", "x"]
