"""Optimistic versions over HTTP: a change names the version it was made on (`If-Match: "7"`, the
`ETag` of the GET, or an `expected_version` field), and is refused when it names none (428) or
an older one (409), so two administrators never overwrite each other unawares."""

from __future__ import annotations

from fastapi import HTTPException, status

from services.common.errors import field_error


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None, *given: int | None) -> int | None:
    """The version a change was made on: the first of `given` (a body or query field) that is
    set, else the `If-Match` header's; None when neither says."""
    for value in given:
        if value is not None:
            return value
    if if_match is None or not if_match.strip():
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    try:
        return int(tag)
    except ValueError:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=[
                field_error(
                    "If-Match",
                    "invalid_version",
                    'If-Match bir sürüm numarası olmalıdır, ör. If-Match: "7".',
                )
            ],
        ) from None


def precondition_required(what: str) -> HTTPException:
    """428: the change did not say which version of `what` (Turkish, in the genitive:
    "takvimin") it was made on."""
    return HTTPException(
        status.HTTP_428_PRECONDITION_REQUIRED,
        detail=[
            field_error(
                "If-Match",
                "version_required",
                f"Değişikliğin {what} hangi sürümü üzerinde yapıldığı belirtilmeli: If-Match "
                'başlığında (ör. If-Match: "7") ya da expected_version alanında. Güncel sürüm, '
                "GET yanıtındaki ETag'dir.",
            )
        ],
    )


def version_conflict(current: int, message: str) -> HTTPException:
    """409: someone else changed it first; the answer names the newest version (ETag)."""
    return HTTPException(
        status.HTTP_409_CONFLICT,
        detail=[field_error("If-Match", "version_conflict", message)],
        headers={"ETag": etag(current)},
    )
