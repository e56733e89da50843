"""Intake's HTTP routes: submit an application, and let officers look one up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC
from typing import Annotated, Any

import jwt
import pydantic_core
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from pymongo.errors import ConnectionFailure
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.audit import READ_PERSONAL, audit_of
from services.common.auth import (
    Principal,
    Role,
    decode_token,
    forbidden,
    require_roles,
)
from services.common.backpressure import Admission, Overloaded
from services.common.events import APPLICATION_FACTS
from services.common.pii import mask_phone
from services.common.settings import Settings
from services.intake.channels import ChannelRefused, without_proofs
from services.intake.domain import RuleViolation, check_phone
from services.intake.handlers import (
    APPLICATIONS,
    IdempotencyConflict,
    Intake,
    InvalidApplication,
    Unavailable,
    channel_label,
)
from services.intake.limits import AddressRate, LimitExceeded, client_address
from services.intake.verification import (
    RESEND_SECONDS,
    PhoneVerifications,
    VerificationError,
)

router = APIRouter(prefix="/api/v1", tags=["başvurular"])

# A submission not stored by then is answered 503 (the write may still land: see below).
REGISTER_TIMEOUT = 10.0


async def get_intake(request: Request) -> Intake:
    # async on purpose: FastAPI runs a plain `def` dependency on a worker thread per request.
    if not request.app.state.runtime.started.is_set():
        raise unavailable("Servis henüz hazır değil; lütfen biraz sonra tekrar deneyin.")
    return request.app.state.intake  # type: ignore[no-any-return]


def unavailable(message: str, retry_after: int = 5) -> HTTPException:
    return HTTPException(
        503,
        detail=[{"field": None, "code": "unavailable", "message": message}],
        headers={"Retry-After": str(retry_after)},
    )


_bearer = HTTPBearer(auto_error=False)


def refusal(exc: ChannelRefused | LimitExceeded) -> JSONResponse:
    """A channel's proof refused (401/403), or a limit reached (429 with Retry-After)."""
    if isinstance(exc, LimitExceeded):
        error = {"field": None, "code": exc.code, "message": exc.message}
        headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"errors": [error]}, status_code=429, headers=headers)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return JSONResponse({"errors": exc.errors}, status_code=exc.status, headers=headers)


class ApplicationAccepted(BaseModel):
    application_id: str
    application_number: str
    status: str = "received"
    received_at: str


class FieldErrorOut(BaseModel):
    field: str | None
    code: str
    message: str


class ErrorsOut(BaseModel):
    errors: list[FieldErrorOut]


async def json_body(request: Request) -> Any:
    """The body as JSON whatever the Content-Type says (clients forget it); 400 if it is not.

    It is validated by the intake rules rather than by FastAPI, so that shape and rule errors
    come back together, one per field; its schema is documented through `_SUBMIT_OPENAPI`.
    """
    try:
        # pydantic's parser, as on the Kafka path: it also refuses bad UTF-8 and lone
        # surrogates ("\ud800"), which could be neither stored nor published.
        return pydantic_core.from_json(await request.body())
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "input": {}}]
        ) from exc


IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX = 200


def idempotency_key_of(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        message = f"Idempotency-Key 1 ile {IDEMPOTENCY_KEY_MAX} karakter arasında olmalıdır."
        raise HTTPException(
            422,
            detail=[{"field": IDEMPOTENCY_HEADER, "code": "invalid_key", "message": message}],
        )
    return key


_SUBMIT_OPENAPI = {
    "parameters": [
        {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": False,
            "description": "Tekrarlanan istek ilk yanıtı alır; aynı anahtar başka gövdeyle 409.",
            "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ApplicationForm"}}
        },
    },
}


class RequestRoute(APIRoute):
    """A route whose endpoint reads the Request and builds the Response itself.

    FastAPI documents it like any other (parameters and body through `openapi_extra`) but
    resolves nothing per request: on the submission path that saves ~15% of intake's CPU.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


async def submit_application(request: Request) -> JSONResponse:
    """Served by RequestRoute: the hot path reads the request itself (see below for its docs)."""
    intake = await get_intake(request)
    admission: Admission = request.app.state.admission
    idempotency_key = idempotency_key_of(request)
    body = await json_body(request)
    channel = channel_label(body)
    if not intake.judging():
        APPLICATIONS.labels("http", channel, "refused").inc()
        raise unavailable(
            "Başvurular şu anda kaydedilemiyor: yönlendirme servisinin il ve konu tablosu henüz "
            "okunmadı. Başvurunuz kaydedilmedi; lütfen birkaç saniye sonra tekrar deneyin."
        )
    credentials = await _bearer(request)
    try:
        vouched = intake.gate.vouch(body, bearer=credentials.credentials if credentials else "")
        form = intake.validate(vouched.body, identity_proven=vouched.identity_proven)
        async with admission.admit(), asyncio.timeout(REGISTER_TIMEOUT):
            await intake.admit(vouched, form, idempotency_key)
            registration = await intake.register(
                form,
                body=without_proofs(body),
                idempotency_key=idempotency_key,
                recorded_by=vouched.recorded_by,
            )
    except (ChannelRefused, LimitExceeded) as exc:
        # A retry after the token or assertion expired, or counted again past today's limit:
        # the first answer, if it registered.
        replayed = await intake.replay(body, idempotency_key=idempotency_key)
        if replayed is None:
            APPLICATIONS.labels("http", channel, "rejected").inc()
            return refusal(exc)
        registration = replayed
    except Unavailable as exc:  # the population registry could not be asked
        APPLICATIONS.labels("http", channel, "refused").inc()
        raise unavailable(exc.message, exc.retry_after) from None
    except InvalidApplication as exc:
        APPLICATIONS.labels("http", channel, "rejected").inc()
        return JSONResponse({"errors": exc.errors}, status_code=422)
    except Overloaded as exc:  # refused before anything was written
        APPLICATIONS.labels("http", channel, "refused").inc()
        raise unavailable(exc.message, exc.retry_after) from None
    except ConnectionFailure as exc:  # MongoDB unreachable: nothing was registered
        admission.note_down("mongodb")
        APPLICATIONS.labels("http", channel, "refused").inc()
        raise unavailable(
            "Başvuru şu anda kaydedilemiyor: veritabanına ulaşılamıyor. Başvurunuz kaydedilmedi; "
            "lütfen biraz sonra tekrar deneyin."
        ) from exc
    except TimeoutError as exc:  # the write may still land: only the same key is safe to retry
        admission.note_down("mongodb")
        APPLICATIONS.labels("http", channel, "refused").inc()
        raise unavailable(
            "Başvurunuz zamanında kaydedilemedi; kaydedilmiş olabilir. Lütfen aynı "
            "Idempotency-Key ile tekrar deneyin: aynı başvuru iki kez kaydedilmez."
        ) from exc
    except IdempotencyConflict:
        APPLICATIONS.labels("http", channel, "conflict").inc()
        message = "Bu Idempotency-Key daha önce başka bir başvuru için kullanılmış."
        return JSONResponse(
            {"errors": [{"field": "Idempotency-Key", "code": "conflict", "message": message}]},
            status_code=409,
        )
    if not registration.announced:
        admission.note_down("kafka")  # it is stored; the relay publishes it when Kafka is back
    APPLICATIONS.labels("http", channel, "replayed" if registration.replayed else "accepted").inc()
    headers = {"Idempotent-Replayed": "true"} if registration.replayed else None
    return JSONResponse(registration.answer(), status_code=201, headers=headers)


router.add_api_route(
    "/applications",
    submit_application,
    methods=["POST"],
    route_class_override=RequestRoute,
    status_code=201,
    summary="Başvuru al",
    description=(
        "Bir başvuruyu kaydeder, numaralandırır ve duyurur. `Idempotency-Key` başlığı ile "
        "tekrarlanan istek ilk yanıtı döndürür ve yeni kayıt oluşturmaz. `channel=counter` "
        "görevli oturum anahtarı (Bearer) gerektirir. `channel=edevlet` ise e-Devlet Kapısı'nın "
        "imzalı kimlik onayını `edevlet_assertion` alanında ister: TC Kimlik No, ad ve soyad "
        "ondan alınır, anne kızlık soyadı harfleri sorulmaz; her onay tek başvuru içindir. "
        "Konu ve kurum tablosu yüklü olmayan bir ilin başvurusu `province_not_served` ile "
        "reddedilir."
    ),
    response_model=ApplicationAccepted,
    responses={
        400: {"model": ErrorsOut, "description": "Gövde geçerli bir JSON değil"},
        401: {"model": ErrorsOut, "description": "Gişe başvurusu için oturum anahtarı gerekir"},
        403: {"model": ErrorsOut, "description": "Gişe başvurusunu yalnızca görevli kaydeder"},
        409: {"model": ErrorsOut, "description": "Aynı anahtar başka bir gövdeyle kullanılmış"},
        413: {"model": ErrorsOut, "description": "Gövde 1 MB sınırını aşıyor"},
        422: {"model": ErrorsOut, "description": "Hatalı alanlar, her alan için bir kayıt"},
        503: {
            "model": ErrorsOut,
            "description": (
                "Şu anda kaydedilemiyor (veritabanı veya Kafka yanıt vermiyor, ya da sistem çok "
                "yoğun); `Retry-After` saniye sonra aynı Idempotency-Key ile yeniden deneyin"
            ),
        },
    },
    openapi_extra=_SUBMIT_OPENAPI,
)


@router.get(
    "/applications/{application_id}",
    summary="Başvuruyu görüntüle (görevli, denetçi)",
    responses={404: {"model": ErrorsOut}, 403: {"model": ErrorsOut}},
)
async def get_application(
    request: Request,
    application_id: str,
    intake: Annotated[Intake, Depends(get_intake)],
    principal: Annotated[Principal, Depends(require_roles(Role.officer, Role.supervisor))],
) -> dict[str, Any]:
    app = await intake.application(application_id)
    if app is None:
        raise HTTPException(404, "Başvuru bulunamadı.")
    if principal.province is not None and principal.province != app.province_code:
        raise forbidden("Bu ilin başvurularını görme yetkiniz yok.")
    applicant = app.applicant
    # Before the answer: personal data is never shown unaudited (503 if the log is down).
    await audit_of(request).record(
        actor=principal,
        action=READ_PERSONAL,
        application_id=app.application_id,
        application_number=app.application_number,
        fields=["first_name", "last_name", "tckn_masked", "phone_masked", "email"],
        request=request,
    )
    return {
        **app.model_dump(
            mode="json",
            include={*APPLICATION_FACTS, "application_id", "recorded_by", "submission_id"},
        ),
        "received_at": app.received_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "applicant": {
            **applicant.model_dump(include={"tckn_masked", "first_name", "last_name", "email"}),
            "phone_masked": mask_phone(applicant.phone),
        },
        "caller_masked": mask_phone(app.caller_number) if app.caller_number else None,
    }


# --- Phone verification (the web and mobile channels) ------------------------------------------


class VerificationRequest(BaseModel):
    phone: str = Field(description="Doğrulanacak cep telefonu (ör. 0532 123 45 67)", max_length=32)


class VerificationStarted(BaseModel):
    verification_id: str
    expires_at: str
    phone_masked: str
    resend_after: int = RESEND_SECONDS


class CodeConfirmation(BaseModel):
    code: str = Field(description="SMS ile gelen 6 haneli kod", max_length=16)


class PhoneConfirmed(BaseModel):
    phone_verification: str = Field(description="Başvuruda `phone_verification` alanına konur")
    expires_at: str


def _verifications(request: Request) -> PhoneVerifications:
    return request.app.state.verifications  # type: ignore[no-any-return]


def _verification_error(exc: VerificationError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    error = {"field": exc.field, "code": exc.code, "message": exc.message}
    return JSONResponse({"errors": [error]}, status_code=exc.status, headers=headers)


@router.post(
    "/verifications",
    status_code=201,
    response_model=VerificationStarted,
    summary="Telefon doğrulama kodu gönder (web, mobil)",
    description=(
        "Cep telefonuna 6 haneli bir kod gönderir; kod 5 dakika geçerlidir. Aynı numaraya "
        "60 saniyede bir, saatte en çok 5 kod gönderilir."
    ),
    responses={
        422: {"model": ErrorsOut},
        429: {"model": ErrorsOut, "description": "Çok sık istendi; `Retry-After` saniye bekleyin"},
        503: {"model": ErrorsOut, "description": "SMS geçidi kodu almadı"},
    },
)
async def start_verification(request: Request, payload: VerificationRequest) -> Any:
    try:
        phone = check_phone(payload.phone)
    except RuleViolation as exc:
        error = {"field": "phone", "code": exc.code, "message": exc.message}
        return JSONResponse({"errors": [error]}, status_code=422)
    try:
        started = await _verifications(request).start(phone)
    except VerificationError as exc:
        return _verification_error(exc)
    return JSONResponse(
        VerificationStarted(
            verification_id=started.verification_id,
            expires_at=started.expires_at.isoformat(timespec="seconds"),
            phone_masked=mask_phone(phone),
        ).model_dump(),
        status_code=201,
    )


@router.post(
    "/verifications/{verification_id}/confirm",
    response_model=PhoneConfirmed,
    summary="Telefon doğrulama kodunu onayla",
    description=(
        "Doğru kod için 30 dakika geçerli bir `phone_verification` anahtarı döner. Bir kod için "
        "en çok 5 deneme hakkı vardır."
    ),
    responses={
        410: {"model": ErrorsOut, "description": "Kodun süresi doldu veya deneme hakkı bitti"},
        422: {"model": ErrorsOut, "description": "Kod yanlış; kalan deneme hakkı iletide"},
    },
)
async def confirm_verification(
    request: Request,
    verification_id: Annotated[str, Path(max_length=64)],
    payload: CodeConfirmation,
) -> Any:
    try:
        confirmed = await _verifications(request).confirm(verification_id, payload.code)
    except VerificationError as exc:
        return _verification_error(exc)
    return PhoneConfirmed(
        phone_verification=confirmed.token,
        expires_at=confirmed.expires_at.isoformat(timespec="seconds"),
    )


# --- The rate per client address --------------------------------------------------------------

# The citizens' POSTs a client address is limited on (the pages' GETs are not).
_RATE_LIMITED_PREFIXES = (
    "/api/v1/applications",
    "/api/v1/verifications",
    "/api/v1/attachments",
    "/api/v1/kvkk",
    "/open311/",
)


class AddressRateMiddleware:
    """Answers 429 with Retry-After, before anything else is done, when a client address
    posts faster than the limit allows (limits.AddressRate).

    A request with a valid staff token is never refused: it is accountable, and a channel
    adapter (the mobile app's server, a kiosk server, the call centre, the demo loader) posts
    for many citizens from one address. The citizens' own daily limits still apply to it.
    """

    def __init__(
        self,
        app: ASGIApp,
        rate: AddressRate,
        trusted: frozenset[str],
        accountable: Callable[[str], bool],
    ) -> None:
        self.app = app
        self._rate = rate
        self._trusted = trusted
        self._accountable = accountable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and self._rate.enabled
            and scope["path"].startswith(_RATE_LIMITED_PREFIXES)
        ):
            headers = dict(scope.get("headers") or [])
            peer = scope.get("client")
            forwarded = headers.get(b"x-forwarded-for")
            address = client_address(
                peer[0] if peer else None,
                forwarded.decode("latin-1") if forwarded else None,
                self._trusted,
            )
            try:
                self._rate.take(address)
            except LimitExceeded as exc:
                # Only then is the token read (a signature check per request would cost more
                # than the bucket): a staff token is let through, anything else refused.
                if not self._staff(headers.get(b"authorization", b"")):
                    await refusal(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _staff(self, authorization: bytes) -> bool:
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and bool(token) and self._accountable(token)


def staff_token_check(settings: Settings) -> Callable[[str], bool]:
    """Whether a bearer token is a valid staff token (any role)."""

    def accountable(token: str) -> bool:
        try:
            decode_token(settings, token)
        except (jwt.PyJWTError, ValueError, KeyError):
            return False
        return True

    return accountable
