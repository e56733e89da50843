"""Admission's rules: refuse at once while a dependency is down or too much is in flight."""

from __future__ import annotations

import asyncio

import pytest

from services.common.backpressure import Admission, Overloaded


def admission(checks: dict[str, bool], **kwargs) -> Admission:
    async def probe() -> dict[str, bool]:
        return checks

    return Admission("intake", probe, max_in_flight=2, **kwargs)


async def test_too_many_in_flight_is_refused_and_frees_up():
    gate = admission({"mongodb": True, "kafka": True})
    async with gate.admit(), gate.admit():
        with pytest.raises(Overloaded) as refused:
            async with gate.admit():
                pass
        assert refused.value.reason == "busy" and "yoğun" in refused.value.message
    async with gate.admit():
        assert gate.in_flight == 1


async def test_a_dependency_down_is_refused_until_a_probe_finds_it_back():
    checks = {"mongodb": True, "kafka": True}
    gate = admission(checks)
    gate.note_down("kafka")
    with pytest.raises(Overloaded) as refused:
        async with gate.admit():
            pass
    assert refused.value.reason == "dependency_down"
    assert "mesaj altyapısı yanıt vermiyor" in refused.value.message
    await gate.check()
    async with gate.admit():
        pass
    checks["mongodb"] = False
    await gate.check()
    with pytest.raises(Overloaded, match="veritabanı"):
        async with gate.admit():
            pass


async def test_a_probe_that_hangs_counts_as_down():
    async def hangs() -> dict[str, bool]:
        await asyncio.sleep(10)
        return {}

    gate = Admission("intake", hangs, max_in_flight=2, probe_timeout=0.05)
    await gate.check()
    assert gate.down == {"probe"}
