"""KVKK article 11: a citizen learns everything Açık Kapı holds about them, on request.

`POST /api/v1/kvkk/verilerim` answers with the person's applications (number, type, subject,
text, status, dates, answer), the personal data held (names, masked TC Kimlik No, phones,
e-mail addresses), why it is processed, how long it is kept, and to whom it went (the
institution each application was routed to). Intake holds every application from its
receipt, and follows each one's status and answer on the bus (progress.py), so the export
needs nobody else's data.

Who asks is proven, never claimed: an e-Devlet identity assertion (the gateway's RS256 JWT
that the edevlet channel takes, spent once like there), or a citizen token whose subject is
the TC Kimlik No or its blind index. Applications are found by the blind index only. Every
export is recorded in the audit log ("export_personal") before it is returned.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from services.common.audit import EXPORT_PERSONAL, audit_of
from services.common.auth import Principal, Role, decode_token_async
from services.common.events import ApplicationType, Channel
from services.common.labels import CHANNEL_LABELS, TYPE_LABELS
from services.common.settings import Settings
from services.intake.api import ErrorsOut, get_intake
from services.intake.channels import LEEWAY_SECONDS, edevlet_claims
from services.intake.domain import RuleViolation, check_tckn
from services.intake.handlers import Intake
from services.intake.messaging import ServedProvinces
from services.intake.progress import progress_of
from services.intake.store import ApplicationStore, AssertionStore

router = APIRouter(prefix="/api/v1/kvkk", tags=["kişisel veriler (KVKK)"])

_bearer = HTTPBearer(auto_error=False)
_BLIND_INDEX = re.compile(r"^[0-9a-f]{64}$")

PURPOSES = [
    "Başvurunuzu almak, numaralandırmak ve size alındı bildirimi göndermek.",
    "Başvurunuzu yetkili kuruma yönlendirmek ve kurumun cevabını size iletmek.",
    "Başvurunuzun durumunu izlemenizi sağlamak ve cevap sürelerini denetlemek.",
    "Kötüye kullanımı önlemek (günlük başvuru sınırları) ve kimliğinizi doğrulamak.",
    "Kimliğinizden arındırılmış istatistikler üretmek.",
]
LEGAL_BASIS = (
    "3071 sayılı Dilekçe Hakkının Kullanılmasına Dair Kanun ve 4982 sayılı Bilgi Edinme Hakkı "
    "Kanunu kapsamında kamu görevinin yürütülmesi (KVKK md. 5/2-ç ve 5/2-e)."
)
SHIELD_NOTE = (
    "Şikâyet ve ihbar başvurularında kimliğiniz, izin vermediyseniz ilgili kuruma gösterilmez; "
    "yalnızca bir Açık Kapı denetçisi gerekçe yazarak açabilir ve bu işlem kayıt altına alınır."
)
SYSTEM_RECIPIENTS = [
    "Açık Kapı'nın başvuru, yönlendirme, izleme, bildirim ve raporlama birimleri (valilik).",
    "SMS ve e-posta bildirimlerini ileten hizmet sağlayıcıları (yalnızca telefon numaranız, "
    "e-posta adresiniz ve bildirim metni).",
]


class ExportRequest(BaseModel):
    edevlet_assertion: str | None = Field(
        default=None,
        max_length=8192,
        description=(
            "e-Devlet Kapısı'nın imzalı kimlik onayı (bir kez kullanılır). Yoksa vatandaş "
            "oturum anahtarı (Bearer) gerekir."
        ),
    )


def _error(status: int, field: str, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"errors": [{"field": field, "code": code, "message": message}]},
        status_code=status,
        headers=headers,
    )


class _Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


async def _citizen(
    request: Request,
    payload: ExportRequest,
    credentials: HTTPAuthorizationCredentials | None,
    settings: Settings,
    store: ApplicationStore,
) -> tuple[str, Principal | None]:
    """The blind index of the asking citizen's TC Kimlik No, and their principal (a token's)."""
    if payload.edevlet_assertion:
        try:
            claims = edevlet_claims(settings, payload.edevlet_assertion)
            tckn = check_tckn(str(claims["sub"]))
        except (jwt.PyJWTError, RuleViolation):
            raise _Refused(
                _error(
                    401,
                    "edevlet_assertion",
                    "invalid_assertion",
                    "e-Devlet kimlik doğrulaması geçersiz veya süresi dolmuş; lütfen e-Devlet "
                    "Kapısı üzerinden yeniden giriş yapın.",
                )
            ) from None
        assertions: AssertionStore = request.app.state.assertions
        keep_until = datetime.fromtimestamp(int(claims["exp"]), UTC) + timedelta(
            seconds=LEEWAY_SECONDS + 120
        )
        if not await assertions.use(str(claims["jti"]), keep_until, None):
            raise _Refused(
                _error(
                    401,
                    "edevlet_assertion",
                    "replayed",
                    "Bu e-Devlet girişi zaten kullanılmış; lütfen e-Devlet Kapısı üzerinden "
                    "yeniden giriş yapın.",
                )
            )
        return store.cipher.blind_index(tckn), None
    if credentials is None:
        raise _Refused(
            _error(
                401,
                "Authorization",
                "unauthorized",
                "Verilerinizi görmek için e-Devlet ile giriş yapmanız gerekir "
                "(edevlet_assertion) veya vatandaş oturum anahtarı (Bearer).",
            )
        )
    try:
        principal = await decode_token_async(settings, credentials.credentials)
    except jwt.PyJWTError:
        raise _Refused(
            _error(
                401,
                "Authorization",
                "unauthorized",
                "Oturum anahtarı geçersiz veya süresi dolmuş.",
            )
        ) from None
    if principal.role is not Role.citizen:
        raise _Refused(
            _error(
                403,
                "Authorization",
                "forbidden",
                "Kişisel verilerin dökümünü yalnız verilerin sahibi olan vatandaş isteyebilir.",
            )
        )
    subject = principal.subject.strip()
    if _BLIND_INDEX.fullmatch(subject):
        return subject, principal
    try:
        return store.cipher.blind_index(check_tckn(subject)), principal
    except RuleViolation:
        raise _Refused(
            _error(
                401,
                "Authorization",
                "unauthorized",
                "Vatandaş oturum anahtarında geçerli bir TC Kimlik No yok.",
            )
        ) from None


def _iso(value: Any) -> str | None:
    if not isinstance(value, datetime):
        return None
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _institution_name(served: ServedProvinces, province_code: int, code: str) -> str | None:
    taxonomy = served.taxonomy(province_code)
    if taxonomy is None:
        return None
    return next((i.name for i in taxonomy.institutions if i.code == code), None)


def build_export(
    docs: list[dict[str, Any]],
    store: ApplicationStore,
    served: ServedProvinces,
    retention_days: int,
    now: datetime,
) -> dict[str, Any]:
    """The export of one person's stored applications (pure but for decryption)."""
    applications: list[dict[str, Any]] = []
    names: list[dict[str, str]] = []
    phones: list[str] = []
    emails: list[str] = []
    initials: list[str] = []
    callers: list[str] = []
    tckn_masked: str | None = None
    recipients: dict[str, dict[str, Any]] = {}

    def keep(values: list[str], value: str | None) -> None:
        if value and value not in values:
            values.append(value)

    for doc in docs:
        stored = doc.get("applicant") or {}
        first, last = store.open_field(stored, "first_name"), store.open_field(stored, "last_name")
        if first and last and {"first_name": first, "last_name": last} not in names:
            names.append({"first_name": first, "last_name": last})
        keep(phones, store.open_field(stored, "phone"))
        keep(emails, store.open_field(stored, "email"))
        keep(initials, store.open_field(stored, "initials"))
        if isinstance(doc.get("caller_enc"), str):
            keep(callers, store.cipher.decrypt(doc["caller_enc"]))
        tckn_masked = stored.get("tckn_masked") or tckn_masked
        progress = progress_of(doc)
        province = int(doc["province_code"])
        institution = progress.institution_code if progress else None
        institution_name = _institution_name(served, province, institution) if institution else None
        received_at: datetime = doc["received_at"]
        application_type = ApplicationType(doc["application_type"])
        applications.append(
            {
                "application_number": doc["application_number"],
                "application_type": application_type.value,
                "application_type_label": TYPE_LABELS[application_type],
                "channel": doc["channel"],
                "channel_label": CHANNEL_LABELS[Channel(doc["channel"])],
                "province_code": province,
                "district": doc.get("district"),
                "category_code": (progress.category_code if progress else None)
                or doc.get("category_code"),
                "subject": doc.get("subject"),
                "text": doc.get("text"),
                "location": doc.get("location"),
                "attachments": [a.get("name") for a in doc.get("attachments") or ()],
                "status": progress.status.value if progress else "received",
                "status_at": _iso(progress.at) if progress else None,
                "received_at": _iso(received_at),
                "deadline_at": _iso(progress.deadline_at) if progress else None,
                "outcome": progress.outcome.value if progress and progress.outcome else None,
                "answer": progress.answer_text if progress else None,
                "institution_code": institution,
                "institution_name": institution_name,
                "identity_consent": bool(doc.get("identity_consent")),
                "identity_shielded_from_institution": (
                    application_type in (ApplicationType.sikayet, ApplicationType.ihbar)
                    and not doc.get("identity_consent")
                ),
                "anonymise_after": _iso(received_at + timedelta(days=retention_days))
                if retention_days
                else None,
            }
        )
        if institution:
            entry = recipients.setdefault(
                institution,
                {
                    "institution_code": institution,
                    "institution_name": institution_name,
                    "applications": [],
                },
            )
            entry["applications"].append(doc["application_number"])
    return {
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "data_controller": "T.C. İçişleri Bakanlığı adına ilgili valilik (Açık Kapı)",
        "personal_data": {
            "names": names,
            "tckn_masked": tckn_masked,
            "phones": phones,
            "emails": emails,
            "mother_maiden_initials": initials,
            "caller_numbers": callers,
        },
        "applications": applications,
        "processing": {
            "purposes": PURPOSES,
            "legal_basis": LEGAL_BASIS,
            "retention": (
                f"Kişisel verileriniz başvurunun alınmasından {retention_days} gün sonra "
                "anonim hâle getirilir; başvurunun kimliksiz bilgileri (tür, konu başlığı, "
                "ilçe, tarihler, sonuç) istatistik için saklanır."
                if retention_days
                else "Saklama süresi tanımlı değil."
            ),
            "retention_days": retention_days,
            "identity_shield": SHIELD_NOTE,
        },
        "recipients": {
            "institutions": list(recipients.values()),
            "others": SYSTEM_RECIPIENTS,
        },
        "rights": (
            "KVKK md. 11 uyarınca verilerinizin düzeltilmesini, silinmesini veya işlenmesine "
            "itiraz etmeyi valiliğin Açık Kapı bürosundan isteyebilirsiniz."
        ),
    }


@router.post(
    "/verilerim",
    summary="Hakkımda tutulan kişisel veriler (KVKK md. 11)",
    description=(
        "Vatandaşın kendisi hakkında tutulan her şeyi döndürür: başvuruları (numara, tür, konu, "
        "metin, durum, tarihler, cevap), tutulan kişisel verileri (ad, maskeli TC Kimlik No, "
        "telefon, e-posta), işleme amaçlarını, saklama süresini ve verilerin gittiği kurumları. "
        "Kimlik e-Devlet kimlik onayıyla (`edevlet_assertion`, bir kez kullanılır) veya "
        "vatandaş oturum anahtarıyla kanıtlanır. Her döküm denetim kaydına yazılır."
    ),
    responses={
        401: {"model": ErrorsOut, "description": "Kimlik kanıtlanmadı"},
        403: {"model": ErrorsOut, "description": "Vatandaş olmayan oturum anahtarı"},
        503: {"model": ErrorsOut, "description": "Denetim kaydı veya veritabanı yanıt vermiyor"},
    },
)
async def export_personal_data(
    request: Request,
    intake: Annotated[Intake, Depends(get_intake)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    payload: Annotated[ExportRequest | None, Body()] = None,
) -> JSONResponse:
    del intake  # only its readiness: the service must have started
    settings: Settings = request.app.state.runtime.settings
    store: ApplicationStore = request.app.state.store
    try:
        tckn_index, principal = await _citizen(
            request, payload or ExportRequest(), credentials, settings, store
        )
    except _Refused as refused:
        return refused.response
    docs = await store.of_citizen(tckn_index)
    export = build_export(
        docs,
        store,
        request.app.state.served,
        settings.personal_data_retention_days,
        datetime.now(UTC),
    )
    # Recorded before the answer: an unaudited export is never served (503 instead).
    # The citizen by the blind index of their number (auth.Role.citizen), never the number.
    actor = principal or Principal(subject=tckn_index, role=Role.citizen)
    await audit_of(request).record(
        actor=actor,
        action=EXPORT_PERSONAL,
        fields=["first_name", "last_name", "tckn_masked", "phone", "email", "text"],
        request=request,
        detail={
            "applications": len(docs),
            "via": "edevlet" if principal is None else "token",
        },
    )
    return JSONResponse(export, headers={"Cache-Control": "no-store"})
