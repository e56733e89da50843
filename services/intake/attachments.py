"""Files that come with an application (PDF, JPEG, PNG): what is accepted, and where it is kept.

Decisions, in one place (issue 7):

- The type comes from the first bytes, never from the name or the Content-Type the client
  sent: `%PDF-` is a PDF, `FF D8 FF` a JPEG, the 8-byte PNG signature a PNG; anything else is
  refused, so an EXE or an HTML page renamed `.pdf` is refused. Ten lines of our own rather
  than a library: three signatures are all we accept, a table of them is easier to check than
  a dependency (`filetype`, the obvious candidate, had its last release in 2022), and a name
  the table does not hold can never slip through as "some other allowed type".
- The stored name is for people only (the download's Content-Disposition): Unicode NFC, no
  folder parts, no control or format characters (a right-to-left override can make
  `fdp.exe` read as `exe.pdf`), whitespace collapsed, at most 120 characters, and it always
  ends in the detected type's extension (`rapor.docx` that is a PDF is kept as
  `rapor.docx.pdf`), so a file saved from the download opens as what it is.
- Bytes are kept once per SHA-256, outside the application document, in intake's database:
  a GridFS bucket (`intake_attachment_bytes`, 255 KB chunks) holds them, and a plain
  collection `intake_attachment_blobs` {_id: sha256, file_id, size, content_type,
  last_uploaded, kept} says which GridFS file holds which hash. GridFS is used only to put,
  read and delete a file by its id: that much nx-27017 0.8.1 serves (tried on the test
  server), while it ignores filtered updates of a bucket's `files` collection and cannot count
  its chunks. Each GridFS id is random, never the hash: a failed GridFS write deletes the
  chunks of its id, so two uploads racing with the same bytes must not share one; the first
  to register its hash wins and the other deletes its own copy.
- Each upload is a reference in `intake_attachments` {_id (a random attachment_id), sha256,
  content_type, size, name, uploaded_at, uploaded_by (the staff token's subject, or null),
  expires_at, claimed_by: [application_id]}. An unclaimed upload expires 24 hours after it
  was made (a TTL index on `expires_at`; reads also check the time, as MongoDB's TTL monitor
  runs only once a minute). Claiming removes `expires_at`, so a claimed file is kept for good.
- A claimed attachment may be claimed again by another application (claimed_by is a list,
  as the brief set it): its id is a random capability only its uploader and the staff who
  may read it know, and refusing it would make a retried registration under a new
  application_id fail.
- An expired reference leaves its blob behind; `sweep_once` (run hourly) deletes blobs that
  no reference names and that nobody uploaded for 25 hours. Every upload of the same bytes
  re-dates the blob (`last_uploaded`, Unix seconds: nx-27017 turns a datetime written by
  `$set` into text), and the delete is conditional on that date, so a sweep and an upload of
  the same bytes never cross. A claim marks the blob `kept`, which the sweep then skips
  without looking at it again.
- An upload is judged in this order: empty (422 `empty`), type (415 `unsupported_type`),
  size (413 `too_large`). The size limit (`attachment_max_bytes`, 5 MB) is checked on the
  bytes actually received; the request body as a whole may be `MULTIPART_SLACK` larger (the
  multipart framing), and past that the service's body middleware cuts the upload off
  without reading further, with the same 413. What is read waits in Starlette's spooled
  temporary file (in memory up to 1 MB, then on disk), never whole in memory.
- `claim` takes at most `attachments_per_application` distinct ids per call and checks them
  all before it changes anything; its refusals carry errors on the field `attachments`, for
  the registration's 422.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from prometheus_client import Counter
from pymongo.errors import DuplicateKeyError, OperationFailure

from services.common.errors import field_error
from services.common.events import AttachmentRef
from services.common.mongo import Database
from services.common.settings import Settings

log = logging.getLogger("acikkapi.intake.attachments")

ATTACHMENTS = "intake_attachments"
BLOBS = "intake_attachment_blobs"
BUCKET = "intake_attachment_bytes"
CHUNK_BYTES = 255 * 1024
# An unclaimed upload lives this long; its bytes are swept an hour after that.
UNCLAIMED_TTL = timedelta(hours=24)
SWEEP_AFTER = UNCLAIMED_TTL + timedelta(hours=1)
SWEEP_BATCH = 200
SWEEP_EVERY = 3600.0
# The multipart framing around the file (boundaries, part headers) a request may add.
MULTIPART_SLACK = 64 * 1024
NAME_MAX = 120
FIELD = "file"

UPLOADS = Counter(
    "acikkapi_attachment_uploads_total",
    "Attachment uploads, by outcome (stored, deduplicated: the bytes were already kept, "
    "unsupported_type, too_large, empty)",
    ["outcome"],
)


@dataclass(frozen=True)
class FileType:
    content_type: str
    extensions: tuple[str, ...]  # the first is the one a stored name is given
    label: str


PDF = FileType("application/pdf", ("pdf",), "PDF")
JPEG = FileType("image/jpeg", ("jpg", "jpeg"), "JPEG")
PNG = FileType("image/png", ("png",), "PNG")
_SIGNATURES: tuple[tuple[bytes, FileType], ...] = (
    (b"%PDF-", PDF),
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
)
ALLOWED = (PDF, JPEG, PNG)
# Bytes detect_type needs to see.
HEAD_BYTES = max(len(signature) for signature, _ in _SIGNATURES)


def detect_type(head: bytes) -> FileType | None:
    """The file's type from its first bytes; None for anything but PDF, JPEG or PNG."""
    for signature, file_type in _SIGNATURES:
        if head.startswith(signature):
            return file_type
    return None


_CONTROL = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SPACES = re.compile(r"\s+")


def safe_name(raw: str | None, file_type: FileType) -> str:
    """The name to keep and offer on download (see the module docstring); never empty."""
    text = unicodedata.normalize("NFC", raw or "")
    text = re.split(r"[/\\]", text)[-1]  # C:\Users\x\rapor.pdf and ../../rapor.pdf alike
    text = "".join(" " if unicodedata.category(c) in _CONTROL else c for c in text)
    text = _SPACES.sub(" ", text).strip(" ").rstrip(". ")
    stem, dot, extension = text.rpartition(".")
    if not (dot and extension.lower() in file_type.extensions):
        stem, extension = text, file_type.extensions[0]
    # No leading dot either: a name saved as ".x.pdf" would be hidden on the officer's disk.
    stem = stem[: NAME_MAX - len(extension) - 1].strip(" .") or "ek"
    return f"{stem}.{extension}"


class AttachmentRefused(Exception):
    """An upload or a claim that is refused; `errors` in the service's error shape, `status`
    the HTTP status that says it (a claim's are for the registration's 422)."""

    status = 422

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["code"])
        self.code: str = error["code"]
        self.errors = [error]


class UnsupportedType(AttachmentRefused):
    status = 415

    def __init__(self) -> None:
        labels = ", ".join(t.label for t in ALLOWED[:-1]) + f" veya {ALLOWED[-1].label}"
        message = (
            f"Dosya türü desteklenmiyor: yalnızca {labels} dosyası eklenebilir. Türe dosyanın "
            "adına göre değil içeriğine göre bakılır."
        )
        super().__init__(field_error(FIELD, "unsupported_type", message))


def too_large_error(max_bytes: int) -> dict[str, Any]:
    """The 413's error, the same whether the middleware or the upload itself says it."""
    return field_error(FIELD, "too_large", f"Dosya en fazla {megabytes(max_bytes)} MB olabilir.")


def megabytes(size: int) -> str:
    """5242880 → "5"; 1572864 → "1,5" (Turkish decimal comma, rounded down)."""
    tenths = math.floor(size / 1_048_576 * 10) / 10
    return f"{tenths:g}".replace(".", ",")


class TooLarge(AttachmentRefused):
    status = 413

    def __init__(self, max_bytes: int) -> None:
        super().__init__(too_large_error(max_bytes))


class EmptyFile(AttachmentRefused):
    def __init__(self) -> None:
        super().__init__(field_error(FIELD, "empty", "Dosya boş."))


class UnknownAttachments(AttachmentRefused):
    """Ids that name no unexpired upload. The message names none of them: the ids are the
    uploader's own, and the answer must not tell which ones exist."""

    def __init__(self, ids: Sequence[str]) -> None:
        message = (
            "Eklenen dosyalardan bazıları bulunamadı veya süresi doldu (yüklenen dosya 24 saat "
            "içinde başvuruya eklenmelidir); lütfen dosyaları yeniden yükleyin."
        )
        super().__init__(field_error("attachments", "unknown_attachments", message))
        self.ids = list(ids)


class TooManyAttachments(AttachmentRefused):
    def __init__(self, limit: int) -> None:
        message = f"Bir başvuruya en fazla {limit} dosya eklenebilir."
        super().__init__(field_error("attachments", "too_many_attachments", message))
        self.limit = limit


class Upload(Protocol):
    """What the store reads an upload through (FastAPI's UploadFile is one)."""

    async def read(self, size: int = -1) -> bytes: ...
    async def seek(self, offset: int) -> None: ...


@dataclass(frozen=True)
class Stored:
    ref: AttachmentRef
    deduplicated: bool  # the same bytes were already kept


@dataclass(frozen=True)
class Download:
    ref: AttachmentRef
    chunks: AsyncIterator[bytes]


class AttachmentStore:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._attachments = db[ATTACHMENTS]
        self._blobs = db[BLOBS]
        self._bucket = AsyncGridFSBucket(db, bucket_name=BUCKET, chunk_size_bytes=CHUNK_BYTES)
        self.max_bytes = settings.attachment_max_bytes
        self.per_application = settings.attachments_per_application

    async def ensure_indexes(self) -> None:
        await self._attachments.create_index("expires_at", expireAfterSeconds=0)
        # No index on `claimed_by`: on nx-27017 0.8.1 an index on an array field makes
        # `{"claimed_by": id}` match nothing. `open` finds by _id; `refs_of` scans, which on
        # MongoDB itself wants that (multikey) index.
        await self._attachments.create_index("sha256")
        await self._blobs.create_index("last_uploaded")

    async def add(
        self,
        upload: Upload,
        name: str | None,
        *,
        uploaded_by: str | None,
        now: datetime | None = None,
    ) -> Stored:
        """Check an upload (type, size), keep its bytes once and a reference to them.

        Reads the upload twice: once to detect, count and hash, then (only for bytes not yet
        kept) to copy into GridFS. Raises UnsupportedType, TooLarge or EmptyFile.
        """
        now = now or datetime.now(UTC)
        head = await upload.read(CHUNK_BYTES)
        if not head:
            raise EmptyFile
        file_type = detect_type(head[:HEAD_BYTES])
        if file_type is None:
            raise UnsupportedType
        digest = hashlib.sha256()
        size = 0
        chunk = head
        while chunk:
            size += len(chunk)
            if size > self.max_bytes:
                raise TooLarge(self.max_bytes)
            digest.update(chunk)
            chunk = await upload.read(CHUNK_BYTES)
        sha256 = digest.hexdigest()
        deduplicated = await self._touch_blob(sha256, now)
        if not deduplicated:
            await upload.seek(0)
            deduplicated = not await self._write_blob(upload, sha256, file_type, size, now)
        ref = AttachmentRef(
            attachment_id=str(uuid.uuid4()),
            sha256=sha256,
            content_type=file_type.content_type,
            size=size,
            name=safe_name(name, file_type),
        )
        await self._attachments.insert_one(
            {
                "_id": ref.attachment_id,
                **ref.model_dump(exclude={"attachment_id"}),
                "uploaded_at": now,
                "uploaded_by": uploaded_by,
                "expires_at": now + UNCLAIMED_TTL,
                "claimed_by": [],
            }
        )
        return Stored(ref, deduplicated)

    async def _touch_blob(self, sha256: str, now: datetime) -> bool:
        """Whether these bytes are kept already; if so, re-dated so no sweep takes them now."""
        touched = await self._blobs.update_one(
            {"_id": sha256}, {"$set": {"last_uploaded": int(now.timestamp())}}
        )
        return touched.matched_count > 0

    async def _write_blob(
        self, upload: Upload, sha256: str, file_type: FileType, size: int, now: datetime
    ) -> bool:
        """Copy the bytes into GridFS and register them; False if another upload of the same
        bytes registered first (then this copy is deleted and theirs re-dated)."""
        file_id = str(uuid.uuid4())
        stream = self._bucket.open_upload_stream_with_id(file_id, sha256)
        async with stream:  # on an error GridFS deletes this id's chunks
            while chunk := await upload.read(CHUNK_BYTES):
                await stream.write(chunk)
        try:
            await self._blobs.insert_one(
                {
                    "_id": sha256,
                    "file_id": file_id,
                    "size": size,
                    "content_type": file_type.content_type,
                    "last_uploaded": int(now.timestamp()),
                    "kept": False,
                }
            )
        except DuplicateKeyError:
            await self._delete_file(file_id)
            await self._touch_blob(sha256, now)
            return False
        return True

    async def _delete_file(self, file_id: str) -> None:
        try:
            await self._bucket.delete(file_id)
        except (NoFile, OperationFailure):  # already gone (nx-27017 says it the second way)
            pass

    async def claim(
        self, attachment_ids: Sequence[str], application_id: str, *, now: datetime | None = None
    ) -> list[AttachmentRef]:
        """Attach uploads to an application, for good (their expiry removed).

        Repeated ids count once; a repeat for the same application changes nothing. Raises
        TooManyAttachments, or UnknownAttachments naming every id that is not an unexpired
        upload, before anything is claimed.
        """
        now = now or datetime.now(UTC)
        ids = list(dict.fromkeys(attachment_ids))
        if len(ids) > self.per_application:
            raise TooManyAttachments(self.per_application)
        if not ids:
            return []
        alive = {"$or": [{"expires_at": {"$exists": False}}, {"expires_at": {"$gt": now}}]}
        # `$and`, not `{"_id": {"$in": ids}, "$or": ...}`: nx-27017 0.8.1 drops an `_id: $in`
        # that stands beside `$or`, and would have claimed every unexpired upload.
        these = {"$and": [{"_id": {"$in": ids}}, alive]}
        found = await self._attachments.find(these).to_list()
        unknown = set(ids) - {doc["_id"] for doc in found}
        if unknown:
            raise UnknownAttachments([i for i in ids if i in unknown])
        await self._attachments.update_many(
            these, {"$addToSet": {"claimed_by": application_id}, "$unset": {"expires_at": ""}}
        )
        await self._blobs.update_many(
            {"_id": {"$in": sorted({doc["sha256"] for doc in found})}}, {"$set": {"kept": True}}
        )
        by_id = {doc["_id"]: _ref(doc) for doc in found}
        return [by_id[i] for i in ids]

    async def release(self, attachment_ids: Sequence[str], application_id: str) -> None:
        """Undo a claim for an application that was not registered after all (its key had
        been used: the first registration holds the same files)."""
        if attachment_ids:
            await self._attachments.update_many(
                {"_id": {"$in": list(attachment_ids)}}, {"$pull": {"claimed_by": application_id}}
            )

    async def refs_of(self, application_id: str) -> list[AttachmentRef]:
        """The attachments an application claimed, oldest upload first."""
        cursor = self._attachments.find({"claimed_by": application_id}).sort("uploaded_at", 1)
        return [_ref(doc) for doc in await cursor.to_list()]

    async def open(self, application_id: str, attachment_id: str) -> Download | None:
        """An attachment's bytes, only if that application claimed it (else None)."""
        doc = await self._attachments.find_one({"_id": attachment_id, "claimed_by": application_id})
        if doc is None:
            return None
        ref = _ref(doc)
        blob = await self._blobs.find_one({"_id": ref.sha256})
        if blob is None:  # a claimed file's bytes are never swept: this is a broken store
            raise LookupError(f"attachment {attachment_id} has no bytes")
        grid_out = await self._bucket.open_download_stream(blob["file_id"])

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await grid_out.readchunk():
                    yield chunk
            finally:
                await grid_out.close()

        return Download(ref, chunks())

    async def sweep_once(self, *, now: datetime | None = None) -> int:
        """Delete blobs no reference names that nobody uploaded for SWEEP_AFTER; how many."""
        now = now or datetime.now(UTC)
        stale = {"kept": False, "last_uploaded": {"$lt": int((now - SWEEP_AFTER).timestamp())}}
        candidates = await self._blobs.find(stale).limit(SWEEP_BATCH).to_list()
        deleted = 0
        for blob in candidates:
            if await self._attachments.find_one({"sha256": blob["_id"]}, {"_id": 1}):
                continue
            # Conditional: an upload of the same bytes since the find re-dated the blob.
            gone = await self._blobs.delete_one({"_id": blob["_id"], **stale})
            if gone.deleted_count:
                await self._delete_file(blob["file_id"])
                deleted += 1
        return deleted

    async def run_sweeper(self) -> None:
        while True:
            try:
                deleted = await self.sweep_once()
                if deleted:
                    log.info("unclaimed attachment blobs deleted", extra={"count": deleted})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("attachment sweep failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(SWEEP_EVERY)


def _ref(doc: dict[str, Any]) -> AttachmentRef:
    return AttachmentRef.model_validate({**doc, "attachment_id": doc["_id"]})
