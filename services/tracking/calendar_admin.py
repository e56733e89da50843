"""Administrative leave days (idari izin, köprü günü) as data: an administrator adds or removes a
day over tracking's HTTP API or the command line, with no release; each change is a version of
the calendar (calendar_store.py) that every tracking and routing process computes deadlines with
within seconds.

    python -m services.tracking.calendar_admin list [--year YYYY]
    python -m services.tracking.calendar_admin add YYYY-MM-DD --reason "..." [--kind kopru]
    python -m services.tracking.calendar_admin remove YYYY-MM-DD --reason "..."

A change names the version it was made on (`If-Match`, or `expected_version`): 428 without it,
409 when someone else changed the calendar meanwhile. Only days from today on may be added or
removed: a day in the past would move deadlines that have already run out or been warned about.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import holidays
from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from pydantic import BaseModel, ConfigDict, Field

from services.common.audit import audit_of
from services.common.auth import Principal, forbidden, require_roles
from services.common.business_days import Calendar
from services.common.errors import field_error
from services.common.preconditions import (
    etag,
    expected_version,
    precondition_required,
    version_conflict,
)
from services.common.turkish_time import DAYS, ISTANBUL, MONTHS
from services.tracking.calendar_store import (
    KIND_NAMES,
    Action,
    CalendarChange,
    CalendarKeeper,
    CalendarVersion,
    CalendarVersions,
    LeaveDay,
    LeaveKind,
    VersionConflict,
    VersionInfo,
)

PREFIX = "/api/v1/calendar"
REASON_MAX = 500
# Leave days are announced weeks ahead at most; a date years away is a typing mistake.
MAX_DAYS_AHEAD = 731


# --- The rules -------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def public_holidays(year: int) -> dict[dt.date, str]:
    """The public holidays of `year` with their Turkish names (the days business_days.py skips)."""
    found = holidays.country_holidays("TR", years=year, language="tr", categories=("public",))
    return dict(sorted(found.items()))


@lru_cache(maxsize=16)
def half_days(year: int) -> dict[dt.date, str]:
    """The half-day eves of `year` (arife, 28 Ekim): offices work until 13:00, business days."""
    found = holidays.country_holidays("TR", years=year, language="tr", categories=("half_day",))
    return dict(sorted(found.items()))


def long_date(day: dt.date) -> str:
    """29 Ekim 2026 Perşembe."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year} {DAYS[day.weekday()]}"


def _reason_error(reason: str | None, doing: str) -> dict[str, Any] | None:
    if reason is None or not reason.strip():
        return field_error(
            "reason",
            "missing",
            f'Gerekçe zorunludur: günü neden {doing} yazın, ör. "Cumhurbaşkanlığı '
            'Genelgesi 2026/12 ile idari izin".',
        )
    if len(reason.strip()) > REASON_MAX:
        return field_error(
            "reason", "string_too_long", f"Gerekçe en fazla {REASON_MAX} karakter olabilir."
        )
    return None


def _past_error(day: dt.date, today: dt.date, doing: str) -> dict[str, Any] | None:
    if day >= today:
        return None
    return field_error(
        "date",
        "past",
        f"{long_date(day)} geçmişte kaldı; geçmiş bir gün {doing}. Cevap süreleri geriye dönük "
        "değişirdi: süresi dolmuş sayılan başvurular, kurumlara giden uyarılar ve raporlar o "
        "güne göre hesaplandı. Yalnız bugün ya da ileri bir tarih seçilebilir.",
    )


def addition_errors(
    day: dt.date, reason: str | None, today: dt.date, newest: CalendarVersion | None
) -> list[dict[str, Any]]:
    """Why `day` may not become a leave day (empty: it may), one error per field."""
    errors = []
    date_error = _past_error(day, today, "idari izin olarak eklenemez")
    if date_error is None and day > today + dt.timedelta(days=MAX_DAYS_AHEAD):
        date_error = field_error(
            "date",
            "too_far",
            f"{long_date(day)} çok ileride; en fazla iki yıl sonrasına kadar bir gün eklenebilir.",
        )
    if date_error is None and day.weekday() >= 5:
        date_error = field_error(
            "date",
            "weekend",
            f"{long_date(day)} hafta sonudur; hafta sonu zaten iş günü sayılmaz, idari izin "
            "olarak eklenmesine gerek yok.",
        )
    holiday = public_holidays(day.year).get(day)
    if date_error is None and holiday is not None:
        date_error = field_error(
            "date",
            "public_holiday",
            f"{long_date(day)} zaten resmî tatil ({holiday}); iş günü sayılmaz, idari izin "
            "olarak eklenmesine gerek yok.",
        )
    existing = newest.leave_day(day) if newest is not None else None
    if date_error is None and existing is not None:
        date_error = field_error(
            "date",
            "already_leave_day",
            f"{long_date(day)} takvimde zaten kapalı gün olarak kayıtlı "
            f"({KIND_NAMES[existing.kind]}: {existing.reason}).",
        )
    if date_error is not None:
        errors.append(date_error)
    reason_error = _reason_error(reason, "eklediğinizi")
    if reason_error is not None:
        errors.append(reason_error)
    return errors


def removal_errors(day: dt.date, reason: str | None, today: dt.date) -> list[dict[str, Any]]:
    """Why the leave day `day` may not be removed (empty: it may)."""
    errors = [
        _past_error(day, today, "takvimden çıkarılamaz"),
        _reason_error(reason, "çıkardığınızı"),
    ]
    return [e for e in errors if e is not None]


# --- The use cases ---------------------------------------------------------------------------


class Rejected(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


class NotALeaveDay(Exception):
    def __init__(self, day: dt.date) -> None:
        super().__init__(f"{long_date(day)} takvimde idari izin günü olarak kayıtlı değil.")


class PreconditionRequired(Exception):
    """A change that does not say which version it was made on."""


@dataclass(frozen=True)
class Outcome:
    version: CalendarVersion
    # False: stored, but not yet announced on acikkapi.calendar (Kafka away); every tracking
    # process announces it by itself as soon as Kafka answers.
    published: bool


class CalendarAdmin:
    """Read the calendar and its log; add or remove a leave day."""

    def __init__(
        self,
        store: CalendarVersions,
        keeper: CalendarKeeper,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._store = store
        self._keeper = keeper
        self._clock = clock

    async def newest(self) -> CalendarVersion | None:
        return await self._store.head()

    async def log(self, limit: int, offset: int) -> tuple[list[VersionInfo], int]:
        return await self._store.log(limit, offset)

    def in_effect(self) -> Calendar:
        """The calendar this process computes deadlines with now."""
        return self._keeper.live.current

    async def add(
        self,
        day: dt.date,
        reason: str | None,
        kind: LeaveKind,
        expected: int | None,
        principal: Principal,
    ) -> Outcome:
        """Raises PreconditionRequired, VersionConflict and Rejected."""
        newest = await self._newest(expected)
        now = self._clock()
        errors = addition_errors(day, reason, now.astimezone(ISTANBUL).date(), newest)
        if errors:
            raise Rejected(errors)
        assert reason is not None
        why = reason.strip()
        added = LeaveDay(date=day, kind=kind, reason=why, added_by=principal.subject, added_at=now)
        before = newest.leave_days if newest is not None else []
        return await self._commit(
            newest,
            principal,
            now,
            action="leave_day.add",
            day=day,
            reason=why,
            summary=f"{long_date(day)} eklendi ({KIND_NAMES[kind]}): {why}",
            change=CalendarChange(op="added", date=day, kind=kind, reason=why),
            leave_days=[*before, added],
        )

    async def remove(
        self, day: dt.date, reason: str | None, expected: int | None, principal: Principal
    ) -> Outcome:
        """Raises PreconditionRequired, VersionConflict, NotALeaveDay and Rejected."""
        newest = await self._newest(expected)
        existing = newest.leave_day(day) if newest is not None else None
        if newest is None or existing is None:
            raise NotALeaveDay(day)
        now = self._clock()
        errors = removal_errors(day, reason, now.astimezone(ISTANBUL).date())
        if errors:
            raise Rejected(errors)
        assert reason is not None
        why = reason.strip()
        return await self._commit(
            newest,
            principal,
            now,
            action="leave_day.remove",
            day=day,
            reason=why,
            summary=f"{long_date(day)} çıkarıldı ({KIND_NAMES[existing.kind]}): {why}",
            change=CalendarChange(
                op="removed", date=day, kind=existing.kind, reason=existing.reason
            ),
            leave_days=[d for d in newest.leave_days if d.date != day],
        )

    async def _newest(self, expected: int | None) -> CalendarVersion | None:
        """The newest version, if it is the one `expected` names (0: none yet)."""
        newest = await self._store.head()
        if expected is None:
            raise PreconditionRequired()
        if expected != (newest.version if newest is not None else 0):
            raise VersionConflict(newest)
        return newest

    async def _commit(
        self,
        newest: CalendarVersion | None,
        principal: Principal,
        now: dt.datetime,
        *,
        action: Action,
        day: dt.date,
        reason: str,
        summary: str,
        change: CalendarChange,
        leave_days: list[LeaveDay],
    ) -> Outcome:
        version = CalendarVersion(
            version=(newest.version if newest is not None else 0) + 1,
            author=principal.subject,
            author_role=principal.role.value,
            at=now,
            action=action,
            date=day,
            reason=reason,
            summary=summary,
            changes=[change],
            leave_days=sorted(leave_days, key=lambda d: d.date),
        )
        await self._store.append(version)  # VersionConflict: another change was first
        return Outcome(version, published=await self._keeper.adopt(version))


# --- HTTP ------------------------------------------------------------------------------------


class LeaveDayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date = Field(description="Kapalı gün, YYYY-AA-GG")
    # Required; an empty one is refused with the rule's own Turkish message.
    reason: str | None = Field(
        default=None,
        max_length=REASON_MAX,
        description="Neden kapalı: ör. genelgenin tarihi ve sayısı",
    )
    kind: LeaveKind = LeaveKind.idari_izin
    expected_version: int | None = Field(
        default=None, ge=0, description="If-Match yerine: değişikliğin yapıldığı sürüm."
    )


class HolidayView(BaseModel):
    date: dt.date
    weekday: str
    name: str
    # Arife and 28 Ekim: offices work until 13:00, so the day counts as a business day.
    half_day: bool
    business_day: bool


class LeaveDayView(BaseModel):
    date: dt.date
    weekday: str
    kind: LeaveKind
    kind_name: str
    reason: str
    added_at: dt.datetime


class CalendarView(BaseModel):
    """One year: public holidays (half-day eves marked) and the administrators' leave days."""

    year: int
    version: int
    changed_at: dt.datetime | None
    # The version this process computes deadlines with now (equal to `version` within seconds
    # of a change).
    in_effect_version: int
    business_days: int
    public_holidays: list[HolidayView]
    leave_days: list[LeaveDayView]


class ChangeResult(BaseModel):
    version: int
    author: str
    at: dt.datetime
    action: str
    date: dt.date
    reason: str
    summary: str
    changes: list[CalendarChange]
    leave_days: list[LeaveDayView]
    published: bool


class VersionPage(BaseModel):
    items: list[VersionInfo]
    total: int
    limit: int
    offset: int


def _leave_view(day: LeaveDay) -> LeaveDayView:
    return LeaveDayView(
        date=day.date,
        weekday=DAYS[day.date.weekday()],
        kind=day.kind,
        kind_name=KIND_NAMES[day.kind],
        reason=day.reason,
        added_at=day.added_at,
    )


def year_view(year: int, newest: CalendarVersion | None, in_effect: Calendar) -> CalendarView:
    calendar = newest.calendar() if newest is not None else Calendar()
    closed = {**public_holidays(year), **half_days(year)}
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    return CalendarView(
        year=year,
        version=calendar.version,
        changed_at=newest.at if newest is not None else None,
        in_effect_version=in_effect.version,
        business_days=sum(
            calendar.is_business_day(start + dt.timedelta(days=n))
            for n in range((end - start).days + 1)
        ),
        public_holidays=[
            HolidayView(
                date=day,
                weekday=DAYS[day.weekday()],
                name=name,
                half_day=day in half_days(year),
                business_day=calendar.is_business_day(day),
            )
            for day, name in sorted(closed.items())
        ],
        leave_days=[
            _leave_view(d) for d in (newest.days() if newest else []) if d.date.year == year
        ],
    )


def _result(outcome: Outcome, response: Response) -> ChangeResult:
    version = outcome.version
    response.headers["ETag"] = etag(version.version)
    return ChangeResult(
        version=version.version,
        author=version.author,
        at=version.at,
        action=version.action,
        date=version.date,
        reason=version.reason,
        summary=version.summary,
        changes=version.changes,
        leave_days=[_leave_view(d) for d in version.days()],
        published=outcome.published,
    )


def _refusal(exc: Exception) -> HTTPException:
    if isinstance(exc, PreconditionRequired):
        return precondition_required("takvimin")
    if isinstance(exc, VersionConflict):
        current = exc.current
        who = (
            f" Güncel sürüm {current.version}: {current.author}, "
            f"{current.at.astimezone(ISTANBUL):%d.%m.%Y %H:%M} — {current.summary}"
            if current is not None
            else " Takvimde henüz hiç değişiklik yok (sürüm 0)."
        )
        return version_conflict(
            current.version if current is not None else 0,
            "Takvim siz düzenlerken başka biri tarafından değiştirildi; değişikliğiniz "
            f"kaydedilmedi.{who} Güncel takvimi okuyup değişikliğinizi yeniden yapın.",
        )
    if isinstance(exc, NotALeaveDay):
        return HTTPException(
            status.HTTP_404_NOT_FOUND, detail=[field_error("date", "not_found", str(exc))]
        )
    assert isinstance(exc, Rejected)
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.errors)


REFUSED = (PreconditionRequired, VersionConflict, NotALeaveDay, Rejected)

_admins = require_roles()  # no role named: administrators only
Admin = Annotated[Principal, Depends(_admins)]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='Değişikliğin yapıldığı takvim sürümü, ör. "3" (GET yanıtındaki ETag).',
    ),
]


def _national(principal: Principal) -> None:
    """The calendar is the whole country's: an administrator bound to one province may not
    move every province's deadlines."""
    if principal.province is not None:
        raise forbidden(
            "Takvim ülke genelindedir; bir ile bağlı yönetici anahtarıyla değiştirilemez."
        )


async def _audit(
    request: Request, principal: Principal, operation: str, day: dt.date, reason: str | None
) -> None:
    """A change of the calendar moves every open deadline: audited like a change by staff."""
    await audit_of(request).record(
        actor=principal,
        action="change",
        reason=reason,
        request=request,
        detail={"operation": operation, "date": day.isoformat()},
    )


def build_calendar_router(admin: CalendarAdmin) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["takvim"])

    @router.get(
        "",
        summary="Bir yılın resmî tatilleri (yarım günler işaretli) ve idari izin günleri",
        description="Kimse için kişisel veri içermez; ETag, takvimin sürümüdür.",
    )
    async def calendar(
        response: Response,
        year: Annotated[
            int | None, Query(ge=2000, le=2100, description="Varsayılan: bu yıl")
        ] = None,
    ) -> CalendarView:
        newest = await admin.newest()
        chosen = year or dt.datetime.now(ISTANBUL).year
        view = year_view(chosen, newest, admin.in_effect())
        response.headers["ETag"] = etag(view.version)
        return view

    @router.get("/versions", summary="Takvim değişiklikleri: kim, hangi günü, neden (yeni önce)")
    async def versions(
        principal: Admin,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> VersionPage:
        items, total = await admin.log(limit, offset)
        return VersionPage(items=items, total=total, limit=limit, offset=offset)

    @router.post(
        "/leave-days",
        status_code=status.HTTP_201_CREATED,
        summary="İdari izin günü ekler (yalnız yönetici; bugün ya da ileri bir hafta içi günü)",
    )
    async def add(
        body: LeaveDayIn,
        principal: Admin,
        request: Request,
        response: Response,
        if_match: IfMatch = None,
    ) -> ChangeResult:
        _national(principal)
        expected = expected_version(if_match, body.expected_version)
        try:
            outcome = await admin.add(body.date, body.reason, body.kind, expected, principal)
        except REFUSED as exc:
            raise _refusal(exc) from exc
        await _audit(request, principal, "leave_day_add", body.date, body.reason)
        return _result(outcome, response)

    @router.delete(
        "/leave-days/{date}",
        summary="İdari izin gününü takvimden çıkarır (yalnız yönetici; gerekçe zorunlu)",
    )
    async def remove(
        date: Annotated[dt.date, Path(description="YYYY-AA-GG")],
        principal: Admin,
        request: Request,
        response: Response,
        reason: Annotated[
            str | None, Query(max_length=REASON_MAX, description="Neden çıkarıldığı")
        ] = None,
        if_match: IfMatch = None,
        expected_version_: Annotated[
            int | None,
            Query(alias="expected_version", ge=0, description="If-Match yerine: sürüm."),
        ] = None,
    ) -> ChangeResult:
        _national(principal)
        expected = expected_version(if_match, expected_version_)
        try:
            outcome = await admin.remove(date, reason, expected, principal)
        except REFUSED as exc:
            raise _refusal(exc) from exc
        await _audit(request, principal, "leave_day_remove", date, reason)
        return _result(outcome, response)

    return router


if __name__ == "__main__":
    from services.tracking.calendar_cli import main

    sys.exit(main(sys.argv[1:]))
