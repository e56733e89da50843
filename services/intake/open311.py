"""Open311 GeoReport v2 at `/open311/v2/`: the standard door for reporting apps. It lists the
live taxonomy's categories as services, registers a posted request as an application through
intake's own rules, and tells anyone how a request is getting on, in JSON or XML as the
resource's extension says. What is left out, and why, is in docs/open311.md.

The reading side is public (the standard asks no key for it), so it shows no personal data:
no citizen text, no address but the district, coordinates rounded to about a hundred metres,
and the institution's answer only to the client that posted the request.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, ParamSpec
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from services.common.application_number import InvalidApplicationNumber, canonical
from services.common.backpressure import Admission, Overloaded
from services.common.events import ApplicationType, Outcome, Status, TaxonomyPublished
from services.common.labels import TYPE_LABELS
from services.common.middleware import OWN_CONTENT_TYPE_CHECK
from services.common.provinces import province_name
from services.common.settings import Settings
from services.common.turkish import turkish_lower
from services.common.turkish_time import ISTANBUL
from services.intake.channels import Vouched
from services.intake.handlers import (
    APPLICATIONS,
    IdempotencyConflict,
    Intake,
    InvalidApplication,
    Unavailable,
)
from services.intake.limits import LimitExceeded
from services.intake.messaging import ServedProvinces
from services.intake.progress import ANSWERED, COLLECTION, HELD, Progress, progress_of

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANNEL = "open311"
CONTENT_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
# The standard's default window and cap for GET requests.
DEFAULT_SPAN = timedelta(days=90)
MAX_REQUESTS = 1000
# Three decimals of a degree are ~110 m north-south (~85 m east-west here): enough to put a
# pothole on a map, too coarse to point at one house.
COORDINATE_DECIMALS = 3
# A registration not stored by then is answered 503 (as the JSON API does).
REGISTER_TIMEOUT = 10.0
IDEMPOTENCY_KEY_MAX = 160

router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"])


class Open311Error(Exception):
    """An error in the standard's shape: `[{"code", "description"}]`, `status` for HTTP."""

    def __init__(
        self, status: int, *descriptions: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__("; ".join(descriptions))
        self.status = status
        self.descriptions = descriptions
        self.headers = dict(headers or {})


# --- JSON and XML --------------------------------------------------------------------------------

# The standard's XML is the JSON with every list wrapped (Spark convention): list name -> item.
_ITEM_TAGS = {
    "services": "service",
    "attributes": "attribute",
    "values": "value",
    "service_requests": "request",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
}
# Characters XML 1.0 cannot carry at all, even escaped (control characters).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def to_xml(root: str, content: Any) -> bytes:
    """`content` as the standard's XML document under `root`, UTF-8, with its declaration."""
    element = ET.Element(root)
    _fill(element, root, content)
    body = ET.tostring(element, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}'.encode()


def _fill(element: ET.Element, name: str, content: Any) -> None:
    if isinstance(content, Mapping):
        for key, value in content.items():
            _fill(ET.SubElement(element, key), key, value)
    elif isinstance(content, list | tuple):
        item = _ITEM_TAGS[name]
        for value in content:
            _fill(ET.SubElement(element, item), item, value)
    elif content is None:
        return  # an empty element: <account_id/>
    elif isinstance(content, bool):
        element.text = "true" if content else "false"
    else:
        element.text = _NOT_XML.sub("", str(content))


def render(fmt: str, root: str, content: Any, status: int = 200) -> Response:
    if fmt == "xml":
        return Response(to_xml(root, content), status, media_type=CONTENT_TYPES["xml"])
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, media_type=CONTENT_TYPES["json"])


def render_error(fmt: str, error: Open311Error) -> Response:
    errors = [{"code": error.status, "description": d} for d in error.descriptions]
    response = render(fmt if fmt in CONTENT_TYPES else "json", "errors", errors, error.status)
    response.headers.update(error.headers)
    return response


P = ParamSpec("P")


def open311(
    endpoint: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """Answers every failure of `endpoint` in the standard's error shape and format."""

    @functools.wraps(endpoint)
    async def answer(*args: P.args, **kwargs: P.kwargs) -> Response:
        fmt = str(kwargs.get("fmt", "json"))
        try:
            if fmt not in CONTENT_TYPES:
                raise Open311Error(404, f"Desteklenmeyen biçim: .{fmt}; .json veya .xml kullanın.")
            return await endpoint(*args, **kwargs)
        except Open311Error as exc:
            return render_error(fmt, exc)
        except ConnectionFailure:
            return render_error(fmt, unavailable("veritabanına ulaşılamıyor"))

    return answer


def unavailable(why: str, retry_after: int = 5) -> Open311Error:
    return Open311Error(
        503,
        f"Şu anda hizmet verilemiyor: {why}. Lütfen biraz sonra tekrar deneyin.",
        headers={"Retry-After": str(retry_after)},
    )


# --- The service list and definitions ----------------------------------------------------------

OUTCOME_LABELS = {
    Outcome.olumlu: "olumlu",
    Outcome.olumsuz: "olumsuz",
    Outcome.kismen_olumlu: "kısmen olumlu",
}
# The attributes a Turkish application needs beyond the standard's fields.
TCKN = "tckn"
INITIALS = "anne_kizlik_harfleri"
DISTRICT = "ilce"
TYPE = "basvuru_turu"
SUBJECT = "konu"
_ASCII_FOLD = str.maketrans("çğıöşüâîû", "cgiosuaiu")
_WORD = re.compile(r"[^\W\d_]{3,}")
_NOT_KEYWORDS = frozenset({"ile", "veya", "için", "diğer", "ve"})


def _category_names(taxonomy: TaxonomyPublished) -> dict[str, tuple[str, str]]:
    """category code -> (category name, heading name)."""
    return {c.code: (c.name, h.name) for h in taxonomy.headings for c in h.categories}


def keywords(*names: str) -> str:
    """The words of the names, for the standard's comma-separated keywords."""
    words: dict[str, None] = {}
    for name in names:
        for word in _WORD.findall(turkish_lower(name)):
            if word not in _NOT_KEYWORDS:
                words[word] = None
    return ", ".join(words)


def service_list(taxonomy: TaxonomyPublished) -> list[dict[str, Any]]:
    """Every category of the province's taxonomy as an Open311 service, by heading."""
    return [
        {
            "service_code": category.code,
            "service_name": category.name,
            "description": f"{heading.name}: {category.name}. {taxonomy.province} Valiliği "
            "Açık Kapı başvurusu; TC Kimlik No ve ilçe istenir.",
            "metadata": True,
            "type": "realtime",
            "keywords": keywords(category.name, heading.name),
            "group": heading.name,
        }
        for heading in taxonomy.headings
        for category in heading.categories
    ]


def service_definition(taxonomy: TaxonomyPublished, service_code: str) -> dict[str, Any]:
    if service_code not in _category_names(taxonomy):
        raise Open311Error(404, f"service_code bulunamadı: {service_code}")

    def attribute(
        order: int,
        code: str,
        datatype: str,
        description: str,
        *,
        required: bool = True,
        datatype_description: str | None = None,
        values: Iterable[tuple[str, str]] | None = None,
        variable: bool = True,
    ) -> dict[str, Any]:
        found: dict[str, Any] = {
            "variable": variable,
            "code": code,
            "datatype": datatype,
            "required": required,
            "datatype_description": datatype_description,
            "order": order,
            "description": description,
        }
        if values is not None:
            found["values"] = [{"key": key, "name": name} for key, name in values]
        return found

    return {
        "service_code": service_code,
        "attributes": [
            attribute(
                1,
                "zorunlu_standart_alanlar",
                "string",
                "Standart alanlardan first_name, last_name, phone (Türkiye cep telefonu) ve "
                "description (en az 10 karakter) bu hizmette zorunludur. Başvuru numarası ve "
                "takip bağlantısı bu telefona SMS ile gönderilir.",
                required=False,
                variable=False,
            ),
            attribute(
                2,
                TCKN,
                "string",
                "Başvuru sahibinin TC Kimlik Numarası.",
                datatype_description="11 hane, 0 ile başlamaz.",
            ),
            attribute(
                3,
                INITIALS,
                "string",
                "Annenin kızlık soyadının ilk ve son harfi (kimlik doğrulaması için).",
                datatype_description="Tam iki harf, ör. YZ.",
            ),
            attribute(
                4,
                DISTRICT,
                "singlevaluelist",
                f"Başvurunun ilgili olduğu {taxonomy.province} ilçesi.",
                values=((d, d) for d in taxonomy.districts),
            ),
            attribute(
                5,
                TYPE,
                "singlevaluelist",
                "Başvurunun türü.",
                values=((t.value, label) for t, label in TYPE_LABELS.items()),
            ),
            attribute(
                6,
                SUBJECT,
                "string",
                "Başvurunun konusu; verilmezse hizmetin adı konu olur.",
                required=False,
                datatype_description="5 ile 200 karakter arası.",
            ),
        ],
    }


# --- Posting a request -------------------------------------------------------------------------

_ATTRIBUTE = re.compile(r"attribute\[([^\[\]]+)\](?:\[\])?")
# Where each field of intake's application came from, for errors in the client's own terms.
OPEN311_FIELDS = {
    "applicant.tckn": f"attribute[{TCKN}]",
    "applicant.mother_maiden_initials": f"attribute[{INITIALS}]",
    "applicant.first_name": "first_name",
    "applicant.last_name": "last_name",
    "applicant.phone": "phone",
    "applicant.email": "email",
    "applicant": f"first_name, last_name, attribute[{TCKN}]",
    "district": f"attribute[{DISTRICT}]",
    "application_type": f"attribute[{TYPE}]",
    "subject": f"attribute[{SUBJECT}]",
    "text": "description",
    "category_code": "service_code",
    "location.lat": "lat",
    "location.lon": "long",
    "location.address": "address_string",
    "province_code": "jurisdiction_id",
}


@dataclass(frozen=True)
class Posted:
    """A POST's form: the standard fields and the `attribute[code]` answers, blanks dropped
    (the standard treats an empty argument as an absent one)."""

    fields: dict[str, str]
    attributes: dict[str, str]

    @classmethod
    def parse(cls, body: bytes) -> Posted:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Open311Error(400, "Gövde UTF-8 olmalıdır.") from None
        try:
            pairs = parse_qsl(text, keep_blank_values=False, max_num_fields=200, errors="strict")
        except (ValueError, UnicodeDecodeError):
            raise Open311Error(400, "Gövde application/x-www-form-urlencoded olmalıdır.") from None
        fields: dict[str, str] = {}
        attributes: dict[str, str] = {}
        for name, value in pairs:
            value = value.strip()
            if not value:
                continue
            match = _ATTRIBUTE.fullmatch(name)
            # The first value counts (a multivaluelist would send several; none is defined).
            if match:
                attributes.setdefault(match.group(1), value)
            else:
                fields.setdefault(name, value)
        return cls(fields, attributes)


def application_type_of(value: str | None) -> str | None:
    """The type's key, from its key or its Turkish name in any case ("Şikâyet" -> sikayet)."""
    if value is None:
        return None
    key = turkish_lower(value).translate(_ASCII_FOLD).strip().replace(" ", "_")
    return key if key in ApplicationType._value2member_map_ else value


def _coordinate(posted: Posted, name: str) -> float:
    try:
        value = float(posted.fields[name])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise Open311Error(400, f"{name}: WGS84 derece cinsinden bir sayı olmalıdır.")
    return value


def application_body(
    posted: Posted, taxonomy: TaxonomyPublished, service_code: str
) -> dict[str, Any]:
    """The application intake's rules check, from an Open311 request (see OPEN311_FIELDS)."""
    fields, attributes = posted.fields, posted.attributes
    has_lat, has_long = "lat" in fields, "long" in fields
    if has_lat != has_long:
        raise Open311Error(400, "lat, long: enlem ve boylam birlikte gönderilmelidir.")
    address = fields.get("address_string")
    if not has_lat and address is None:
        raise Open311Error(
            400,
            "lat, long, address_string: konum zorunludur; lat ve long ya da address_string "
            "gönderin (address_id desteklenmiyor).",
        )
    applicant = {
        "tckn": attributes.get(TCKN),
        "first_name": fields.get("first_name"),
        "last_name": fields.get("last_name"),
        "mother_maiden_initials": attributes.get(INITIALS),
        "phone": fields.get("phone"),
        "email": fields.get("email"),
    }
    text = fields.get("description")
    location = None
    if has_lat:
        location = {
            "lat": _coordinate(posted, "lat"),
            "lon": _coordinate(posted, "long"),
            "address": address,
        }
    elif text is not None and address is not None:
        # No coordinates to hang the address on: the institution reads it with the text.
        text = f"{text}\n\nAdres: {address}"
    category_name, _ = _category_names(taxonomy)[service_code]
    body: dict[str, Any] = {
        "channel": CHANNEL,
        "applicant": {k: v for k, v in applicant.items() if v is not None},
        "province_code": taxonomy.province_code,
        "district": attributes.get(DISTRICT),
        "application_type": application_type_of(attributes.get(TYPE)),
        "category_code": service_code,
        "subject": attributes.get(SUBJECT) or category_name,
        "text": text,
    }
    if location is not None:
        body["location"] = location
    return {k: v for k, v in body.items() if v is not None}


def open311_errors(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """Intake's field errors as the standard's descriptions: "<field>: <Turkish message>"."""
    return [
        f"{OPEN311_FIELDS.get(e.get('field') or '', e.get('field') or 'istek')}: {e['message']}"
        for e in errors
    ]


def api_clients(settings: Settings) -> dict[str, str]:
    """key -> client name, from `open311_api_keys` ("client:key,client2:key2")."""
    clients: dict[str, str] = {}
    for entry in settings.open311_api_keys.split(","):
        name, _, key = entry.strip().partition(":")
        if name.strip() and key.strip():
            clients[key.strip()] = name.strip()
    return clients


def client_of(settings: Settings, api_key: str | None) -> str | None:
    """The client an api_key belongs to, compared in constant time with every known key."""
    if not api_key:
        return None
    found = None
    for key, name in api_clients(settings).items():
        if hmac.compare_digest(key.encode(), api_key.encode()):
            found = name
    return found


def service_notice(posted: Posted) -> str:
    notice = (
        "Başvurunuz alındı. Başvuru numaranız ve takip bağlantısı cep telefonunuza SMS ile "
        "gönderilecek; kurumun yanıtı da SMS ile bildirilecek."
    )
    if "media_url" in posted.fields:
        notice += " Gönderilen media_url kaydedilmedi: bu arayüzden ek alınmıyor."
    return notice


# --- Reading requests --------------------------------------------------------------------------


class RequestQuery:
    """The applications as Open311 reads them, over intake's own collection: only the fields
    the public answer shows (never the applicant), by number or by the standard's filters."""

    PROJECTION: ClassVar[dict[str, int]] = {
        name: 1
        for name in (
            "application_number",
            "province_code",
            "district",
            "category_code",
            "application_type",
            "location",
            "received_at",
            "recorded_by",
            "progress",
            "progress_answers",
        )
    }

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._applications = db[COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._applications.create_index(
            [("province_code", ASCENDING), ("received_at", DESCENDING)],
            name="open311_province_received",
        )

    async def by_numbers(self, numbers: list[str]) -> list[dict[str, Any]]:
        found = self._applications.find({"application_number": {"$in": numbers}}, self.PROJECTION)
        return [doc async for doc in found.sort("received_at", DESCENDING)]

    async def search(
        self,
        *,
        province_code: int,
        start: datetime,
        end: datetime,
        service_codes: list[str],
        closed: bool | None,
        limit: int = MAX_REQUESTS,
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {
            "province_code": province_code,
            "received_at": {"$gte": start, "$lte": end},
        }
        if service_codes:
            # The category routing decided, else the one the application came with.
            query["$or"] = [
                {"progress.category_code": {"$in": service_codes}},
                {
                    "progress.category_code": {"$exists": False},
                    "category_code": {"$in": service_codes},
                },
            ]
        if closed is not None:
            done = [s.value for s in ANSWERED]
            query["progress.status"] = {"$in": done} if closed else {"$nin": done}
        found = self._applications.find(query, self.PROJECTION).sort("received_at", DESCENDING)
        return [doc async for doc in found.limit(limit)]


def w3(value: datetime | None) -> str | None:
    """The standard's date format (ISO 8601 with offset), on Istanbul's clock."""
    return value.astimezone(ISTANBUL).isoformat(timespec="seconds") if value else None


def status_notes(progress: Progress | None, *, reveal_answer: bool) -> str:
    """Where the request stands, in Turkish; the answer's text only for `reveal_answer`."""
    if progress is None or progress.status is Status.received:
        return "Başvuru alındı; ilgili kuruma yönlendiriliyor."
    agency = progress.institution_code or "ilgili kurum"
    notes = {
        Status.awaiting_routing: "Başvuru alındı; konusu görevlilerce belirlenip ilgili kuruma "
        "yönlendirilecek.",
        Status.routed: f"Başvuru {agency} kurumuna yönlendirildi.",
        Status.opened: f"Başvuru {agency} tarafından inceleniyor.",
        Status.returned: "Başvuru, kurum görev alanı dışında olduğunu bildirdiği için yeniden "
        "yönlendiriliyor.",
        Status.answered: f"Başvuru {agency} tarafından yanıtlandı.",
        Status.closed: f"Başvuru {agency} tarafından yanıtlandı ve kapatıldı.",
    }
    text = notes[progress.status]
    if progress.status in ANSWERED and progress.outcome is not None:
        text += f" Sonuç: {OUTCOME_LABELS[progress.outcome]}."
        if reveal_answer and progress.answer_text:
            text += f" Yanıt: {progress.answer_text}"
        elif not reveal_answer:
            text += " Yanıtın metni, başvuru sahibine SMS ile gönderilen takip sayfasındadır."
    elif progress.overdue:
        text += " Yanıt süresi geçti."
    return text


def service_request(
    doc: Mapping[str, Any],
    names: Mapping[str, tuple[str, str]],
    *,
    reveal_answer: bool = False,
) -> dict[str, Any]:
    """One application as the standard's service request, with no personal data: no text
    (the citizen's words may name people), the district for the address, rounded
    coordinates. `names`: category code -> (name, heading) of the application's province."""
    progress = progress_of(doc)
    code = (progress.category_code if progress else None) or doc.get("category_code")
    closed = progress is not None and progress.status in ANSWERED
    location = doc.get("location") or {}
    type_label = TYPE_LABELS[ApplicationType(doc["application_type"])]
    service_name = names[code][0] if code is not None and code in names else None
    return {
        "service_request_id": doc["application_number"],
        "status": "closed" if closed else "open",
        "status_notes": status_notes(progress, reveal_answer=reveal_answer),
        "service_name": service_name,
        "service_code": code,
        "description": f"{type_label}: {service_name}" if service_name else type_label,
        "agency_responsible": (
            progress.institution_code if progress and progress.status in HELD else None
        ),
        "service_notice": None,
        "requested_datetime": w3(doc["received_at"]),
        "updated_datetime": w3(progress.at if progress else doc["received_at"]),
        "expected_datetime": w3(progress.deadline_at if progress else None),
        "address": f"{doc['district']}, {province_name(doc['province_code'])}",
        "address_id": None,
        "zipcode": None,
        "lat": _rounded(location.get("lat")),
        "long": _rounded(location.get("lon")),
        "media_url": None,
    }


def _rounded(value: float | None) -> float | None:
    return round(value, COORDINATE_DECIMALS) if value is not None else None


def _instant(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Open311Error(
            400, f"{name}: saat dilimiyle ISO 8601 biçiminde olmalıdır (ör. 2026-03-01T00:00:00Z)."
        )
    return moment


def window(
    start_date: str | None, end_date: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """The standard's date range: the last 90 days by default, never longer than 90 days."""
    start = _instant("start_date", start_date) if start_date else None
    end = _instant("end_date", end_date) if end_date else None
    if start is None and end is None:
        end = now
    if start is None:
        assert end is not None
        start = end - DEFAULT_SPAN
    if end is None:
        end = start + DEFAULT_SPAN
    if end < start:
        raise Open311Error(400, "end_date, start_date'ten önce olamaz.")
    if end - start > DEFAULT_SPAN:
        raise Open311Error(400, "start_date ile end_date arası 90 günü geçemez.")
    return start, end


def _listed(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def closed_filter(status: str | None) -> bool | None:
    wanted = set(_listed(status))
    if wanted - {"open", "closed"}:
        raise Open311Error(400, "status: yalnız open ve closed verilebilir (virgülle ayrılmış).")
    if len(wanted) == 1:
        return wanted == {"closed"}
    return None


def _number(value: str) -> str:
    try:
        return canonical(value)
    except InvalidApplicationNumber as exc:
        raise Open311Error(400, f"service_request_id {value!r}: {exc}") from None


# --- Routes ------------------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    return request.app.state.runtime.settings  # type: ignore[no-any-return]


def _taxonomy(request: Request) -> TaxonomyPublished:
    served: ServedProvinces = request.app.state.served
    taxonomy = served.taxonomy(_settings(request).default_province_code)
    if taxonomy is None:
        raise unavailable("ilin konu ve kurum tablosu henüz okunmadı")
    return taxonomy


def _names(request: Request, province_code: int) -> dict[str, tuple[str, str]]:
    served: ServedProvinces = request.app.state.served
    taxonomy = served.taxonomy(province_code)
    return _category_names(taxonomy) if taxonomy else {}


READER_KEY = "İsteği gönderen istemcinin anahtarı: kendi isteklerinde yanıtın metni de gelir."


@router.get("/discovery.{fmt}", summary="Servis keşif belgesi (Open311 Service Discovery)")
@open311
async def discovery(request: Request, fmt: str) -> Response:
    served: ServedProvinces = request.app.state.served
    taxonomy = served.taxonomy(_settings(request).default_province_code)
    changeset = w3(taxonomy.occurred_at) if taxonomy else None
    document = {
        "changeset": changeset,
        "contact": "Valilik Açık Kapı birimi",
        "key_service": "Başvuru göndermek için api_key, valilik bilgi işlem biriminden alınır.",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": str(request.url_for("service_list_route", fmt="json")).rsplit("/", 1)[0],
                "changeset": changeset,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }
    return render(fmt, "discovery", document)


@router.get(
    "/services.{fmt}",
    summary="Hizmet listesi: ilin her konusu bir Open311 hizmeti",
    name="service_list_route",
)
@open311
async def services(request: Request, fmt: str) -> Response:
    return render(fmt, "services", service_list(_taxonomy(request)))


@router.get("/services/{service_code}.{fmt}", summary="Hizmet tanımı: ek alanlar")
@open311
async def definition(request: Request, service_code: str, fmt: str) -> Response:
    return render(fmt, "service_definition", service_definition(_taxonomy(request), service_code))


@router.post(
    "/requests.{fmt}",
    summary="Başvuru gönder (application/x-www-form-urlencoded, api_key zorunlu)",
    description=(
        "Open311 isteğini Açık Kapı başvurusu olarak kaydeder; `service_request_id` başvuru "
        "numarasıdır. İsteğe bağlı `Idempotency-Key` başlığıyla tekrarlanan istek ilk yanıtı "
        "alır. Hatalar Open311 biçimindedir: `[{code, description}]`."
    ),
    # The form is read here; a wrong Content-Type is answered 415 in Open311's shape (the
    # common ContentTypeMiddleware leaves this route to it).
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        },
        OWN_CONTENT_TYPE_CHECK: True,
    },
)
@open311
async def post_request(request: Request, fmt: str) -> Response:
    settings = _settings(request)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise Open311Error(415, "Gövde application/x-www-form-urlencoded olmalıdır.")
    posted = Posted.parse(await request.body())
    client = client_of(settings, posted.fields.get("api_key"))
    if client is None:
        raise Open311Error(403, "api_key eksik veya geçersiz; başvuru kaydedilmedi.")
    intake: Intake = request.app.state.intake
    if not request.app.state.runtime.started.is_set() or not intake.judging():
        raise unavailable("servis henüz hazır değil")
    taxonomy = _taxonomy(request)
    service_code = posted.fields.get("service_code")
    if service_code is None:
        raise Open311Error(400, "service_code: Bu alan zorunludur.")
    if service_code not in _category_names(taxonomy):
        raise Open311Error(404, f"service_code bulunamadı: {service_code}")
    body = application_body(posted, taxonomy, service_code)
    idempotency_key = _idempotency_key(request, client)
    admission: Admission = request.app.state.admission
    outcome = "rejected"
    try:
        form = intake.validate(body)
        recorded_by = f"{CHANNEL}:{client}"
        async with admission.admit(), asyncio.timeout(REGISTER_TIMEOUT):
            # The client is trusted to pass the citizen on, not to vouch for them: the registry
            # check and the citizen's daily limits apply as on the web form.
            await intake.admit(Vouched(body, recorded_by=recorded_by), form, idempotency_key)
            registration = await intake.register(
                form, body=body, idempotency_key=idempotency_key, recorded_by=recorded_by
            )
        outcome = "replayed" if registration.replayed else "accepted"
    except LimitExceeded as exc:
        # A keyed retry of one that registered before the limit was reached: its first answer.
        replayed = await intake.replay(body, idempotency_key=idempotency_key)
        if replayed is None:
            outcome = "refused"
            raise Open311Error(
                429, exc.message, headers={"Retry-After": str(exc.retry_after)}
            ) from None
        registration, outcome = replayed, "replayed"
    except Unavailable as exc:  # the population registry could not be asked
        outcome = "refused"
        raise Open311Error(
            503, exc.message, headers={"Retry-After": str(exc.retry_after)}
        ) from None
    except InvalidApplication as exc:
        raise Open311Error(400, *open311_errors(exc.errors)) from None
    except IdempotencyConflict:
        outcome = "conflict"
        raise Open311Error(
            400, "Idempotency-Key: bu anahtar daha önce başka bir istek için kullanılmış."
        ) from None
    except Overloaded as exc:
        outcome = "refused"
        raise Open311Error(
            503, exc.message, headers={"Retry-After": str(exc.retry_after)}
        ) from None
    except (ConnectionFailure, TimeoutError):
        outcome = "refused"
        admission.note_down("mongodb")
        raise unavailable(
            "başvuru kaydedilemedi; aynı Idempotency-Key ile yeniden deneyin"
        ) from None
    finally:
        APPLICATIONS.labels("http", CHANNEL, outcome).inc()
    answer = {
        "service_request_id": registration.application.application_number,
        "service_notice": service_notice(posted),
        "account_id": None,
    }
    return render(fmt, "service_requests", [answer])


def _idempotency_key(request: Request, client: str) -> str | None:
    """The client's Idempotency-Key, kept apart from other clients' and channels' keys."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        raise Open311Error(
            400, f"Idempotency-Key: 1 ile {IDEMPOTENCY_KEY_MAX} karakter arasında olmalıdır."
        )
    return f"{CHANNEL}:{client}:{key}"


def _reader(request: Request, api_key: str | None) -> str | None:
    """The client asking, if it gave a key (a wrong one is refused, an absent one is public)."""
    if api_key is None or not api_key.strip():
        return None
    client = client_of(_settings(request), api_key.strip())
    if client is None:
        raise Open311Error(403, "api_key geçersiz.")
    return client


def _requests(
    request: Request, docs: list[dict[str, Any]], reader: str | None
) -> list[dict[str, Any]]:
    names: dict[int, dict[str, tuple[str, str]]] = {}
    answers = []
    for doc in docs:
        province = doc["province_code"]
        if province not in names:
            names[province] = _names(request, province)
        mine = reader is not None and doc.get("recorded_by") == f"{CHANNEL}:{reader}"
        answers.append(service_request(doc, names[province], reveal_answer=mine))
    return answers


@router.get("/requests.{fmt}", summary="Başvuruların durumu (kişisel veri içermez)")
@open311
async def list_requests(
    request: Request,
    fmt: str,
    service_request_id: Annotated[str | None, Query(description="Virgülle ayrılmış")] = None,
    service_code: Annotated[str | None, Query(description="Virgülle ayrılmış")] = None,
    start_date: Annotated[str | None, Query(description="ör. 2026-03-01T00:00:00Z")] = None,
    end_date: Annotated[str | None, Query(description="ör. 2026-03-31T00:00:00Z")] = None,
    status: Annotated[str | None, Query(description="open, closed")] = None,
    api_key: Annotated[str | None, Query(description=READER_KEY)] = None,
) -> Response:
    reader = _reader(request, api_key)
    query: RequestQuery = request.app.state.open311_requests
    numbers = _listed(service_request_id)
    if numbers:  # the standard: this overrides every other argument
        docs = await query.by_numbers([_number(n) for n in numbers[:MAX_REQUESTS]])
    else:
        start, end = window(start_date, end_date, datetime.now(UTC))
        docs = await query.search(
            province_code=_settings(request).default_province_code,
            start=start,
            end=end,
            service_codes=_listed(service_code),
            closed=closed_filter(status),
        )
    return render(fmt, "service_requests", _requests(request, docs, reader))


@router.get("/requests/{service_request_id}.{fmt}", summary="Bir başvurunun durumu")
@open311
async def get_request(
    request: Request,
    service_request_id: str,
    fmt: str,
    api_key: Annotated[str | None, Query(description=READER_KEY)] = None,
) -> Response:
    reader = _reader(request, api_key)
    query: RequestQuery = request.app.state.open311_requests
    docs = await query.by_numbers([_number(service_request_id)])
    if not docs:
        raise Open311Error(404, f"service_request_id bulunamadı: {service_request_id}")
    return render(fmt, "service_requests", _requests(request, docs, reader))
