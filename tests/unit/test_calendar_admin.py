"""Leave days as data, without I/O: the rules a day must pass (with their Turkish reasons), the
use cases over an in-memory store and publisher (versions, authors, announcements), how a
process picks its calendar from the topic and its own database, and the HTTP refusals."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.common.auth import Principal, Role
from services.common.business_days import PUBLIC, Calendar
from services.common.calendar_live import KEY, LiveCalendar
from services.common.errors import install_error_handlers
from services.common.events import CalendarPublished
from services.common.messaging import Outgoing
from services.common.settings import Settings
from services.tracking.calendar_admin import (
    CalendarAdmin,
    NotALeaveDay,
    PreconditionRequired,
    Rejected,
    addition_errors,
    build_calendar_router,
    removal_errors,
    year_view,
)
from services.tracking.calendar_store import (
    CalendarKeeper,
    CalendarVersion,
    LeaveKind,
    VersionConflict,
    VersionInfo,
)
from tests.support import bearer

NOW = dt.datetime(2026, 12, 4, 10, 30, tzinfo=dt.UTC)  # a Friday, 13:30 in Istanbul
TODAY = dt.date(2026, 12, 4)
MONDAY = dt.date(2026, 12, 7)
ADMIN = Principal(subject="zeynep.yonetici", role=Role.admin)
REASON = "Cumhurbaşkanlığı Genelgesi 2026/21 ile idari izin"


# --- The rules -------------------------------------------------------------------------------


def codes(errors: list[dict[str, Any]]) -> dict[str | None, str]:
    return {e["field"]: e["code"] for e in errors}


class TestAdditionRules:
    def test_a_weekday_from_today_on_with_a_reason_may_be_added(self) -> None:
        assert addition_errors(MONDAY, REASON, TODAY, None) == []
        assert addition_errors(TODAY, REASON, TODAY, None) == []

    def test_a_weekend_is_refused_in_turkish(self) -> None:
        [error] = addition_errors(dt.date(2026, 12, 5), REASON, TODAY, None)
        assert (error["field"], error["code"]) == ("date", "weekend")
        assert error["message"].startswith("5 Aralık 2026 Cumartesi hafta sonudur")

    def test_a_public_holiday_is_refused_with_its_name(self) -> None:
        [error] = addition_errors(dt.date(2027, 1, 1), REASON, TODAY, None)
        assert (error["field"], error["code"]) == ("date", "public_holiday")
        assert "1 Ocak 2027 Cuma zaten resmî tatil (Yılbaşı)" in error["message"]

    def test_a_day_in_the_past_is_refused_because_deadlines_would_move_backwards(self) -> None:
        [error] = addition_errors(dt.date(2026, 12, 3), REASON, TODAY, None)
        assert (error["field"], error["code"]) == ("date", "past")
        assert "geçmişte kaldı" in error["message"]
        assert "geriye dönük" in error["message"]

    def test_a_day_years_ahead_is_taken_for_a_typing_mistake(self) -> None:
        assert codes(addition_errors(dt.date(2029, 12, 4), REASON, TODAY, None)) == {
            "date": "too_far"
        }

    def test_a_half_day_eve_may_be_closed_whole(self) -> None:
        # Arife of Ramazan Bayramı 2027: a business day (offices work until 13:00) unless closed.
        assert addition_errors(dt.date(2027, 3, 8), REASON, TODAY, None) == []

    @pytest.mark.parametrize("reason", [None, "", "   "])
    def test_a_reason_is_required(self, reason: str | None) -> None:
        [error] = addition_errors(MONDAY, reason, TODAY, None)
        assert (error["field"], error["code"]) == ("reason", "missing")
        assert error["message"].startswith("Gerekçe zorunludur")

    def test_a_day_already_closed_is_refused_with_its_reason(self) -> None:
        newest = version_with(MONDAY)
        [error] = addition_errors(MONDAY, "ikinci kez", TODAY, newest)
        assert error["code"] == "already_leave_day"
        assert error["message"] == (
            "7 Aralık 2026 Pazartesi takvimde zaten kapalı gün olarak kayıtlı "
            f"(İdari izin: {REASON})."
        )

    def test_both_fields_are_named_at_once(self) -> None:
        assert codes(addition_errors(dt.date(2026, 12, 6), "", TODAY, None)) == {
            "date": "weekend",
            "reason": "missing",
        }


class TestRemovalRules:
    def test_a_coming_day_with_a_reason_may_be_removed(self) -> None:
        assert removal_errors(MONDAY, "Genelge geri alındı", TODAY) == []

    def test_a_past_day_stays(self) -> None:
        assert codes(removal_errors(dt.date(2026, 12, 1), "x", TODAY)) == {"date": "past"}

    def test_the_reason_is_required(self) -> None:
        assert codes(removal_errors(MONDAY, None, TODAY)) == {"reason": "missing"}


# --- The use cases ---------------------------------------------------------------------------


def version_with(*days: dt.date, number: int = 1) -> CalendarVersion:
    from services.tracking.calendar_store import LeaveDay

    return CalendarVersion(
        version=number,
        author="zeynep.yonetici",
        author_role="admin",
        at=NOW,
        action="leave_day.add",
        date=days[0],
        reason=REASON,
        summary="…",
        changes=[],
        leave_days=[
            LeaveDay(
                date=d,
                kind=LeaveKind.idari_izin,
                reason=REASON,
                added_by="zeynep.yonetici",
                added_at=NOW,
            )
            for d in days
        ],
    )


class MemoryVersions:
    def __init__(self) -> None:
        self.versions: dict[int, CalendarVersion] = {}

    async def head(self) -> CalendarVersion | None:
        return self.versions[max(self.versions)] if self.versions else None

    async def log(self, limit: int, offset: int) -> tuple[list[VersionInfo], int]:
        lines = [
            VersionInfo.model_validate(v.model_dump())
            for _, v in sorted(self.versions.items(), reverse=True)
        ]
        return lines[offset:][:limit], len(lines)

    async def append(self, version: CalendarVersion) -> None:
        await asyncio.sleep(0)
        if version.version in self.versions:
            raise VersionConflict(await self.head())
        self.versions[version.version] = version


class Sent:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []
        self.fail = False

    async def send_all(self, messages: Iterable[Outgoing]) -> None:
        batch = list(messages)
        if self.fail:
            raise ConnectionError("Kafka away")
        self.messages.extend(batch)

    async def send(self, topic: str, event: Any, key: str | None) -> None:
        raise AssertionError("not used")

    def events(self) -> list[CalendarPublished]:
        return [CalendarPublished.model_validate_json(m.value) for m in self.messages]


class RecordedAudit:
    """The audit log's `record`, kept in a list (services.common.audit is tested on its own)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def record(self, **entry: Any) -> None:
        self.records.append(entry)


class World:
    """One tracking process: its store, its live calendar, its keeper and its use cases."""

    def __init__(self, store: MemoryVersions | None = None) -> None:
        self.store = store or MemoryVersions()
        self.sent = Sent()
        self.live = LiveCalendar(Settings(), "tracking")
        self.keeper = CalendarKeeper(self.store, self.live, self.sent)
        self.admin = CalendarAdmin(self.store, self.keeper, clock=lambda: NOW)
        self.audit = RecordedAudit()

    def topic_says(self, event: CalendarPublished | None) -> None:
        """What this process has read on acikkapi.calendar (None: a tombstone)."""
        self.live.view.caught_up.set()
        if event is None:
            self.live.view.latest.pop(KEY, None)
        else:
            self.live.view.latest[KEY] = event


@pytest.fixture
def world() -> World:
    return World()


class TestUseCases:
    async def test_a_leave_day_makes_a_version_and_moves_the_deadline_at_once(self, world: World):
        received = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
        before = world.live.current.answer_deadline(received)

        outcome = await world.admin.add(MONDAY, f"  {REASON} ", LeaveKind.kopru, 0, ADMIN)

        assert outcome.published
        stored = await world.store.head()
        assert stored is not None
        assert (stored.version, stored.author, stored.author_role, stored.at) == (
            1,
            "zeynep.yonetici",
            "admin",
            NOW,
        )
        assert (stored.action, stored.date, stored.reason) == ("leave_day.add", MONDAY, REASON)
        assert (
            stored.summary == f"7 Aralık 2026 Pazartesi eklendi (Köprü günü (idari izin)): {REASON}"
        )
        [change] = stored.changes
        assert (change.op, change.date, change.kind) == ("added", MONDAY, LeaveKind.kopru)
        [day] = stored.leave_days
        assert (day.added_by, day.added_at, day.reason) == ("zeynep.yonetici", NOW, REASON)
        # This process computes with it at once: the deadline is one business day later.
        assert world.live.current == Calendar(frozenset({MONDAY}), 1)
        after = world.live.current.answer_deadline(received)
        assert after == before + dt.timedelta(days=1)
        # Every other process hears of the whole calendar.
        [message] = world.sent.messages
        assert (message.topic, message.key) == ("acikkapi.calendar", "TR")
        [event] = world.sent.events()
        assert event.version == 1
        assert [(d.day, d.kind, d.reason) for d in event.leave_days] == [(MONDAY, "kopru", REASON)]

    async def test_a_change_must_say_its_version(self, world: World):
        with pytest.raises(PreconditionRequired):
            await world.admin.add(MONDAY, REASON, LeaveKind.idari_izin, None, ADMIN)
        assert world.store.versions == {}

    async def test_a_change_on_an_old_version_is_a_conflict(self, world: World):
        await world.admin.add(MONDAY, REASON, LeaveKind.idari_izin, 0, ADMIN)
        with pytest.raises(VersionConflict) as caught:
            await world.admin.add(dt.date(2026, 12, 8), REASON, LeaveKind.idari_izin, 0, ADMIN)
        assert caught.value.current is not None and caught.value.current.version == 1

    async def test_two_changes_racing_for_one_number_lose_nothing(self, world: World):
        results = await asyncio.gather(
            world.admin.add(MONDAY, REASON, LeaveKind.idari_izin, 0, ADMIN),
            world.admin.add(dt.date(2026, 12, 8), REASON, LeaveKind.idari_izin, 0, ADMIN),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["Outcome", "VersionConflict"]
        assert list(world.store.versions) == [1]

    async def test_a_refused_day_stores_nothing(self, world: World):
        with pytest.raises(Rejected) as caught:
            await world.admin.add(dt.date(2026, 12, 5), REASON, LeaveKind.idari_izin, 0, ADMIN)
        assert codes(caught.value.errors) == {"date": "weekend"}
        assert world.store.versions == {} and world.sent.messages == []

    async def test_a_removal_is_a_version_that_says_why(self, world: World):
        await world.admin.add(MONDAY, REASON, LeaveKind.idari_izin, 0, ADMIN)
        outcome = await world.admin.remove(MONDAY, "Genelge geri alındı", 1, ADMIN)

        version = outcome.version
        assert (version.version, version.action, version.reason) == (
            2,
            "leave_day.remove",
            "Genelge geri alındı",
        )
        [change] = version.changes
        assert (change.op, change.reason) == ("removed", REASON)  # what was removed, and its why
        assert version.leave_days == []
        assert world.live.current == Calendar(frozenset(), 2)
        assert [e.version for e in world.sent.events()] == [1, 2]

    async def test_removing_a_day_that_is_no_leave_day_is_not_found(self, world: World):
        with pytest.raises(NotALeaveDay, match="7 Aralık 2026 Pazartesi takvimde"):
            await world.admin.remove(MONDAY, "x", 0, ADMIN)

    async def test_an_announcement_that_failed_is_made_by_the_keeper(self, world: World):
        world.sent.fail = True
        outcome = await world.admin.add(MONDAY, REASON, LeaveKind.idari_izin, 0, ADMIN)
        assert not outcome.published
        assert world.live.current.version == 1  # this process uses it all the same

        world.sent.fail = False
        world.topic_says(None)
        assert await world.keeper.reconcile(now=100.0)
        assert [e.version for e in world.sent.events()] == [1]


# --- Which calendar a process uses -------------------------------------------------------------


def announced(version: CalendarVersion) -> CalendarPublished:
    return version.event()


class TestLiveCalendar:
    def test_before_anything_is_announced_it_is_the_public_calendar(self) -> None:
        live = LiveCalendar(Settings(), "routing")
        assert live.current is PUBLIC

    def test_the_topics_newest_message_is_the_calendar(self, world: World) -> None:
        seen: list[int] = []
        world.live.on_change(lambda c: seen.append(c.version))
        world.topic_says(announced(version_with(MONDAY, number=3)))
        assert world.live.current == Calendar(frozenset({MONDAY}), 3)
        # Even an older version, when it is the topic's last word (a database restored).
        world.topic_says(announced(version_with(dt.date(2026, 12, 9), number=2)))
        assert world.live.current.version == 2
        world.topic_says(None)  # the key withdrawn
        assert world.live.current is PUBLIC
        assert seen == [3, 2, 0]

    def test_tracking_uses_its_own_newer_version_until_the_topic_has_it(self, world: World):
        world.topic_says(announced(version_with(MONDAY, number=1)))
        world.live.install(version_with(MONDAY, dt.date(2026, 12, 8), number=2).calendar())
        assert world.live.current.version == 2
        world.topic_says(announced(version_with(MONDAY, number=3)))  # another process's
        assert world.live.current.version == 3

    def test_the_same_version_and_days_are_the_same_event(self) -> None:
        assert version_with(MONDAY).event().event_id == version_with(MONDAY).event().event_id
        other = version_with(dt.date(2026, 12, 8)).event().event_id
        assert other != version_with(MONDAY).event().event_id


class TestKeeper:
    """The topic must end with the database's newest version."""

    async def test_a_topic_that_shows_the_held_version_needs_nothing(self, world: World):
        world.store.versions[1] = version_with(MONDAY)
        await world.keeper.load()
        world.topic_says(announced(version_with(MONDAY)))
        assert not await world.keeper.reconcile(now=100.0)
        assert world.sent.messages == []

    async def test_a_topic_behind_is_announced_after_the_grace_and_backs_off(self, world: World):
        world.store.versions[1] = version_with(MONDAY)
        await world.keeper.load()
        world.topic_says(announced(version_with(MONDAY)))
        await world.keeper.reconcile(now=100.0)
        stale = announced(version_with(MONDAY)).model_copy(update={"event_id": uuid.uuid4()})
        world.topic_says(stale)

        assert not await world.keeper.reconcile(now=101.0)  # its maker may still announce it
        assert await world.keeper.reconcile(now=103.0)
        assert not await world.keeper.reconcile(now=104.0)  # and not again at once
        assert await world.keeper.reconcile(now=105.0)
        assert [e.version for e in world.sent.events()] == [1, 1]

    async def test_a_newer_version_another_process_made_is_taken_not_fought(self, world: World):
        world.store.versions[1] = version_with(MONDAY)
        await world.keeper.load()
        world.topic_says(announced(version_with(MONDAY)))
        await world.keeper.reconcile(now=100.0)
        # Another process stores version 2 and announces it.
        world.store.versions[2] = version_with(MONDAY, dt.date(2026, 12, 8), number=2)
        world.topic_says(announced(world.store.versions[2]))

        assert not await world.keeper.reconcile(now=110.0)
        assert world.keeper.held is not None and world.keeper.held.version == 2
        assert world.sent.messages == []

    async def test_nothing_is_announced_while_the_database_has_no_version(self, world: World):
        await world.keeper.load()
        world.topic_says(announced(version_with(MONDAY, number=5)))  # someone else's
        assert not await world.keeper.reconcile(now=100.0)
        assert world.live.current.version == 5


# --- The year view and HTTP ------------------------------------------------------------------


def test_the_year_marks_half_days_and_names_holidays_in_turkish() -> None:
    view = year_view(2026, version_with(MONDAY), PUBLIC)
    by_date = {h.date: h for h in view.public_holidays}
    arife = by_date[dt.date(2026, 10, 28)]
    assert (arife.half_day, arife.business_day) == (True, True)
    assert arife.name == "Cumhuriyet Bayramı (saat 13.00'ten)"
    republic = by_date[dt.date(2026, 10, 29)]
    assert (republic.name, republic.half_day, republic.business_day) == (
        "Cumhuriyet Bayramı",
        False,
        False,
    )
    assert [(d.date, d.weekday, d.kind_name) for d in view.leave_days] == [
        (MONDAY, "Pazartesi", "İdari izin")
    ]
    assert (view.version, view.in_effect_version) == (1, 0)
    assert view.business_days == year_view(2026, None, PUBLIC).business_days - 1


@pytest.fixture
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_calendar_router(world.admin))
    app.state.audit = world.audit
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracking") as client:
        yield client


ADD = "/api/v1/calendar/leave-days"


def admin_on(version: int) -> dict[str, str]:
    return {**bearer(Settings(), Role.admin), "If-Match": f'"{version}"'}


class TestHttp:
    async def test_anyone_reads_the_year(self, http: httpx.AsyncClient):
        response = await http.get("/api/v1/calendar", params={"year": 2026})
        assert response.status_code == 200
        assert response.headers["ETag"] == '"0"'
        assert response.json()["leave_days"] == []

    async def test_an_officer_is_forbidden(self, http: httpx.AsyncClient):
        response = await http.post(
            ADD,
            json={"date": "2026-12-07", "reason": REASON},
            headers={**bearer(Settings(), Role.officer), "If-Match": '"0"'},
        )
        assert response.status_code == 403
        assert response.json()["errors"][0]["code"] == "forbidden"

    async def test_a_provinces_admin_may_not_change_the_countrys_calendar(self, http):
        headers = {**bearer(Settings(), Role.admin, province=20), "If-Match": '"0"'}
        response = await http.post(
            ADD, json={"date": "2026-12-07", "reason": REASON}, headers=headers
        )
        assert response.status_code == 403
        assert "ülke genelindedir" in response.json()["errors"][0]["message"]

    async def test_without_a_version_it_is_428(self, http: httpx.AsyncClient):
        response = await http.post(
            ADD,
            json={"date": "2026-12-07", "reason": REASON},
            headers=bearer(Settings(), Role.admin),
        )
        assert response.status_code == 428
        assert response.json()["errors"][0]["field"] == "If-Match"

    async def test_a_weekend_is_422_in_turkish(self, http: httpx.AsyncClient):
        response = await http.post(
            ADD, json={"date": "2026-12-05", "reason": REASON}, headers=admin_on(0)
        )
        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert (error["field"], error["code"]) == ("date", "weekend")
        assert "hafta sonudur" in error["message"]

    async def test_a_malformed_date_is_422_in_turkish(self, http: httpx.AsyncClient):
        response = await http.post(
            ADD, json={"date": "07.12.2026", "reason": REASON}, headers=admin_on(0)
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["message"] == "Tarih YYYY-AA-GG biçiminde olmalıdır."

    async def test_an_addition_then_a_stale_one_then_a_removal(
        self, http: httpx.AsyncClient, world: World
    ):
        added = await http.post(
            ADD, json={"date": "2026-12-07", "reason": REASON, "kind": "kopru"}, headers=admin_on(0)
        )
        assert added.status_code == 201, added.text
        assert added.headers["ETag"] == '"1"'
        assert added.json()["published"] is True
        assert added.json()["leave_days"][0]["kind_name"] == "Köprü günü (idari izin)"

        stale = await http.post(
            ADD, json={"date": "2026-12-08", "reason": REASON}, headers=admin_on(0)
        )
        assert stale.status_code == 409
        assert stale.headers["ETag"] == '"1"'
        assert "başka biri tarafından değiştirildi" in stale.json()["errors"][0]["message"]

        no_reason = await http.delete(f"{ADD}/2026-12-07", headers=admin_on(1))
        assert no_reason.status_code == 422
        assert no_reason.json()["errors"][0]["field"] == "reason"

        removed = await http.delete(
            f"{ADD}/2026-12-07", params={"reason": "Genelge geri alındı"}, headers=admin_on(1)
        )
        assert removed.status_code == 200, removed.text
        assert removed.json()["version"] == 2 and removed.json()["leave_days"] == []
        # Each change (and only a change) is audited, with who and why.
        audited = [
            (r["action"], r["detail"]["operation"], r["reason"]) for r in world.audit.records
        ]
        assert audited == [
            ("change", "leave_day_add", REASON),
            ("change", "leave_day_remove", "Genelge geri alındı"),
        ]

        missing = await http.delete(
            f"{ADD}/2026-12-07",
            params={"reason": "x", "expected_version": 2},
            headers=bearer(Settings(), Role.admin),
        )
        assert missing.status_code == 404

        log = await http.get("/api/v1/calendar/versions", headers=bearer(Settings(), Role.admin))
        assert [v["action"] for v in log.json()["items"]] == ["leave_day.remove", "leave_day.add"]
        assert (await http.get("/api/v1/calendar/versions")).status_code == 401
