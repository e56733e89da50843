"""One application, end to end, through five separate service processes on the real stack:
HTTP intake → routing → the institution's own topic (read with kcat, no project code) →
the institution's answer → the citizen's SMS in fakesmsc → the status page → the report."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from deploy.local import kafka_acl
from services.common import topics
from services.common.auth import Role, issue_token
from services.common.kafka_auth import Credentials
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from tests.conftest import consume_until
from tests.e2e.conftest import READS
from tests.support import sms_texts_to, valid_tckn

pytestmark = pytest.mark.e2e


async def poll(fetch, ok, timeout: float = 30.0, every: float = 0.3):
    """Call `fetch` until `ok(result)`; return the result or fail with the last one seen."""
    last = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await fetch()
                if ok(last):
                    return last
                await asyncio.sleep(every)
    except TimeoutError:
        seen = last.text if isinstance(last, httpx.Response) else last
        raise AssertionError(f"not reached in {timeout} s; last seen: {seen}") from None


def read_institution_topic_with_kcat(bootstrap: str, code: str, login: Credentials) -> list[dict]:
    """What the institution reads with its own broker user, as docs/institutions.md shows."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is installed by deploy/local/install.sh"
    out = subprocess.run(
        [
            kcat,
            "-C",
            "-b",
            bootstrap,
            *("-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512"),
            *("-X", f"sasl.username={login.username}", "-X", f"sasl.password={login.password}"),
            "-t",
            topics.institution_topic(code),
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_one_application_from_intake_to_report(service_urls, e2e_settings: Settings):
    s = e2e_settings
    phone = f"+90532{random.randint(1_000_000, 9_999_999)}"
    supervisor = issue_token(s, subject="e2e-vali-yardimcisi", role=Role.supervisor)
    staff = {"Authorization": f"Bearer {supervisor}"}
    today = datetime.now(ISTANBUL).date().isoformat()  # the report's days are Turkish days
    summary_url = (
        f"{service_urls['reporting']}/api/v1/reports/summary"
        f"?province_code=20&from={today}&to={today}"
    )

    async with httpx.AsyncClient(timeout=10) as http:
        before = (await http.get(summary_url, headers=staff)).json()

        taxonomy = (await http.get(f"{service_urls['routing']}/api/v1/taxonomy")).json()
        category = next(
            c
            for h in taxonomy["headings"]
            for c in h["categories"]
            if "su" in c["name"].lower() or "içme" in c["name"].lower()
        )

        body = {
            "channel": "web",
            "applicant": {
                "tckn": valid_tckn(random.Random()),
                "first_name": "Ayşe",
                "last_name": "Yıldırım",
                "mother_maiden_initials": "ÖZ",
                "phone": phone,
            },
            "province_code": 20,
            "district": "Merkezefendi",
            "application_type": "sikayet",
            "category_code": category["code"],
            "subject": "Mahallemizde içme suyu kesintisi",
            "text": (
                "Sırakapılar Mahallesi'nde iki gündür şebeke suyu akmıyor, "
                "ilgilenilmesini rica ederim."
            ),
        }
        created = await http.post(f"{service_urls['intake']}/api/v1/applications", json=body)
        assert created.status_code == 201, created.text
        application = created.json()
        app_id, number = application["application_id"], application["application_number"]
        assert application["status"] == "received"

        routed = await consume_until(
            s.kafka_bootstrap, topics.ROUTED, lambda e: e.get("application_id") == app_id
        )
        assert routed["event_type"] == "application.routed"
        code = routed["institution_code"]

        # The institution reads its own topic with a plain Kafka client, as its own user.
        login = await kafka_acl.add_institution(code)
        assignments = [
            e
            for e in read_institution_topic_with_kcat(s.kafka_bootstrap, code, login)
            if e.get("application_id") == app_id
        ]
        assert len(assignments) == 1, [
            (e["event_id"], e.get("auto_confidence")) for e in assignments
        ]
        assignment = assignments[0]
        assert assignment["application_number"] == number
        assert assignment["subject"] == body["subject"]
        assert body["applicant"]["tckn"] not in json.dumps(assignment)
        # A şikayet without the applicant's consent: the institution is not told who sent it.
        assert assignment["applicant"] is None and assignment["identity_shielded"] is True
        for trace in ("Yıldırım", phone[-10:]):
            assert trace not in json.dumps(assignment, ensure_ascii=False)

        # The receipt SMS reached the fake SMSC through Kannel.
        data_dir = Path(os.environ["AK_DATA_DIR"])
        digits = phone.lstrip("+")
        receipt = await poll(
            lambda: asyncio.to_thread(sms_texts_to, data_dir, digits),
            lambda msgs: any(number in m for m in msgs),
        )
        assert any("alındı" in m for m in receipt)

        institution = {
            "Authorization": "Bearer "
            + issue_token(s, subject="e2e-deski", role=Role.institution, institution=code)
        }
        listing_url = f"{service_urls['tracking']}/api/v1/institutions/{code}/applications"
        listing = await poll(
            lambda: http.get(listing_url, headers=institution),
            lambda r: r.status_code == 200 and app_id in r.text,
        )
        assert body["applicant"]["tckn"] not in listing.text

        answer = await http.post(
            f"{listing_url}/{app_id}/response",
            headers=institution,
            json={"outcome": "olumlu", "text": "Arıza giderildi, su verilmeye başlandı."},
        )
        assert answer.status_code in (200, 202), answer.text

        track_url = f"{service_urls['tracking']}/api/v1/track/{number}?phone_last4={phone[-4:]}"
        tracked = await poll(
            lambda: http.get(track_url),
            lambda r: r.status_code == 200 and r.json()["status"] in ("answered", "closed"),
        )
        status = tracked.json()
        assert status["outcome"] == "olumlu"
        assert [t["status"] for t in status["timeline"]][:2] == ["received", "routed"]
        for secret in (phone, phone[-10:], "Yıldırım", body["applicant"]["tckn"]):
            assert secret not in tracked.text

        wrong = await http.get(
            f"{service_urls['tracking']}/api/v1/track/{number}?phone_last4=0000"
            if phone[-4:] != "0000"
            else track_url.replace(phone[-4:], "1111")
        )
        assert wrong.status_code == 404

        page = await http.get(
            f"{service_urls['tracking']}/takip",
            params={"number": number, "phone_last4": phone[-4:]},
        )
        assert page.status_code == 200 and number in page.text

        answered_sms = await poll(
            lambda: asyncio.to_thread(sms_texts_to, data_dir, digits),
            lambda msgs: sum(number in m for m in msgs) >= 2,
        )
        assert any("olumlu" in m for m in answered_sms if number in m)

        after = await poll(
            lambda: http.get(summary_url, headers=staff),
            lambda r: (
                r.status_code == 200
                and r.json()["outcomes"]["olumlu"] == before["outcomes"]["olumlu"] + 1
            ),
        )
        report = after.json()
        assert report["total"] == before["total"] + 1
        assert report["answered"] == before["answered"] + 1
        assert any(i["institution_code"] == code for i in report["by_institution"])


async def test_every_service_reports_health_readiness_metrics_and_its_documents(service_urls):
    async with httpx.AsyncClient(timeout=10) as http:
        for name, url in service_urls.items():
            assert (await http.get(f"{url}/healthz")).json()["status"] == "ok", name
            ready = await http.get(f"{url}/readyz")
            assert ready.status_code == 200, (name, ready.text)
            checks = {"kafka": True, "mongodb": True, "consumers": True}
            if name == "intake":
                checks["taxonomy"] = True  # routing's provinces read
            if name in ("routing", "tracking"):
                checks["calendar"] = True  # the leave days read to the end
            assert ready.json()["checks"] == checks, name
            metrics = await http.get(f"{url}/metrics")
            assert "acikkapi_events_consumed_total" in metrics.text, name
            assert (await http.get(f"{url}/docs")).status_code == 200, name
            openapi = (await http.get(f"{url}/openapi.json")).json()
            assert "/readyz" in openapi["paths"], name
            asyncapi = (await http.get(f"{url}/asyncapi")).json()
            assert asyncapi["asyncapi"].startswith("3."), name
            for topic in READS[name]:
                assert topic in json.dumps(asyncapi), (name, topic)
