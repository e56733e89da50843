"""The audit log: who read or changed which application, and when, in an append-only chain.

Every service keeps its own log in its own database (`<service>_audit_log`). The code only
ever inserts into it; nothing here updates or deletes a record, and no HTTP route writes one.

The chain. Each record carries `seq` (1, 2, 3, … with no gaps) and `hash`, the SHA-256 of the
previous record's hash and this record's canonical JSON (`canonical`). A record changed in
place no longer matches its hash; a record removed leaves a gap in `seq`; a record inserted
out of band breaks the next one's `prev`. The newest records removed leave no gap, so the
highest `seq` ever written is also kept apart (`<service>_audit_head`, raised with `$max`);
`verify` walks the chain, compares its end with that witness, and names the first break.
Someone who can write to MongoDB can still rebuild the whole chain after a change; the
counter `acikkapi_audit_records_total`, scraped by Prometheus outside the database, is the
independent witness of how many records each service wrote.

One chain per service, however many processes it runs: a unique index on `seq` makes the
insert itself the compare-and-set. A process takes the head it knows (seq n, hash h), inserts
seq n+1 chained to h, and when another process took n+1 first (E11000) it reads the new head
and tries again. Inside one process the records wait behind an `asyncio.Lock` and whoever
holds it writes all that wait as one ordered `insert_many` (a group commit: a page of the
officers' queue is one round trip), so only processes compete; the head is cached, so an
uncontended write is one insert and one `$max` of the witness. A process that dies mid-write
leaves a prefix of its batch, still a valid chain, so a gap always means a removal.

Failing closed. `record` never fails silently: when MongoDB does not take the record it
raises `AuditUnavailable`, an HTTP 503 with a Turkish message. Call it before the response
that shows personal data is returned, so unaudited personal data is never shown; for a change
call it right after the change, so a change whose audit failed is answered 503 and logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from prometheus_client import Counter
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from services.common.auth import Principal, Role, require_roles
from services.common.mongo import Database, Document

log = logging.getLogger("acikkapi.audit")

# The actions the services record (issue 11's shared decisions). Free strings on purpose:
# a service may add its own, and the auditor filters on them.
READ_PERSONAL = "read_personal"
UNMASK = "unmask"
CHANGE = "change"
EXPORT_PERSONAL = "export_personal"
ANONYMISE = "anonymise"
KEY_ROTATION = "key_rotation"
READ_AUDIT = "read_audit"

GENESIS = "0" * 64  # the `prev` of the first record
WRITE_SECONDS = 5.0  # how long a record may keep losing races before it gives up (503)
DUPLICATE_KEY = 11000

AUDIT_RECORDS = Counter(
    "acikkapi_audit_records_total",
    "Audit records written, by service and action",
    ["service", "action"],
)
AUDIT_FAILURES = Counter(
    "acikkapi_audit_failures_total",
    "Audit records that could not be written (the request was refused with 503)",
    ["service"],
)

_TCKN_RE = re.compile(r"(?<!\d)[1-9]\d{10}(?!\d)")


# Actions that show personal data: recorded before the answer, which is withheld when the
# record cannot be written. The others (changes) are recorded after the change was made.
READS = frozenset({READ_PERSONAL, UNMASK, EXPORT_PERSONAL, READ_AUDIT})

_NOT_SHOWN = (
    "Denetim kaydı şu anda yazılamıyor; kişisel veri içeren bu bilgi güvenlik gereği "
    "gösterilmedi. Lütfen biraz sonra yeniden deneyin."
)
_DONE_UNAUDITED = (
    "İşlem yapıldı, ancak denetim kaydı yazılamadı; durum sistem günlüğüne kaydedildi. "
    "İşlemi yinelemeyin, sistem yöneticisine bildirin."
)


class AuditUnavailable(HTTPException):
    """The audit log did not take a record: personal data is withheld (a read), or the change
    made is reported as unaudited (a change); never a silent pass."""

    def __init__(self, action: str = READ_PERSONAL) -> None:
        super().__init__(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=[
                {
                    "field": None,
                    "code": "audit_unavailable",
                    "message": _NOT_SHOWN if action in READS else _DONE_UNAUDITED,
                }
            ],
            headers={"Retry-After": "5"},
        )


# --- the chain: pure functions, no I/O ------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value in the one JSON form the hash is taken over (times in UTC, to milliseconds,
    which is what MongoDB keeps of a date)."""
    if isinstance(value, datetime):
        at = value if value.tzinfo else value.replace(tzinfo=UTC)
        return at.astimezone(UTC).isoformat(timespec="milliseconds")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical(record: Mapping[str, Any]) -> bytes:
    """The record's bytes for the hash: every field but `_id` and `hash`, keys sorted."""
    body = {k: v for k, v in record.items() if k not in ("_id", "hash")}
    return json.dumps(
        _plain(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def chain_hash(prev: str, record: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + canonical(record)).hexdigest()


def seal(record: Mapping[str, Any], seq: int, prev: str) -> Document:
    """`record` as the chain's record number `seq`, following the record whose hash is `prev`."""
    sealed: Document = {**record, "seq": seq, "prev": prev}
    sealed["hash"] = chain_hash(prev, sealed)
    return sealed


class ChainBreak(BaseModel):
    seq: int = Field(description="Zincirin bozulduğu ilk kaydın sıra numarası.")
    problem: Literal["missing", "altered", "relinked"] = Field(
        description=(
            "missing: bu sıra numaralı kayıt yok (silinmiş); altered: kaydın içeriği özetiyle "
            "uyuşmuyor (değiştirilmiş); relinked: kayıt önceki kaydın özetine bağlı değil."
        )
    )
    message: str = Field(description="Bozulmanın Türkçe açıklaması.")


class ChainWalk:
    """Checks records given in `seq` order, one at a time; remembers the first break."""

    def __init__(self) -> None:
        self.checked = 0
        self.last_seq = 0
        self.last_hash = GENESIS
        self.first_break: ChainBreak | None = None

    def feed(self, record: Mapping[str, Any]) -> bool:
        """False once the chain is broken (the walk can stop)."""
        if self.first_break is not None:
            return False
        seq = int(record.get("seq", 0))
        expected = self.last_seq + 1
        if seq != expected:
            self.first_break = ChainBreak(
                seq=expected,
                problem="missing",
                message=f"{expected} sıra numaralı denetim kaydı yok; kayıt silinmiş olabilir.",
            )
            return False
        if record.get("prev") != self.last_hash:
            self.first_break = ChainBreak(
                seq=seq,
                problem="relinked",
                message=f"{seq} sıra numaralı kayıt önceki kayda bağlı değil.",
            )
            return False
        if record.get("hash") != chain_hash(self.last_hash, record):
            self.first_break = ChainBreak(
                seq=seq,
                problem="altered",
                message=f"{seq} sıra numaralı kaydın içeriği değiştirilmiş.",
            )
            return False
        self.checked += 1
        self.last_seq = seq
        self.last_hash = str(record["hash"])
        return True


# --- the record -----------------------------------------------------------------------------


def _actor(principal: Principal | None) -> Document | None:
    """Who acted, by role and scope only: never a name, and never a TC Kimlik No (a citizen's
    subject is the number's blind index; anything that looks like a number is masked)."""
    if principal is None:
        return None
    return {
        "subject": _TCKN_RE.sub("***********", principal.subject),
        "role": principal.role.value,
        "institution": principal.institution,
        "unit": principal.unit,
        "province": principal.province,
        "district": principal.district,
    }


def _detail(detail: Mapping[str, object] | None) -> Document | None:
    """Plain JSON values only (stored exactly as hashed), any TC Kimlik No in them masked (an
    auditor may have searched for one)."""
    if not detail:
        return None
    text = json.dumps(_plain(dict(detail)), default=str, ensure_ascii=False)
    loaded: Document = json.loads(_TCKN_RE.sub("***********", text))
    return loaded


def _request_part(request: Request | None) -> Document | None:
    """Method and path only: a query string may carry personal data (a phone, a number)."""
    if request is None:
        return None
    client = request.client.host if request.client else None
    return {
        "method": request.method,
        "path": request.url.path,
        "client": client,
        "request_id": request.headers.get("x-request-id"),
    }


class AuditLog:
    """One service's audit log. `record` appends; `query` and `verify` read."""

    def __init__(self, db: Database, service: str) -> None:
        self.service = service
        self._records = db[f"{service}_audit_log"]
        self._witness = db[f"{service}_audit_head"]
        self._lock = asyncio.Lock()
        self._head: tuple[int, str] | None = None  # (seq, hash) of the last record known
        self._pending: list[tuple[Document, asyncio.Future[None]]] = []

    async def ensure_indexes(self) -> None:
        await self._records.create_index([("seq", ASCENDING)], unique=True)
        await self._records.create_index([("application_id", ASCENDING), ("seq", DESCENDING)])
        await self._records.create_index([("application_number", ASCENDING), ("seq", DESCENDING)])
        await self._records.create_index([("at", ASCENDING)])
        await self._create_witness(0)

    async def _create_witness(self, seq: int) -> None:
        try:
            await self._witness.insert_one({"_id": "head", "seq": seq})
        except DuplicateKeyError:
            await self._witness.update_one({"_id": "head"}, {"$max": {"seq": seq}})

    async def record(
        self,
        *,
        actor: Principal | None,
        action: str,
        application_id: str | None = None,
        application_number: str | None = None,
        fields: Sequence[str] = (),
        reason: str | None = None,
        request: Request | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> None:
        """Appends one record; raises `AuditUnavailable` (503) if MongoDB does not take it."""
        now = datetime.now(UTC)
        entry: Document = {
            "at": now.replace(microsecond=now.microsecond // 1000 * 1000),
            "service": self.service,
            "action": action,
            "actor": _actor(actor),
            "application_id": application_id,
            "application_number": application_number,
            "fields": list(fields),
            "reason": _TCKN_RE.sub("***********", reason) if reason else None,
            "request": _request_part(request),
            "detail": _detail(detail),
        }
        try:
            await self._append(entry)
        except Exception as exc:
            AUDIT_FAILURES.labels(self.service).inc()
            # What the record would have said, so a change made without it can be traced.
            log.error(
                "audit record not written",
                extra={
                    "action": action,
                    "actor": entry["actor"],
                    "application_id": application_id,
                    "application_number": application_number,
                    "detail": entry["detail"],
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            raise AuditUnavailable(action) from exc
        AUDIT_RECORDS.labels(self.service, action).inc()

    async def _append(self, entry: Document) -> None:
        """Group commit: whoever holds the lock writes every record waiting in this process
        as one ordered `insert_many` of consecutive `seq`s, so a busy process pays one round
        trip and one race for many records."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, done))
        # One turn of the loop first, so records started together (a page's) share a batch.
        await asyncio.sleep(0)
        async with self._lock:
            if not done.done():
                batch, self._pending = self._pending, []
                # Shielded: a request cancelled while it holds the lock does not abandon the
                # records of the others in its batch (the chain's safety rests on the unique
                # index, not on the lock, so a flush outliving its lock does no harm).
                await asyncio.shield(self._flush(batch))
        await done

    async def _flush(self, batch: list[tuple[Document, asyncio.Future[None]]]) -> None:
        try:
            await self._write([entry for entry, _ in batch])
        except Exception as exc:
            for _, waiting in batch:
                if not waiting.done():
                    waiting.set_exception(exc)
        else:
            for _, waiting in batch:
                if not waiting.done():
                    waiting.set_result(None)

    async def _write(self, entries: list[Document]) -> None:
        """Chains `entries` after the head and inserts them; after a lost race (another
        process took the next `seq`) it reads the new head and chains the rest after it."""
        deadline = asyncio.get_running_loop().time() + WRITE_SECONDS
        attempt = 0
        while entries:
            seq, prev = self._head or await self._read_head()
            sealed: list[Document] = []
            for entry in entries:
                seq += 1
                sealed.append(seal(entry, seq, prev))
                prev = sealed[-1]["hash"]
            try:
                await self._records.insert_many(sealed, ordered=True)
            except BulkWriteError as exc:
                landed = int(exc.details.get("nInserted", 0))
                codes = {e.get("code") for e in exc.details.get("writeErrors", [])}
                if landed:
                    self._head = (int(sealed[landed - 1]["seq"]), sealed[landed - 1]["hash"])
                    entries = entries[landed:]
                if codes != {DUPLICATE_KEY}:
                    self._head = None
                    raise
                self._head = None  # another process took the next seq: read the new head
                attempt += 1
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"audit chain contended for {WRITE_SECONDS}s") from exc
                # A random pause, growing, so racing processes stop meeting at the same seq.
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
                continue
            except BaseException:
                self._head = None  # unknown how much landed: read the head next time
                raise
            self._head = (seq, prev)
            await self._raise_witness(seq)
            return

    async def _raise_witness(self, seq: int) -> None:
        """The highest `seq` ever written, kept apart: removing the newest records leaves no
        gap in the chain, but leaves the witness above the chain's end."""
        try:
            # No upsert: nx-27017 takes ~180 ms for one (the document exists from the start).
            raised = await self._witness.update_one({"_id": "head"}, {"$max": {"seq": seq}})
            if raised.matched_count == 0:
                await self._create_witness(seq)
        except PyMongoError as exc:
            # The records are written; only the truncation check lags until the next write.
            log.warning("audit witness not raised", extra={"error": f"{type(exc).__name__}: {exc}"})

    async def _read_head(self) -> tuple[int, str]:
        last = await self._records.find_one(
            {}, sort=[("seq", DESCENDING)], projection={"seq": 1, "hash": 1}
        )
        return (0, GENESIS) if last is None else (int(last["seq"]), str(last["hash"]))

    async def query(
        self,
        *,
        application_id: str | None = None,
        application_number: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[Document]:
        """Records newest first, matching every filter given."""
        where: Document = {}
        if application_id:
            where["application_id"] = application_id
        if application_number:
            where["application_number"] = application_number
        if actor:
            where["actor.subject"] = actor
        if action:
            where["action"] = action
        if since or until:
            where["at"] = {
                **({"$gte": since} if since else {}),
                **({"$lt": until} if until else {}),
            }
        if before_seq is not None:
            where["seq"] = {"$lt": before_seq}
        cursor = self._records.find(where, sort=[("seq", DESCENDING)], limit=limit)
        return [doc async for doc in cursor]

    async def verify(self, batch: int = 1000) -> tuple[ChainWalk, int]:
        """Walks the whole chain in `seq` order; returns the walk and the highest seq stored."""
        walk = ChainWalk()
        after = 0
        while True:
            cursor = self._records.find(
                {"seq": {"$gt": after}}, sort=[("seq", ASCENDING)], limit=batch
            )
            page = [doc async for doc in cursor]
            for doc in page:
                if not walk.feed(doc):
                    break
            if walk.first_break is not None or len(page) < batch:
                break
            after = int(page[-1]["seq"])
        head, _ = await self._read_head()
        witness = await self._witness.find_one({"_id": "head"})
        written = int(witness["seq"]) if witness else 0
        if walk.first_break is None and head == walk.last_seq and written > head:
            span = f"{head + 1}" if written == head + 1 else f"{head + 1}–{written}"
            walk.first_break = ChainBreak(
                seq=head + 1,
                problem="missing",
                message=f"Son denetim kayıtları ({span}) yok; silinmiş olabilir.",
            )
        return walk, head


def audit_of(request: Request) -> AuditLog:
    """The audit log of the service that got `request`."""
    audit: AuditLog = request.app.state.audit
    return audit


# --- the auditor's HTTP view ----------------------------------------------------------------


class AuditActor(BaseModel):
    subject: str = Field(description="İşlemi yapanın kimliği (oturum anahtarındaki konu).")
    role: str = Field(description="İşlemi yapanın rolü.")
    institution: str | None = Field(None, description="Kurum kodu (kurum personeli ise).")
    unit: str | None = Field(None, description="Kurumun alt birimi (varsa).")
    province: int | None = Field(None, description="İl plaka kodu (yetki alanı).")
    district: str | None = Field(None, description="İlçe (yetki alanı ilçe ise).")


class AuditRequest(BaseModel):
    method: str = Field(description="HTTP yöntemi.")
    path: str = Field(
        description="İstek yolu (sorgu dizgisi kişisel veri taşıyabileceği için yok)."
    )
    client: str | None = Field(None, description="İstemci adresi.")
    request_id: str | None = Field(None, description="İsteğin kimliği (X-Request-ID), varsa.")


class AuditRecord(BaseModel):
    seq: int = Field(description="Kaydın zincirdeki sıra numarası.")
    at: datetime = Field(description="Kaydın zamanı (UTC).")
    service: str = Field(description="Kaydı yazan servis.")
    action: str = Field(
        description=(
            "İşlem: read_personal (kişisel veri gösterildi), unmask (gizli başvuru sahibinin "
            "kimliği açıldı), change (personelin durum değişikliği), export_personal (KVKK "
            "md. 11 dışa aktarım), anonymise, key_rotation, read_audit (denetim kaydı okundu)."
        )
    )
    actor: AuditActor | None = Field(None, description="İşlemi yapan (yoksa sistem).")
    application_id: str | None = Field(None, description="Başvurunun kimliği.")
    application_number: str | None = Field(None, description="Başvuru numarası.")
    fields: list[str] = Field(description="Gösterilen kişisel veri alanları.")
    reason: str | None = Field(None, description="Gerekçe (örneğin kimliğin açılması için).")
    request: AuditRequest | None = Field(None, description="İşlemin yapıldığı HTTP isteği.")
    detail: dict[str, Any] | None = Field(None, description="Ek bilgi (örneğin işlemin adı).")
    prev: str = Field(description="Önceki kaydın SHA-256 özeti.")
    hash: str = Field(description="Bu kaydın SHA-256 özeti (önceki özet + kaydın kendisi).")


class AuditPage(BaseModel):
    records: list[AuditRecord] = Field(description="Kayıtlar, en yenisi önce.")
    next_cursor: str | None = Field(
        None, description="Sonraki sayfa için `cursor` değeri; son sayfada boş."
    )


class AuditVerification(BaseModel):
    service: str = Field(description="Denetim kaydı doğrulanan servis.")
    valid: bool = Field(description="Zincir baştan sona bozulmamış mı.")
    checked: int = Field(description="Doğrulanan kayıt sayısı.")
    head_seq: int = Field(description="Saklanan en büyük sıra numarası.")
    first_break: ChainBreak | None = Field(None, description="Zincirin ilk bozulduğu yer.")


class AuditErrorItem(BaseModel):
    field: str | None = Field(None, description="Hatalı alan (varsa).")
    code: str = Field(description="Hatanın kodu.")
    message: str = Field(description="Hatanın Türkçe açıklaması.")


class AuditErrors(BaseModel):
    errors: list[AuditErrorItem]


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": AuditErrors, "description": "Oturum anahtarı yok veya geçersiz."},
    403: {"model": AuditErrors, "description": "Denetim kaydını yalnız denetçi okuyabilir."},
    503: {
        "model": AuditErrors,
        "description": "Okuma denetim kaydına yazılamadı; kayıtlar gösterilmedi.",
    },
}


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        # At most 18 digits: MongoDB compares 64-bit integers, a longer one would be a 500.
        if prefix != "seq" or not (number.isascii() and number.isdigit() and len(number) <= 18):
            raise ValueError(cursor)
        return int(number)
    except ValueError as exc:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {"field": "cursor", "code": "invalid_cursor", "message": "Geçersiz sayfa imleci."}
            ],
        ) from exc


def _record_out(doc: Document) -> AuditRecord:
    return AuditRecord.model_validate({k: v for k, v in doc.items() if k != "_id"})


Auditor = Annotated[Principal, Depends(require_roles(Role.auditor))]


def build_audit_router() -> APIRouter:
    """`GET /api/v1/audit` and `/api/v1/audit/verify` for auditors (and admins) only; no route
    writes. Reading the log is itself recorded (`read_audit`)."""
    router = APIRouter(prefix="/api/v1/audit", tags=["denetim kaydı"])

    @router.get(
        "",
        summary="Denetim kaydını sorgula (yalnız denetçi)",
        description=(
            "Bu servisin denetim kaydı: kimin hangi başvurunun hangi kişisel verisini ne zaman "
            "gördüğü veya değiştirdiği. En yeni kayıt önce gelir. Okuma da denetim kaydına "
            "yazılır."
        ),
        response_model=AuditPage,
        responses={
            **_ERRORS,
            422: {"model": AuditErrors, "description": "Süzgeç veya sayfa imleci geçersiz."},
        },
    )
    async def list_records(
        request: Request,
        principal: Auditor,
        application_id: Annotated[
            str | None, Query(max_length=100, description="Başvurunun kimliği.")
        ] = None,
        application_number: Annotated[
            str | None, Query(max_length=40, description="Başvuru numarası.")
        ] = None,
        actor: Annotated[
            str | None, Query(max_length=200, description="İşlemi yapanın kimliği (konu).")
        ] = None,
        action: Annotated[
            str | None, Query(max_length=40, description="İşlem (örneğin read_personal).")
        ] = None,
        from_: Annotated[
            datetime | None, Query(alias="from", description="Bu andan itibaren (ISO 8601).")
        ] = None,
        to: Annotated[datetime | None, Query(description="Bu andan önce (ISO 8601).")] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="Sayfadaki kayıt sayısı.")] = 100,
        cursor: Annotated[
            str | None, Query(max_length=100, description="Önceki sayfanın `next_cursor`'ı.")
        ] = None,
    ) -> AuditPage:
        audit = audit_of(request)
        before = _decode_cursor(cursor) if cursor else None
        since, until = _utc("from", from_), _utc("to", to)
        filters = {
            "application_id": application_id,
            "application_number": application_number,
            "actor": actor,
            "action": action,
            "from": from_,
            "to": to,
            "limit": limit,
            "cursor": before,
        }
        # Recorded before the answer: an unaudited read of the audit log is never served.
        await audit.record(
            actor=principal,
            action=READ_AUDIT,
            request=request,  # the filters go in `detail`: an application's history stays its own
            detail={"operation": "query", **{k: v for k, v in filters.items() if v is not None}},
        )
        try:
            docs = await audit.query(
                application_id=application_id,
                application_number=application_number,
                actor=actor,
                action=action,
                since=since,
                until=until,
                before_seq=before,
                limit=limit,
            )
        except PyMongoError as exc:
            raise AuditUnavailable() from exc
        more = len(docs) == limit
        return AuditPage(
            records=[_record_out(d) for d in docs],
            next_cursor=_encode_cursor(int(docs[-1]["seq"])) if more and docs else None,
        )

    @router.get(
        "/verify",
        summary="Denetim kaydı zincirini doğrula (yalnız denetçi)",
        description=(
            "Kayıtları sırayla yürür, her kaydın özetini yeniden hesaplar ve ilk bozulmayı "
            "(silinmiş, değiştirilmiş veya araya sokulmuş kayıt) bildirir."
        ),
        response_model=AuditVerification,
        responses=_ERRORS,
    )
    async def verify(request: Request, principal: Auditor) -> AuditVerification:
        audit = audit_of(request)
        await audit.record(
            actor=principal, action=READ_AUDIT, request=request, detail={"operation": "verify"}
        )
        try:
            walk, head = await audit.verify()
        except PyMongoError as exc:
            raise AuditUnavailable() from exc
        first_break = walk.first_break
        if first_break is None and head != walk.last_seq:
            # The walk ended early although higher records exist: the one after is missing.
            first_break = ChainBreak(
                seq=walk.last_seq + 1,
                problem="missing",
                message=f"{walk.last_seq + 1} sıra numaralı denetim kaydı yok.",
            )
        return AuditVerification(
            service=audit.service,
            valid=first_break is None,
            checked=walk.checked,
            head_seq=head,
            first_break=first_break,
        )

    return router


def _utc(field: str, moment: datetime | None) -> datetime | None:
    """A filter's moment in UTC (a moment without a zone is taken as UTC)."""
    if moment is None:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+03:00 falls before the first UTC moment
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"field": field, "code": "out_of_range", "message": "Tarih aralık dışında."}],
        ) from exc
