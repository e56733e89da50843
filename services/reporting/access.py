"""Who may read which report: the province scope every report route and page enforces.

A governorship's staff read their own province (the `prov` claim of their token, or the
deployment's default province when the token has none); only an admin without a province claim
reads any province. An institution reads only its own figures in its province. Refusals are
403 with a Turkish message, never a silently narrowed report.
"""

from __future__ import annotations

import re

from services.common.auth import Principal, Role, forbidden
from services.common.settings import Settings
from services.reporting.cells import ANY, Scope
from services.reporting.query import QueryError

_INSTITUTION_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,39}$")
# The governor reads reports only (issue 11); auditors and counter or routing officers none.
READERS = (Role.officer, Role.supervisor, Role.admin, Role.institution, Role.governor)


def _clean_district(text: str | None) -> str:
    if text is None or not text.strip():
        return ANY
    district = " ".join(text.split())
    if len(district) > 64 or "|" in district:
        raise QueryError(
            [
                {
                    "field": "district",
                    "code": "invalid_district",
                    "message": "İlçe adı en fazla 64 karakter olabilir ve | içeremez.",
                }
            ]
        )
    return district


def _clean_institution(text: str | None) -> str:
    if text is None or not text.strip():
        return ANY
    code = text.strip().upper()
    if not _INSTITUTION_RE.fullmatch(code):
        raise QueryError(
            [
                {
                    "field": "institution_code",
                    "code": "invalid_institution",
                    "message": "Kurum kodu büyük harf, rakam, - ve _ ile en fazla 40 karakterdir "
                    "(ör. DESKI).",
                }
            ]
        )
    return code


def home_province(principal: Principal, settings: Settings) -> int | None:
    """The one province this principal may read; None: any (an admin with no province)."""
    if principal.role is Role.admin and principal.province is None:
        return None
    return principal.province or settings.default_province_code


def resolve_scope(
    principal: Principal,
    settings: Settings,
    *,
    province_code: int | None,
    district: str | None = None,
    institution: str | None = None,
) -> Scope:
    """The scope a principal asked for, or 403 if it reaches outside what they may read.
    Bad values raise `QueryError` (422)."""
    if principal.role not in READERS:
        raise forbidden("Raporları yalnızca valilik personeli ve kurumlar görebilir.")
    home = home_province(principal, settings)
    province = province_code or home or settings.default_province_code
    if home is not None and province != home:
        raise forbidden("Yalnızca kendi ilinizin raporlarını görebilirsiniz.")
    district_key = _clean_district(district)
    institution_key = _clean_institution(institution)
    if principal.role is Role.institution:
        own = (principal.institution or "").upper()
        if institution_key not in (ANY, own):
            raise forbidden("Yalnızca kendi kurumunuzun raporlarını görebilirsiniz.")
        institution_key = own
    return Scope(province, district_key, institution_key)
