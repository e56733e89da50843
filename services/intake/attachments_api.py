"""Intake's attachment routes: upload a file before submitting, and let those who handle an
application read its files (rules and storage: services/intake/attachments.py).

Who may read an application's files: its province's officers and supervisors (one whose token
names no province sees every province), the institution that holds the application now (as
tracking last said on the bus: `ProgressStore.institution_of`), and admins, who pass every
role check in this project. Anyone else with a token gets 403, no token 401; a file that
application did not claim is 404 whether or not it exists elsewhere.

Anyone may upload (the web form uploads before it submits). A staff token, such as the
counter officer's scanning a written petition, is recorded as `uploaded_by`; a broken one is
401 rather than an anonymous upload.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Protocol
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from services.common.auth import Principal, Role, forbidden, optional_principal, require_roles
from services.common.events import AttachmentRef
from services.common.middleware import BodyAllowance
from services.common.settings import Settings
from services.intake.api import ErrorsOut, unavailable
from services.intake.attachments import (
    ALLOWED,
    MULTIPART_SLACK,
    UPLOADS,
    AttachmentRefused,
    AttachmentStore,
    too_large_error,
)
from services.intake.handlers import Intake

router = APIRouter(prefix="/api/v1", tags=["ekler"])
UPLOAD_PATH = "/api/v1/attachments"


class Handlers(Protocol):
    """Who holds an application now (services/intake/progress.py ProgressStore)."""

    async def institution_of(self, application_id: str) -> str | None: ...


def upload_allowance(settings: Settings) -> BodyAllowance:
    """The upload route's body limit: the largest file plus its multipart framing. A body past
    it is cut by the middleware with the same 413 the route gives a file just over the limit."""
    return BodyAllowance(
        max_bytes=settings.attachment_max_bytes + MULTIPART_SLACK,
        error=too_large_error(settings.attachment_max_bytes),
        on_refuse=UPLOADS.labels("too_large").inc,
    )


async def get_attachments(request: Request) -> AttachmentStore:
    if not request.app.state.runtime.started.is_set():
        raise unavailable("Servis henüz hazır değil; lütfen biraz sonra tekrar deneyin.")
    return request.app.state.attachments  # type: ignore[no-any-return]


_ALLOWED_TYPES = ", ".join(t.content_type for t in ALLOWED)


@router.post(
    "/attachments",
    status_code=201,
    summary="Başvuruya eklenecek dosyayı yükle",
    description=(
        "Bir dosyayı (`file` alanı, multipart/form-data) başvurudan önce yükler ve "
        "`attachment_id` döndürür; başvuru bu kimliklerle gönderilir. Kabul edilen türler: "
        f"{_ALLOWED_TYPES}; tür dosyanın adından değil içeriğinden anlaşılır. Sınırlar "
        "`AK_ATTACHMENT_MAX_BYTES` (varsayılan 5 MB) ve başvuru başına "
        "`AK_ATTACHMENTS_PER_APPLICATION` (varsayılan 5). Başvuruya eklenmeyen dosya 24 saat "
        "sonra silinir. Oturum anahtarı gerekmez; görevli anahtarıyla yükleyen kaydedilir."
    ),
    response_model=AttachmentRef,
    responses={
        401: {"model": ErrorsOut, "description": "Oturum anahtarı geçersiz"},
        413: {"model": ErrorsOut, "description": "Dosya sınırı aşıyor (`too_large`)"},
        415: {"model": ErrorsOut, "description": "PDF, JPEG veya PNG değil (`unsupported_type`)"},
        422: {"model": ErrorsOut, "description": "Dosya yok veya boş"},
    },
)
async def upload_attachment(
    file: Annotated[UploadFile, File(description="PDF, JPEG veya PNG dosyası")],
    store: Annotated[AttachmentStore, Depends(get_attachments)],
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> JSONResponse:
    try:
        stored = await store.add(
            file, file.filename, uploaded_by=principal.subject if principal else None
        )
    except AttachmentRefused as exc:
        UPLOADS.labels(exc.code).inc()
        return JSONResponse({"errors": exc.errors}, status_code=exc.status)
    UPLOADS.labels("deduplicated" if stored.deduplicated else "stored").inc()
    return JSONResponse(stored.ref.model_dump(), status_code=201)


_readers = require_roles(Role.officer, Role.supervisor, Role.institution)


async def may_read(
    application_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(_readers)],
) -> None:
    """Lets through those who may read the application's files (module docstring)."""
    if principal.role is Role.institution:
        handlers: Handlers = request.app.state.progress
        holder = await handlers.institution_of(application_id)
        if holder is None or holder != principal.institution:
            raise forbidden("Bu başvurunun eklerini görme yetkiniz yok.")
        return
    intake: Intake = request.app.state.intake
    application = await intake.application(application_id)
    if application is None:
        raise HTTPException(404, "Başvuru bulunamadı.")
    if principal.province is not None and principal.province != application.province_code:
        raise forbidden("Bu ilin başvurularını görme yetkiniz yok.")


class AttachmentList(BaseModel):
    attachments: list[AttachmentRef]


@router.get(
    "/applications/{application_id}/attachments",
    summary="Başvurunun ekleri (il görevlisi, denetçi, başvuruyu yürüten kurum)",
    response_model=AttachmentList,
    responses={401: {"model": ErrorsOut}, 403: {"model": ErrorsOut}, 404: {"model": ErrorsOut}},
    dependencies=[Depends(may_read)],
)
async def list_attachments(
    application_id: str, store: Annotated[AttachmentStore, Depends(get_attachments)]
) -> dict[str, Any]:
    return {"attachments": [ref.model_dump() for ref in await store.refs_of(application_id)]}


@router.get(
    "/applications/{application_id}/attachments/{attachment_id}",
    summary="Başvurunun bir ekini indir (il görevlisi, denetçi, başvuruyu yürüten kurum)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {t.content_type: {} for t in ALLOWED}, "description": "Dosya"},
        401: {"model": ErrorsOut},
        403: {"model": ErrorsOut},
        404: {"model": ErrorsOut},
    },
    dependencies=[Depends(may_read)],
)
async def download_attachment(
    application_id: str,
    attachment_id: str,
    store: Annotated[AttachmentStore, Depends(get_attachments)],
) -> StreamingResponse:
    download = await store.open(application_id, attachment_id)
    if download is None:
        raise HTTPException(404, "Bu başvuruda böyle bir ek yok.")
    ref = download.ref
    return StreamingResponse(
        download.chunks,
        media_type=ref.content_type,
        headers={
            "Content-Length": str(ref.size),
            "Content-Disposition": content_disposition(ref.name),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


def content_disposition(name: str) -> str:
    """`attachment` with the name in UTF-8 (RFC 6266) and an ASCII stand-in for old clients."""
    ascii_name = "".join(
        c
        for c in unicodedata.normalize("NFKD", name.replace("ı", "i"))
        if not unicodedata.combining(c)
    )
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in ascii_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
