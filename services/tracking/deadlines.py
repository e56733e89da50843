"""Who hears of a deadline, and how: the rules from the settings, the e-mails a warning, a miss
and an escalation send, and each institution's morning list. The rules themselves are
`domain.DeadlineRules` (docs/deadlines.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.events import (
    DeadlineEvent,
    InstitutionEntry,
    NotificationChannel,
    NotificationRequest,
    TaxonomyPublished,
)
from services.common.settings import Settings
from services.tracking import domain
from services.tracking.directory import (
    Directory,
    category_in,
    institution_in,
    province_of_institution,
)

WARNING_TEMPLATE = "deadline_warning"
MISSED_TEMPLATE = "deadline_missed"
ESCALATED_TEMPLATE = "deadline_escalated"
# The province's governorship: where escalations go unless `supervisor_email` says otherwise.
GOVERNORSHIP_KIND = "VALILIK"


@dataclass(frozen=True)
class Addressee:
    code: str
    name: str
    email: str


def _province(directory: Directory, state: domain.Application) -> TaxonomyPublished | None:
    if state.province_code is not None:
        return directory.province(state.province_code)
    if state.institution_code is not None:
        return province_of_institution(directory, state.institution_code)
    return None


def institution_addressee(
    directory: Directory, state: domain.Application, code: str | None
) -> Addressee | None:
    """The institution's official address, as the province's taxonomy gives it."""
    taxonomy = _province(directory, state)
    entry: InstitutionEntry | None = (
        institution_in(taxonomy, code) if taxonomy is not None and code else None
    )
    if entry is None or not entry.email:
        return None
    return Addressee(entry.code, entry.name, entry.email)


def supervisor_addressee(
    directory: Directory, state: domain.Application, settings: Settings
) -> Addressee | None:
    """The governorship's Açık Kapı supervisors: the setting, else the province's VALILIK."""
    if settings.supervisor_email:
        return Addressee("VALILIK", "Açık Kapı Bürosu", settings.supervisor_email)
    taxonomy = _province(directory, state)
    if taxonomy is None:
        return None
    governorship = next(
        (i for i in taxonomy.institutions if i.kind == GOVERNORSHIP_KIND and i.email), None
    )
    if governorship is None or governorship.email is None:
        return None
    return Addressee(governorship.code, governorship.name, governorship.email)


def deadline_emails(
    state: domain.Application,
    events: Sequence[object],
    directory: Directory,
    settings: Settings,
) -> list[NotificationRequest]:
    """The e-mails the watcher's events cause: the warning and the miss to the institution
    that holds the application (none while nobody holds it: routing is the governorship's own
    queue), the escalation to the supervisors. One key per deadline, so
    a repeat is sent once (notification keeps the keys)."""
    out: list[NotificationRequest] = []
    for event in events:
        if not isinstance(event, DeadlineEvent) or event.kind == "changed":
            continue
        if event.kind == "escalated":
            to = supervisor_addressee(directory, state, settings)
            template = ESCALATED_TEMPLATE
        else:
            to = institution_addressee(directory, state, event.institution_code)
            template = WARNING_TEMPLATE if event.kind == "warning" else MISSED_TEMPLATE
        if to is None:
            continue
        holder = institution_addressee(directory, state, event.institution_code)
        stamp = event.deadline_at.isoformat(timespec="seconds")
        key = f"{state.application_id}:deadline:{event.kind}:{stamp}:email"
        out.append(
            NotificationRequest(
                event_id=domain.event_id(
                    state.application_id, "deadline", event.kind, stamp, "mail"
                ),
                occurred_at=event.occurred_at,
                application_id=state.application_id,
                application_number=state.application_number,
                producer=domain.PRODUCER,
                idempotency_key=key,
                channel=NotificationChannel.email,
                to=to.email,
                template=template,
                params=_params(state, event, to, holder, settings, _province(directory, state)),
            )
        )
    return out


def _params(
    state: domain.Application,
    event: DeadlineEvent,
    to: Addressee,
    holder: Addressee | None,
    settings: Settings,
    taxonomy: TaxonomyPublished | None,
) -> dict[str, object]:
    params: dict[str, object] = {
        "application_number": state.application_number,
        "recipient_name": to.name,
        "deadline_at": event.deadline_at.isoformat(),
        "warning_days": state.warning_days,
        "inbox_url": inbox_url(settings),
    }
    if holder is not None:  # none: nobody holds it (waiting for routing, or given back)
        params["institution_name"] = holder.name
    category = (
        category_in(taxonomy, state.category_code) if taxonomy and state.category_code else None
    )
    if category is not None:
        params["category_name"] = category.name
    for name in ("subject", "district"):
        value = getattr(state, name)
        if value:
            params[name] = value
    return params


def inbox_url(settings: Settings) -> str:
    """The institutions' inbox page, beside the citizens' status page."""
    return settings.public_tracking_url.rsplit("/takip", 1)[0] + "/kurum"
