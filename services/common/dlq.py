"""Operators' tool for dead-letter topics: see what was set aside and why, and replay it.

    python -m services.common.dlq list acikkapi.applications.responses
    python -m services.common.dlq replay acikkapi.applications.responses [--limit 100] [--yes]

A dead letter carries the reason and, masked (KVKK), the original text. Replay therefore does
not trust that copy: it fetches the original message from the source topic by partition and
offset and produces it again with its key, so the consumer sees exactly what it refused before.
Consumers are idempotent, so replaying a letter twice is harmless. Replay after fixing the cause
(a deployment, a taxonomy change); what still fails lands on the dead-letter topic again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from services.common import kafka_auth, topics
from services.common.events import DeadLetter
from services.common.messaging import topic_partitions
from services.common.settings import Settings, get_settings


async def read_letters(settings: Settings, source_topic: str) -> AsyncIterator[DeadLetter]:
    """Every letter on `<source_topic>.dlq`, from the beginning to the current end."""
    kafka = kafka_auth.client_options(settings, kafka_auth.ADMIN)
    consumer = AIOKafkaConsumer(**kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        name = topics.dlq(source_topic)
        partitions = await topic_partitions(kafka, [name])
        if not partitions:
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    try:
                        yield DeadLetter.model_validate_json(record.value)
                    except ValidationError:
                        continue
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def fetch_original(
    consumer: AIOKafkaConsumer, letter: DeadLetter
) -> tuple[bytes | None, bytes] | None:
    """The refused message itself (key, value), read from the source topic."""
    if letter.partition is None or letter.offset is None:
        return None
    tp = TopicPartition(letter.source_topic, letter.partition)
    consumer.assign([tp])
    consumer.seek(tp, letter.offset)
    batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
    for record in batch.get(tp, []):
        if record.offset == letter.offset:
            return record.key, record.value
    return None  # past the source topic's retention


async def list_letters(settings: Settings, source_topic: str) -> int:
    reasons: Counter[str] = Counter()
    count = 0
    async for letter in read_letters(settings, source_topic):
        count += 1
        reasons[letter.error_type] += 1
        print(
            f"{letter.failed_at:%Y-%m-%d %H:%M:%S} p{letter.partition}@{letter.offset} "
            f"anahtar={letter.key} tür={letter.error_type} deneme={letter.attempts}\n"
            f"    sebep: {letter.reason[:300]}"
        )
    print(
        f"{topics.dlq(source_topic)}: {count} mesaj; "
        + ", ".join(f"{kind}: {n}" for kind, n in reasons.most_common())
    )
    return count


async def replay(settings: Settings, source_topic: str, limit: int | None) -> tuple[int, int]:
    letters = [letter async for letter in read_letters(settings, source_topic)]
    letters = letters[:limit] if limit else letters
    # An operator's tool: it reads any dead-letter topic and writes back to any source topic.
    kafka = kafka_auth.client_options(settings, kafka_auth.ADMIN)
    fetcher = AIOKafkaConsumer(**kafka, group_id=None, enable_auto_commit=False)
    producer = AIOKafkaProducer(**kafka, acks="all")
    await fetcher.start()
    await producer.start()
    replayed = missing = 0
    try:
        for i, letter in enumerate(letters, 1):
            original = await fetch_original(fetcher, letter)
            if original is None:
                missing += 1
            else:
                key, value = original
                await producer.send_and_wait(letter.source_topic, value, key=key)
                replayed += 1
            if i % 50 == 0 or i == len(letters):
                print(f"yeniden gönderiliyor: {i}/{len(letters)}", flush=True)
    finally:
        await producer.stop()
        await fetcher.stop()
    return replayed, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Ölü mektup kuyruklarını listeler ve yeniden oynatır."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="bir konunun ölü mektuplarını ve sebeplerini gösterir")
    listing.add_argument("topic", help="kaynak konu, ör. acikkapi.applications.responses")
    again = sub.add_parser("replay", help="ölü mektupları kaynak konuya yeniden üretir")
    again.add_argument("topic")
    again.add_argument("--limit", type=int, default=None)
    again.add_argument("--yes", action="store_true", help="onay sormadan")
    args = parser.parse_args(argv)
    settings = get_settings()
    source = args.topic.removesuffix(".dlq")
    if args.command == "list":
        asyncio.run(list_letters(settings, source))
        return 0
    if not args.yes:
        answer = input(f"{topics.dlq(source)} → {source} yeniden oynatılsın mı? [e/H] ")
        if answer.strip().lower() not in ("e", "evet", "y", "yes"):
            print("vazgeçildi")
            return 1
    replayed, missing = asyncio.run(replay(settings, source, args.limit))
    print(f"{replayed} mesaj yeniden gönderildi; {missing} mesaj kaynak konuda bulunamadı.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
