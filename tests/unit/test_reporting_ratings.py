"""Citizens' ratings in reporting's rules: a rating event sets two fields of its application's
document whatever the order and however often it comes, and the documents fold into the count,
mean and distribution overall and per institution, which the page shows."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from services.common.events import ApplicationRated
from services.common.turkish_time import ISTANBUL
from services.reporting import domain
from tests.support import summarize

MONDAY = datetime(2024, 3, 4, 10, 0, tzinfo=ISTANBUL)
NOW = datetime(2024, 4, 1, 12, 0, tzinfo=ISTANBUL)


def rated(app_id: str, value: int, institution: str = "DESKI") -> ApplicationRated:
    return ApplicationRated(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{app_id}:rated"),
        application_id=app_id,
        application_number="20-2024-0000001-0",
        producer="tracking",
        rating=value,
        institution_code=institution,
        category_code="ALT-001",
        province_code=20,
        rated_at=MONDAY + timedelta(days=3),
    )


def document(app_id: str, institution: str, rating: int | None) -> dict[str, Any]:
    """A read-model document of an answered application, rated or not."""
    doc: dict[str, Any] = {
        "_id": app_id,
        "province_code": 20,
        "received_ms": domain.to_ms(MONDAY),
        "received_day": "2024-03-04",
        "st_received": domain.to_ms(MONDAY),
        "st_answered": domain.to_ms(MONDAY + timedelta(days=2)),
        "outcome": "olumlu",
        "routings": {
            "e1": {
                "at_ms": domain.to_ms(MONDAY),
                "institution_code": institution,
                "institution_name": f"{institution} Kurumu",
                "institution_kind": "BELEDIYE",
            }
        },
    }
    if rating is not None:
        doc.update(domain.patch_for_rating(rated(app_id, rating, institution)).assign)
    return doc


def test_a_rating_sets_its_value_and_time_and_a_repeat_sets_the_same():
    event = rated("a-1", 4)
    patch = domain.patch_for_rating(event)
    assert patch.assign == {"rating": 4, "rated_ms": domain.to_ms(event.rated_at)}
    assert not patch.at_least and not patch.at_most
    assert domain.patch_for_rating(rated("a-1", 4)) == patch


def test_ratings_fold_overall_and_per_institution():
    docs = [
        document("a-1", "DESKI", 5),
        document("a-2", "DESKI", 4),
        document("a-3", "DESKI", 4),
        document("a-4", "PAU", 1),
        document("a-5", "PAU", None),  # answered, not rated: counted nowhere in the ratings
    ]
    summary = summarize(docs, NOW)
    assert summary["ratings"] == {
        "count": 4,
        "average": 3.5,
        "distribution": {"1": 1, "2": 0, "3": 0, "4": 2, "5": 1},
    }
    by = {i["institution_code"]: i["ratings"] for i in summary["by_institution"]}
    assert by["DESKI"] == {
        "count": 3,
        "average": 4.33,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 2, "5": 1},
    }
    assert by["PAU"]["count"] == 1 and by["PAU"]["average"] == 1.0
    assert summary["answered"] == 5


def test_no_ratings_have_no_mean():
    summary = summarize([document("a-1", "DESKI", None)], NOW)
    assert summary["ratings"]["count"] == 0 and summary["ratings"]["average"] is None
