"""Tracking's doors against the real broker and database (routing and tracking side by side, as in
test_institution_workflow): supervisors only in their province, a sub-unit's staff only what was
assigned to their unit, other roles nowhere in the inbox; the complainant shield and its
unmasking by a supervisor with a reason, audited; and the status page's guess lock holding
under parallel guesses."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common import topics
from services.common.application_number import MAX_SEQUENCE, format_number
from services.common.auth import Role
from services.common.events import ApplicantContact, ApplicationReceived
from services.routing.taxonomy import default_registry
from services.tracking.handlers import MAX_MISSES
from services.tracking.workflow import SHIELD_NOTICE
from tests.conftest import produce
from tests.integration.test_institution_workflow import (
    DESKI,
    Case,
    Stack,
    act,
    detail,
    eventually,
    stack,  # noqa: F401 - the module's routing and tracking, a fixture
    url,
)
from tests.support import bearer

pytestmark = pytest.mark.integration

FIRST, LAST, EMAIL = "Şükrü", "Öztürkoğlu", "sukru.ozturkoglu@example.org"
REASON = "Arıza yerinin tespiti için kurumun başvuru sahibiyle görüşmesi zorunlu."
OUTSIDERS = (
    Role.citizen,
    Role.counter_officer,
    Role.routing_officer,
    Role.governor,
    Role.auditor,
    Role.officer,
)


async def applied(
    stack: Stack,  # noqa: F811
    *,
    application_type: str = "sikayet",
    consent: bool = False,
    subject: str | None = None,
) -> Case:
    """An application to DESKİ as intake announces it (with the applicant's consent or not);
    returned once tracking lists it at DESKİ."""
    phone = f"+90533{random.randint(0, 9_999_999):07d}"
    event = ApplicationReceived(
        application_id=str(uuid.uuid4()),
        application_number=format_number(20, 2026, random.randint(1, MAX_SEQUENCE)),
        producer="test-intake",
        channel="web",
        application_type=application_type,
        category_code="ALT-001",
        province_code=20,
        district="Merkezefendi",
        subject=subject or f"Su sayacı arızası {uuid.uuid4().hex[:6]}",
        text="Sayacımız iki haftadır yanlış okuyor, fatura üç katına çıktı.",
        applicant=ApplicantContact(
            tckn_masked="38*******26", first_name=FIRST, last_name=LAST, phone=phone, email=EMAIL
        ),
        identity_consent=consent,
        received_at=datetime.now(UTC),
    )
    await produce(
        stack.settings.kafka_bootstrap, topics.RECEIVED, event.to_bytes(), event.application_id
    )
    institution = default_registry().for_province(20).decide("ALT-001", "Merkezefendi")
    case = Case(event.application_id, event.application_number, phone, institution.institution_code)
    assert case.institution == DESKI

    async def routed() -> bool:
        found = await detail(stack, case)
        return found.status_code == 200 and found.json()["district"] == "Merkezefendi"

    await eventually(routed)
    return case


async def audited(stack: Stack, case: Case, action: str) -> list[dict[str, Any]]:  # noqa: F811
    records: list[dict[str, Any]] = await stack.tracking_app.state.audit.query(
        application_id=case.application_id, action=action
    )
    return records


# --- scope -------------------------------------------------------------------------------------


async def test_a_supervisor_sees_only_their_province_and_other_roles_no_inbox_at_all(
    stack: Stack,  # noqa: F811
):
    case = await applied(stack)
    listing = f"/api/v1/institutions/{DESKI}/applications"
    one = url(case)
    ours = stack.token(Role.supervisor, province=20)
    izmir = stack.token(Role.supervisor, province=35)

    mine = await stack.tracking.get(listing, params={"limit": 200}, headers=ours)
    assert mine.status_code == 200, mine.text
    assert (await stack.tracking.get(one, headers=ours)).status_code == 200
    for path in (listing, one):
        refused = await stack.tracking.get(path, headers=izmir)
        assert refused.status_code == 403, refused.text
        assert refused.json()["errors"][0]["code"] == "forbidden"
    # Not even an institution the directory does not know shows another province's records.
    unknown = await stack.tracking.get(
        "/api/v1/institutions/BILINMEYEN-KURUM/applications", headers=izmir
    )
    assert unknown.status_code == 200 and unknown.json()["total"] == 0
    no_province = stack.token(Role.supervisor)
    assert (await stack.tracking.get(listing, headers=no_province)).status_code == 403
    assert (await stack.tracking.get("/api/v1/approvals", headers=no_province)).status_code == 403
    assert (await stack.tracking.get("/api/v1/directory/20", headers=izmir)).status_code == 403
    assert (await stack.tracking.get("/api/v1/directory/20", headers=ours)).status_code == 200
    deski = stack.staff(DESKI)
    assert (await stack.tracking.get("/api/v1/directory/20", headers=deski)).status_code == 200
    assert (await stack.tracking.get("/api/v1/directory/35", headers=deski)).status_code == 403

    unmask = f"/api/v1/applications/{case.application_id}/unmask"
    for role in OUTSIDERS:
        headers = stack.token(role, province=20)
        for path in (listing, one, "/api/v1/session", "/api/v1/directory/20", "/api/v1/approvals"):
            reply = await stack.tracking.get(path, headers=headers)
            assert reply.status_code == 403, (role, path, reply.text)
        for act_path in (f"{one}/open", unmask):
            reply = await stack.tracking.post(act_path, json={"reason": REASON}, headers=headers)
            assert reply.status_code == 403, (role, act_path, reply.text)
    assert (await stack.tracking.get(listing)).status_code == 401
    assert (await detail(stack, case)).json()["status"] == "routed"  # nothing was opened


async def test_a_units_staff_see_and_act_only_on_what_was_assigned_to_their_unit(
    stack: Stack,  # noqa: F811
):
    word = uuid.uuid4().hex[:8]
    assigned = await applied(stack, application_type="istek", subject=f"Vana {word} bir")
    unassigned = await applied(stack, application_type="istek", subject=f"Vana {word} iki")
    given = await act(stack, assigned, "assign", {"unit": "Su Arıza Birimi"})
    assert given.status_code == 200, given.text
    listing = f"/api/v1/institutions/{DESKI}/applications"
    water = _unit_token(stack, "SU ARIZA BİRİMİ")
    sewer = _unit_token(stack, "Kanalizasyon Birimi")

    seen = await stack.tracking.get(listing, params={"q": word}, headers=water)
    assert seen.status_code == 200, seen.text
    assert [i["application_id"] for i in seen.json()["items"]] == [assigned.application_id]
    desk = await stack.tracking.get(listing, params={"q": word}, headers=stack.staff(DESKI))
    assert desk.json()["total"] == 2  # the institution's central desk sees both
    none = await stack.tracking.get(listing, params={"q": word}, headers=sewer)
    assert none.status_code == 200 and none.json()["total"] == 0

    assert (await stack.tracking.get(url(assigned), headers=water)).status_code == 200
    for headers, case in ((sewer, assigned), (water, unassigned)):
        refused = await stack.tracking.get(url(case), headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["errors"][0]["message"] == "Bu başvuru biriminize havale edilmemiş."
        assert (await act(stack, case, "open", headers=headers)).status_code == 403
    away = await act(stack, assigned, "assign", {"unit": "Kanalizasyon Birimi"}, headers=water)
    assert away.status_code == 403
    opened = await act(stack, assigned, "open", headers=water)
    assert opened.status_code == 200 and opened.json()["status"] == "opened"
    changes = await audited(stack, assigned, "change")
    operations = [(r["actor"]["subject"], r["detail"]["operation"]) for r in changes]
    assert ("test-institution", "assign") in operations
    assert ("su.birimi", "open") in operations
    session = await stack.tracking.get("/api/v1/session", headers=water)
    assert session.json()["unit"] == "SU ARIZA BİRİMİ"


def _unit_token(stack: Stack, unit: str) -> dict[str, str]:  # noqa: F811
    subject = "su.birimi" if unit.startswith("SU") else "kanal.birimi"
    return bearer(stack.settings, Role.institution, subject=subject, institution=DESKI, unit=unit)


# --- the complainant shield ---------------------------------------------------------------------


async def test_a_complaint_hides_its_applicant_until_a_supervisor_unmasks_it_with_a_reason(
    stack: Stack,  # noqa: F811
):
    case = await applied(stack)
    hidden = await detail(stack, case)
    body = hidden.json()
    assert body["identity_shielded"] is True and body["identity_notice"] == SHIELD_NOTICE
    assert "applicant" not in body and body["identity_unmasked"] is False
    assert "answer" in body and body["answer"] is None  # only the identity is left out
    for secret in (FIRST, LAST, case.phone[-7:], EMAIL, "38*******26"):
        assert secret not in hidden.text
    assert await audited(stack, case, "read_personal") == []

    unmask = f"/api/v1/applications/{case.application_id}/unmask"
    ours = stack.token(Role.supervisor, province=20, subject="denetci.ayse")
    for body_sent in ({}, {"reason": "kısa"}, {"reason": REASON, "extra": 1}):
        refused = await stack.tracking.post(unmask, json=body_sent, headers=ours)
        assert refused.status_code == 422, refused.text
    by_deski = await stack.tracking.post(
        unmask, json={"reason": REASON}, headers=stack.staff(DESKI)
    )
    assert by_deski.status_code == 403
    izmir = stack.token(Role.supervisor, province=35)
    assert (
        await stack.tracking.post(unmask, json={"reason": REASON}, headers=izmir)
    ).status_code == 404
    assert "applicant" not in (await detail(stack, case)).json()

    done = await stack.tracking.post(unmask, json={"reason": REASON}, headers=ours)
    assert done.status_code == 200, done.text
    assert done.json()["unmasked_by"] == "denetci.ayse" and done.json()["reason"] == REASON
    again = await stack.tracking.post(unmask, json={"reason": REASON}, headers=ours)
    assert again.status_code == 409 and again.json()["errors"][0]["code"] == "not_shielded"
    (record,) = await audited(stack, case, "unmask")
    assert record["actor"]["subject"] == "denetci.ayse" and record["reason"] == REASON

    shown = (await detail(stack, case)).json()
    assert shown["identity_shielded"] is False and shown["identity_unmasked"] is True
    assert "identity_notice" not in shown
    assert shown["applicant"] == {
        "first_name": FIRST,
        "last_name": LAST,
        "tckn_masked": "38*******26",
        "phone": case.phone,
        "email": EMAIL,
    }
    (read,) = await audited(stack, case, "read_personal")
    assert read["actor"]["subject"] == "test-institution"
    assert set(read["fields"]) == {"first_name", "last_name", "tckn_masked", "phone", "email"}
    assert read["detail"]["unmasked"] is True


async def test_a_consented_complaint_and_a_request_show_the_applicant_and_every_read_is_audited(
    stack: Stack,  # noqa: F811
):
    consented = await applied(stack, application_type="ihbar", consent=True)
    request = await applied(stack, application_type="istek")
    for case in (consented, request):
        shown = (await detail(stack, case)).json()
        assert shown["identity_shielded"] is False and "identity_notice" not in shown
        assert (
            shown["applicant"]["first_name"] == FIRST and shown["applicant"]["phone"] == case.phone
        )
    await detail(stack, request)
    assert len(await audited(stack, consented, "read_personal")) >= 1
    # (`applied` read it while waiting for routing, then two reads here.)
    assert len(await audited(stack, request, "read_personal")) >= 2
    unmask = f"/api/v1/applications/{consented.application_id}/unmask"
    ours = stack.token(Role.supervisor, province=20)
    nothing = await stack.tracking.post(unmask, json={"reason": REASON}, headers=ours)
    assert nothing.status_code == 409


# --- the status page's guess lock ---------------------------------------------------------------


async def test_fifty_parallel_wrong_guesses_get_ten_answers_and_lock_the_right_one_out(
    stack: Stack,  # noqa: F811
):
    case = await applied(stack, application_type="istek")
    path = f"/api/v1/track/{case.number}"
    for _ in range(MAX_MISSES + 2):  # the citizen's own look-ups never count
        own = await stack.tracking.get(path, params={"phone_last4": case.last4})
        assert own.status_code == 200, own.text
    wrong = "0000" if case.last4 != "0000" else "1111"
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(stack.tracking.get(path, params={"phone_last4": wrong}) for _ in range(50))
    )
    elapsed = time.perf_counter() - started
    codes = [r.status_code for r in replies]
    print(
        f"50 parallel wrong guesses: {codes.count(404)} checked, {codes.count(429)} locked, "
        f"{elapsed * 1000:.0f} ms"
    )
    assert codes.count(404) == MAX_MISSES and codes.count(429) == 50 - MAX_MISSES
    locked = await stack.tracking.get(path, params={"phone_last4": case.last4})
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "900"
