"""Application numbers: blocks reserved with one atomic increment, handed out in-process, never
twice, whatever the concurrency, within one process or across several."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.common.application_number import format_number, parse_number
from services.intake.domain import SequenceAllocator, counter_key, numbering_year


class FakeCounters:
    """The database counter: an atomic increment that takes a moment, like a round trip."""

    def __init__(self, start: dict[str, int] | None = None) -> None:
        self.values: dict[str, int] = dict(start or {})
        self.calls: list[tuple[str, int]] = []

    async def reserve(self, key: str, size: int) -> int:
        self.calls.append((key, size))
        await asyncio.sleep(0.001)
        self.values[key] = self.values.get(key, 0) + size
        return self.values[key]


async def test_numbers_come_in_order_from_blocks() -> None:
    counters = FakeCounters()
    allocator = SequenceAllocator(counters, block_size=50)
    numbers = [await allocator.next(20, 2026) for _ in range(120)]
    assert numbers == list(range(1, 121))
    assert counters.calls == [("20-2026", 50)] * 3
    assert counters.values["20-2026"] == 150  # 30 left in the block: a gap if the process stops


async def test_concurrent_requests_in_one_process_never_share_a_number() -> None:
    counters = FakeCounters()
    allocator = SequenceAllocator(counters, block_size=50)
    numbers = await asyncio.gather(*(allocator.next(20, 2026) for _ in range(500)))
    assert sorted(numbers) == list(range(1, 501))
    assert len(counters.calls) == 10  # one reservation per block, not one per waiting request


async def test_processes_sharing_the_counter_get_disjoint_blocks() -> None:
    counters = FakeCounters()
    first = SequenceAllocator(counters, block_size=10)
    second = SequenceAllocator(counters, block_size=10)
    results = await asyncio.gather(*(a.next(20, 2026) for _ in range(100) for a in (first, second)))
    assert len(results) == len(set(results)) == 200
    assert max(results) == counters.values["20-2026"] == 200


async def test_a_counter_already_in_use_continues_where_it_stood() -> None:
    allocator = SequenceAllocator(FakeCounters({"20-2026": 700}), block_size=50)
    assert await allocator.next(20, 2026) == 701


async def test_each_province_and_year_counts_on_its_own() -> None:
    counters = FakeCounters()
    allocator = SequenceAllocator(counters, block_size=5)
    assert await allocator.next(20, 2026) == 1
    assert await allocator.next(20, 2026) == 2
    assert await allocator.next(20, 2027) == 1
    assert await allocator.next(35, 2026) == 1
    assert set(counters.values) == {"20-2026", "20-2027", "35-2026"}


async def test_a_number_given_back_is_used_next() -> None:
    allocator = SequenceAllocator(FakeCounters(), block_size=50)
    first = await allocator.next(20, 2026)
    second = await allocator.next(20, 2026)
    allocator.give_back(20, 2026, second)
    assert await allocator.next(20, 2026) == second
    assert await allocator.next(20, 2026) == first + 2


async def test_a_failed_reservation_leaves_the_allocator_usable() -> None:
    class Flaky(FakeCounters):
        failed = False

        async def reserve(self, key: str, size: int) -> int:
            if not self.failed:
                self.failed = True
                raise ConnectionError("MongoDB unreachable")
            return await super().reserve(key, size)

    allocator = SequenceAllocator(Flaky(), block_size=50)
    with pytest.raises(ConnectionError):
        await allocator.next(20, 2026)
    assert await allocator.next(20, 2026) == 1


def test_block_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SequenceAllocator(FakeCounters(), block_size=0)


def test_the_year_is_the_turkish_calendar_year_of_receipt() -> None:
    # 21:30 UTC on 31 December is already 00:30 on 1 January in Istanbul.
    assert numbering_year(datetime(2026, 12, 31, 21, 30, tzinfo=UTC)) == 2027
    assert numbering_year(datetime(2026, 12, 31, 20, 59, tzinfo=UTC)) == 2026


def test_the_counter_key_and_the_number_format() -> None:
    assert counter_key(6, 2026) == "06-2026"
    number = format_number(20, 2026, 51)
    assert parse_number(number) == (20, 2026, 51)
