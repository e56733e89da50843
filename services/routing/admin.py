"""Taxonomy administration: an administrator creates, renames, changes and retires headings,
categories, institutions, district offices and institution kinds, or loads a whole province;
each change becomes a new version (taxonomy_store.py) that every routing process and every
service then follows.

Every change names the version it was made on (`If-Match`, or `expected_version` in the query
or the body). If someone else changed the province meanwhile, the change is refused with 409
and nothing is lost: the administrator reads the new version and applies the change again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Response, status
from pydantic import BaseModel

from services.common.auth import Principal, forbidden, require_roles
from services.common.errors import field_error
from services.common.preconditions import (
    etag,
    precondition_required,
    version_conflict,
)
from services.common.preconditions import expected_version as expected_of
from services.common.provinces import province_name
from services.routing import taxonomy_edits as edits
from services.routing.domain import Taxonomy
from services.routing.taxonomy_diff import Change, diff, summary
from services.routing.taxonomy_edits import Draft, Retired, TaxonomyDocument
from services.routing.taxonomy_store import (
    LiveTaxonomies,
    TaxonomyVersion,
    TaxonomyVersions,
    VersionConflict,
    VersionInfo,
)

PREFIX = "/api/v1/admin/taxonomy"

_admins = require_roles()  # no role named: administrators only
Admin = Annotated[Principal, Depends(_admins)]


class UnknownProvince(Exception):
    def __init__(self, province_code: int) -> None:
        super().__init__(
            f"{province_name(province_code)} ({province_code}) için kayıtlı bir görev dağılımı "
            f"yok. İlin dosyasını PUT {PREFIX}/{province_code} ile ya da "
            "`python -m services.routing load-taxonomy DOSYA` komutuyla yükleyin."
        )


class PreconditionRequired(Exception):
    """A change that does not say which version it was made on."""


@dataclass(frozen=True)
class Outcome:
    version: TaxonomyVersion
    changed: bool  # False: the change changed nothing, no version was made
    published: bool


Edit = Callable[[Draft], str]


class TaxonomyAdmin:
    """The use cases: read the versions, change a province, load a province."""

    def __init__(
        self,
        store: TaxonomyVersions,
        live: LiveTaxonomies,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._live = live
        self._clock = clock

    async def provinces(self) -> list[VersionInfo]:
        heads = await self._store.heads()
        found = [await self._store.newest(p) for p in sorted(heads)]
        return [line for line in found if line is not None]

    async def current(self, province_code: int) -> TaxonomyVersion:
        head = await self._store.head(province_code)
        if head is None:
            raise UnknownProvince(province_code)
        return head

    async def version(self, province_code: int, number: int) -> TaxonomyVersion | None:
        return await self._store.get(province_code, number)

    async def log(
        self, province_code: int, limit: int, offset: int
    ) -> tuple[list[VersionInfo], int]:
        if await self._store.newest(province_code) is None:
            raise UnknownProvince(province_code)
        return await self._store.log(province_code, limit, offset)

    async def change(
        self,
        province_code: int,
        expected: int | None,
        principal: Principal,
        action: str,
        edit: Edit,
    ) -> Outcome:
        """Apply `edit` to the version `expected` names, if that is still the newest.

        Raises UnknownProvince, PreconditionRequired, VersionConflict, edits.Missing and
        edits.Rejected.
        """
        newest = await self._store.newest(province_code)
        if newest is None:
            raise UnknownProvince(province_code)
        if expected is None:
            raise PreconditionRequired()
        if expected != newest.version:
            raise VersionConflict(newest)
        # The version this process decides with is usually the newest: no need to read it.
        base = self._live.document(province_code, newest.version)
        if base is None:
            base = await self._store.document(province_code, newest.version)
        assert base is not None, "a version listed is a version stored"
        draft = Draft.of(base, newest.version + 1)
        target = edit(draft)
        return await self._commit(newest, base, edits.finish(draft), principal, action, target)

    async def load(
        self, province_code: int, data: Any, expected: int | None, principal: Principal
    ) -> Outcome:
        """A whole province from a taxonomy file's content: its first version, or a new one
        replacing the newest (which `expected` must name)."""
        head = await self._store.head(province_code)
        if head is not None and expected is None:
            raise PreconditionRequired()
        if (head.version if head else 0) != (expected or 0):
            raise VersionConflict(head)
        base = head.document if head else None
        draft = edits.load(data, province_code, base, head.version + 1 if head else 1)
        return await self._commit(head, base, edits.finish(draft), principal, "load", None)

    async def _commit(
        self,
        newest: VersionInfo | None,
        base: TaxonomyDocument | None,
        document: TaxonomyDocument,
        principal: Principal,
        action: str,
        target: str | None,
    ) -> Outcome:
        """Store `document` as the version after `newest` (whose taxonomy is `base`)."""
        changes = diff(base, document)
        if newest is not None and not changes:
            same = await self._store.get(newest.province_code, newest.version)
            assert same is not None
            return Outcome(same, changed=False, published=True)
        version = TaxonomyVersion(
            province_code=document.taxonomy.province_code,
            version=newest.version + 1 if newest else 1,
            author=principal.subject,
            author_role=principal.role.value,
            at=self._clock(),
            action=action,
            target=target,
            summary=summary(changes),
            changes=changes,
            document=document,
        )
        await self._store.append(version)  # VersionConflict: another change was first
        published = await self._live.adopt(version)
        return Outcome(version, changed=True, published=published)


# --- HTTP ------------------------------------------------------------------------------------


class KindView(BaseModel):
    code: str
    name: str


class CurrentTaxonomy(BaseModel):
    """A province's taxonomy as administrators edit it: everything, keywords included."""

    province_code: int
    province: str
    version: int
    changed_by: str
    changed_at: datetime
    kinds: list[KindView]
    taxonomy: Taxonomy
    retired: Retired


class ChangeResult(BaseModel):
    """What a change made: the new version (or the same one, when nothing changed)."""

    province_code: int
    version: int
    changed: bool
    author: str
    at: datetime
    action: str
    target: str | None
    summary: str
    changes: list[Change]
    # False: stored, but not yet announced on acikkapi.taxonomy (Kafka away); routing
    # announces it by itself as soon as Kafka answers.
    published: bool


class VersionPage(BaseModel):
    items: list[VersionInfo]
    total: int
    limit: int
    offset: int


class VersionDetail(VersionInfo):
    changes: list[Change]
    taxonomy: Taxonomy
    retired: Retired


ProvinceCode = Annotated[int, Path(ge=1, le=81, description="İlin plaka kodu")]
Code = Annotated[str, Path(min_length=2, max_length=64)]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='Değişikliğin yapıldığı sürüm, ör. "7" (GET yanıtındaki ETag).',
    ),
]
ExpectedQuery = Annotated[
    int | None, Query(ge=0, description="If-Match yerine: değişikliğin yapıldığı sürüm.")
]


def _result(outcome: Outcome, response: Response) -> ChangeResult:
    version = outcome.version
    response.headers["ETag"] = etag(version.version)
    return ChangeResult(
        province_code=version.province_code,
        version=version.version,
        changed=outcome.changed,
        author=version.author,
        at=version.at,
        action=version.action,
        target=version.target,
        summary=version.summary if outcome.changed else "Değişiklik yok.",
        changes=version.changes if outcome.changed else [],
        published=outcome.published,
    )


def _refusal(exc: Exception) -> HTTPException:
    """The HTTP answer to a refused change."""
    if isinstance(exc, UnknownProvince | edits.Missing):
        return HTTPException(
            status.HTTP_404_NOT_FOUND, detail=[field_error(None, "not_found", str(exc))]
        )
    if isinstance(exc, PreconditionRequired):
        return precondition_required("görev dağılımının")
    if isinstance(exc, VersionConflict):
        current = exc.current
        who = (
            f" Güncel sürüm {current.version}: {current.author}, "
            f"{current.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC — {current.summary}"
            if current
            else ""
        )
        message = (
            "Görev dağılımı siz düzenlerken başka biri tarafından değiştirildi; "
            f"değişikliğiniz kaydedilmedi.{who} Güncel hâli okuyup değişikliğinizi "
            "yeniden uygulayın."
        )
        if current is None:
            return HTTPException(
                status.HTTP_409_CONFLICT,
                detail=[field_error("If-Match", "version_conflict", message)],
            )
        return version_conflict(current.version, message)
    assert isinstance(exc, edits.Rejected)
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.errors)


REFUSED = (UnknownProvince, PreconditionRequired, VersionConflict, edits.Missing, edits.Rejected)


def _own_province(principal: Principal, province_code: int) -> None:
    if principal.province is not None and principal.province != province_code:
        raise forbidden("Bu ilin görev dağılımını düzenleme yetkiniz yok.")


def build_admin_router(admin: TaxonomyAdmin) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["görev dağılımı yönetimi"])

    async def change(
        province_code: int,
        principal: Principal,
        expected: int | None,
        action: str,
        edit: Edit,
        response: Response,
    ) -> ChangeResult:
        _own_province(principal, province_code)
        try:
            outcome = await admin.change(province_code, expected, principal, action, edit)
        except REFUSED as exc:
            raise _refusal(exc) from exc
        return _result(outcome, response)

    # Reading ----------------------------------------------------------------------------------

    @router.get("", summary="Görev dağılımı kayıtlı iller ve güncel sürümleri")
    async def provinces(principal: Admin) -> list[VersionInfo]:
        return await admin.provinces()

    @router.get("/{province_code}", summary="Bir ilin güncel görev dağılımı (ETag: sürüm)")
    async def current(
        province_code: ProvinceCode, principal: Admin, response: Response
    ) -> CurrentTaxonomy:
        _own_province(principal, province_code)
        try:
            head = await admin.current(province_code)
        except UnknownProvince as exc:
            raise _refusal(exc) from exc
        response.headers["ETag"] = etag(head.version)
        taxonomy = head.document.taxonomy
        return CurrentTaxonomy(
            province_code=taxonomy.province_code,
            province=taxonomy.province,
            version=head.version,
            changed_by=head.author,
            changed_at=head.at,
            kinds=[KindView(code=c, name=n) for c, n in sorted(head.document.kinds().items())],
            taxonomy=taxonomy,
            retired=head.document.retired,
        )

    @router.get("/{province_code}/versions", summary="Değişiklik geçmişi (en yeni önce)")
    async def versions(
        province_code: ProvinceCode,
        principal: Admin,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> VersionPage:
        _own_province(principal, province_code)
        try:
            items, total = await admin.log(province_code, limit, offset)
        except UnknownProvince as exc:
            raise _refusal(exc) from exc
        return VersionPage(items=items, total=total, limit=limit, offset=offset)

    @router.get(
        "/{province_code}/versions/{number}",
        summary="Bir sürüm: kimin neyi ne zaman değiştirdiği, farklar ve o sürümdeki tablo",
    )
    async def version(
        province_code: ProvinceCode,
        number: Annotated[int, Path(ge=1)],
        principal: Admin,
    ) -> VersionDetail:
        _own_province(principal, province_code)
        found = await admin.version(province_code, number)
        if found is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=[
                    field_error(
                        None,
                        "not_found",
                        f"{province_name(province_code)} görev dağılımının {number}. sürümü yok.",
                    )
                ],
            )
        return VersionDetail(
            **found.model_dump(exclude={"document", "changes"}),
            changes=found.changes,
            taxonomy=found.document.taxonomy,
            retired=found.document.retired,
        )

    # A whole province ------------------------------------------------------------------------

    @router.put(
        "/{province_code}",
        summary="Bir ilin görev dağılımını dosyadan yükler (yeni il ya da yeni sürüm)",
        description=(
            "Gövde, `services/routing/data/taxonomy_denizli.json` biçiminde bir ilin tüm "
            "tablosudur. İl kayıtlı değilse 1. sürüm olur; kayıtlıysa If-Match ile güncel "
            "sürüm belirtilir ve dosyada olmayan kodlar emekliye ayrılır."
        ),
    )
    async def load(
        province_code: ProvinceCode,
        principal: Admin,
        response: Response,
        data: Annotated[dict[str, Any], Body()],
        if_match: IfMatch = None,
        expected_version: ExpectedQuery = None,
    ) -> ChangeResult:
        _own_province(principal, province_code)
        expected = expected_of(if_match, expected_version)
        try:
            outcome = await admin.load(province_code, data, expected, principal)
        except REFUSED as exc:
            raise _refusal(exc) from exc
        if outcome.version.version == 1 and outcome.changed:
            response.status_code = status.HTTP_201_CREATED
        return _result(outcome, response)

    for resource in RESOURCES:
        _resource_routes(router, change, resource)

    return router


ChangeRoute = Callable[[int, Principal, int | None, str, Edit, Response], Awaitable[ChangeResult]]


@dataclass(frozen=True)
class Resource:
    """One kind of thing in a taxonomy and the edits of it, as POST, PATCH and DELETE routes
    under `/{province_code}/<collection>`."""

    collection: str
    action: str  # the change log's name: "<action>.create", ".update", ".retire"
    noun: str  # what administrators call it, in the routes' summaries
    create: type[edits.Versioned]
    add: Callable[[Draft, Any], str]
    patch: type[edits.Versioned]
    update: Callable[[Draft, str, Any], str]
    retire: Callable[[Draft, str, bool], str]
    retire_note: str
    create_note: str | None = None
    transferable: bool = False  # DELETE takes `transfer` (an institution's district work)


RESOURCES = (
    Resource(
        "kinds",
        "kind",
        "kurum türü",
        edits.KindIn,
        edits.add_kind,
        edits.KindPatch,
        edits.rename_kind,
        lambda d, code, _: edits.retire_kind(d, code),
        "o türde kurum ya da kategori kalmamışsa",
    ),
    Resource(
        "institutions",
        "institution",
        "kurum",
        edits.InstitutionIn,
        edits.add_institution,
        edits.InstitutionPatch,
        edits.update_institution,
        lambda d, code, transfer: edits.retire_institution(d, code, transfer=transfer),
        "sorumlu olduğu canlı kategori kalmamışsa",
        transferable=True,
    ),
    Resource(
        "district-offices",
        "office",
        "ilçe birimi",
        edits.InstitutionIn,
        lambda d, body: edits.add_institution(d, body, district_office=True),
        edits.InstitutionPatch,
        lambda d, code, body: edits.update_institution(d, code, body, district_office=True),
        lambda d, code, transfer: edits.retire_institution(
            d, code, transfer=transfer, district_office=True
        ),
        "sorumlu olduğu canlı kategori kalmamışsa",
        transferable=True,
    ),
    Resource(
        "headings",
        "heading",
        "başlık",
        edits.HeadingIn,
        edits.add_heading,
        edits.HeadingPatch,
        edits.rename_heading,
        lambda d, code, _: edits.retire_heading(d, code),
        "bütün kategorileriyle birlikte",
        create_note="en az bir kategorisiyle",
    ),
    Resource(
        "categories",
        "category",
        "kategori",
        edits.CategoryIn,
        edits.add_category,
        edits.CategoryPatch,
        edits.update_category,
        lambda d, code, _: edits.retire_category(d, code),
        "başlığının tek kategorisi değilse",
        create_note="kod verilmezse başlığın sıradaki kodu",
    ),
)


def _resource_routes(router: APIRouter, change: ChangeRoute, resource: Resource) -> None:
    """POST, PATCH and DELETE of one resource. Each route's body model is set on its
    signature here, so FastAPI validates and documents the resource's own model."""
    collection = f"/{{province_code}}/{resource.collection}"

    async def create(
        province_code: ProvinceCode,
        body: edits.Versioned,
        principal: Admin,
        response: Response,
        if_match: IfMatch = None,
        expected_version: ExpectedQuery = None,
    ) -> ChangeResult:
        return await change(
            province_code,
            principal,
            expected_of(if_match, body.expected_version, expected_version),
            f"{resource.action}.create",
            lambda draft: resource.add(draft, body),
            response,
        )

    async def update(
        province_code: ProvinceCode,
        code: Code,
        body: edits.Versioned,
        principal: Admin,
        response: Response,
        if_match: IfMatch = None,
        expected_version: ExpectedQuery = None,
    ) -> ChangeResult:
        return await change(
            province_code,
            principal,
            expected_of(if_match, body.expected_version, expected_version),
            f"{resource.action}.update",
            lambda draft: resource.update(draft, code.upper(), body),
            response,
        )

    async def retire(
        province_code: ProvinceCode,
        code: Code,
        principal: Admin,
        response: Response,
        if_match: IfMatch = None,
        expected_version: ExpectedQuery = None,
        transfer: Annotated[bool, Query(include_in_schema=False)] = False,
    ) -> ChangeResult:
        return await change(
            province_code,
            principal,
            expected_of(if_match, expected_version),
            f"{resource.action}.retire",
            lambda draft: resource.retire(draft, code.upper(), transfer),
            response,
        )

    create.__annotations__["body"] = resource.create
    update.__annotations__["body"] = resource.patch
    if resource.transferable:
        retire.__annotations__["transfer"] = Annotated[
            bool,
            Query(
                description="Görevleri, kurum olmadan da sorumlusu bulunan kategorilerde "
                "(ör. ilçe birimi yerine il geneli kurum) o kuruma geçsin."
            ),
        ]
    noun = resource.noun
    router.add_api_route(
        collection,
        create,
        methods=["POST"],
        status_code=201,
        summary=f"Yeni {noun}" + (f" ({resource.create_note})" if resource.create_note else ""),
        name=f"add_{resource.action}",
    )
    router.add_api_route(
        f"{collection}/{{code}}",
        update,
        methods=["PATCH"],
        summary=f"Değişiklik: {noun}",
        name=f"update_{resource.action}",
    )
    router.add_api_route(
        f"{collection}/{{code}}",
        retire,
        methods=["DELETE"],
        summary=f"Emekliye ayırma: {noun} ({resource.retire_note})",
        name=f"retire_{resource.action}",
    )
