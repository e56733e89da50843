"""Tracking's HTTP API for institutions and Açık Kapı supervisors: an institution's list with
its filters, one application, and each act of the workflow (open, assign, ask the citizen,
answer, return, forward, split); the supervisors' approval queue and the unmasking of a
shielded complainant; the session and directory the inbox page (`/kurum`) reads. Thin: the rules
are in workflow.py and domain.py.

Who passes (docs/security.md has the whole matrix): institution staff only their institution,
and with a sub-unit in their token only what was assigned to that unit; supervisors only their
province (the institution's province as routing's directory says, the application's own for
one application); admins everything; every other role 403. Each act of staff is audited as a
"change", each response that shows an applicant's identity as a "read_personal"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.common.audit import audit_of
from services.common.auth import Principal, Role
from services.common.auth import forbidden as forbidden_error
from services.common.errors import field_error
from services.common.events import ApplicationType, Outcome, Priority, Status
from services.common.provinces import PROVINCES
from services.tracking import domain
from services.tracking.api import (
    PrincipalDep,
    TimelineItem,
    TrackingDep,
    get_tracking,
    now,
    step_label,
)
from services.tracking.directory import TaxonomyDirectory
from services.tracking.handlers import (
    DirectoryUnavailable,
    InvalidTarget,
    NotFound,
    Tracking,
)
from services.tracking.store import InstitutionPage, InvalidCursor, encode_cursor
from services.tracking.workflow import (
    ACTIVE_STAGES,
    SHIELD_NOTICE,
    STAGE_LABELS,
    Action,
    Stage,
    available_actions,
    identity_shielded,
    in_unit,
    may,
    unit_key,
)

router = APIRouter()
Handler = Callable[..., Awaitable[Any]]

NOT_HELD_MESSAGE = "Bu kuruma atanmış böyle bir başvuru yok."
_CONFLICTS: dict[Stage, tuple[str, str]] = {
    Stage.awaiting_approval: (
        "awaiting_approval",
        "Bu başvurunun cevabı onay bekliyor; onaylanana ya da geri gönderilene kadar bu işlem "
        "yapılamaz.",
    ),
    Stage.waiting_for_citizen: (
        "waiting_for_citizen",
        "Vatandaştan istenen bilgi henüz gelmedi; yeni bir soru için önce cevabını bekleyin.",
    ),
}

# Law 4982 art. 11 allows 15 more business days at most; Açık Kapı holds to the same.
MAX_EXTENSION_DAYS = 15
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=1000)]
Question = Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=1000)]
AnswerText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=10, max_length=5000)
]
PartNote = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=120)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
UnmaskReason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=10, max_length=1000)
]
NOT_YOUR_UNIT_MESSAGE = "Bu başvuru biriminize havale edilmemiş."
INBOX_ROLES_MESSAGE = "Gelen kutusu kurum personeli ve Açık Kapı denetçileri içindir."


# --- who may do what -------------------------------------------------------------------------


def _authorize(principal: Principal, action: Action, code: str, tracking: Tracking) -> None:
    """The role and the institution (a supervisor: the institution's province) allow it."""
    province = tracking.province_of(code) if principal.role is Role.supervisor else None
    if may(
        principal.role,
        action,
        own_institution=principal.institution,
        institution_code=code,
        own_province=principal.province,
        province_code=province,
    ):
        return
    if action is not Action.view and principal.role in (Role.supervisor, Role.officer):
        raise forbidden_error("Bu işlemi yalnızca ilgili kurum yapabilir.")
    if principal.role is Role.supervisor:
        raise forbidden_error("Yalnızca kendi ilinizin kurumlarının başvurularını görebilirsiniz.")
    raise forbidden_error("Bu kurumun başvurularını görme yetkiniz yok.")


def _within(principal: Principal, app: domain.Application, tracking: Tracking) -> None:
    """One application is in the principal's scope: a unit's staff only their unit's, a
    supervisor only their province's."""
    if principal.role is Role.institution and not in_unit(principal.unit, app.unit):
        raise forbidden_error(NOT_YOUR_UNIT_MESSAGE)
    if principal.role is Role.supervisor:
        province = app.province_code
        if province is None and app.institution_code is not None:
            province = tracking.province_of(app.institution_code)
        if province != principal.province:
            raise forbidden_error(
                "Yalnızca kendi ilinizin kurumlarının başvurularını görebilirsiniz."
            )


async def _in_scope(
    principal: Principal, action: Action, code: str, application_id: str, tracking: Tracking
) -> domain.Application | None:
    """Authorize an act or a read of one application; the application, when it had to be read
    to tell (a unit's staff, a supervisor)."""
    _authorize(principal, action, code, tracking)
    if principal.unit is None and principal.role is not Role.supervisor:
        return None
    try:
        app = await tracking.institution_application(code, application_id)
    except NotFound:
        raise _not_held() from None
    _within(principal, app, tracking)
    return app


def _supervisor(principal: Principal, action: Action = Action.approve) -> int | None:
    """The province whose answers the principal reviews (None: an admin, every province)."""
    if not may(principal.role, action, own_province=principal.province):
        raise forbidden_error("Bu işlemi yalnızca ilin Açık Kapı denetçileri yapabilir.")
    return principal.province if principal.role is Role.supervisor else None


async def _audit_change(
    request: Request,
    principal: Principal,
    operation: str,
    application_id: str,
    *,
    application_number: str | None = None,
    institution_code: str | None = None,
    reason: str | None = None,
) -> None:
    detail: dict[str, object] = {"operation": operation}
    if institution_code is not None:
        detail["institution_code"] = institution_code
    await audit_of(request).record(
        actor=principal,
        action="change",
        application_id=application_id,
        application_number=application_number,
        reason=reason,
        request=request,
        detail=detail,
    )


def _not_held() -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        detail=[field_error("application_id", "not_found", NOT_HELD_MESSAGE)],
    )


def _refused(exc: Exception) -> HTTPException:
    """The HTTP answer for a use case's refusal (Turkish, in the service's error shape)."""
    if isinstance(exc, NotFound | domain.NotAssigned | domain.NotAssignedYet):
        return _not_held()
    if isinstance(exc, InvalidTarget):
        return HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[field_error(exc.field, "unknown_target", exc.message)],
        )
    if isinstance(exc, DirectoryUnavailable):
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=[
                field_error(
                    None,
                    "directory_unavailable",
                    "İlin kurum listesi henüz yüklenmedi; lütfen biraz sonra yeniden deneyin.",
                )
            ],
            headers={"Retry-After": "5"},
        )
    conflicts: list[tuple[type[Exception], str, str]] = [
        (domain.AlreadyAnswered, "already_answered", "Bu başvuru zaten cevaplanmış."),
        (domain.NothingToReview, "nothing_to_review", "Bu başvuruda onay bekleyen cevap yok."),
        (
            domain.AlreadyExtended,
            "already_extended",
            "Bu başvurunun cevap süresi daha önce bir kez uzatıldı; ikinci kez uzatılamaz.",
        ),
        (
            domain.NotOpen,
            "not_open",
            "Bu başvuru cevaplanmış; cevap süresi artık uzatılamaz.",
        ),
        (
            domain.NotForParts,
            "not_for_parts",
            "Bir başvurunun bölümü üzerinden vatandaştan bilgi istenemez; vatandaş başvurunun "
            "tamamını izler.",
        ),
        (
            domain.NotSplittable,
            "not_splittable",
            "Bir başvurunun bölümü yeniden bölünemez; başvuru bulunduğu kuruma da aktarılamaz.",
        ),
    ]
    if isinstance(exc, domain.NotShielded):
        return HTTPException(
            status.HTTP_409_CONFLICT,
            detail=[
                field_error(
                    None,
                    "not_shielded",
                    "Bu başvuruda gizlenmiş bir kimlik yok: ya şikâyet ya da ihbar değil, ya "
                    "başvuru sahibi kimliğinin görülmesine onay verdi, ya da kimlik daha önce "
                    "açıldı.",
                )
            ],
        )
    if isinstance(exc, domain.WrongStage):
        code, message = _CONFLICTS.get(
            exc.stage, ("wrong_stage", "Başvurunun şu anki aşaması bu işleme izin vermiyor.")
        )
        return HTTPException(status.HTTP_409_CONFLICT, detail=[field_error(None, code, message)])
    for kind, code, message in conflicts:
        if isinstance(exc, kind):
            return HTTPException(
                status.HTTP_409_CONFLICT, detail=[field_error(None, code, message)]
            )
    raise exc


REFUSALS = (NotFound, domain.Refused, InvalidTarget, DirectoryUnavailable)


async def _acting(
    request: Request,
    principal: Principal,
    action: Action,
    ids: tuple[str, str],
    act: Callable[[], Awaitable[domain.Application]],
    *,
    reason: str | None = None,
) -> Acted:
    """An institution's act on application `ids[1]` held by `ids[0]`: allowed for this
    principal, done, audited, answered with where the application stands now (or the refusal,
    in the service's error shape)."""
    code, application_id = ids
    await _in_scope(principal, action, code, application_id, get_tracking(request))
    try:
        app = await act()
    except REFUSALS as exc:
        raise _refused(exc) from None
    await _audit_change(
        request,
        principal,
        action.value,
        app.application_id,
        application_number=app.application_number,
        institution_code=code,
        reason=reason,
    )
    return _acted(app)


# --- what an institution reads ---------------------------------------------------------------


class InstitutionApplication(BaseModel):
    application_id: str
    application_number: str
    application_type: ApplicationType | None
    category_code: str | None
    subject: str | None
    district: str | None
    priority: Priority | None  # an escorted applicant: listed first
    status: Status
    stage: Stage
    stage_label: str
    received_at: datetime | None
    deadline_at: datetime | None
    overdue: bool
    assignee: str | None
    unit: str | None
    # Set on a part of a split application: its parent.
    parent_id: str | None


class InstitutionApplicationList(BaseModel):
    items: list[InstitutionApplication]
    total: int
    next_cursor: str | None


class StaffTimelineItem(TimelineItem):
    label: str
    actor: str | None = None
    reason: str | None = None


class InformationRequestView(BaseModel):
    number: int
    question: str
    asked_at: datetime
    asked_by: str | None
    reply: str | None
    replied_at: datetime | None
    closed_at: datetime | None


class DraftView(BaseModel):
    outcome: Outcome
    text: str
    institution_code: str
    submitted_by: str | None
    submitted_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    approved: bool
    note: str | None


class PartView(BaseModel):
    part_no: int
    application_id: str
    application_number: str
    note: str
    institution_code: str | None
    category_code: str | None
    outcome: Outcome | None
    answered_at: datetime | None


class ApplicantView(BaseModel):
    """Who applied (shown only where the complainant shield allows)."""

    first_name: str
    last_name: str
    tckn_masked: str
    phone: str | None
    email: str | None


class InstitutionApplicationDetail(InstitutionApplication):
    # Absent when the shield hides the applicant (a şikâyet or an ihbar without consent that no
    # supervisor unmasked), and when tracking holds no identity (a part of a split one).
    applicant: ApplicantView | None = None
    identity_shielded: bool = False
    # Why the identity is hidden (Turkish; present only when it is).
    identity_notice: str | None = None
    # A supervisor revealed the shielded applicant (the audit log says who and why).
    identity_unmasked: bool = False
    channel: str | None
    text: str | None
    institution_code: str | None
    institution_name: str | None
    outcome: Outcome | None
    answer: str | None
    answered_at: datetime | None
    opened_by: str | None
    opened_at: datetime | None
    part_note: str | None
    forwarded_to: str | None
    information_requests: list[InformationRequestView]
    # The answer under review, and the ones reviewed before (with a supervisor's notes).
    drafts: list[DraftView]
    parts: list[PartView]
    # What the institution may do now (the inbox shows only these).
    actions: list[Action]
    timeline: list[StaffTimelineItem]


def _item(app: domain.Application) -> InstitutionApplication:
    return InstitutionApplication.model_validate(
        {
            **{f: getattr(app, f) for f in InstitutionApplication.model_fields if hasattr(app, f)},
            "stage": app.stage,
            "stage_label": STAGE_LABELS[app.stage],
        }
    )


_IDENTITY_FIELDS = ("applicant", "identity_shielded", "identity_notice", "identity_unmasked")


def _detail(
    app: domain.Application, applicant: ApplicantView | None
) -> InstitutionApplicationDetail:
    """The application as the inbox shows it; `applicant` only where the shield allows. The
    applicant and the notice are left unset when absent (the route drops unset fields)."""
    fields = InstitutionApplicationDetail.model_fields
    plain = {
        f: getattr(app, f)
        for f in fields
        if hasattr(app, f)
        and f not in ("information_requests", "drafts", "parts", "timeline", *_IDENTITY_FIELDS)
    }
    shielded = identity_shielded(app.application_type, app.identity_consent, app.unmaskings)
    identity: dict[str, object] = {
        "identity_shielded": shielded,
        "identity_unmasked": bool(app.unmaskings),
    }
    if shielded:
        identity["identity_notice"] = SHIELD_NOTICE
    elif applicant is not None:
        identity["applicant"] = applicant
    return InstitutionApplicationDetail.model_validate(
        {
            **plain,
            **identity,
            "stage": app.stage,
            "stage_label": STAGE_LABELS[app.stage],
            "channel": app.channel.value if app.channel else None,
            "information_requests": [
                InformationRequestView.model_validate(r, from_attributes=True)
                for r in app.information_requests
            ],
            "drafts": [DraftView.model_validate(d, from_attributes=True) for d in app.drafts],
            "parts": [PartView.model_validate(p, from_attributes=True) for p in app.parts],
            "actions": sorted(available_actions(app.stage, is_part=app.parent_id is not None)),
            "timeline": [
                StaffTimelineItem(
                    status=e.status,
                    at=e.at,
                    step=e.step,
                    detail=e.detail,
                    label=step_label(e),
                    actor=e.actor,
                    reason=e.reason,
                )
                for e in app.timeline
            ],
        }
    )


@router.get(
    "/api/v1/institutions/{code}/applications",
    response_model=InstitutionApplicationList,
    tags=["kurum"],
    summary="Kuruma atanmış başvurular: süzgeçlerle; öncelikli başvuru sahipleri, sonra en "
    "yakın süre önce. Listelemek başvuruyu açmaz.",
)
async def institution_applications(
    code: str,
    principal: PrincipalDep,
    tracking: TrackingDep,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    stage: Annotated[list[Stage] | None, Query(description="Aşama (birden çok olabilir)")] = None,
    active: Annotated[
        bool | None, Query(description="Yalnızca kurumun elindekiler (yeni … onay bekliyor)")
    ] = None,
    district: Annotated[str | None, Query(max_length=80)] = None,
    application_type: Annotated[ApplicationType | None, Query(alias="type")] = None,
    overdue: bool | None = None,
    priority: Annotated[bool | None, Query(description="Öncelikli başvuru sahipleri")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Konu veya numarada ara")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> InstitutionApplicationList:
    _authorize(principal, Action.view, code, tracking)
    stages = frozenset(stage or ())
    if active:
        stages = stages & ACTIVE_STAGES if stages else ACTIVE_STAGES
    page = InstitutionPage(
        code,
        status_filter,
        overdue,
        limit,
        cursor,
        stages=stages,
        district=district or None,
        application_type=application_type,
        priority=priority,
        text=q,
        # A supervisor: their province's records only, even of an institution the directory
        # does not know; a unit's staff: what was assigned to their unit.
        province_code=principal.province if principal.role is Role.supervisor else None,
        unit=principal.unit if principal.role is Role.institution else None,
    )
    try:
        apps, total = await tracking.institution_applications(page)
    except InvalidCursor:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[field_error("cursor", "invalid_cursor", "Sayfa imleci geçersiz.")],
        ) from None
    next_cursor = encode_cursor(apps[-1]) if len(apps) == limit else None
    return InstitutionApplicationList(
        items=[_item(a) for a in apps], total=total, next_cursor=next_cursor
    )


@router.get(
    "/api/v1/institutions/{code}/applications/{application_id}",
    response_model=InstitutionApplicationDetail,
    response_model_exclude_unset=True,
    tags=["kurum"],
    summary="Kuruma atanmış bir başvuru (okumak başvuruyu açmaz). Şikâyet ve ihbarda başvuru "
    "sahibinin kimliği, onay vermediyse ve bir denetçi açmadıysa gösterilmez.",
)
async def institution_application(
    code: str, application_id: str, request: Request, principal: PrincipalDep, tracking: TrackingDep
) -> InstitutionApplicationDetail:
    app = await _in_scope(principal, Action.view, code, application_id, tracking)
    if app is None:
        try:
            app = await tracking.institution_application(code, application_id)
        except NotFound:
            raise _not_held() from None
    shown = None
    if not identity_shielded(app.application_type, app.identity_consent, app.unmaskings):
        identity = tracking.identity_of(app)
        shown = ApplicantView.model_validate(identity, from_attributes=True) if identity else None
    if shown is not None:
        await audit_of(request).record(
            actor=principal,
            action="read_personal",
            application_id=app.application_id,
            application_number=app.application_number,
            fields=[f for f, v in shown.model_dump().items() if v is not None],
            request=request,
            detail={"institution_code": code, "unmasked": bool(app.unmaskings)},
        )
    return _detail(app, shown)


# --- the institution's acts ------------------------------------------------------------------


class Acted(BaseModel):
    """What an act left: the application's status and stage now."""

    application_id: str
    status: Status
    stage: Stage
    stage_label: str


def _acted(app: domain.Application) -> Acted:
    return Acted(
        application_id=app.application_id,
        status=app.status,
        stage=app.stage,
        stage_label=STAGE_LABELS[app.stage],
    )


def _act_route(path: str, summary: str) -> Callable[[Handler], Handler]:
    """An institution's act: its path under the application, and what it answers."""
    return router.post(
        f"/api/v1/institutions/{{code}}/applications/{{application_id}}/{path}",
        summary=summary,
        tags=["kurum"],
        response_model=Acted,
        responses={403: {}, 404: {}, 409: {}},
    )


@_act_route(
    "open",
    "Başvuruyu aç (inceleniyor; kimin açtığı kaydedilir)",
)
async def open_application(
    code: str, application_id: str, request: Request, principal: PrincipalDep, tracking: TrackingDep
) -> Acted:
    return await _acting(
        request,
        principal,
        Action.open,
        (code, application_id),
        lambda: tracking.open_application(code, application_id, by=principal.subject, now=now()),
    )


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: Name | None = None
    unit: Name | None = None

    @model_validator(mode="after")
    def _someone(self) -> AssignIn:
        if self.assignee is None and self.unit is None:
            raise ValueError("Bir personel ya da bir birim belirtin.")
        return self


@_act_route(
    "assign",
    "Başvuruyu bir personele ya da alt birime havale et",
)
async def assign(
    code: str,
    application_id: str,
    body: AssignIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> Acted:
    if principal.role is Role.institution and principal.unit is not None:
        if body.unit is not None and unit_key(body.unit) != unit_key(principal.unit):
            raise forbidden_error(
                "Başvuruyu yalnızca kendi biriminizin içinde havale edebilirsiniz."
            )
    return await _acting(
        request,
        principal,
        Action.assign,
        (code, application_id),
        lambda: tracking.assign(
            code,
            application_id,
            assignee=body.assignee,
            unit=body.unit,
            by=principal.subject,
            now=now(),
        ),
    )


class InformationRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Question


@_act_route(
    "information-request",
    "Vatandaştan ek bilgi iste (vatandaşa SMS gider; cevabı gelene kadar bekler)",
)
async def ask_information(
    code: str,
    application_id: str,
    body: InformationRequestIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> Acted:
    return await _acting(
        request,
        principal,
        Action.ask_information,
        (code, application_id),
        lambda: tracking.ask_information(
            code, application_id, question=body.question, by=principal.subject, now=now()
        ),
    )


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    text: AnswerText


class ResponseAccepted(BaseModel):
    application_id: str
    # "answer_received": on its way to the citizen; "awaiting_approval": a supervisor decides.
    status: str = "answer_received"


@router.post(
    "/api/v1/institutions/{code}/applications/{application_id}/response",
    response_model=ResponseAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["kurum"],
    summary="Kurumun cevabı (ilin istediği yerde önce Açık Kapı denetçisinin onayına gider)",
)
async def respond(
    code: str,
    application_id: str,
    body: ResponseIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> ResponseAccepted:
    await _in_scope(principal, Action.answer, code, application_id, tracking)
    try:
        reached = await tracking.submit_response(
            code,
            application_id,
            outcome=body.outcome,
            text=body.text,
            responded_by=principal.subject,
        )
    except REFUSALS as exc:
        raise _refused(exc) from None
    await _audit_change(
        request, principal, Action.answer.value, application_id, institution_code=code
    )
    if reached is Stage.awaiting_approval:
        return ResponseAccepted(application_id=application_id, status="awaiting_approval")
    return ResponseAccepted(application_id=application_id)


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


@_act_route(
    "return",
    "Görev alanı dışında: başvuruyu yönlendirmeye iade et (bu kurum bir daha önerilmez)",
)
async def return_application(
    code: str,
    application_id: str,
    body: ReturnIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> Acted:
    try:
        return await _acting(
            request,
            principal,
            Action.return_,
            (code, application_id),
            lambda: tracking.return_application(
                code, application_id, reason=body.reason, now=now(), by=principal.subject
            ),
            reason=body.reason,
        )
    except HTTPException as refused:
        said: list[dict[str, Any]] = refused.detail if isinstance(refused.detail, list) else []
        if not said or said[0].get("code") != "already_answered":
            raise
        # Said for what was asked: an answered application is not returned.
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=[
                field_error(None, "already_answered", "Cevaplanmış bir başvuru iade edilemez.")
            ],
        ) from None


class ForwardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_code: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=2, max_length=64)
    ]
    reason: Reason


@_act_route(
    "forward",
    "Başvuruyu ilin başka bir kurumuna aktar (gerekçesiyle)",
)
async def forward(
    code: str,
    application_id: str,
    body: ForwardIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> Acted:
    return await _acting(
        request,
        principal,
        Action.forward,
        (code, application_id),
        lambda: tracking.forward(
            code,
            application_id,
            target=body.institution_code,
            reason=body.reason,
            by=principal.subject,
            now=now(),
        ),
        reason=body.reason,
    )


class PartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_code: Code | None = None
    category_code: Code | None = None
    note: PartNote


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[PartIn]
    reason: Reason | None = None


@_act_route(
    "split",
    "Birden çok kurumu ilgilendiren başvuruyu bölümlere ayır: her bölüm kendi kurumuna "
    "gider ve ayrı cevaplanır; hepsi cevaplanınca başvurunun genel sonucu çıkar",
)
async def split(
    code: str,
    application_id: str,
    body: SplitIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> Acted:
    parts = [
        domain.SplitPart(
            note=p.note,
            institution_code=(p.institution_code or "").upper() or None,
            category_code=(p.category_code or "").upper() or None,
        )
        for p in body.parts
    ]
    return await _acting(
        request,
        principal,
        Action.split_up,
        (code, application_id),
        lambda: tracking.split(
            code, application_id, parts=parts, reason=body.reason, by=principal.subject, now=now()
        ),
        reason=body.reason,
    )


# --- supervisors: answers awaiting approval --------------------------------------------------


class ApprovalItem(InstitutionApplication):
    institution_code: str | None
    institution_name: str | None
    draft: DraftView


class ApprovalQueue(BaseModel):
    items: list[ApprovalItem]
    total: int
    next_cursor: str | None


@router.get(
    "/api/v1/approvals",
    response_model=ApprovalQueue,
    tags=["denetçi"],
    summary="Onay bekleyen cevaplar (denetçinin ili; öncelikli başvuru sahipleri, sonra en "
    "yakın süre önce)",
)
async def approval_queue(
    principal: PrincipalDep,
    tracking: TrackingDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ApprovalQueue:
    province = _supervisor(principal)
    page = InstitutionPage(None, limit=limit, cursor=cursor, province_code=province)
    try:
        apps, total = await tracking.approval_queue(page)
    except InvalidCursor:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[field_error("cursor", "invalid_cursor", "Sayfa imleci geçersiz.")],
        ) from None
    items = [
        ApprovalItem(
            **_item(app).model_dump(),
            institution_code=app.institution_code,
            institution_name=app.institution_name,
            draft=DraftView.model_validate(app.pending_draft, from_attributes=True),
        )
        for app in apps
        if app.pending_draft is not None
    ]
    next_cursor = encode_cursor(apps[-1]) if len(apps) == limit else None
    return ApprovalQueue(items=items, total=total, next_cursor=next_cursor)


@router.post(
    "/api/v1/approvals/{application_id}/approve",
    tags=["denetçi"],
    summary="Cevabı onayla: vatandaşa ulaşır (cevap SMS'i)",
    response_model=Acted,
    responses={403: {}, 404: {}, 409: {}},
)
async def approve(
    application_id: str, request: Request, principal: PrincipalDep, tracking: TrackingDep
) -> Acted:
    province = _supervisor(principal)
    try:
        app = await tracking.approve(
            application_id, by=principal.subject, province=province, now=now()
        )
    except REFUSALS as exc:
        raise _refused(exc) from None
    await _audit_change(
        request,
        principal,
        "approve",
        application_id,
        application_number=app.application_number,
        institution_code=app.institution_code,
    )
    return _acted(app)


class SendBackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Reason


@router.post(
    "/api/v1/approvals/{application_id}/send-back",
    tags=["denetçi"],
    summary="Cevabı notla kuruma geri gönder (kurum düzeltip yeniden cevaplar)",
    response_model=Acted,
    responses={403: {}, 404: {}, 409: {}},
)
async def send_back(
    application_id: str,
    body: SendBackIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> Acted:
    province = _supervisor(principal)
    try:
        app = await tracking.send_back(
            application_id, by=principal.subject, note=body.note, province=province, now=now()
        )
    except REFUSALS as exc:
        raise _refused(exc) from None
    await _audit_change(
        request,
        principal,
        "send_back",
        application_id,
        application_number=app.application_number,
        institution_code=app.institution_code,
        reason=body.note,
    )
    return _acted(app)


class ExtensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    business_days: Annotated[int, Field(ge=1, le=MAX_EXTENSION_DAYS)]
    reason: Reason


class Extended(Acted):
    deadline_at: datetime | None
    extension_days: int


@router.post(
    "/api/v1/applications/{application_id}/extension",
    tags=["denetçi"],
    summary="Cevap süresini bir kez, gerekçesiyle uzat (yeni süre duyurulur)",
    response_model=Extended,
    responses={403: {}, 404: {}, 409: {}, 422: {}},
)
async def extend(
    application_id: str,
    body: ExtensionIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> Extended:
    province = _supervisor(principal)
    try:
        app = await tracking.extend(
            application_id,
            business_days=body.business_days,
            reason=body.reason,
            by=principal.subject,
            province=province,
            now=now(),
        )
    except REFUSALS as exc:
        raise _refused(exc) from None
    await _audit_change(
        request,
        principal,
        "extend",
        application_id,
        application_number=app.application_number,
        institution_code=app.institution_code,
        reason=body.reason,
    )
    return Extended(
        **_acted(app).model_dump(), deadline_at=app.deadline_at, extension_days=app.extension_days
    )


# --- what the inbox page needs ---------------------------------------------------------------


class Session(BaseModel):
    subject: str
    role: Role
    institution_code: str | None
    province_code: int | None
    # The sub-unit an institution's staff member works in (None: the whole institution).
    unit: str | None = None


# Who may use the inbox at all (admin passes everywhere).
INBOX_ROLES = (Role.institution, Role.supervisor, Role.admin)


@router.get(
    "/api/v1/session",
    response_model=Session,
    tags=["sayfalar"],
    summary="Oturum anahtarını denetle (kurum gelen kutusu)",
)
async def session(principal: PrincipalDep) -> Session:
    """Who the pasted token says the user is, so the inbox refuses a bad one at once."""
    if principal.role not in INBOX_ROLES:
        raise forbidden_error(INBOX_ROLES_MESSAGE)
    if principal.role is Role.supervisor and principal.province is None:
        raise forbidden_error("Denetçi oturum anahtarında il bilgisi (prov) yok.")
    return Session(
        subject=principal.subject,
        role=principal.role,
        institution_code=principal.institution,
        province_code=principal.province,
        unit=principal.unit,
    )


class DirectoryInstitution(BaseModel):
    code: str
    name: str
    kind: str
    district: str | None


class DirectoryCategory(BaseModel):
    code: str
    name: str
    heading: str


class DirectoryView(BaseModel):
    province_code: int
    province: str
    districts: list[str]
    institutions: list[DirectoryInstitution]
    categories: list[DirectoryCategory]


@router.get(
    "/api/v1/directory/{province_code}",
    response_model=DirectoryView,
    tags=["kurum"],
    summary="İlin ilçeleri, kurumları ve kategorileri (aktarma ve bölme için)",
)
async def directory(
    province_code: int, principal: PrincipalDep, tracking: TrackingDep
) -> DirectoryView:
    if principal.role not in INBOX_ROLES:
        raise forbidden_error(INBOX_ROLES_MESSAGE)
    own = principal.province
    if principal.role is Role.institution and principal.institution is not None:
        own = tracking.province_of(principal.institution)
    if principal.role is not Role.admin and own is not None and own != province_code:
        raise forbidden_error("Yalnızca kendi ilinizin kurum listesini görebilirsiniz.")
    if principal.role is Role.supervisor and own is None:
        raise forbidden_error("Denetçi oturum anahtarında il bilgisi (prov) yok.")
    taxonomy = tracking.institutions(province_code)
    if taxonomy is None:
        # 503 only while the taxonomy topic is still being read; a plate code that is not a
        # province, or a province routing announced no list for, has none to wait for.
        directory = tracking.directory
        reading = isinstance(directory, TaxonomyDirectory) and not directory.view.caught_up.is_set()
        if reading and province_code in PROVINCES:
            raise _refused(DirectoryUnavailable(str(province_code)))
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=[field_error("province_code", "not_found", "Bu il için kurum listesi yok.")],
        )
    return DirectoryView(
        province_code=taxonomy.province_code,
        province=taxonomy.province,
        districts=taxonomy.districts,
        institutions=[
            DirectoryInstitution.model_validate(i, from_attributes=True)
            for i in sorted(taxonomy.institutions, key=lambda i: i.name)
        ],
        categories=[
            DirectoryCategory(code=c.code, name=c.name, heading=h.name)
            for h in taxonomy.headings
            for c in h.categories
        ],
    )


# --- supervisors: the complainant shield ------------------------------------------------------


class UnmaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Why the institution must know who complained (kept on the application and audited).
    reason: UnmaskReason


class Unmasked(BaseModel):
    application_id: str
    application_number: str
    unmasked_by: str
    unmasked_at: datetime
    reason: str


@router.post(
    "/api/v1/applications/{application_id}/unmask",
    tags=["denetçi"],
    summary="Şikâyetçinin ya da ihbarcının kimliğini kuruma aç (yalnızca ilin denetçisi, "
    "gerekçesiyle; kaydedilir ve denetim kaydına yazılır)",
    response_model=Unmasked,
    responses={403: {}, 404: {}, 409: {}, 422: {}},
)
async def unmask(
    application_id: str,
    body: UnmaskIn,
    request: Request,
    principal: PrincipalDep,
    tracking: TrackingDep,
) -> Unmasked:
    """Lekelenmeme hakkı yields only to a supervisor's stated reason: the applicant of a
    şikâyet or an ihbar who did not consent is revealed to the institution from now on."""
    province = _supervisor(principal, Action.unmask)
    try:
        app = await tracking.unmask(
            application_id, by=principal.subject, reason=body.reason, province=province, now=now()
        )
    except REFUSALS as exc:
        raise _refused(exc) from None
    last = app.unmaskings[-1]
    await audit_of(request).record(
        actor=principal,
        action="unmask",
        application_id=app.application_id,
        application_number=app.application_number,
        reason=body.reason,
        request=request,
        detail={"institution_code": app.institution_code},
    )
    return Unmasked(
        application_id=app.application_id,
        application_number=app.application_number,
        unmasked_by=last.by,
        unmasked_at=last.at,
        reason=last.reason,
    )
