"""Reporting with 1,000,000 applications: how long the summary and the institution table take,
and what folding them into cells costs.

    .venv/bin/python bench/reporting_scale.py                       # 1,000,000 (make run first)
    .venv/bin/python bench/reporting_scale.py --applications 50000  # quick

Against the stack's MongoDB for reporting (`make run`: nx-27017). The bench fills a database of
its own (prefix `benchrep<hex>`, dropped at the end unless --keep) with N applications in the
read model's real document shape (what the event patches write: receipt, routing with
institution and category, statuses, outcome, deadline, overdue flag, rating), spread over the
--days (365) before today in Denizli's 19 districts, 83 institutions, 17 headings and 327
categories,
with Denizli's mix of outcomes (263 olumlu, 123 olumsuz, 245 kısmen olumlu of 631), marks their
days dirty as the consumers do, and folds them with the service's own `Aggregator`.

Printed: the insert and fold throughput; then, for the questions a governorship asks (all time,
a year, a month, a period that starts and ends mid-month, one district, one institution), the
median and 95th percentile of `Reporting.report` (the whole report: the summary and the
institution table with every breakdown, trends, ranking and overdue list) over --repeat runs;
and as the scale for those figures, measured in the same run: one `find_one` by `_id` (the
server's floor for any answer), and one scan of every application (what the old report did on
each request, and what any report that reads the applications would cost).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common.business_days import PUBLIC
from services.common.mongo import make_client
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.reporting.aggregator import Aggregator
from services.reporting.app import make_reporting
from services.reporting.cells import Scope
from services.reporting.domain import status_field, to_ms
from services.reporting.query import Period

DISTRICTS = (
    "Merkezefendi Pamukkale Acıpayam Babadağ Baklan Bekilli Beyağaç Bozkurt Buldan Çal Çameli "
    "Çardak Çivril Güney Honaz Kale Sarayköy Serinhisar Tavas"
).split()
CHANNELS = ("web", "web", "web", "mobile", "mobile", "counter", "edevlet", "call_center", "kiosk")
TYPES = ("sikayet", "sikayet", "istek", "istek", "oneri", "bilgi_edinme", "ihbar", "tesekkur")
OUTCOMES = ("olumlu",) * 263 + ("olumsuz",) * 123 + ("kismen_olumlu",) * 245
INSTITUTIONS = [(f"KURUM-{i:02d}", f"Denizli Kurumu {i:02d}", "BELEDIYE") for i in range(1, 84)]
HEADINGS = [(f"B{h:02d}", f"Ana başlık {h:02d}") for h in range(1, 18)]
CATEGORIES = [
    (f"K-{c:03d}", f"Kategori {c:03d}", HEADINGS[c % 17], INSTITUTIONS[(c * 7) % 83])
    for c in range(1, 328)
]


def application(rng: random.Random, number: int, first_day: date, days: int) -> dict[str, Any]:
    day = first_day + timedelta(days=rng.randrange(days))
    received = datetime.combine(day, clock(rng.randrange(8, 18), rng.randrange(60)), ISTANBUL)
    code, name, (heading, heading_name), (inst, inst_name, kind) = rng.choice(CATEGORIES)
    deadline = PUBLIC.answer_deadline(received, 7)
    doc: dict[str, Any] = {
        "_id": f"bench-{number}",
        "application_number": f"20-{day.year}-{number:07d}-0",
        "province_code": 20,
        "district": rng.choice(DISTRICTS),
        "channel": rng.choice(CHANNELS),
        "application_type": rng.choice(TYPES),
        "received_ms": to_ms(received),
        "received_day": day.isoformat(),
        status_field("received"): to_ms(received),
        "routings": {
            uuid.UUID(int=number).hex: {
                "at_ms": to_ms(received) + 60_000,
                "category_code": code,
                "heading_code": heading,
                "institution_code": inst,
                "institution_kind": kind,
                "institution_name": inst_name,
                "category_name": name,
                "heading_name": heading_name,
            }
        },
        status_field("routed"): to_ms(received) + 60_000,
        "deadline_ms": to_ms(deadline),
    }
    roll = rng.random()
    if roll < 0.93:  # answered: most on time, some late
        late = rng.random() < 0.12
        if late:
            answered = deadline + timedelta(days=rng.randrange(1, 9))
        else:
            answered = min(deadline, received + timedelta(hours=rng.randrange(4, 24 * 8)))
        doc |= {
            "outcome": rng.choice(OUTCOMES),
            "answered_ms": to_ms(answered),
            status_field("answered"): to_ms(answered),
            status_field("closed"): to_ms(answered) + 1000,
        }
        if late:
            doc["overdue"] = 1
        if rng.random() < 0.2:
            doc["rating"] = rng.choice((1, 2, 3, 4, 4, 5, 5, 5))
    elif roll < 0.97:  # open and past its deadline: tracking flagged it
        doc["overdue"] = 1
        doc[status_field("opened")] = to_ms(received) + 3_600_000
    return doc


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def timed(repeat: int, call: Any) -> tuple[float, float, Any]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), percentile(seconds, 0.95), result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--applications", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--days", type=int, default=365, help="days of receipt they spread over")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    settings = Settings(db_prefix=f"benchrep{uuid.uuid4().hex[:6]}")
    client = make_client(settings, "reporting")
    db = client[settings.database_name("reporting")]
    reporting = make_reporting(db, settings)
    store = reporting.store
    await store.ensure_indexes()
    rng = random.Random(20)
    today = datetime.now(UTC).astimezone(ISTANBUL).date()
    first_day = today - timedelta(days=args.days)
    try:
        print(f"applications: {args.applications:,}, {first_day} .. {today - timedelta(days=1)}")
        started = time.perf_counter()
        batch: list[dict[str, Any]] = []
        days: set[tuple[int, str]] = set()
        for number in range(args.applications):
            doc = application(rng, number, first_day, args.days)
            batch.append(doc)
            days.add((20, doc["received_day"]))
            if len(batch) == 5000:
                await store.applications.insert_many(batch, ordered=False)
                batch.clear()
                if (number + 1) % 100_000 == 0:
                    print(f"  inserted {number + 1:,}", flush=True)
        if batch:
            await store.applications.insert_many(batch, ordered=False)
        insert_seconds = time.perf_counter() - started
        await store.mark_days(days)
        print(
            f"insert: {insert_seconds:.1f} s ({args.applications / insert_seconds:,.0f} docs/s, "
            "the server's own write rate: the scale for the fold below)"
        )

        started = time.perf_counter()
        last_print = [0.0]

        def progress(done: int, goal: int) -> None:
            if time.perf_counter() - last_print[0] > 10:
                last_print[0] = time.perf_counter()
                print(f"  folded {done:,} of {goal:,} days", flush=True)

        folded = await Aggregator(store).fold_all(progress)
        fold_seconds = time.perf_counter() - started
        cells = await store.cells.estimated_document_count()
        print(
            f"fold: {fold_seconds:.1f} s for {folded.days:,} days and {folded.months:,} month "
            f"cells ({args.applications / fold_seconds:,.0f} applications/s; "
            f"{fold_seconds / insert_seconds:.2f}x the insert time); {cells:,} cells stored"
        )

        floor, _, _ = await timed(args.repeat, lambda: store.cells.find_one({"_id": "none"}))
        province = Scope(20)
        year_start = date(today.year - 1, 1, 1)
        month_start = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        questions = [
            ("all time, province", province, Period()),
            ("one year, province", province, Period(year_start, date(today.year - 1, 12, 31))),
            (
                "one month, province",
                province,
                Period(month_start, today.replace(day=1) - timedelta(days=1)),
            ),
            (
                "15th to 14th over 11 months",
                province,
                Period(
                    first_day.replace(day=15), (first_day + timedelta(days=335)).replace(day=14)
                ),
            ),
            ("all time, one district", Scope(20, district="Çivril"), Period()),
            ("all time, one institution", Scope(20, institution="KURUM-07"), Period()),
        ]
        print(f"floor: find_one by _id {floor * 1000:.2f} ms (median of {args.repeat})")
        results = []
        for label, scope, period in questions:
            median, p95, report = await timed(
                args.repeat, lambda s=scope, p=period: reporting.report(s, p)
            )
            results.append((label, median, p95))
            print(
                f"report {label}: median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
                f"({median / floor:.0f}x the floor); total {report['total']:,}, "
                f"{len(report['by_institution'])} institutions, "
                f"{len(report['by_category'])} categories, "
                f"overdue list {report['overdue_list_total']:,}"
            )
        whole = await reporting.report(province, Period())
        assert whole["total"] == args.applications, (whole["total"], args.applications)

        started = time.perf_counter()
        scanned = 0
        async for _ in store.applications.find({}, {"_id": 1, "received_day": 1}, batch_size=5000):
            scanned += 1
        scan = time.perf_counter() - started
        worst = max(m for _, m, _ in results)
        print(
            f"scan of every application (ids and days only): {scan:.1f} s for {scanned:,}; "
            f"the slowest report above is {scan / worst:,.0f}x faster than one such scan"
        )
        print(f"totals match: report {whole['total']:,} = applications {args.applications:,}")
    finally:
        if not args.keep:
            await client.drop_database(db.name)
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
