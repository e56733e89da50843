"""The one error shape of every service: `{"errors": [{"field", "code", "message"}]}`, in Turkish.

FastAPI's validation errors, HTTP exceptions and unexpected failures are all answered in it
(`install_error_handlers`); handlers build their own with `field_error` and `error_response`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("acikkapi.http")

_MESSAGES = {
    "missing": "Bu alan zorunludur.",
    "string_too_short": "Bu alan en az {min_length} karakter olmalıdır.",
    "string_too_long": "Bu alan en fazla {max_length} karakter olabilir.",
    "string_type": "Bu alan metin olmalıdır.",
    "int_type": "Bu alan tam sayı olmalıdır.",
    "int_parsing": "Bu alan tam sayı olmalıdır.",
    "float_type": "Bu alan sayı olmalıdır.",
    "float_parsing": "Bu alan sayı olmalıdır.",
    "bool_type": "Bu alan doğru/yanlış olmalıdır.",
    "enum": "Geçersiz değer; izin verilenler: {expected}.",
    "literal_error": "Geçersiz değer; izin verilenler: {expected}.",
    "extra_forbidden": "Bu alan tanınmıyor.",
    "greater_than_equal": "Bu alan en az {ge} olmalıdır.",
    "less_than_equal": "Bu alan en fazla {le} olabilir.",
    "model_type": "Bu alan bir nesne olmalıdır.",
    "model_attributes_type": "Bu alan bir nesne olmalıdır.",
    "dict_type": "Bu alan bir nesne olmalıdır.",
    "list_type": "Bu alan bir liste olmalıdır.",
    "too_long": "Bu alana en fazla {max_length} öğe verilebilir.",
    "date_from_datetime_parsing": "Tarih YYYY-AA-GG biçiminde olmalıdır.",
    "date_parsing": "Tarih YYYY-AA-GG biçiminde olmalıdır.",
    "uuid_parsing": "Geçersiz kimlik biçimi.",
    "value_error": "{msg}",
}


def field_error(field: str | None, code: str, message: str) -> dict[str, Any]:
    return {"field": field, "code": code, "message": message}


def error_response(
    status: int, errors: list[dict[str, Any]], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


def _loc_to_field(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def translate_validation_errors(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str | None] = set()
    for err in errors:
        field = _loc_to_field(err.get("loc", ()))
        if field in seen:
            continue  # one entry per bad field
        seen.add(field)
        code = err.get("type", "invalid")
        ctx = dict(err.get("ctx") or {})
        msg = str(ctx.get("error", err.get("msg", "")))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        template = _MESSAGES.get(code, "Geçersiz değer.")
        try:
            message = template.format(msg=msg, **ctx)
        except (KeyError, IndexError):
            message = template
        out.append(field_error(field, code, message))
    return out


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(
            400, [field_error(None, "invalid_json", "İstek gövdesi geçerli bir JSON değil.")]
        )
    return error_response(422, translate_validation_errors(errors))


_STATUS_TEXT = {
    400: ("bad_request", "İstek geçersiz."),
    401: ("unauthorized", "Kimlik doğrulaması gerekli."),
    403: ("forbidden", "Bu işlem için yetkiniz yok."),
    404: ("not_found", "Aradığınız kayıt bulunamadı."),
    405: ("method_not_allowed", "Bu yöntem bu adreste desteklenmiyor."),
    409: ("conflict", "İstek mevcut kayıtla çelişiyor."),
    413: ("payload_too_large", "İstek gövdesi çok büyük."),
    415: ("unsupported_media_type", "İstek gövdesi JSON olmalıdır."),
}


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.detail, list):
        errors = exc.detail
    else:
        code, default = _STATUS_TEXT.get(exc.status_code, ("error", "İstek işlenemedi."))
        # Starlette's own detail is the English status phrase: say it in Turkish instead.
        own = isinstance(exc.detail, str) and exc.detail != HTTPStatus(exc.status_code).phrase
        message = exc.detail if own else default
        errors = [field_error(None, code, message)]
    return error_response(exc.status_code, errors, headers=getattr(exc, "headers", None))


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return error_response(
        500, [field_error(None, "internal_error", "Beklenmeyen bir hata oluştu; kayıt alındı.")]
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
