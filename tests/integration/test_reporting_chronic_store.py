"""Chronic-problem storage against the real MongoDB-wire server: each application's two halves
in either order and more than once, nothing personal at rest, and the last run's problems
written and read back."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from bench.chronic import BENCH_KEY, LABELLED, NOW, load_labelled
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationRouted,
    ApplicationType,
    Channel,
    Location,
)
from services.common.mongo import Client, service_database
from services.common.settings import Settings
from services.reporting.chronic import ChronicRules, citizen_key, find_chronic
from services.reporting.chronic_store import ChronicProblems, ChronicTexts

pytestmark = pytest.mark.integration


@dataclass
class Stores:
    texts: ChronicTexts
    problems: ChronicProblems


@pytest.fixture
async def stores(settings: Settings, mongo: Client) -> AsyncIterator[Stores]:
    db = service_database(mongo, settings, "reporting")
    texts, problems = ChronicTexts(db), ChronicProblems(db)
    # Collections of each test's own: nx-27017 keeps every database in one namespace.
    suffix = uuid.uuid4().hex[:8]
    texts.texts = db[f"reporting_chronic_texts_t{suffix}"]
    problems.problems_collection = db[f"reporting_chronic_problems_t{suffix}"]
    problems.runs = db[f"reporting_chronic_runs_t{suffix}"]
    await texts.ensure_indexes()
    await problems.ensure_indexes()
    yield Stores(texts, problems)
    for collection in (texts.texts, problems.problems_collection, problems.runs):
        await collection.drop()


def received(app: dict[str, Any], *, subject: str = "") -> ApplicationReceived:
    applicant = app["applicant"]
    return ApplicationReceived(
        application_id=app["application_id"],
        application_number=app["application_number"],
        applicant=ApplicantContact(
            tckn_masked="12*******90",
            first_name=applicant["first_name"],
            last_name=applicant["last_name"],
            phone=applicant["phone"],
        ),
        channel=Channel.web,
        application_type=ApplicationType.sikayet,
        province_code=app["province_code"],
        district=app["district"],
        subject=subject,
        text=app["text"],
        location=Location(lat=37.78, lon=29.09, address=app["address"]) if app["address"] else None,
        received_at=datetime.fromisoformat(app["received_at"]),
    )


def routed(
    app: dict[str, Any], *, at: datetime, institution: str | None = None
) -> ApplicationRouted:
    return ApplicationRouted(
        application_id=app["application_id"],
        application_number=app["application_number"],
        category_code=app["category_code"],
        heading_code=app["heading_code"],
        heading_name=app["heading_name"],
        institution_code=institution or app["institution_code"],
        institution_kind="BELEDIYE",
        institution_name=f"{institution} Kurumu" if institution else app["institution_name"],
        routed_by="auto",
        deadline_at=at + timedelta(days=9),
        occurred_at=at,
    )


def labelled_applications() -> list[dict[str, Any]]:
    lines = LABELLED.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["application"] for line in lines if line.strip()]


def with_personal_data() -> dict[str, Any]:
    """A labelled application whose text names its applicant and gives a phone number."""
    for app in labelled_applications():
        if app["applicant"]["last_name"] in app["text"] and "[" not in app["text"]:
            if any(ch.isdigit() for ch in app["text"][-6:]):
                return app
    raise AssertionError("the labelled set has no text with a name and a phone")


async def test_both_halves_make_a_record_in_either_order(stores: Stores) -> None:
    first, second, only_received, only_routed = labelled_applications()[:4]
    at = NOW - timedelta(days=3)
    await stores.texts.record_received([received(first)], BENCH_KEY)
    await stores.texts.record_routed([routed(first, at=at)])
    await stores.texts.record_routed([routed(second, at=at)])  # routing's event came first
    await stores.texts.record_received([received(second)], BENCH_KEY)
    await stores.texts.record_received([received(only_received)], BENCH_KEY)
    await stores.texts.record_routed([routed(only_routed, at=at)])

    loaded = await stores.texts.load_window(20, NOW - timedelta(weeks=52))
    by_id = {r.application_id: r for r in loaded}
    assert set(by_id) == {first["application_id"], second["application_id"]}
    for app in (first, second):
        record = by_id[app["application_id"]]
        assert record.application_number == app["application_number"]
        assert record.district == app["district"]
        assert record.heading_code == app["heading_code"]
        assert record.heading_name == app["heading_name"]
        assert record.institution_code == app["institution_code"]
        assert record.received_at == datetime.fromisoformat(app["received_at"])
        assert record.received_at.tzinfo is not None
        assert record.citizen_key == citizen_key(app["applicant"]["phone"], BENCH_KEY)


async def test_the_latest_routing_wins_whatever_the_order_and_replays_change_nothing(
    stores: Stores,
) -> None:
    app = labelled_applications()[0]
    early, late = NOW - timedelta(days=5), NOW - timedelta(days=2)
    await stores.texts.record_routed([routed(app, at=late, institution="SONRAKI")])
    await stores.texts.record_received([received(app)], BENCH_KEY)
    await stores.texts.record_routed([routed(app, at=early, institution="ONCEKI")])
    # A batch with both, out of order, and the whole history again.
    await stores.texts.record_routed(
        [routed(app, at=late, institution="SONRAKI"), routed(app, at=early, institution="ONCEKI")]
    )
    await stores.texts.record_received([received(app)], BENCH_KEY)
    [record] = await stores.texts.load_window(20, NOW - timedelta(weeks=52))
    assert (record.institution_code, record.institution_name) == ("SONRAKI", "SONRAKI Kurumu")
    assert await stores.texts.texts.count_documents({}) == 1

    even_later = routed(app, at=NOW, institution="SON")
    await stores.texts.record_routed([even_later])
    [record] = await stores.texts.load_window(20, NOW - timedelta(weeks=52))
    assert record.institution_code == "SON"


async def test_nothing_personal_is_stored(stores: Stores) -> None:
    app = with_personal_data()
    await stores.texts.record_received([received(app, subject="Şikayet")], BENCH_KEY)
    doc = await stores.texts.texts.find_one({"_id": app["application_id"]})
    assert doc is not None
    stored = json.dumps(doc, ensure_ascii=False, default=str)
    applicant = app["applicant"]
    assert applicant["last_name"] not in stored
    assert applicant["phone"][-7:] not in stored
    assert applicant["first_name"] not in doc["text"]
    assert doc["text"].startswith("Şikayet. ")
    assert "[telefon]" in doc["text"] and "[ad soyad]" in doc["text"]
    assert set(doc) == {
        "_id",
        "application_number",
        "province_code",
        "district",
        "neighbourhood",
        "neighbourhood_name",
        "citizen_key",
        "received_ms",
        "text",
    }


async def test_the_window_starts_at_since_and_older_texts_can_be_forgotten(stores: Stores) -> None:
    apps = labelled_applications()[:6]
    await stores.texts.record_received([received(a) for a in apps], BENCH_KEY)
    await stores.texts.record_routed([routed(a, at=NOW) for a in apps])
    since = sorted(datetime.fromisoformat(a["received_at"]) for a in apps)[3]
    loaded = await stores.texts.load_window(20, since)
    assert len(loaded) == 3 and all(r.received_at >= since for r in loaded)
    assert await stores.texts.load_window(7, since) == []

    assert await stores.texts.forget_before(since) == 3
    assert await stores.texts.texts.count_documents({}) == 3
    assert len(await stores.texts.load_window(20, since - timedelta(weeks=52))) == 3


async def test_the_stored_path_finds_what_the_labelled_evaluation_finds(stores: Stores) -> None:
    apps = labelled_applications()
    await stores.texts.record_received([received(a) for a in apps], BENCH_KEY)
    await stores.texts.record_routed([routed(a, at=NOW - timedelta(days=1)) for a in apps])
    rules = ChronicRules()
    loaded = await stores.texts.load_window(20, NOW - timedelta(weeks=rules.window_weeks))
    from_store = find_chronic(loaded, now=NOW, rules=rules)
    expected = find_chronic([r.record for r in load_labelled()], now=NOW, rules=rules)
    assert len(from_store) >= 25
    assert from_store == expected

    run_at = NOW + timedelta(minutes=1)
    await stores.problems.save_problems(
        20, from_store, run_at, applications=len(loaded), duration_seconds=0.25
    )
    assert await stores.problems.problems(20) == from_store
    assert await stores.problems.problems(7) == []
    pamukkale = await stores.problems.problems(20, district="Pamukkale")
    assert pamukkale and all(p.district == "Pamukkale" for p in pamukkale)
    assert pamukkale == [p for p in from_store if p.district == "Pamukkale"]
    deski = await stores.problems.problems(20, institution="DESKI")
    assert deski == [p for p in from_store if p.institution_code == "DESKI"]
    counts = [p.count for p in await stores.problems.problems(20)]
    assert counts == sorted(counts, reverse=True)

    # The next run replaces the list, and each run is recorded.
    await stores.problems.save_problems(20, from_store[:2], run_at + timedelta(hours=1))
    assert await stores.problems.problems(20) == from_store[:2]
    last = await stores.problems.last_run(20)
    assert last is not None and last.problems == 2 and last.run_at == run_at + timedelta(hours=1)
    assert await stores.problems.runs.count_documents({"province_code": 20}) == 2
    assert await stores.problems.last_run(7) is None


async def test_an_institution_sees_only_its_own_applications_of_a_shared_problem(
    stores: Stores,
) -> None:
    from dataclasses import replace

    from services.reporting.cells import Scope
    from services.reporting.handlers import Reporting

    apps = labelled_applications()
    await stores.texts.record_received([received(a) for a in apps], BENCH_KEY)
    await stores.texts.record_routed([routed(a, at=NOW - timedelta(days=1)) for a in apps])
    loaded = await stores.texts.load_window(20, NOW - timedelta(weeks=12))
    problem = find_chronic(loaded, now=NOW)[0]
    owner = problem.member_institutions[0]
    # One of its applications went to another institution.
    shared = replace(problem, member_institutions=(owner, *(["BASKA"] * (problem.count - 1))))
    await stores.problems.save_problems(20, [shared], NOW)
    reporting = Reporting(None, stores.texts, stores.problems, BENCH_KEY)  # type: ignore[arg-type]

    [whole] = await reporting.chronic(Scope(20))
    assert whole["application_numbers"] == list(problem.application_numbers)
    [mine] = await reporting.chronic(Scope(20, institution=owner))
    assert mine["application_numbers"] == [problem.application_numbers[0]]
    assert mine["examples"] == [] and mine["other_institutions_applications"] == problem.count - 1
    [other] = await reporting.chronic(Scope(20, institution="BASKA"))
    assert len(other["application_numbers"]) == problem.count - 1
    assert await reporting.chronic(Scope(20, institution="HICBIRI")) == []
