"""The audit log's hash chain, without MongoDB: sealing, canonical form and the walk that finds
the first break."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from services.common.audit import GENESIS, ChainWalk, canonical, chain_hash, seal


def chain(n: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        entry = {
            "at": datetime(2026, 12, 5, 6, 0, seq, 123000, tzinfo=UTC),
            "service": "routing",
            "action": "read_personal",
            "actor": {"subject": f"officer-{seq}", "role": "officer"},
            "application_id": f"app-{seq}",
            "fields": ["subject", "text"],
            "detail": {"operation": "pending"},
        }
        records.append(seal(entry, seq, prev))
        prev = records[-1]["hash"]
    return records


def walk(records: list[dict[str, Any]]) -> ChainWalk:
    w = ChainWalk()
    for record in records:
        if not w.feed(record):
            break
    return w


def test_an_intact_chain_walks_to_its_end() -> None:
    w = walk(chain(5))
    assert w.first_break is None
    assert (w.checked, w.last_seq) == (5, 5)


def test_the_first_record_follows_the_genesis_hash() -> None:
    first = chain(1)[0]
    assert first["prev"] == GENESIS
    assert first["hash"] == chain_hash(GENESIS, first)


def test_a_changed_field_is_found_as_altered_at_its_record() -> None:
    records = chain(5)
    records[2]["actor"] = {"subject": "someone-else", "role": "officer"}
    w = walk(records)
    assert w.first_break is not None
    assert (w.first_break.seq, w.first_break.problem) == (3, "altered")
    assert w.checked == 2


def test_a_removed_record_is_found_as_missing() -> None:
    records = chain(5)
    del records[1]
    w = walk(records)
    assert w.first_break is not None
    assert (w.first_break.seq, w.first_break.problem) == (2, "missing")


def test_a_record_rewritten_with_a_fresh_hash_breaks_the_next_link() -> None:
    records = chain(4)
    forged = {**records[1], "reason": "forged"}
    records[1] = seal(
        {k: v for k, v in forged.items() if k not in ("seq", "prev", "hash")}, 2, records[0]["hash"]
    )
    w = walk(records)
    assert w.first_break is not None
    assert (w.first_break.seq, w.first_break.problem) == (3, "relinked")


def test_canonical_form_ignores_key_order_the_mongo_id_and_the_hash() -> None:
    record = chain(1)[0]
    shuffled = dict(reversed(list(record.items())))
    shuffled["_id"] = "anything"
    assert canonical(shuffled) == canonical(record)
    assert chain_hash(GENESIS, shuffled) == record["hash"]


def test_the_same_moment_in_another_zone_hashes_the_same() -> None:
    # MongoDB gives dates back in UTC (or with a fixed offset): the hash must not change.
    record = chain(1)[0]
    elsewhere = {**record, "at": record["at"].astimezone(timezone(timedelta(hours=3)))}
    assert chain_hash(GENESIS, elsewhere) == record["hash"]


def test_turkish_text_is_hashed_as_utf8_not_escaped() -> None:
    record = {"reason": "Şikâyetçinin kimliği açıldı: ğüşıöç İ"}
    assert "Şikâyetçinin".encode() in canonical(record)


class FakeRecords:
    """A collection with a unique `seq`, where another process takes chosen seqs first."""

    def __init__(self, taken_by_others: set[int]) -> None:
        self.docs: dict[int, dict[str, Any]] = {}
        self.others = taken_by_others
        self.races = 0

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> None:
        from pymongo.errors import BulkWriteError

        for index, doc in enumerate(docs):
            seq = doc["seq"]
            if seq in self.others:  # the other process's record lands, chained to ours
                prev = self.docs[seq - 1]["hash"] if seq > 1 else GENESIS
                self.docs[seq] = seal({"service": "other"}, seq, prev)
                self.others.discard(seq)
            if seq in self.docs:
                self.races += 1
                raise BulkWriteError(
                    {"nInserted": index, "writeErrors": [{"index": index, "code": 11000}]}
                )
            self.docs[seq] = doc

    async def find_one(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self.docs[max(self.docs)] if self.docs else None


class FakeWitness:
    def __init__(self) -> None:
        self.seq = 0

    async def update_one(self, where: Any, change: dict[str, Any]) -> Any:
        self.seq = max(self.seq, change["$max"]["seq"])
        return type("Result", (), {"matched_count": 1})()


async def test_a_batch_that_loses_a_race_midway_keeps_its_prefix_and_chains_the_rest() -> None:
    import asyncio

    from services.common.audit import AuditLog

    records = FakeRecords(taken_by_others={3, 7})
    log = AuditLog.__new__(AuditLog)
    log.service, log._records, log._witness = "routing", records, FakeWitness()  # type: ignore[assignment]
    log._lock, log._head, log._pending = asyncio.Lock(), None, []
    await asyncio.gather(
        *(log.record(actor=None, action="change", detail={"n": n}) for n in range(8))
    )
    ordered = [records.docs[s] for s in sorted(records.docs)]
    w = walk(ordered)
    assert w.first_break is None
    assert w.checked == 10  # our 8 and the other process's 2
    assert records.races == 2
    assert sorted(d["detail"]["n"] for d in ordered if d.get("detail")) == list(range(8))
    assert log._witness.seq == 10  # type: ignore[attr-defined]
