"""Hypothesis fuzz of intake's input validators: the TC Kimlik No and phone rules, the other
field rules, the whole submission model, the channel gate, and the Open311 parsing. Whatever a
citizen, an adapter or an Open311 client sends, the answer is the normalised value or the
rule's own refusal (RuleViolation, a pydantic ValidationError whose every error becomes a field
error, ChannelRefused, Open311Error): never another exception, which would be a 500 over HTTP
or a dead letter for a message that only needed a rejection.
"""

from __future__ import annotations

import copy
import random
import string
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from stdnum.tr import tckimlik

from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.intake import domain, open311
from services.intake.channels import ChannelGate, ChannelRefused, without_proofs
from services.intake.handlers import bundled_districts, field_errors
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy import default_registry
from tests.support import valid_tckn
from tests.unit.test_intake_rules import body

EXAMPLES = 1000
RUNS: Counter[str] = Counter()

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DISTRICTS = bundled_districts()
TAXONOMY = taxonomy_published(default_registry().for_province(20))
SERVICE_CODES = sorted(open311._category_names(TAXONOMY))

digits = st.text(string.digits, min_size=0, max_size=14)
tckns = st.integers(0, 2**32).map(lambda seed: valid_tckn(random.Random(seed)))
# Text with what people type: digits, Turkish letters, spaces, punctuation, and anything else.
texts = st.text(max_size=60) | st.text(string.digits + " +-()./", max_size=20) | digits
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)


# --- TC Kimlik No -------------------------------------------------------------------------


@FUZZ
@given(texts)
def test_a_tckn_is_valid_digits_or_refused(value: str) -> None:
    RUNS["tckn"] += 1
    try:
        number = domain.check_tckn(value)
    except domain.RuleViolation as exc:
        assert exc.code == "invalid_tckn"
        return
    assert len(number) == 11 and number.isdigit() and number[0] != "0"
    assert tckimlik.is_valid(number)


@FUZZ
@given(tckns, st.integers(0, 10), st.integers(1, 9))
def test_every_valid_tckn_passes_and_every_changed_digit_is_caught(
    number: str, position: int, delta: int
) -> None:
    RUNS["tckn_checksum"] += 1
    assert domain.check_tckn(f"  {number} ") == number
    changed = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    with pytest.raises(domain.RuleViolation):
        domain.check_tckn(changed)


# --- Phone --------------------------------------------------------------------------------


@FUZZ
@given(texts)
def test_a_phone_is_e164_mobile_or_refused(value: str) -> None:
    RUNS["phone"] += 1
    try:
        phone = domain.check_phone(value)
    except domain.RuleViolation as exc:
        assert exc.code == "invalid_phone"
        return
    assert phone.startswith("+905") and len(phone) == 13 and phone[1:].isdigit()
    assert domain.check_phone(phone) == phone


@FUZZ
@given(st.sampled_from("0123456789"), st.text(string.digits, min_size=7, max_size=7))
def test_one_mobile_number_in_every_spelling(operator: str, rest: str) -> None:
    RUNS["phone_spellings"] += 1
    national = f"53{operator}{rest}"  # Turkcell's 53x block: always a mobile number
    spellings = [
        f"0{national}",
        f"+90{national}",
        f"0090 {national}",
        f"0 ({national[:3]}) {national[3:6]} {national[6:8]} {national[8:]}",
        national,
    ]
    assert {domain.check_phone(s) for s in spellings} == {f"+90{national}"}


@FUZZ
@given(texts)
def test_a_caller_number_is_e164_or_refused(value: str) -> None:
    RUNS["caller_number"] += 1
    try:
        number = domain.check_caller_number(value)
    except domain.RuleViolation as exc:
        assert exc.code == "invalid_caller_number"
        return
    assert number.startswith("+90") and number[1:].isdigit()


# --- The other field rules ----------------------------------------------------------------

RULES = [
    (lambda v: domain.check_name(v, "Ad"), "invalid_name"),
    (domain.check_initials, "invalid_initials"),
    (domain.check_email, "invalid_email"),
    (domain.check_subject, "invalid_subject"),
    (domain.check_text, "invalid_text"),
    (domain.check_category_code, "invalid_category_code"),
    (lambda v: DISTRICTS.canonical(20, v), "unknown_district"),
]


@FUZZ
@given(st.sampled_from(range(len(RULES))), texts)
def test_a_field_rule_normalises_once_or_refuses_with_its_code(rule: int, value: str) -> None:
    RUNS["field_rules"] += 1
    check, code = RULES[rule]
    try:
        result = check(value)
    except domain.RuleViolation as exc:
        assert exc.code in (code, "invalid_district") and exc.message
        return
    if result is not None:  # normalised values are fixed points of their rule
        assert check(result) == result


# --- The submission model ------------------------------------------------------------------

FIELDS = [
    "channel",
    "applicant",
    "province_code",
    "district",
    "application_type",
    "category_code",
    "subject",
    "text",
    "location",
    "priority",
    "attachments",
    "caller_number",
    "identity_consent",
]
APPLICANT_FIELDS = ["tckn", "first_name", "last_name", "mother_maiden_initials", "phone", "email"]


@st.composite
def submissions(draw: st.DrawFn) -> Any:
    """A valid body with some fields replaced by arbitrary JSON or removed, or anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    raw = body()
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            target, name = raw, draw(st.sampled_from(FIELDS))
        else:
            if not isinstance(raw.get("applicant"), dict):
                raw["applicant"] = {}
            target, name = raw["applicant"], draw(st.sampled_from(APPLICANT_FIELDS))
        if draw(st.integers(0, 3)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(json_values | texts | tckns)
    return raw


@FUZZ
@given(submissions(), st.booleans())
def test_a_submission_validates_or_lists_field_errors(raw: Any, proven: bool) -> None:
    RUNS["submission"] += 1
    original = copy.deepcopy(raw)
    try:
        form = domain.validate_application(raw, DISTRICTS, {20}, identity_proven=proven)
    except ValidationError as exc:
        errors = field_errors(exc)
        assert errors and all(e["code"] and e["message"] for e in errors)
        return
    finally:
        assert raw == original  # the caller's body is not changed
    assert tckimlik.is_valid(form.applicant.tckn)
    assert form.applicant.phone.startswith("+905")
    assert form.province_code == 20


# --- The channel gate ---------------------------------------------------------------------

GATE = ChannelGate(Settings(phone_verification=True), ledger=None, cipher=PiiCipher(b"k" * 32))  # type: ignore[arg-type]
CHANNELS = ["web", "sms", "call_center", "counter", "edevlet", "open311", "mobile", "x"]


@FUZZ
@given(
    submissions(),
    st.sampled_from(CHANNELS),
    st.none() | texts,
    st.dictionaries(
        st.sampled_from(["officer_token", "edevlet_assertion", "phone_verification"]), json_values
    ),
)
def test_the_channel_gate_vouches_or_refuses(
    raw: Any, channel: str, bearer: str | None, proofs: dict[str, Any]
) -> None:
    RUNS["channel_gate"] += 1
    if isinstance(raw, dict):
        raw = {**raw, "channel": channel, **proofs}
    try:
        vouched = GATE.vouch(raw, bearer=bearer)
    except ChannelRefused as exc:
        assert exc.status in (401, 403) and exc.errors[0]["message"]
        return
    kept = vouched.body
    if isinstance(kept, dict):
        assert without_proofs(kept) == kept


# --- Open311 --------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_an_open311_body_parses_or_is_a_400(raw: bytes) -> None:
    RUNS["open311_body"] += 1
    try:
        posted = open311.Posted.parse(raw)
    except open311.Open311Error as exc:
        assert exc.status == 400
        return
    assert all(v == v.strip() and v for v in [*posted.fields.values(), *posted.attributes.values()])


OPEN311_FIELDS = [
    "lat",
    "long",
    "address_string",
    "first_name",
    "last_name",
    "phone",
    "email",
    "description",
    "media_url",
]
OPEN311_ATTRIBUTES = [
    open311.TCKN,
    open311.INITIALS,
    open311.DISTRICT,
    open311.TYPE,
    open311.SUBJECT,
]


@FUZZ
@given(
    st.dictionaries(st.sampled_from(OPEN311_FIELDS), texts.filter(str.strip)),
    st.dictionaries(st.sampled_from(OPEN311_ATTRIBUTES), texts.filter(str.strip) | tckns),
    st.sampled_from(SERVICE_CODES),
)
def test_an_open311_request_becomes_a_body_the_rules_judge(
    fields: dict[str, str], attributes: dict[str, str], service_code: str
) -> None:
    RUNS["open311_request"] += 1
    posted = open311.Posted(
        {k: v.strip() for k, v in fields.items()}, {k: v.strip() for k, v in attributes.items()}
    )
    try:
        raw = open311.application_body(posted, TAXONOMY, service_code)
    except open311.Open311Error as exc:
        assert exc.status == 400
        return
    assert raw["category_code"] == service_code
    try:
        domain.validate_application(raw, DISTRICTS, {20})
    except ValidationError as exc:
        assert open311.open311_errors(field_errors(exc))


NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@FUZZ
@given(st.none() | texts, st.none() | texts, st.none() | texts)
def test_open311_filters_parse_or_are_a_400(
    start: str | None, end: str | None, status: str | None
) -> None:
    RUNS["open311_filters"] += 1
    try:
        first, last = open311.window(start, end, NOW)
        assert first <= last and last - first <= open311.DEFAULT_SPAN
        open311.closed_filter(status)
    except open311.Open311Error as exc:
        assert exc.status == 400


@FUZZ
@given(st.none() | texts)
def test_an_application_type_is_a_key_or_left_for_the_rules(value: str | None) -> None:
    RUNS["open311_type"] += 1
    assume(value is None or value.strip())
    open311.application_type_of(value)


def test_the_fuzz_ran_its_examples() -> None:
    """Runs after the fuzz tests of this module (pytest keeps the file's order)."""
    print(f"\nintake validator fuzz examples: {dict(RUNS)} total={sum(RUNS.values())}")
    if RUNS:
        assert sum(RUNS.values()) >= EXAMPLES, RUNS
