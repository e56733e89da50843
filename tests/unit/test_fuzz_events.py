"""Hypothesis fuzz of the event decoders: whatever bytes a topic holds, decoding gives the event
or a pydantic ValidationError, and the event core (`messaging.BatchConsumer`) turns the second
into a dead letter, with a masked TC Kimlik No, and goes on. No other exception may escape: one
would stop the consumer on a message it can never get past.

Inputs: arbitrary bytes; arbitrary JSON; and valid events of every consumed topic with parts
replaced by arbitrary JSON values or removed (what reaches the deep validators: sealed fields,
enums, dates, the routed topic's discriminated union). The example counts are printed with -s
and checked against a floor.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from services.common import events as ev
from services.common import messaging, topics
from services.common.pii import PiiCipher, configure_transport
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy import default_registry
from tests.support import valid_tckn

EXAMPLES = 1000
RUNS: Counter[str] = Counter()

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TCKN = valid_tckn(random.Random(11))


@pytest.fixture(autouse=True, scope="module")
def _transport_keys() -> None:
    configure_transport(PiiCipher(b"k" * 32))


def _applicant() -> dict[str, Any]:
    return {
        "tckn_masked": "10*******46",
        "first_name": "Ayşe",
        "last_name": "Yılmaz",
        "phone": "+905321234567",
        "email": "a@ornek.com",
    }


def _samples() -> dict[str, tuple[type[BaseModel], BaseModel]]:
    """A valid event of every model a service consumes (topic -> model, event)."""
    common = {"application_id": "a-1", "application_number": "20-2026-0000001"}
    facts = {
        **common,
        "channel": "web",
        "application_type": "sikayet",
        "province_code": 20,
        "district": "Merkezefendi",
        "subject": "Yol çukuru",
        "text": "Sokağımızdaki çukur kapatılmadı.",
        "received_at": T0,
    }
    routed = {
        **common,
        "event_type": "application.routed",
        "category_code": "YOL-001",
        "heading_code": "ALT",
        "institution_code": "PAMUKKALE-BLD",
        "institution_kind": "belediye",
        "institution_name": "Pamukkale Belediyesi",
        "routed_by": "auto",
        "deadline_at": T0,
    }
    waiting = {**common, "event_type": "application.awaiting_routing", "reason": "no_category"}
    built: dict[str, tuple[type[BaseModel], BaseModel]] = {
        topics.SUBMISSIONS: (
            ev.ApplicationSubmitted,
            ev.ApplicationSubmitted.model_validate(
                {"submission_id": "s-1", "channel": "sms", "applicant": {"tckn": TCKN}}
            ),
        ),
        topics.RECEIVED: (
            ev.ApplicationReceived,
            ev.ApplicationReceived.model_validate(
                {**facts, "applicant": _applicant(), "identity_consent": False}
            ),
        ),
        topics.ROUTED: (ev.RoutingOutcome, ev.RoutingOutcome.model_validate(routed)),
        topics.ROUTED + "#waiting": (ev.RoutingOutcome, ev.RoutingOutcome.model_validate(waiting)),
        topics.STATUS: (
            ev.StatusChanged,
            ev.StatusChanged.model_validate({**common, "status": "routed", "at": T0}),
        ),
        topics.RESPONSES: (
            ev.ApplicationResponse,
            ev.ApplicationResponse.model_validate(
                {
                    "application_id": "a-1",
                    "institution_code": "PAMUKKALE-BLD",
                    "outcome": "olumlu",
                    "text": "Çukur kapatıldı.",
                }
            ),
        ),
        topics.NOTIFICATION_REQUESTS: (
            ev.NotificationRequest,
            ev.NotificationRequest.model_validate(
                {
                    "idempotency_key": "a-1:received:sms",
                    "channel": "sms",
                    "to": "+905321234567",
                    "template": "application_received",
                    "params": {"application_number": "20-2026-0000001"},
                }
            ),
        ),
        topics.NOTIFICATION_RESULTS: (
            ev.NotificationResult,
            ev.NotificationResult.model_validate(
                {"idempotency_key": "a-1:received:sms", "channel": "sms", "status": "sent"}
            ),
        ),
        topics.DEADLINES: (
            ev.DeadlineEvent,
            ev.DeadlineEvent.model_validate({**common, "kind": "warning", "deadline_at": T0}),
        ),
        topics.RATINGS: (
            ev.ApplicationRated,
            ev.ApplicationRated.model_validate({**common, "rating": 4, "rated_at": T0}),
        ),
        topics.institution_topic("PAMUKKALE-BLD"): (
            ev.InstitutionAssignment,
            ev.InstitutionAssignment.model_validate(
                {
                    **facts,
                    "category_code": "YOL-001",
                    "institution_code": "PAMUKKALE-BLD",
                    "category_name": "Yol",
                    "heading_code": "ALT",
                    "deadline_at": T0,
                    "applicant": None,
                }
            ),
        ),
        topics.TAXONOMY: (
            ev.TaxonomyPublished,
            taxonomy_published(default_registry().for_province(20)),
        ),
        topics.CALENDAR: (
            ev.CalendarPublished,
            ev.CalendarPublished.model_validate({"version": 3, "changed_at": T0}),
        ),
        topics.dlq(topics.SUBMISSIONS): (
            ev.DeadLetter,
            ev.DeadLetter.model_validate(
                {
                    "source_topic": topics.SUBMISSIONS,
                    "reason": "x",
                    "error_type": "invalid_message",
                    "attempts": 1,
                    "consumer": "intake",
                    "original": "{}",
                }
            ),
        ),
    }
    return built


SAMPLES = _samples()
MODELS = sorted({model for model, _ in SAMPLES.values()}, key=lambda m: m.__name__)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    # Strings shaped like what the validators parse: sealed values, dates, numbers, enums.
    | st.sampled_from(["v1:AAAA", "v2:00000000:AAAA", "v2:zz:==", "2026-13-40", "+90532", "web"])
    | st.builds(
        lambda kid, raw: f"v2:{kid}:{base64.b64encode(raw).decode()}",
        st.text("0123456789abcdef", min_size=8, max_size=8),
        st.binary(max_size=40),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def decode(model: type[BaseModel], raw: bytes) -> BaseModel | None:
    """The event core's decoding: the event, or None for a ValidationError; nothing else."""
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(document: Any, path: tuple[Any, ...], replacement: Any, remove: bool) -> Any:
    if not path:
        return replacement
    head, *rest = path
    copy = dict(document) if isinstance(document, dict) else list(document)
    if not rest and remove:
        del copy[head]
        return copy
    copy[head] = _mutate(document[head], tuple(rest), replacement, remove)
    return copy


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[type[BaseModel], bytes]:
    topic = draw(st.sampled_from(sorted(SAMPLES)))
    model, event = SAMPLES[topic]
    document = json.loads(event.model_dump_json())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        remove = bool(path) and draw(st.booleans())
        document = _mutate(document, path, draw(json_values), remove)
    return model, json.dumps(document, allow_nan=True).encode()


def test_every_sample_round_trips() -> None:
    """The samples are valid, so the fuzz mutates real events (and the wire form decodes)."""
    for model, event in SAMPLES.values():
        assert decode(model, event.model_dump_json().encode()) == event


@FUZZ
@given(model=st.sampled_from(MODELS), raw=st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_fail_validation(model: type[BaseModel], raw: bytes) -> None:
    RUNS["bytes"] += 1
    decode(model, raw)


@FUZZ
@given(model=st.sampled_from(MODELS), value=json_values)
def test_arbitrary_json_decodes_or_fails_validation(model: type[BaseModel], value: Any) -> None:
    RUNS["json"] += 1
    decode(model, json.dumps(value, allow_nan=True).encode())


@settings(FUZZ, max_examples=EXAMPLES * 4)
@given(mutated_events())
def test_mutated_events_decode_or_fail_validation(case: tuple[type[BaseModel], bytes]) -> None:
    RUNS["mutated"] += 1
    model, raw = case
    event = decode(model, raw)
    if event is not None:  # what decodes encodes again and decodes to the same event
        assert decode(model, event.model_dump_json().encode()) == event


# --- The dead-letter path --------------------------------------------------------------------


@dataclass
class Record:
    """What the event core reads of an aiokafka ConsumerRecord."""

    value: bytes | None
    key: bytes | None
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = ()


class FakeBroker:
    """Takes what the consumer publishes (the dead letters)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, body: bytes, *, topic: str, **_: Any) -> Any:
        self.published.append((topic, body))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def _no_sleep(_: float) -> None:
    return None


def _consume(model: type[BaseModel], values: list[bytes | None]) -> tuple[list[Any], FakeBroker]:
    broker = FakeBroker()
    handled: list[Any] = []

    async def handler(batch: list[Any]) -> None:
        handled.extend(batch)

    consumer = messaging.BatchConsumer(
        broker,  # type: ignore[arg-type]
        "acikkapi.fuzz",
        model,
        handler,
        consumer="fuzz",
        max_attempts=1,
        sleep=_no_sleep,
    )
    records = [Record(v, b"k", 0, i) for i, v in enumerate(values)]
    asyncio.run(consumer.handle(records))
    return handled, broker


def record_values() -> st.SearchStrategy[bytes | None]:
    return (
        st.none()
        | st.binary(max_size=200)
        | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode())
        | mutated_events().map(lambda case: case[1])
    )


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(model=st.sampled_from(MODELS), values=st.lists(record_values(), min_size=1, max_size=6))
def test_a_batch_of_anything_is_handled_or_dead_lettered(
    model: type[BaseModel], values: list[bytes | None]
) -> None:
    RUNS["batches"] += 1
    handled, broker = _consume(model, values)
    letters = [ev.DeadLetter.model_validate_json(body) for _, body in broker.published]
    assert {topic for topic, _ in broker.published} <= {"acikkapi.fuzz.dlq"}
    # Every record is either handed to the handler or dead-lettered, once.
    assert len(handled) + len(letters) == len(values)
    assert [letter.offset for letter in letters] == [
        i for i, v in enumerate(values) if decode(model, v or b"") is None
    ]
    for letter in letters:
        assert letter.error_type == "invalid_message"
        assert letter.source_topic == "acikkapi.fuzz"


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(prefix=st.binary(max_size=30), suffix=st.binary(max_size=30))
def test_a_dead_letter_never_shows_the_tckn(prefix: bytes, suffix: bytes) -> None:
    """Operators read dead letters: a TC Kimlik No in an undecodable message is masked."""
    RUNS["dead_letter_tckn"] += 1
    _, broker = _consume(ev.StatusChanged, [prefix + b" " + TCKN.encode() + b" " + suffix])
    (_, body), *_ = broker.published
    assert TCKN not in ev.DeadLetter.model_validate_json(body).original


def test_sealed_fields_are_not_clear_on_the_wire() -> None:
    _, received = SAMPLES[topics.RECEIVED]
    wire = received.model_dump_json()
    for clear in ("Ayşe", "Yılmaz", "+905321234567", "a@ornek.com"):
        assert clear not in wire and json.dumps(clear)[1:-1] not in wire


def test_the_fuzz_ran_its_examples() -> None:
    """Runs after the fuzz tests of this module (pytest keeps the file's order)."""
    print(f"\nevent-decoder fuzz examples: {dict(RUNS)} total={sum(RUNS.values())}")
    if RUNS:  # absent when the module's fuzz tests were deselected
        assert sum(RUNS.values()) >= EXAMPLES, RUNS
