"""Who hears of a deadline: the institution's and the governorship's addresses from the
taxonomy, one key per deadline, and the morning list's day and shape."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from services.common import business_days
from services.common.events import DeadlineEvent, InstitutionEntry, Status, TaxonomyPublished
from services.common.settings import Settings
from services.common.turkish_time import ISTANBUL
from services.tracking import deadlines, digest, domain
from services.tracking.domain import Application

DEADLINE = datetime(2026, 3, 26, 23, 59, 59, tzinfo=ISTANBUL)
DENIZLI = TaxonomyPublished(
    province_code=20,
    province="Denizli",
    version="1",
    districts=["Pamukkale"],
    category_codes=[],
    institutions=[
        InstitutionEntry(code="DESKI", name="DESKİ", kind="SU_IDARESI", email="deski@x.tr"),
        InstitutionEntry(code="VALI", name="Denizli Valiliği", kind="VALILIK", email="vali@x.tr"),
        InstitutionEntry(code="SESSIZ", name="Adressiz Kurum", kind="BELEDIYE"),
    ],
)


class Directory:
    def province(self, province_code: int) -> TaxonomyPublished | None:
        return DENIZLI if province_code == 20 else None

    def provinces(self) -> list[TaxonomyPublished]:
        return [DENIZLI]


def app(institution: str = "DESKI") -> Application:
    return Application(
        application_id="app-1",
        application_number="20-2026-0000123-4",
        status=Status.routed,
        province_code=20,
        institution_code=institution,
        subject="Su yok",
        deadline_at=DEADLINE,
    )


def event(kind: str, institution: str | None = "DESKI") -> DeadlineEvent:
    return DeadlineEvent(
        application_id="app-1",
        application_number="20-2026-0000123-4",
        kind=kind,  # type: ignore[arg-type]
        institution_code=institution,
        deadline_at=DEADLINE,
    )


def test_the_warning_and_the_miss_go_to_the_institution_the_escalation_to_the_governorship():
    mails = deadlines.deadline_emails(
        app(), [event("warning"), event("missed"), event("escalated")], Directory(), Settings()
    )
    assert [(m.template, m.to) for m in mails] == [
        ("deadline_warning", "deski@x.tr"),
        ("deadline_missed", "deski@x.tr"),
        ("deadline_escalated", "vali@x.tr"),
    ]
    assert len({m.idempotency_key for m in mails}) == 3
    assert mails[2].params["institution_name"] == "DESKİ"
    assert mails[2].params["recipient_name"] == "Denizli Valiliği"


def test_the_supervisor_setting_wins_and_missing_addresses_send_nothing():
    settings = Settings(supervisor_email="acikkapi@denizli.gov.tr")
    (mail,) = deadlines.deadline_emails(app(), [event("escalated")], Directory(), settings)
    assert mail.to == "acikkapi@denizli.gov.tr"
    assert (
        deadlines.deadline_emails(
            app("SESSIZ"), [event("warning", "SESSIZ")], Directory(), Settings()
        )
        == []
    )
    assert deadlines.deadline_emails(app(), [event("warning", None)], Directory(), Settings()) == []
    assert deadlines.deadline_emails(app(), [event("changed")], Directory(), Settings()) == []


def test_a_new_deadline_gets_new_keys():
    later = event("missed").model_copy(update={"deadline_at": DEADLINE + timedelta(days=5)})
    (first,) = deadlines.deadline_emails(app(), [event("missed")], Directory(), Settings())
    (second,) = deadlines.deadline_emails(app(), [later], Directory(), Settings())
    assert first.idempotency_key != second.idempotency_key


def test_the_morning_list_is_due_on_business_days_from_its_time():
    settings = Settings(digest_time="08:30")
    calendar = business_days.PUBLIC
    monday = datetime(2026, 3, 16, 8, 30, tzinfo=ISTANBUL)
    assert digest.due_day(monday, settings, calendar) == date(2026, 3, 16)
    assert digest.due_day(monday - timedelta(minutes=1), settings, calendar) is None
    assert digest.due_day(datetime(2026, 3, 20, 9, tzinfo=ISTANBUL), settings, calendar) is None
    assert digest.due_day(datetime(2026, 3, 21, 9, tzinfo=ISTANBUL), settings, calendar) is None
    leave = business_days.Calendar(frozenset({date(2026, 3, 16)}))
    assert digest.due_day(monday, settings, leave) is None
    # 05:45 UTC is 08:45 in Istanbul.
    assert digest.due_day(datetime(2026, 3, 17, 5, 45, tzinfo=UTC), settings, calendar)


def test_the_morning_list_names_at_most_fifty_of_each():
    lines = [digest.Line(f"20-2026-{n:07d}-0", "Konu", DEADLINE) for n in range(80)]
    mail = digest.digest_email(
        DENIZLI.institutions[0], date(2026, 3, 16), lines, lines[:3], (83, 3), Settings()
    )
    assert mail.idempotency_key == "digest:DESKI:2026-03-16:email"
    assert len(mail.params["open"]) == digest.LIST_LIMIT and mail.params["open_count"] == 83
    assert mail.params["inbox_url"].endswith("/kurum")


def test_a_deadline_changed_event_says_why():
    state = replace(app(), deadline_changes=())
    change = domain.DeadlineChange(
        DEADLINE, DEADLINE + timedelta(days=3), DEADLINE, "extension", "x"
    )
    changed = domain.deadline_changed(state, change)
    assert changed.kind == "changed" and changed.reason == "extension"
    assert changed.previous_deadline_at == DEADLINE and changed.institution_code == "DESKI"
