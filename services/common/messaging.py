"""The event core on Kafka: batched typed consumers, publishing without awaiting each send, and
dead letters that never lose a message.

A consumer registered with `subscribe` takes what the broker has for it in one fetch (up to
`MAX_RECORDS`; at low load that is one message, so nothing waits for a batch to fill) and:

1. decodes each message into its pydantic model. An undecodable one is set aside for the dead
   letter topic alone, with its reason, partition and offset; the rest go on;
2. hands the handler the list of typed events, in partition order (so one application's events
   keep theirs). The handler writes the batch in bulk and sends what it causes through a
   `Publisher`, whose sends are awaited together;
3. publishes the dead letters, and only then commits the offsets, once for the whole batch.

Failures: an outage (`TRANSIENT_ERRORS`, a short named list: MongoDB or Kafka unreachable, or a
timeout) is nobody's fault, so the batch is retried with back-off and nothing is committed. Any
other error is a bug or bad input in one message: the batch is split in halves until the
message that keeps failing is found, and only that one is dead-lettered after a few tries; the
others are handled in their order. A dead letter that cannot be published is an outage too:
the batch stays uncommitted until it can be. A crash anywhere before the commit replays the
batch, so every handler is idempotent on replay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, Topic
from pydantic import BaseModel, ValidationError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WTimeoutError

from services.common import kafka_auth, topics
from services.common.events import DeadLetter, Envelope
from services.common.observability import (
    ASSIGNED_PARTITIONS,
    BATCH_SIZE,
    DEAD_LETTERS,
    EVENTS_CONSUMED,
    EVENTS_PUBLISHED,
    HANDLER_SECONDS,
    redact,
)
from services.common.settings import Settings

log = logging.getLogger("acikkapi.messaging")

E = TypeVar("E", bound=BaseModel)

# Outages: the dependency is away or slow, the message is not at fault. Everything else is a
# bug or bad input and ends in the dead-letter topic after a few tries. (ConnectionFailure
# covers AutoReconnect, NetworkTimeout and ServerSelectionTimeoutError.)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    ExecutionTimeout,
    WTimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    NotLeaderForPartitionError,
    LeaderNotAvailableError,
    NotEnoughReplicasError,
    TimeoutError,
)
MAX_BACKOFF_SECONDS = 30.0
# A fetch hands over whatever is waiting, up to this many records; with nothing waiting it
# returns after BATCH_WAIT_MS, so an idle consumer costs little and a lone message waits none.
MAX_RECORDS = 500
BATCH_WAIT_MS = 100


class PermanentError(Exception):
    """The message can never be handled (a business rule says no): dead-letter it at once."""


class PartialFailure(Exception):
    """A handler that works on each event of its batch on its own says which ones failed
    (by index); the core then treats only those, one at a time, and keeps the rest done."""

    def __init__(self, failed: dict[int, BaseException]) -> None:
        super().__init__(f"{len(failed)} event(s) of the batch failed")
        self.failed = failed


async def each(
    events: Sequence[E], handle: Callable[[E], Awaitable[None]], *, concurrency: int
) -> None:
    """Handle the events of a batch side by side, at most `concurrency` at once; those that
    fail are reported together as a PartialFailure."""
    gate = asyncio.Semaphore(concurrency)
    failed: dict[int, BaseException] = {}

    async def one(index: int, event: E) -> None:
        async with gate:
            try:
                await handle(event)
            except Exception as exc:
                failed[index] = exc

    await asyncio.gather(*(one(i, e) for i, e in enumerate(events)))
    if failed:
        raise PartialFailure(failed)


def make_broker(settings: Settings, service: str) -> KafkaBroker:
    """The service's broker, authenticated as the service's own Kafka user."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        security=kafka_auth.broker_security(settings, service),
        client_id=f"acikkapi-{service}",
        acks="all",
        enable_idempotence=True,
        # Under load the producer's batches fill by themselves within a few milliseconds.
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
        # A consumer that joined its group while a restarted broker did not yet know its topic
        # gets no partitions, and asks again only when its metadata ages: keep that short.
        metadata_max_age_ms=10_000,
        graceful_timeout=10.0,
        # Handlers decode their own events (a poison message must not fail its whole batch);
        # the annotations still give AsyncAPI the real payload schema.
        apply_types=False,
        logger=logging.getLogger(f"acikkapi.{service}.broker"),
        # FastStream logs every batch received and processed: keep that out of INFO.
        log_level=logging.DEBUG,
    )


# --- publishing --------------------------------------------------------------------------------


class EventPublisher(Protocol):
    """What handlers need of a publisher (`Publisher`; unit tests pass a fake)."""

    async def send_all(self, messages: Iterable[Outgoing]) -> None: ...

    async def send(self, topic: str, event: Envelope, key: str | None) -> None: ...


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: an event already serialised, so it can wait in an outbox."""

    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # The event itself while it is still in hand (not after a trip through an outbox).
    event: Envelope | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, topic: str, event: Envelope, key: str | None) -> Outgoing:
        return cls(topic, key, event.to_bytes(), event.kafka_headers(), event)

    @property
    def event_type(self) -> str:
        return self.headers.get("event_type", "unknown")


class Publisher:
    """Sends messages without awaiting each one, then waits for all acknowledgements at once."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send_all(self, messages: Iterable[Outgoing]) -> None:
        futures = []
        sent: list[Outgoing] = []
        for message in messages:
            futures.append(
                await self._broker.publish(
                    message.value,
                    topic=message.topic,
                    key=message.key.encode() if message.key else None,
                    headers=message.headers,
                    no_confirm=True,
                )
            )
            sent.append(message)
        if futures:
            await asyncio.gather(*futures)
        for message in sent:
            EVENTS_PUBLISHED.labels(_metric_topic(message.topic), message.event_type).inc()

    async def send(self, topic: str, event: Envelope, key: str | None) -> None:
        await self.send_all([Outgoing.of(topic, event, key)])


def _metric_topic(topic: str) -> str:
    # One time series per institution topic would explode cardinality.
    return "acikkapi.institution.*" if topic.startswith(topics.INSTITUTION_PREFIX) else topic


# --- consuming ---------------------------------------------------------------------------------


BatchHandler = Callable[[list[E]], Awaitable[None]]
Accept = Callable[[bytes | None, dict[str, str]], bool]


@dataclass
class _Item:
    record: Any  # aiokafka ConsumerRecord
    event: Any


class BatchConsumer:
    """What happens to one fetched batch of one topic; see the module's docstring."""

    def __init__(
        self,
        broker: KafkaBroker,
        topic: str,
        model: type[BaseModel],
        handler: Callable[[list[Any]], Awaitable[None]],
        *,
        consumer: str,
        max_attempts: int,
        accept: Accept | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.model = model
        self.handler = handler
        self.consumer = consumer
        self.max_attempts = max(1, max_attempts)
        self.accept = accept
        self.sleep = sleep
        self._metric_topic = _metric_topic(topic)

    async def handle(self, records: Sequence[Any]) -> None:
        """Decode, handle and dead-letter one batch; returns when it may be committed."""
        items: list[_Item] = []
        letters: list[DeadLetter] = []
        skipped = 0
        for record in records:
            if self.accept is not None and not self.accept(record.key, _headers(record)):
                skipped += 1
                continue
            try:
                items.append(_Item(record, self.model.model_validate_json(record.value or b"")))
            except ValidationError as exc:
                letters.append(self._letter(record, _validation_reason(exc), "invalid_message", 1))
        if skipped:
            EVENTS_CONSUMED.labels(self._metric_topic, "skipped").inc(skipped)
        if letters:
            EVENTS_CONSUMED.labels(self._metric_topic, "invalid").inc(len(letters))
        if items:
            BATCH_SIZE.labels(self._metric_topic).observe(len(items))
            with HANDLER_SECONDS.labels(self._metric_topic).time():
                await self._run(items, letters)
        await self._publish_letters(letters)

    async def _run(self, items: list[_Item], letters: list[DeadLetter]) -> None:
        attempt = 0
        backoff = 0.5
        while True:
            try:
                await self.handler([item.event for item in items])
                EVENTS_CONSUMED.labels(self._metric_topic, "ok").inc(len(items))
                return
            except Exception as raised:
                error: BaseException = raised
            if isinstance(error, PartialFailure) and len(items) == 1:
                error = next(iter(error.failed.values()))
            if isinstance(error, PartialFailure):
                failed = [items[i] for i in sorted(error.failed)]
                EVENTS_CONSUMED.labels(self._metric_topic, "ok").inc(len(items) - len(failed))
                if all(isinstance(e, TRANSIENT_ERRORS) for e in error.failed.values()):
                    items = failed  # the others are done; wait for the dependency
                    await self._wait_for_dependency(error, len(items), backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                for item in failed:
                    await self._run([item], letters)
                return
            if isinstance(error, TRANSIENT_ERRORS):
                # Not the messages' fault: wait for the dependency, uncommitted, and try again.
                await self._wait_for_dependency(error, len(items), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if len(items) > 1:
                # One of several failed: find it by halves; the others are handled in order.
                middle = len(items) // 2
                await self._run(items[:middle], letters)
                await self._run(items[middle:], letters)
                return
            attempt += 1
            if isinstance(error, PermanentError):
                letters.append(self._letter(items[0].record, str(error), "unprocessable", 1))
            elif attempt >= self.max_attempts:
                reason = f"{type(error).__name__}: {error}"
                letters.append(self._letter(items[0].record, reason, "handler_failed", attempt))
            else:
                log.warning(
                    "handler failed",
                    extra={"topic": self.topic, "attempt": attempt, "error": repr(error)[:300]},
                )
                await self.sleep(0.2 * attempt)
                continue
            EVENTS_CONSUMED.labels(self._metric_topic, "dead_lettered").inc()
            return

    async def _wait_for_dependency(self, error: BaseException, size: int, delay: float) -> None:
        log.warning(
            "dependency unavailable, retrying uncommitted",
            extra={"topic": self.topic, "error": type(error).__name__, "size": size},
        )
        await self.sleep(delay)

    def _letter(self, record: Any, reason: str, error_type: str, attempts: int) -> DeadLetter:
        key = record.key
        return DeadLetter(
            source_topic=self.topic,
            partition=record.partition,
            offset=record.offset,
            key=key.decode(errors="replace") if isinstance(key, bytes) else key,
            reason=reason[:2000],
            error_type=error_type,
            attempts=attempts,
            consumer=self.consumer,
            # KVKK: operators read dead letters, so a TC Kimlik No in one is masked. The source
            # topic still holds the message itself, found by partition and offset.
            original=redact((record.value or b"").decode(errors="replace")),
        )

    async def _publish_letters(self, letters: list[DeadLetter]) -> None:
        """Publish every dead letter; until that succeeds the batch is not committed."""
        backoff = 0.5
        while letters:
            try:
                futures = [
                    await self.broker.publish(
                        letter.model_dump_json().encode(),
                        topic=topics.dlq(self.topic),
                        key=letter.key.encode() if letter.key else None,
                        headers={"event_type": "dead_letter", "source_topic": self.topic},
                        no_confirm=True,
                    )
                    for letter in letters
                ]
                await asyncio.gather(*futures)
            except Exception as exc:
                log.error(
                    "dead letters could not be published; the batch stays uncommitted",
                    extra={"topic": self.topic, "error": type(exc).__name__},
                )
                await self.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            for letter in letters:
                DEAD_LETTERS.labels(self._metric_topic, letter.error_type).inc()
                log.warning(
                    "dead-lettered a message",
                    extra={
                        "topic": self.topic,
                        "reason": letter.error_type,
                        "partition": letter.partition,
                        "offset": letter.offset,
                        "consumer": self.consumer,
                    },
                )
            return


def _headers(record: Any) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


async def _raw_records(message: Any) -> Any:
    """FastStream's decoder step: hand the handler the message itself, undecoded."""
    return message


def subscribe(
    broker: KafkaBroker,
    topic: str,
    model: type[E],
    handler: BatchHandler[E],
    *,
    service: str,
    settings: Settings,
    group_id: str | None = None,
    accept: Accept | None = None,
    max_records: int = MAX_RECORDS,
) -> BatchConsumer:
    """Register a batch consumer of `topic` in the service's consumer group.

    `handler` receives a list of typed events. `accept(key, headers)`, when given, sees each
    message before it is decoded; a message it refuses is skipped (and committed with its
    batch) at almost no cost: a consumer that needs one status out of five should not parse
    the other four.
    """
    name = getattr(handler, "__name__", "handler")
    core = BatchConsumer(
        broker,
        topic,
        model,
        handler,
        consumer=f"{service}.{name}",
        max_attempts=settings.consumer_max_attempts,
        accept=accept,
    )

    async def consume(events: Any) -> None:
        message = events  # the decoder hands over FastStream's message, records undecoded
        try:
            await core.handle(message.raw_message)
        except BaseException:
            # Never commit past a batch that was not handled (a shutdown mid-batch): rewind.
            await message.nack()
            raise
        await message.ack()

    consume.__name__ = f"consume_{name}"
    consume.__doc__ = handler.__doc__
    # What AsyncAPI shows as the topic's payload: one message is one `model` (FastStream reads
    # the annotation; it validates nothing, since the core decodes each record itself).
    consume.__annotations__ = {"events": model, "return": None}
    broker.subscriber(
        # Topics exist because they were created on purpose (deploy/local/create_topics.py):
        # a service neither may nor tries to create the topics it reads.
        Topic(topic, declare=False),
        batch=True,
        max_records=max_records,
        batch_timeout_ms=BATCH_WAIT_MS,
        group_id=group_id or f"acikkapi-{service}",
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        decoder=_raw_records,
        listener=_AssignmentGauge(topic),
        title=f"{service}:{topic}",
        description=handler.__doc__,
    )(consume)
    return core


class _AssignmentGauge(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps `acikkapi_assigned_partitions` true: how a group's processes share a topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        ASSIGNED_PARTITIONS.labels(self.topic).set(0)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        ASSIGNED_PARTITIONS.labels(self.topic).set(sum(tp.topic == self.topic for tp in assigned))


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(gövde)"
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


async def topic_partitions(kafka: Mapping[str, Any], names: Iterable[str]) -> list[TopicPartition]:
    """The partitions of existing topics among `names`, from the cluster's metadata; `kafka`
    is `kafka_auth.client_options(...)` of the user asking (it sees only what it may describe).

    A consumer knows the partitions of the topics it follows only, hence the admin client.
    """
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t.get("error_code", 0) == 0
        for p in t.get("partitions", [])
    ]


def declare_publisher(
    broker: KafkaBroker, topic: str, model: type[BaseModel], description: str
) -> Any:
    """Make a publication visible in the AsyncAPI document (sending goes through `Publisher`)."""
    return broker.publisher(topic, title=f"{topic}:publish", schema=model, description=description)
