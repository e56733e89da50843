"""The retention job as routing, notification and tracking wire it (their app.py), against the
real database: old documents lose their personal fields and still read; new ones keep theirs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from services.common.events import NotificationChannel, NotificationRequest
from services.common.retention import RetentionJob
from services.common.settings import Settings
from services.notification.domain import NotificationState
from services.notification.store import _document
from services.routing.lifecycle import ApplicationRecord, RoutingFile, Waiting
from tests.unit.test_routing_handlers import received

pytestmark = pytest.mark.integration


def job_of(app: FastAPI) -> RetentionJob:
    job: RetentionJob = app.state.retention
    return job


async def backdated(collection: Any, doc: dict[str, Any], field: str, days: int) -> None:
    """Insert `doc` whole with `field` `days` ago (nx-27017 turns a `$set` date into text)."""
    await collection.insert_one({**doc, field: datetime.now(UTC) - timedelta(days=days)})


async def test_routing_anonymises_its_sealed_applicant_and_still_reads_the_file(
    settings: Settings,
) -> None:
    from services.routing.app import build_app

    app = build_app(settings)
    store, job = app.state.store, job_of(app)
    collection = store._applications
    old, new = (
        received(application_id=str(uuid.uuid4())),
        received(application_id=str(uuid.uuid4())),
    )
    for event, days in ((old, job.days + 3), (new, 1)):
        file = RoutingFile(
            application=ApplicationRecord.from_event(event),
            state="pending",
            waiting=Waiting(reason="Kategori belirtilmemiş.", since=datetime.now(UTC)),
        )
        await backdated(collection, store.to_document(file), "received_at", days)

    report = await job.run()
    assert report.counts["routing_applications"] >= 1
    stored = await collection.find_one({"_id": old.application_id})
    assert "anonymised_at" in stored
    read = store.from_document(stored)
    assert read.application.applicant.first_name == "" and read.application.applicant.phone == ""
    assert "sular akmıyor" not in read.application.text
    assert read.application.district == "Merkezefendi"  # the facts stay
    kept = store.from_document(await collection.find_one({"_id": new.application_id}))
    assert kept.application.applicant.first_name == "Ayşe"
    await app.state.runtime.mongo.close()


async def test_notification_keeps_the_masked_recipient_and_drops_the_rest(
    settings: Settings,
) -> None:
    from services.notification.app import build_app

    app = build_app(settings)
    store, job = app.state.notifier.store, job_of(app)
    keys = [f"retention-{uuid.uuid4()}", f"retention-{uuid.uuid4()}"]
    for key, days in zip(keys, (job.days + 3, 1), strict=True):
        request = NotificationRequest(
            idempotency_key=key,
            channel=NotificationChannel.sms,
            to="+905321234567",
            template="application_received",
            params={"application_number": "20-2026-0000123-4"},
        )
        record = store.new_record(
            request,
            state=NotificationState.sent,
            entry=None,
            content={"text": "Sayın Ayşe Yıldırım, başvurunuz alındı."},
        )
        await backdated(store.notifications, _document(record), "created_at", days)

    assert (await job.run()).counts["notification_messages"] >= 1
    old, new = await store.get(keys[0]), await store.get(keys[1])
    assert store.recipient_of(old) == "" and store.content_of(old) is None
    assert old.recipient_masked == new.recipient_masked
    raw = await store.notifications.find_one({"_id": keys[0]})
    assert "Yıldırım" not in json.dumps(raw, default=str, ensure_ascii=False)
    assert store.recipient_of(new) == "+905321234567"
    assert store.content_of(new) == {"text": "Sayın Ayşe Yıldırım, başvurunuz alındı."}
    await app.state.runtime.mongo.close()


async def test_tracking_drops_the_contact_the_identity_and_the_words(settings: Settings) -> None:
    from services.tracking.app import build_app

    app = build_app(settings)
    job = job_of(app)
    collection = app.state.runtime.mongo[settings.database_name("tracking")][
        "tracking_applications"
    ]
    doc_id = str(uuid.uuid4())
    await backdated(
        collection,
        {
            "_id": doc_id,
            "number": "20-2026-0000999-1",
            "status": "closed",
            "phone_enc": "v2:aaaaaaaa:AAAA",
            "phone_index": "x" * 64,
            "email_enc": "v2:aaaaaaaa:BBBB",
            "identity_enc": "v2:aaaaaaaa:CCCC",
            "text": "Komşum Ahmet Bey'in köpeği",
            "outcome": "olumlu",
        },
        "received_at",
        job.days + 3,
    )
    assert (await job.run()).counts["tracking_applications"] >= 1
    stored = await collection.find_one({"_id": doc_id})
    assert not {"phone_enc", "phone_index", "email_enc", "identity_enc", "text"} & set(stored)
    assert (stored["status"], stored["outcome"]) == ("closed", "olumlu")
    await app.state.runtime.mongo.close()
