"""Attachments against the real MongoDB-wire server and an intake app served in-process: what is
taken (PDF, JPEG, PNG by their bytes, within the limits), how it is kept (once per SHA-256, in
GridFS, outside the application), and who may read it back."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from services.common import topics
from services.common.auth import Role
from services.common.events import AttachmentRef, Status, StatusChanged
from services.common.settings import Settings
from services.intake.attachments import (
    ATTACHMENTS,
    BLOBS,
    BUCKET,
    AttachmentStore,
    TooManyAttachments,
    UnknownAttachments,
)
from services.intake.progress import ProgressStore
from tests.conftest import fresh_consumer_group, running_intake
from tests.support import bearer
from tests.unit.test_intake_rules import body

pytestmark = pytest.mark.integration

MB = 1_048_576
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 64 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 64 + b"This program"


def uploads(outcome: str) -> float:
    """The upload counter of one outcome, as /metrics shows it."""
    value = REGISTRY.get_sample_value("acikkapi_attachment_uploads_total", {"outcome": outcome})
    return value or 0.0


def unique(signature: bytes, size: int = 256) -> bytes:
    """Bytes of a type no earlier run uploaded (the blobs are shared by content)."""
    return signature + os.urandom(size)


@dataclass
class Intake:
    http: httpx.AsyncClient
    settings: Settings
    attachments: AttachmentStore
    progress: ProgressStore
    mongo: AsyncMongoClient[dict[str, Any]]

    @property
    def db(self) -> Any:
        return self.mongo[self.settings.database_name("intake")]

    async def blob(self, content: bytes) -> dict[str, Any] | None:
        """The registry entry of these bytes, with the GridFS file and chunks that hold them."""
        entry: dict[str, Any] | None = await self.db[BLOBS].find_one(
            {"_id": hashlib.sha256(content).hexdigest()}
        )
        if entry is None:
            return None
        file_id = entry["file_id"]
        entry["file"] = await self.db[f"{BUCKET}.files"].find_one({"_id": file_id})
        entry["chunks"] = await self.db[f"{BUCKET}.chunks"].find({"files_id": file_id}).to_list()
        return entry

    def staff(self, role: Role, **claims: Any) -> dict[str, str]:
        return bearer(self.settings, role, **claims)

    async def upload(
        self, content: bytes, name: str = "dilekçe.pdf", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.http.post(
            "/api/v1/attachments",
            files={"file": (name, content, "application/octet-stream")},
            headers=headers,
        )

    async def uploaded(self, content: bytes, name: str = "dilekçe.pdf") -> str:
        response = await self.upload(content, name)
        assert response.status_code == 201, response.text
        return str(response.json()["attachment_id"])

    async def register(self) -> str:
        response = await self.http.post(
            "/api/v1/applications", json=body(channel="counter"), headers=self.staff(Role.officer)
        )
        assert response.status_code == 201, response.text
        return str(response.json()["application_id"])


@pytest.fixture(scope="module")
async def intake(settings: Settings) -> AsyncIterator[Intake]:
    # The citizens' rate and daily limits and checks are other tests' business, not these.
    own = settings.model_copy(
        update={
            "client_posts_per_minute": 0,
            "daily_limit_per_tckn": 0,
            "daily_limit_per_phone": 0,
            "identity_verifier": "off",
            "phone_verification": False,
        }
    )
    group = await fresh_consumer_group(
        own.kafka_bootstrap, "intake", [topics.SUBMISSIONS], [topics.RECEIVED]
    )
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own.mongo_uri, tz_aware=True)
    try:
        async with running_intake(own, group) as (app, http):
            yield Intake(http, own, app.state.attachments, app.state.progress, mongo)
    finally:
        await mongo.close()


@pytest.mark.parametrize(
    ("content", "name", "content_type", "kept_as"),
    [
        (PDF, "dilekçe.pdf", "application/pdf", "dilekçe.pdf"),
        (JPEG, "Fotoğraf 1.JPG", "image/jpeg", "Fotoğraf 1.JPG"),
        (PNG, "../../ekran görüntüsü.png", "image/png", "ekran görüntüsü.png"),
    ],
)
async def test_a_pdf_a_jpeg_and_a_png_are_taken_with_their_hash(
    intake: Intake, content: bytes, name: str, content_type: str, kept_as: str
) -> None:
    response = await intake.upload(content, name)

    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) == {"attachment_id", "sha256", "content_type", "size", "name"}
    assert answer["sha256"] == hashlib.sha256(content).hexdigest()
    assert answer["content_type"] == content_type
    assert answer["size"] == len(content)
    assert answer["name"] == kept_as
    kept = await intake.db[ATTACHMENTS].find_one({"_id": answer["attachment_id"]})
    assert kept["uploaded_by"] is None and kept["claimed_by"] == []
    assert content not in str(kept).encode()  # the reference holds no bytes
    blob = await intake.blob(content)
    assert blob is not None and blob["size"] == len(content)
    assert blob["file"]["length"] == len(content)


async def test_an_officer_who_uploads_is_recorded(intake: Intake) -> None:
    response = await intake.upload(unique(PDF), headers=intake.staff(Role.officer))
    assert response.status_code == 201
    kept = await intake.db[ATTACHMENTS].find_one({"_id": response.json()["attachment_id"]})
    assert kept["uploaded_by"] == "test-officer"
    broken = await intake.upload(PDF, headers={"Authorization": "Bearer x.y.z"})
    assert broken.status_code == 401


async def test_a_disguised_or_empty_file_is_refused_and_nothing_is_kept(intake: Intake) -> None:
    before = await intake.db[ATTACHMENTS].count_documents({})
    refused_before = uploads("unsupported_type")

    exe = await intake.upload(EXE, "dilekçe.pdf")
    html = await intake.upload(b"<!DOCTYPE html><html><script>alert(1)</script>", "tapu.pdf")
    empty = await intake.upload(b"", "bos.pdf")
    missing = await intake.http.post("/api/v1/attachments", files={"note": (None, "dosya yok")})

    assert exe.status_code == html.status_code == 415
    [error] = exe.json()["errors"]
    assert error["code"] == "unsupported_type" and error["field"] == "file"
    assert "PDF, JPEG veya PNG" in error["message"]
    assert empty.status_code == 422 and empty.json()["errors"][0]["code"] == "empty"
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "file"
    assert await intake.db[ATTACHMENTS].count_documents({}) == before
    assert await intake.blob(EXE) is None
    assert uploads("unsupported_type") == refused_before + 2


def multipart(chunks: int, chunk: bytes) -> tuple[str, AsyncIterator[bytes], list[int]]:
    """A multipart body of one large PDF, made as it is read (no Content-Length), and a list
    that counts the chunks the server pulled."""
    boundary = uuid.uuid4().hex
    pulled = [0]

    async def stream() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="buyuk.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode() + b"%PDF-1.7\n"
        for _ in range(chunks):
            pulled[0] += 1
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    return f"multipart/form-data; boundary={boundary}", stream(), pulled


async def test_an_oversized_file_is_refused_without_being_read_whole(intake: Intake) -> None:
    limit = intake.settings.attachment_max_bytes
    expected = {
        "errors": [
            {"field": "file", "code": "too_large", "message": "Dosya en fazla 5 MB olabilir."}
        ]
    }
    refused_before = uploads("too_large")

    declared = await intake.upload(unique(PDF, 6 * MB))  # Content-Length says it at once
    just_over = await intake.upload(unique(PDF, limit - len(PDF) + 1))  # within the framing
    content_type, stream, pulled = multipart(chunks=800, chunk=b"\x00" * 65_536)  # 50 MB
    streamed = await intake.http.post(
        "/api/v1/attachments", content=stream, headers={"Content-Type": content_type}
    )

    assert declared.status_code == just_over.status_code == streamed.status_code == 413
    assert declared.json() == just_over.json() == streamed.json() == expected
    assert uploads("too_large") == refused_before + 3  # the middleware's refusals count too
    # Cut at the limit plus the framing (64 KiB): about 81 of the 800 chunks were read.
    assert pulled[0] <= (limit + 64 * 1024) // 65_536 + 2, pulled[0]
    # ... and the service goes on taking files.
    assert (await intake.upload(unique(PNG), "sonra.png")).status_code == 201


async def test_a_file_at_the_limit_is_taken(intake: Intake) -> None:
    limit = intake.settings.attachment_max_bytes
    content = unique(JPEG, limit - len(JPEG))
    response = await intake.upload(content, "tam.jpg")
    assert response.status_code == 201, response.text
    assert response.json()["size"] == limit


async def test_the_same_bytes_uploaded_twice_are_kept_once(intake: Intake) -> None:
    content = unique(PDF, 300 * 1024)  # more than one GridFS chunk
    deduplicated_before = uploads("deduplicated")
    first = (await intake.upload(content, "bir.pdf")).json()
    second = (await intake.upload(content, "iki.pdf")).json()
    assert uploads("deduplicated") == deduplicated_before + 1

    assert first["attachment_id"] != second["attachment_id"]
    assert first["sha256"] == second["sha256"] == hashlib.sha256(content).hexdigest()
    blob = await intake.blob(content)
    assert blob is not None and len(blob["chunks"]) == 2
    # One GridFS file holds these bytes, whichever upload's name it was given.
    copies = await intake.db[f"{BUCKET}.files"].find({"filename": first["sha256"]}).to_list()
    assert [c["_id"] for c in copies] == [blob["file_id"]]


async def test_an_unclaimed_upload_expires_and_a_claimed_one_never(intake: Intake) -> None:
    application_id = await intake.register()
    kept, left = await intake.uploaded(unique(PDF)), await intake.uploaded(unique(PNG))
    before = await intake.db[ATTACHMENTS].find_one({"_id": left})
    now = datetime.now(UTC)
    assert now + timedelta(hours=23) < before["expires_at"] <= now + timedelta(hours=24)

    refs = await intake.attachments.claim([kept, kept], application_id)

    assert [r.attachment_id for r in refs] == [kept]  # the repeated id counts once
    claimed = await intake.db[ATTACHMENTS].find_one({"_id": kept})
    assert "expires_at" not in claimed
    assert claimed["claimed_by"] == [application_id]
    assert "expires_at" in await intake.db[ATTACHMENTS].find_one({"_id": left})
    # Claiming again for the same application changes nothing.
    assert await intake.attachments.claim([kept], application_id) == refs
    assert (await intake.db[ATTACHMENTS].find_one({"_id": kept}))["claimed_by"] == [application_id]
    assert await intake.attachments.refs_of(application_id) == refs
    application = await intake.db["intake_applications"].find_one({"_id": application_id})
    assert kept not in str(application)  # the lead stores the refs there, not this store


async def test_a_claim_with_an_unknown_or_expired_id_claims_nothing(intake: Intake) -> None:
    application_id = await intake.register()
    good = await intake.uploaded(unique(PDF))
    stranger = str(uuid.uuid4())

    with pytest.raises(UnknownAttachments) as unknown:
        await intake.attachments.claim([good, stranger], application_id)
    with pytest.raises(UnknownAttachments) as expired:
        await intake.attachments.claim(
            [good], application_id, now=datetime.now(UTC) + timedelta(hours=25)
        )
    too_many = [await intake.uploaded(unique(PNG)) for _ in range(6)]
    with pytest.raises(TooManyAttachments):
        await intake.attachments.claim(too_many, application_id)

    assert unknown.value.ids == [stranger]
    assert unknown.value.errors[0]["field"] == "attachments"
    assert stranger not in unknown.value.errors[0]["message"]
    assert expired.value.ids == [good]
    assert await intake.attachments.refs_of(application_id) == []
    assert "expires_at" in await intake.db[ATTACHMENTS].find_one({"_id": good})


def routed(application_id: str, institution: str) -> StatusChanged:
    return StatusChanged(
        producer="tracking",
        application_id=application_id,
        application_number="20-2026-0000001-0",
        status=Status.routed,
        at=datetime.now(UTC),
        institution_code=institution,
    )


async def test_only_those_who_handle_the_application_read_its_files(intake: Intake) -> None:
    application_id = await intake.register()
    content = unique(PNG, 700 * 1024)  # three GridFS chunks
    photo = await intake.uploaded(content, "çukur fotoğrafı.png")
    petition = await intake.uploaded(unique(PDF), "dilekçe.pdf")
    elsewhere = await intake.uploaded(unique(PDF), "başka.pdf")
    refs = await intake.attachments.claim([photo, petition], application_id)
    await intake.attachments.claim([elsewhere], await intake.register())
    base = f"/api/v1/applications/{application_id}/attachments"

    async def status_of(path: str, headers: dict[str, str] | None) -> int:
        return (await intake.http.get(path, headers=headers)).status_code

    officer = intake.staff(Role.officer, province=20)
    downloaded = await intake.http.get(f"{base}/{photo}", headers=officer)
    assert downloaded.status_code == 200
    assert downloaded.content == content
    assert downloaded.headers["content-type"] == "image/png"
    assert downloaded.headers["content-length"] == str(len(content))
    assert downloaded.headers["content-disposition"] == (
        'attachment; filename="cukur fotografi.png"; '
        "filename*=UTF-8''%C3%A7ukur%20foto%C4%9Fraf%C4%B1.png"
    )
    assert downloaded.headers["x-content-type-options"] == "nosniff"
    assert downloaded.headers["cache-control"] == "private, no-store"
    listed = await intake.http.get(base, headers=officer)
    assert listed.status_code == 200
    assert [AttachmentRef(**a) for a in listed.json()["attachments"]] == refs

    supervisor = intake.staff(Role.supervisor)  # no province: every province
    assert await status_of(f"{base}/{petition}", supervisor) == 200
    other_province = intake.staff(Role.officer, province=35)
    assert await status_of(f"{base}/{photo}", other_province) == 403
    assert await status_of(base, other_province) == 403
    assert await status_of(f"{base}/{photo}", None) == 401
    assert await status_of(base, None) == 401
    # Claimed by another application, or by none: not this application's, so not found.
    assert await status_of(f"{base}/{elsewhere}", officer) == 404
    assert await status_of(f"{base}/{uuid.uuid4()}", officer) == 404
    assert await status_of(f"/api/v1/applications/{uuid.uuid4()}/attachments", officer) == 404

    deski = intake.staff(Role.institution, institution="DESKI")
    assert await status_of(f"{base}/{photo}", deski) == 403  # not routed yet
    await intake.progress.handle_status([routed(application_id, "DESKI")])
    taken = await intake.http.get(f"{base}/{photo}", headers=deski)
    assert taken.status_code == 200 and taken.content == content
    assert await status_of(base, deski) == 200
    meram = intake.staff(Role.institution, institution="DENIZLI_BB")
    assert await status_of(f"{base}/{photo}", meram) == 403
    assert await status_of(base, meram) == 403
    assert await status_of(f"{base}/{elsewhere}", deski) == 404


async def test_a_blob_nobody_claimed_is_swept_and_a_claimed_one_kept(intake: Intake) -> None:
    application_id = await intake.register()
    claimed_bytes, abandoned_bytes = unique(PDF), unique(PNG)
    claimed = await intake.uploaded(claimed_bytes)
    abandoned = await intake.uploaded(abandoned_bytes)
    await intake.attachments.claim([claimed], application_id)
    # As if a day had gone by: the abandoned upload's reference has expired.
    past = datetime.now(UTC) - timedelta(seconds=1)
    await intake.db[ATTACHMENTS].update_one({"_id": abandoned}, {"$set": {"expires_at": past}})
    abandoned_blob = await intake.blob(abandoned_bytes)
    assert abandoned_blob is not None and abandoned_blob["chunks"]

    swept = await intake.attachments.sweep_once(now=datetime.now(UTC) + timedelta(hours=26))

    assert swept >= 1
    assert await intake.blob(abandoned_bytes) is None
    files = intake.db[f"{BUCKET}.files"]
    assert await files.find_one({"_id": abandoned_blob["file_id"]}) is None
    chunks = intake.db[f"{BUCKET}.chunks"]
    assert await chunks.find({"files_id": abandoned_blob["file_id"]}).to_list() == []
    kept = await intake.blob(claimed_bytes)
    assert kept is not None and kept["kept"] and kept["file"] is not None
    downloaded = await intake.http.get(
        f"/api/v1/applications/{application_id}/attachments/{claimed}",
        headers=intake.staff(Role.supervisor),
    )
    assert downloaded.content == claimed_bytes
    # An upload of the same bytes again simply keeps them anew.
    again = await intake.upload(abandoned_bytes, "yine.png")
    assert again.status_code == 201
    anew = await intake.blob(abandoned_bytes)
    assert anew is not None and anew["file_id"] != abandoned_blob["file_id"] and anew["chunks"]
