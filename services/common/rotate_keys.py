"""`python -m services.common.rotate_keys --service NAME [--yes]`: re-encrypts one service's
stored personal data under the current PII key, while the service runs.

A rotation without downtime, one key at a time (services/common/pii.py):
1. Every process learns the new key B as an old key first (`AK_PII_OLD_KEYS=B`), with
   `AK_PII_INDEX_KEY` set to the key the blind indexes were made with (the first
   `AK_PII_KEY`): during the rolling restart an old process can already read what a new one
   writes.
2. B becomes current: `AK_PII_KEY=B`, `AK_PII_OLD_KEYS=A` (rolling restart again). New
   ciphertexts and sealed event fields are under B.
3. This command, once per service with a database: every string of every collection of the
   service that is a ciphertext under an old key (v1, or v2 with an old key id) is decrypted
   and encrypted again under B, including the events waiting in outboxes and the sealed event
   fields inside them. Each value is written with a compare-and-set on its old value, so a
   service's own concurrent write wins (the value it wrote is current anyway); a value that
   lost a race is read again and retried. Run twice, the second run changes nothing.
4. When every service is done and the topics' retention has passed (sealed fields of events
   still on the topics are under A), A leaves `AK_PII_OLD_KEYS`.

Without `--yes` the command only counts what it would re-encrypt. Blind indexes do not change
(their key does not rotate). The audit log's collection is never touched: it is an
append-only hash chain; the rotation itself is recorded in it ("key_rotation").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from tqdm import tqdm

from services.common.mongo import Collection, Database, make_client, service_database
from services.common.pii import BUS_LABEL, PiiCipher, PiiKeyError, ciphertext_kid, is_ciphertext
from services.common.settings import SERVICE_PORTS, Settings, get_settings

BATCH = 500
ROUNDS = 3  # how often values that lost a race to a writer are read again and retried
KEY_ROTATION = "key_rotation"
GRIDFS_SUFFIXES = (".files", ".chunks", "_files", "_chunks")

# A string that may hold a ciphertext: one itself, or JSON text with one inside (an outbox
# entry's event; nx-27017 keeps sub-documents of arrays as JSON text).
_MAYBE = re.compile(r"v[12]:")


class Keyrings:
    """The keyrings a service's data is under: at rest, and the bus's (sealed event fields
    inside outbox entries)."""

    def __init__(self, rest: PiiCipher) -> None:
        self.rest = rest
        self.bus = rest.derive(BUS_LABEL)

    def stale(self, value: str) -> PiiCipher | None:
        """The keyring whose old key `value` is under; None if current or not a ciphertext."""
        if not is_ciphertext(value):
            return None
        kid = ciphertext_kid(value)
        if kid is None:
            return self.rest  # v1: only ever written at rest
        for ring in (self.rest, self.bus):
            if kid in ring.kids:
                return ring if kid != ring.kid else None
        return None

    def renew(self, value: str) -> str | None:
        """`value` with everything under an old key re-encrypted; None when nothing is.

        Raises `PiiKeyError` when an old ciphertext does not open (a damaged value)."""
        ring = self.stale(value)
        if ring is not None:
            plain = ring.decrypt(value)
            return ring.encrypt(self.renew(plain) or plain)
        if value[:1] in "{[" and _MAYBE.search(value):
            try:
                data = json.loads(value)
            except ValueError:
                return None
            renewed, changed = self.renew_tree(data)
            if changed:
                return json.dumps(renewed, ensure_ascii=False, separators=(",", ":"))
        return None

    def renew_tree(self, data: Any) -> tuple[Any, bool]:
        if isinstance(data, str):
            new = self.renew(data)
            return (data, False) if new is None else (new, True)
        if isinstance(data, dict):
            pairs = [(k, self.renew_tree(v)) for k, v in data.items()]
            return {k: v for k, (v, _) in pairs}, any(c for _, (_, c) in pairs)
        if isinstance(data, list):
            items = [self.renew_tree(v) for v in data]
            return [v for v, _ in items], any(c for _, c in items)
        return data, False


@dataclass(frozen=True)
class Change:
    """One stored value to replace, as a compare-and-set write."""

    document_id: Any
    match: str  # the path the filter compares with the old value
    target: str  # the path `$set` writes (positional `$` inside an array)
    old: str
    new: str

    def write(self) -> UpdateOne:
        return UpdateOne(
            {"_id": self.document_id, self.match: self.old}, {"$set": {self.target: self.new}}
        )


@dataclass
class Counts:
    collections: int = 0
    documents: int = 0
    changed_documents: int = 0
    values: int = 0  # re-encrypted (or, in a dry run, to be)
    retried: int = 0  # lost a race to a writer and were read again
    left: int = 0  # still lost after ROUNDS: run the command again
    unreadable: int = 0  # an old ciphertext no key opens
    unsupported: int = 0  # in nested arrays, where no compare-and-set can reach it
    per_collection: dict[str, int] = field(default_factory=dict)


def changes_of(document: dict[str, Any], rings: Keyrings, counts: Counts) -> list[Change]:
    """The compare-and-set writes that bring one document's values to the current key."""
    out: list[Change] = []

    def visit(value: Any, path: list[str | int]) -> None:
        if isinstance(value, str):
            try:
                new = rings.renew(value)
            except PiiKeyError:
                counts.unreadable += 1
                return
            if new is not None:
                change = _change(document["_id"], path, value, new)
                if change is None:
                    counts.unsupported += 1
                else:
                    out.append(change)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, [*path, key])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, [*path, index])

    for key, value in document.items():
        if key != "_id":
            visit(value, [key])
    return out


def _change(document_id: Any, path: Sequence[str | int], old: str, new: str) -> Change | None:
    keys = [p for p in path if isinstance(p, str)]
    if any("." in k or k.startswith("$") for k in keys):
        return None
    arrays = [i for i, p in enumerate(path) if isinstance(p, int)]
    if not arrays:
        dotted = ".".join(keys)
        return Change(document_id, dotted, dotted, old, new)
    if len(arrays) > 1:
        return None
    # One array on the way: the filter finds the element holding the old value, and the
    # positional `$` writes that element (a ciphertext is never stored twice: fresh nonces).
    at = arrays[0]
    head, tail = [str(p) for p in path[:at]], [str(p) for p in path[at + 1 :]]
    return Change(document_id, ".".join(head + tail), ".".join([*head, "$", *tail]), old, new)


async def rotate_collection(
    collection: Collection, rings: Keyrings, counts: Counts, *, write: bool, show: bool
) -> None:
    total = await collection.estimated_document_count()
    bar = tqdm(
        total=total,
        unit="belge",
        desc=f"Anahtar yenileniyor: {collection.name}",
        disable=not show,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    before = counts.values
    with bar:
        batch: list[dict[str, Any]] = []
        async for document in collection.find({}, batch_size=BATCH):
            batch.append(document)
            if len(batch) >= BATCH:
                await _rotate_batch(collection, batch, rings, counts, write=write)
                bar.update(len(batch))
                batch = []
        if batch:
            await _rotate_batch(collection, batch, rings, counts, write=write)
            bar.update(len(batch))
    counts.per_collection[collection.name] = counts.values - before


async def _rotate_batch(
    collection: Collection,
    documents: list[dict[str, Any]],
    rings: Keyrings,
    counts: Counts,
    *,
    write: bool,
) -> None:
    counts.documents += len(documents)
    for round_ in range(ROUNDS + 1):
        # Values that cannot be re-encrypted are counted once, on the first reading.
        seen = counts if round_ == 0 else Counts()
        changes = [c for d in documents for c in changes_of(d, rings, seen)]
        if round_ == 0:
            counts.changed_documents += len({repr(c.document_id) for c in changes})
        if not changes:
            return
        if not write:
            counts.values += len(changes)
            return
        result = await collection.bulk_write([c.write() for c in changes], ordered=False)
        # Modified, not matched: a server that matched a positional write it could not apply
        # (nx-27017 with sub-documents in arrays) must not pass for a rotated value.
        counts.values += result.modified_count
        lost = len(changes) - result.modified_count
        if not lost:
            return
        if round_ == ROUNDS:
            counts.left += lost
            return
        # Read the documents again: what a writer changed meanwhile is looked at afresh.
        counts.retried += lost
        ids = list({repr(c.document_id): c.document_id for c in changes}.values())
        documents = [d async for d in collection.find({"_id": {"$in": ids}})]


def service_collections(names: Sequence[str], service: str) -> Iterator[str]:
    """The service's own collections (nx-27017 keeps every database's collections in one
    namespace; the services' names keep them apart), without its audit log (an append-only
    hash chain, with its head) and without GridFS buckets (attachments' bytes, which this key
    does not encrypt)."""
    for name in sorted(names):
        if not name.startswith(f"{service}_") or name.startswith(f"{service}_audit_"):
            continue
        if not name.endswith(GRIDFS_SUFFIXES):
            yield name


async def rotate(
    settings: Settings, service: str, *, write: bool, show: bool = True
) -> tuple[Counts, float]:
    rings = Keyrings(PiiCipher.from_settings(settings))
    client = make_client(settings, service)
    counts = Counts()
    started = time.monotonic()
    try:
        db = service_database(client, settings, service)
        for name in service_collections(await db.list_collection_names(), service):
            counts.collections += 1
            await rotate_collection(db[name], rings, counts, write=write, show=show)
        elapsed = time.monotonic() - started
        if write:
            await _audit(db, service, rings, counts)
    finally:
        await client.close()
    return counts, elapsed


async def _audit(db: Database, service: str, rings: Keyrings, counts: Counts) -> None:
    """The rotation in the service's audit log, where there is one (services/common/audit.py)."""
    try:
        from services.common.audit import AuditLog
    except ImportError:
        return
    log = AuditLog(db, service)
    await log.ensure_indexes()
    await log.record(
        actor=None,
        action=KEY_ROTATION,
        detail={
            "key_id": rings.rest.kid,
            "bus_key_id": rings.bus.kid,
            "collections": counts.collections,
            "documents": counts.documents,
            "values": counts.values,
            "left": counts.left,
            "unreadable": counts.unreadable,
        },
    )


def report(service: str, counts: Counts, elapsed: float, *, write: bool) -> str:
    rate = counts.documents / elapsed if elapsed > 0 else 0.0
    verb = "yeniden şifrelendi" if write else "yeniden şifrelenecek (deneme: --yes verilmedi)"
    lines = [
        f"{service}: {counts.collections} koleksiyon, {counts.documents} belge tarandı "
        f"({elapsed:.1f} sn, {rate:.0f} belge/sn).",
        f"{counts.values} değer, {counts.changed_documents} belgede {verb}.",
    ]
    lines += [f"  {name}: {n}" for name, n in counts.per_collection.items() if n]
    if counts.retried:
        lines.append(f"{counts.retried} değer eşzamanlı bir yazmayla çakıştı, yeniden okundu.")
    if counts.left:
        lines.append(f"{counts.left} değer çakışmalar yüzünden kaldı: komutu yeniden çalıştırın.")
    if counts.unreadable:
        lines.append(
            f"UYARI: {counts.unreadable} değer hiçbir anahtarla açılamadı (bozuk ya da "
            "AK_PII_OLD_KEYS'te olmayan bir anahtarla şifrelenmiş); dokunulmadı."
        )
    if counts.unsupported:
        lines.append(
            f"UYARI: {counts.unsupported} değer iç içe dizilerde; karşılaştırmalı yazma "
            "yapılamadığı için dokunulmadı."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.rotate_keys",
        description=(
            "Bir servisin veritabanındaki kişisel verileri güncel PII anahtarıyla yeniden "
            "şifreler (AK_PII_KEY güncel, AK_PII_OLD_KEYS eski anahtarlar). Servis çalışırken "
            "çalıştırılabilir; ikinci çalıştırma bir şey değiştirmez."
        ),
    )
    parser.add_argument("--service", required=True, choices=sorted(SERVICE_PORTS))
    parser.add_argument(
        "--yes", action="store_true", help="Yaz (verilmezse yalnızca sayar, hiçbir şey yazmaz)."
    )
    parser.add_argument("--quiet", action="store_true", help="İlerleme çubuğunu gösterme.")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        counts, elapsed = asyncio.run(
            rotate(settings, args.service, write=args.yes, show=not args.quiet)
        )
    except ValueError as exc:  # the keyring's settings do not fit together
        print(f"Anahtar ayarları hatalı: {exc}", file=sys.stderr)
        return 2
    print(report(args.service, counts, elapsed, write=args.yes))
    return 1 if counts.left or counts.unreadable else 0


if __name__ == "__main__":
    raise SystemExit(main())
