"""`python -m services.tracking.calendar_admin list|add|remove`: the leave days from the command
line, straight into tracking's database (as `load-taxonomy` does for routing's), and announced on
`acikkapi.calendar`.

Running tracking and routing processes take a change from the announcement; if Kafka cannot be
reached now, every tracking process finds the version in the database within
`CalendarKeeper.POLL_SECONDS` and announces it itself.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import sys

from pymongo.errors import PyMongoError

from services.common.auth import Principal, Role
from services.common.business_days import PUBLIC
from services.common.calendar_live import LiveCalendar
from services.common.messaging import Publisher, make_broker
from services.common.mongo import make_client, service_database
from services.common.settings import Settings, get_settings
from services.common.turkish_time import ISTANBUL, short_datetime
from services.tracking.calendar_admin import (
    CalendarAdmin,
    CalendarView,
    NotALeaveDay,
    Outcome,
    Rejected,
    year_view,
)
from services.tracking.calendar_store import (
    CalendarKeeper,
    CalendarStore,
    LeaveKind,
    VersionConflict,
)

SERVICE = "tracking"


def render(view: CalendarView) -> str:
    """The year as an operator reads it: every day that is closed or half, in date order."""
    changed = f", son değişiklik {short_datetime(view.changed_at)}" if view.changed_at else ""
    lines = [
        f"Takvim sürümü {view.version}{changed}",
        f"{view.year}: {view.business_days} iş günü",
    ]
    rows: list[tuple[dt.date, str]] = []
    for holiday in view.public_holidays:
        if holiday.half_day:
            closed = "iş günü sayılır" if holiday.business_day else "idari izinle tam gün kapalı"
            what = f"yarım gün     {holiday.name} — {closed}"
        else:
            what = f"resmî tatil   {holiday.name}"
        rows.append((holiday.date, f"{holiday.date:%d.%m.%Y} {holiday.weekday:<10} {what}"))
    for leave in view.leave_days:
        rows.append(
            (
                leave.date,
                f"{leave.date:%d.%m.%Y} {leave.weekday:<10} {leave.kind.value:<13} {leave.reason}",
            )
        )
    lines += [row for _, row in sorted(rows, key=lambda r: r[0])]
    return "\n".join(lines)


def _report(outcome: Outcome) -> None:
    version = outcome.version
    print(f"Takvim sürümü {version.version} kaydedildi: {version.summary}")
    if not outcome.published:
        print(
            "Kafka'ya ulaşılamadı: duyuruyu takip servisi Kafka'ya ulaşınca kendisi yapacak.",
            file=sys.stderr,
        )


async def run(settings: Settings, args: argparse.Namespace) -> int:
    client = make_client(settings, SERVICE)
    store = CalendarStore(service_database(client, settings, SERVICE))
    broker = make_broker(settings, SERVICE)
    admin = CalendarAdmin(
        store, CalendarKeeper(store, LiveCalendar(settings, SERVICE), Publisher(broker))
    )
    try:
        if args.command == "list":
            newest = await store.head()
            year = args.year or dt.datetime.now(ISTANBUL).year
            calendar = newest.calendar() if newest is not None else PUBLIC
            print(render(year_view(year, newest, calendar)))
            return 0
        try:
            await asyncio.wait_for(broker.start(), 15)
        except Exception as exc:  # the version is still stored; tracking announces it
            print(f"Kafka'ya bağlanılamadı ({type(exc).__name__}).", file=sys.stderr)
        newest = await store.head()
        expected = newest.version if newest is not None else 0
        principal = Principal(subject=args.author, role=Role.admin)
        try:
            if args.command == "add":
                outcome = await admin.add(
                    args.date, args.reason, LeaveKind(args.kind), expected, principal
                )
            else:
                outcome = await admin.remove(args.date, args.reason, expected, principal)
        except Rejected as exc:
            for error in exc.errors:
                print(f"{error['field']}: {error['message']}", file=sys.stderr)
            return 2
        except NotALeaveDay as exc:
            print(str(exc), file=sys.stderr)
            return 2
        except VersionConflict:
            print(
                "Takvim bu arada başka biri tarafından değiştirildi; komutu yeniden çalıştırın.",
                file=sys.stderr,
            )
            return 1
        _report(outcome)
        return 0
    except PyMongoError as exc:
        print(
            f"Takip servisinin veritabanına ulaşılamadı ({type(exc).__name__}); AK_MONGO_URI "
            "ve AK_TRACKING_MONGO_URI ayarlarını denetleyin.",
            file=sys.stderr,
        )
        return 1
    finally:
        await broker.stop()
        await client.close()


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: tarih YYYY-AA-GG biçiminde olmalıdır"
        ) from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.tracking.calendar_admin",
        description="İdari izin günlerini (köprü günleri dahil) listeler, ekler ya da çıkarır; "
        "değişiklik takip ve yönlendirme servislerinin cevap süresi hesabına saniyeler içinde "
        "yansır.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="bir yılın resmî tatilleri ve idari izin günleri")
    listing.add_argument("--year", type=int, help="varsayılan: bu yıl")
    author = f"cli:{getpass.getuser()}"
    add = sub.add_parser("add", help="bir günü idari izin olarak ekler")
    add.add_argument("date", type=_day, help="YYYY-AA-GG")
    add.add_argument("--reason", required=True, help="gerekçe, ör. genelgenin tarihi ve sayısı")
    add.add_argument(
        "--kind",
        choices=[k.value for k in LeaveKind],
        default=LeaveKind.idari_izin.value,
        help="varsayılan: idari_izin",
    )
    add.add_argument("--author", default=author, help=f"kayıtta görünecek ad ({author})")
    remove = sub.add_parser("remove", help="bir idari izin gününü takvimden çıkarır")
    remove.add_argument("date", type=_day, help="YYYY-AA-GG")
    remove.add_argument("--reason", required=True, help="neden çıkarıldığı")
    remove.add_argument("--author", default=author, help=f"kayıtta görünecek ad ({author})")
    args = parser.parse_args(argv)
    return asyncio.run(run(get_settings(), args))
