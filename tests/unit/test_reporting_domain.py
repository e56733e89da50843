"""Reporting's rules: events fold into one document per application whatever their order or
repetition, and the documents fold into the summary's figures."""

from __future__ import annotations

import copy
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.events import (
    ApplicantContact,
    ApplicationAwaitingRouting,
    ApplicationReceived,
    ApplicationRouted,
    DeadlineEvent,
    Envelope,
    RoutingOutcome,
    StatusChanged,
)
from services.common.turkish_time import ISTANBUL
from services.reporting import domain
from services.reporting.domain import Patch
from services.reporting.query import Period, QueryError, parse_period, parse_province
from tests.support import summarize

# Monday 4 March 2024, 10:00 in Istanbul; no holidays that week or the next.
MONDAY = datetime(2024, 3, 4, 10, 0, tzinfo=ISTANBUL)
NOW = datetime(2024, 4, 1, 12, 0, tzinfo=ISTANBUL)


def apply(doc: dict[str, Any], patch: Patch) -> dict[str, Any]:
    """MongoDB's `$set` (dotted paths), `$max` and `$min`, as the store sends them."""
    doc = copy.deepcopy(doc)
    for path, value in patch.assign.items():
        target = doc
        *parents, leaf = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = copy.deepcopy(value)
    for name, value in patch.at_least.items():
        doc[name] = value if doc.get(name) is None else max(doc[name], value)
    for name, value in patch.at_most.items():
        doc[name] = value if doc.get(name) is None else min(doc[name], value)
    return doc


def patch_of(event: Envelope | RoutingOutcome) -> Patch:
    if isinstance(event, ApplicationReceived):
        return domain.patch_for_received(event)
    if isinstance(event, RoutingOutcome):
        return domain.patch_for_routing(event.root)
    if isinstance(event, ApplicationRouted | ApplicationAwaitingRouting):
        return domain.patch_for_routing(event)
    if isinstance(event, StatusChanged):
        return domain.patch_for_status(event)
    if isinstance(event, DeadlineEvent):
        return domain.patch_for_deadline(event)
    raise TypeError(type(event))


def fold(events: list[Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for event in events:
        doc = apply(doc, patch_of(event))
    return doc


def received(
    app_id: str,
    at: datetime = MONDAY,
    *,
    channel: str = "web",
    district: str = "Pamukkale",
    category: str | None = None,
    province: int = 20,
) -> ApplicationReceived:
    return ApplicationReceived(
        application_id=app_id,
        application_number="20-2024-0000001-5",
        channel=channel,
        application_type="sikayet",
        category_code=category,
        province_code=province,
        district=district,
        subject="Yol çukuru",
        text="Mahallemizdeki yol bozuk.",
        applicant=ApplicantContact(
            tckn_masked="12*******90", first_name="Ayşe", last_name="Yıldız", phone="+905321112233"
        ),
        received_at=at,
    )


def routed(
    app_id: str,
    at: datetime,
    *,
    institution: str = "DENIZLI-BB",
    name: str = "Denizli Büyükşehir Belediyesi",
    category: str = "YOL-01",
    deadline: datetime | None = None,
) -> ApplicationRouted:
    return ApplicationRouted(
        application_id=app_id,
        application_number="20-2024-0000001-5",
        occurred_at=at,
        category_code=category,
        heading_code=category.split("-")[0],
        institution_code=institution,
        institution_kind="BELEDIYE",
        institution_name=name,
        routed_by="auto",
        deadline_at=deadline or (at + timedelta(days=9)),
    )


def status(app_id: str, name: str, at: datetime, **extra: Any) -> StatusChanged:
    return StatusChanged(
        application_id=app_id, application_number="20-2024-0000001-5", status=name, at=at, **extra
    )


def answered_life(app_id: str, outcome: str, answer_days: int) -> list[Any]:
    deadline = datetime(2024, 3, 13, 23, 59, 59, tzinfo=ISTANBUL)
    answer_at = MONDAY + timedelta(days=answer_days)
    return [
        received(app_id),
        routed(app_id, MONDAY + timedelta(minutes=1), deadline=deadline),
        status(app_id, "routed", MONDAY + timedelta(minutes=2), deadline_at=deadline),
        status(
            app_id,
            "answered",
            answer_at,
            outcome=outcome,
            answered_at=answer_at,
            deadline_at=deadline,
            received_at=MONDAY,
        ),
    ]


def test_any_order_and_any_repetition_gives_the_same_document():
    app = "a-1"
    events = [
        *answered_life(app, "kismen_olumlu", 3),
        status(app, "closed", MONDAY + timedelta(days=3, minutes=5), outcome="kismen_olumlu"),
        DeadlineEvent(
            application_id=app,
            application_number="x",
            kind="warning",
            deadline_at=datetime(2024, 3, 13, 23, 59, 59, tzinfo=ISTANBUL),
        ),
    ]
    reference = fold(events)
    for order in itertools.permutations(events):
        assert fold(list(order)) == reference
    assert fold(events + events[::-1]) == reference
    facts = domain.facts_from_document(reference)
    assert facts.status == "closed"
    assert facts.outcome == "kismen_olumlu"
    assert facts.institution_code == "DENIZLI-BB"
    assert facts.answered_on_time() is True
    assert facts.response_business_days() == 3


def test_no_personal_data_reaches_the_document():
    doc = fold(answered_life("a-2", "olumlu", 1))
    text = repr(doc)
    for secret in ("Ayşe", "Yıldız", "+905321112233", "12*******90", "Yol çukuru", "yol bozuk"):
        assert secret not in text
    # The number is kept for the staff's overdue list: by itself it opens nothing (the status
    # page also asks for the phone's last four digits).
    assert doc["application_number"] == "20-2024-0000001-5"


def test_a_late_status_event_never_regresses_an_answer():
    app = "a-3"
    life = answered_life(app, "olumsuz", 2)
    late_opened = status(app, "opened", MONDAY + timedelta(days=1))
    doc = fold([*life, late_opened])
    facts = domain.facts_from_document(doc)
    assert facts.status == "answered"
    assert facts.outcome == "olumsuz"


def test_the_latest_routing_wins_after_a_return_whatever_the_order():
    app = "a-4"
    first = routed(app, MONDAY + timedelta(minutes=1))
    returned = status(app, "returned", MONDAY + timedelta(days=1))
    second = routed(
        app,
        MONDAY + timedelta(days=1, minutes=5),
        institution="DESKI",
        name="DESKİ Genel Müdürlüğü",
        category="SU-02",
    )
    for order in itertools.permutations([received(app), first, returned, second]):
        facts = domain.facts_from_document(fold(list(order)))
        assert facts.institution_code == "DESKI"
        assert facts.category_code == "SU-02"
        assert facts.status == "routed"
        assert facts.deadline_ms == domain.to_ms(second.deadline_at)


def test_routing_outcome_union_and_awaiting_routing():
    app = "a-5"
    waiting = RoutingOutcome.model_validate_json(
        ApplicationAwaitingRouting(
            application_id=app, application_number="n", reason="kategori yok"
        ).to_bytes()
    )
    facts = domain.facts_from_document(fold([received(app, category=None), waiting]))
    assert facts.status == "awaiting_routing"
    assert facts.institution_code is None
    assert facts.category_code is None


def test_routing_category_takes_precedence_over_the_citizens_pick():
    app = "a-6"
    doc = fold([received(app, category="GENEL-99"), routed(app, MONDAY, category="YOL-01")])
    assert domain.facts_from_document(doc).category_code == "YOL-01"
    only_pick = fold([received(app, category="GENEL-99")])
    assert domain.facts_from_document(only_pick).category_code == "GENEL-99"


def test_summary_figures():
    docs = []
    # Three answered on time (1, 3 and 5 business days), one answered late, one open and late,
    # one open within its deadline, one flagged overdue by tracking's deadline event.
    docs.append(fold(answered_life("s-1", "olumlu", 1)))
    docs.append(fold(answered_life("s-2", "olumlu", 3)))
    docs.append(fold(answered_life("s-3", "kismen_olumlu", 7)))  # Monday 11 March: 5 days
    docs.append(fold(answered_life("s-4", "olumsuz", 14)))  # Monday 18 March: 10 days, late
    late = MONDAY + timedelta(9)
    docs.append(
        fold(
            [
                received("s-5"),
                routed("s-5", MONDAY, deadline=late),
                # Past its deadline and still open: tracking says so, and that is what counts.
                DeadlineEvent(
                    application_id="s-5", application_number="n", kind="missed", deadline_at=late
                ),
            ]
        )
    )
    fresh = NOW - timedelta(days=1)
    docs.append(
        fold([received("s-6", fresh, channel="counter"), routed("s-6", fresh, institution="X")])
    )
    docs.append(
        fold(
            [
                received("s-7", fresh, channel="edevlet"),
                DeadlineEvent(
                    application_id="s-7",
                    application_number="n",
                    kind="missed",
                    deadline_at=fresh,
                ),
            ]
        )
    )
    summary = summarize(docs, NOW)
    assert summary["total"] == 7
    assert summary["answered"] == 4
    assert summary["outcomes"] == {"olumlu": 2, "olumsuz": 1, "kismen_olumlu": 1}
    assert summary["open"] == 3
    assert summary["overdue"] == 3  # s-4 late answer, s-5 open past deadline, s-7 flagged
    assert summary["on_time_ratio"] == 0.75
    assert summary["mean_response_business_days"] == round((1 + 3 + 5 + 10) / 4, 2)
    assert {c["channel"]: c["total"] for c in summary["by_channel"]} == {
        "web": 5,
        "counter": 1,
        "edevlet": 1,
    }
    bb = next(i for i in summary["by_institution"] if i["institution_code"] == "DENIZLI-BB")
    assert bb == {
        "institution_code": "DENIZLI-BB",
        "institution_name": "Denizli Büyükşehir Belediyesi",
        "kind": "BELEDIYE",
        "total": 5,
        "answered": 4,
        "olumlu": 2,
        "olumsuz": 1,
        "kismen_olumlu": 1,
        "open": 1,
        "overdue": 2,
        "on_time_ratio": 0.75,
        "mean_response_business_days": 4.75,
        "median_response_business_days": 3,
        "ratings": {"count": 0, "average": None, "distribution": dict.fromkeys("12345", 0)},
    }
    # Not yet routed: its own group, listed last.
    assert summary["by_institution"][-1]["institution_code"] is None
    assert summary["by_institution"][-1]["total"] == 1
    category = next(c for c in summary["by_category"] if c["category_code"] == "YOL-01")
    assert category["heading_code"] == "YOL"
    assert category["total"] == 6 and category["answered"] == 4
    # Trends count by the week of receipt: five came in the week of 4 March, two last week.
    weekly = summary["trends"]["weekly"]
    assert [(w["start"], w["received"], w["answered"]) for w in weekly] == [
        ("2024-03-04", 5, 4),
        ("2024-03-25", 2, 0),
    ]
    assert weekly[0]["period"] == "2024-W10"
    assert summary["median_response_business_days"] == 3
    assert [r["institution_code"] for r in summary["institution_ranking"]] == ["DENIZLI-BB"]
    # s-5 and s-7 are open and overdue: the overdue list, oldest deadline first.
    assert summary["overdue_list_total"] == 2
    assert summary["overdue_list"][0]["deadline_at"] <= summary["overdue_list"][1]["deadline_at"]


def test_summary_of_nothing_has_null_ratios():
    summary = summarize([], NOW)
    assert summary["total"] == 0
    assert summary["on_time_ratio"] is None
    assert summary["mean_response_business_days"] is None
    assert summary["by_institution"] == []


def test_redelivered_status_events_do_not_double_count():
    life = answered_life("d-1", "olumlu", 1)
    once = summarize([fold(life)], NOW)
    thrice = summarize([fold(life + life + life)], NOW)
    assert once == thrice
    assert thrice["answered"] == 1


def test_the_receipt_day_is_the_istanbul_day():
    late_evening_utc = datetime(2024, 3, 4, 22, 30, tzinfo=UTC)  # 01:30 on 5 March in Istanbul
    doc = fold([received("t-1", late_evening_utc)])
    assert doc["received_day"] == "2024-03-05"


def test_period_parsing():
    assert parse_period(None, None) == Period()
    period = parse_period("2024-03-01", "2024-03-31")
    assert (period.start.day, period.end.day) == (1, 31)
    assert parse_period("2024-03-01", "2024-03-01").start == period.start
    with pytest.raises(QueryError) as err:
        parse_period("2024-04-01", "2024-03-01")
    assert err.value.errors[0]["code"] == "invalid_period"
    assert "sonra olamaz" in err.value.errors[0]["message"]
    for bad in ("2024-02-30", "01.03.2024", "2024-3-1", "dün"):
        with pytest.raises(QueryError) as err:
            parse_period(bad, None)
        assert err.value.errors[0]["field"] == "from"
    with pytest.raises(QueryError) as err:
        parse_period("x", "y")
    assert [e["field"] for e in err.value.errors] == ["from", "to"]


def test_province_parsing():
    assert parse_province("20") == 20
    assert parse_province("") is None
    for bad in ("0", "82", "-1", "yirmi"):
        with pytest.raises(QueryError) as err:
            parse_province(bad)
        assert err.value.errors[0]["field"] == "province_code"


def test_every_status_event_id_is_independent_of_the_document():
    # Deterministic event ids per (application, status) mean a repeat is literally the same
    # event; the fold must not depend on ids for statuses at all.
    a = status("e-1", "opened", MONDAY, event_id=uuid.uuid4())
    b = status("e-1", "opened", MONDAY, event_id=uuid.uuid4())
    assert fold([a]) == fold([a, b])


def test_category_names_come_from_the_routing_decision():
    app = "n-1"
    decision = routed(app, MONDAY, category="ALT-001")
    decision.category_name = "İçme suyu kesintisi"
    decision.heading_name = "Altyapı ve Su"
    summary = summarize([fold([received(app), decision])], NOW)
    [category] = summary["by_category"]
    assert category["category_code"] == "ALT-001"
    assert category["category_name"] == "İçme suyu kesintisi"
    assert category["heading_name"] == "Altyapı ve Su"
    unnamed = summarize([fold([received("n-2", category="ALT-001")])], NOW)["by_category"][0]
    assert unnamed["category_code"] == "ALT-001" and unnamed["category_name"] is None
