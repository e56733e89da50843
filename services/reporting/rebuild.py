"""`python -m services.reporting rebuild`: the read model built again from the log.

It drops reporting's collections, reads the five topics it folds from, from their first offset
to the last one there was when it started (with a progress bar), hands each chunk to the same
handlers the live consumers use, folds every day into cells, and ends with a count that must
match: the applications the replay registered, the applications in the read model, and the total
of the province reports. It reads with a group of its own (no offsets committed), so the running
service keeps its place; the handlers are idempotent and order-free, so the live consumers may
keep writing meanwhile (the figures are partial until the command ends). Topic retention that
keeps the log replayable: docs/runbook.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError
from tqdm import tqdm

from services.common import kafka_auth
from services.common.messaging import PermanentError
from services.common.mongo import make_client, service_database
from services.common.settings import Settings, get_settings
from services.common.topics import RECEIVED
from services.reporting.aggregator import Aggregator
from services.reporting.app import make_reporting
from services.reporting.handlers import Reporting
from services.reporting.messaging import Subscription, subscriptions
from services.reporting.page import fmt_decimal, fmt_int
from services.reporting.store import ReadModel

SERVICE = "reporting"
CHUNK = 5000


@dataclass
class Replay:
    events: int = 0
    applied: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    received: int = 0
    seconds: float = 0.0


@dataclass
class RebuildResult:
    replay: Replay
    fold_seconds: float
    applications: int
    report_total: int

    @property
    def matches(self) -> bool:
        return self.applications == self.report_total


def _progress_bar(total: int, unit: str, desc: str, show: bool) -> tqdm:
    """A progress bar on stderr (stdout keeps the command's result), or none when not `show`."""
    return tqdm(
        total=total, unit=unit, desc=desc, disable=not show, file=sys.stderr, dynamic_ncols=True
    )


async def _apply(subscription: Subscription, values: list[bytes | None], replay: Replay) -> None:
    """Decode and hand one topic's chunk to its handler; a bad event is skipped and counted
    (the live consumer sent it to the dead-letter topic), the rest still count."""
    topic, model, handler = subscription
    events = []
    for value in values:
        try:
            events.append(model.model_validate_json(value or b""))
        except ValidationError:
            replay.skipped[topic] += 1
    if not events:
        return
    try:
        await handler(events)
        replay.applied += len(events)
    except PermanentError:
        for event in events:  # find the bad one: each alone
            try:
                await handler([event])
                replay.applied += 1
            except PermanentError:
                replay.skipped[topic] += 1


async def replay_topics(
    settings: Settings, reporting: Reporting, *, show_progress: bool = True
) -> Replay:
    replay = Replay()
    by_topic = {s[0]: s for s in subscriptions(reporting)}
    consumer = AIOKafkaConsumer(
        **kafka_auth.client_options(settings, SERVICE),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        client_id="acikkapi-reporting-rebuild",
    )
    await consumer.start()
    started = time.perf_counter()
    try:
        partitions = await _all_partitions(consumer, list(by_topic))
        first = await consumer.beginning_offsets(partitions)
        last = await consumer.end_offsets(partitions)
        remaining = {tp: last[tp] for tp in partitions if last[tp] > first[tp]}
        total = sum(last[tp] - first[tp] for tp in partitions)
        await consumer.seek_to_beginning(*partitions)
        bar = _progress_bar(total, " olay", "Olaylar yeniden okunuyor", show_progress)
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=CHUNK)
            chunk: dict[str, list[bytes | None]] = defaultdict(list)
            for tp, records in batches.items():
                end = remaining.get(tp)
                if end is None:
                    continue
                for record in records:
                    if record.offset >= end:
                        break
                    chunk[tp.topic].append(record.value)
                if records and records[-1].offset + 1 >= end:
                    del remaining[tp]
            for topic, values in chunk.items():
                replay.events += len(values)
                if topic == RECEIVED:
                    replay.received += len(values)
                await _apply(by_topic[topic], values, replay)
                bar.update(len(values))
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
        bar.close()
    finally:
        await consumer.stop()
    replay.seconds = time.perf_counter() - started
    return replay


async def _all_partitions(consumer: AIOKafkaConsumer, names: list[str]) -> list[TopicPartition]:
    """Every partition of the topics: without a group, a subscription is assigned them all as
    soon as the consumer knows the cluster's metadata."""
    consumer.subscribe(topics=names)
    for _ in range(600):
        if {tp.topic for tp in consumer.assignment()} == set(names):
            return sorted(consumer.assignment())
        await asyncio.sleep(0.1)
    raise RuntimeError(f"Kafka 60 saniyede şu konuların bölümlerini vermedi: {', '.join(names)}")


async def report_total(store: ReadModel) -> int:
    """The sum of every province's all-time report (its month cells)."""
    total = 0
    for doc in await store.scope_cells("month"):
        if doc.get("institution") == "*":
            row = doc.get("all") or []
            total += row[0] if row else 0
    return total


async def rebuild(settings: Settings, *, show_progress: bool = True) -> RebuildResult:
    client = make_client(settings, SERVICE)
    try:
        reporting = make_reporting(service_database(client, settings, SERVICE), settings)
        store = reporting.store
        await store.drop()
        await reporting.texts.texts.drop()
        await reporting.texts.ensure_indexes()
        replay = await replay_topics(settings, reporting, show_progress=show_progress)
        started = time.perf_counter()
        days, _ = await store.backlog()
        bar = _progress_bar(days, " gün", "Günler hücrelere toplanıyor", show_progress)

        def progress(done: int, goal: int) -> None:
            bar.total = max(goal, bar.total or 0)
            bar.n = done
            bar.refresh()

        await Aggregator(store).fold_all(progress)
        bar.close()
        fold_seconds = time.perf_counter() - started
        return RebuildResult(
            replay=replay,
            fold_seconds=fold_seconds,
            applications=await store.count_applications(),
            report_total=await report_total(store),
        )
    finally:
        await client.close()


def describe(result: RebuildResult) -> str:
    r = result.replay
    rate = r.events / r.seconds if r.seconds else 0.0
    lines = [
        f"Okunan olay: {fmt_int(r.events)} ({fmt_int(round(rate))} olay/sn, "
        f"{fmt_decimal(r.seconds)} sn); işlenen: {fmt_int(r.applied)}; "
        f"atlanan (bozuk ya da işlenemez): {fmt_int(sum(r.skipped.values()))}",
        f"Hücrelere toplama: {fmt_decimal(result.fold_seconds)} sn",
        f"Okuma modelindeki başvuru: {fmt_int(result.applications)}; "
        f"il raporlarının toplamı: {fmt_int(result.report_total)}",
    ]
    if result.matches:
        lines.append("Sayılar tutuyor: her başvuru raporda bir kez sayılıyor.")
    else:
        lines.append(
            "UYARI: sayılar tutmuyor. Rapor hücreleri okuma modeliyle aynı değil; komutu yeniden "
            "çalıştırın, sürerse docs/runbook.md'deki adımları izleyin."
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.reporting rebuild",
        description=(
            "Raporlama okuma modelini Kafka konularını baştan okuyarak yeniden kurar: önce "
            "raporlamanın koleksiyonlarını siler."
        ),
    )
    parser.add_argument("--yes", action="store_true", help="onay sormadan başla")
    parser.add_argument("--quiet", action="store_true", help="ilerleme çubuğu gösterme")
    args = parser.parse_args(argv)
    settings = get_settings()
    if not args.yes:
        answer = input(
            f"{settings.database_name(SERVICE)} veritabanındaki rapor verisi silinip baştan "
            "kurulacak. Devam edilsin mi? [e/H] "
        )
        if answer.strip().lower() not in ("e", "evet", "y", "yes"):
            print("Vazgeçildi.")
            return 1
    result = asyncio.run(rebuild(settings, show_progress=not args.quiet))
    print(describe(result))
    return 0 if result.matches else 3
