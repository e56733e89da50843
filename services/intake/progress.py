"""How each application intake registered is getting on, as tracking and the institutions say
on the bus: a `progress` sub-document on intake's own application document.

Two topics feed it. `acikkapi.applications.status` (tracking's StatusChanged, a snapshot of
the application at each transition) sets the status, the institution holding it, the outcome
and the deadline. `acikkapi.applications.responses` (ApplicationResponse) carries the answer's
text, which the status event does not.

Only forward: every write is conditional, so an older event (a replay, or one that overtook
another on a different partition) never overwrites a newer one. Status events are ordered by
`at`, ties broken by the lifecycle order of the status (`_order`). An answer is kept per
institution, the first one it gave: tracking accepts only the first answer of the institution
holding the application and refuses the others (a late answer of an institution that gave the
application back, say), so the text shown is the one of the institution named by the latest
status, which is the accepted one.

Storage, and why it has two fields: nx-27017 0.8.1 turns a datetime written by a dotted `$set`
(`progress.at`) into text, while a datetime inside a sub-document written whole stays a date.
So `progress` is written whole on each status event, and the answers live beside it in
`progress_answers.<INSTITUTION>` (each written whole too); `Progress.answer_text` joins them on
reading. Neither ever creates a document: an event for an application intake does not hold
changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.common.events import ApplicationResponse, Outcome, Status, StatusChanged, utcnow
from services.common.topics import INSTITUTION_CODE_RE

# intake's application collection (services/intake/store.py ApplicationStore).
COLLECTION = "intake_applications"
ANSWERS = "progress_answers"

# The lifecycle order; it only breaks ties between two events of the same instant.
_ORDER = (
    Status.received,
    Status.awaiting_routing,
    Status.routed,
    Status.opened,
    Status.returned,
    Status.answered,
    Status.closed,
)
# Statuses in which an institution holds the application (or held it to the end).
HELD = frozenset({Status.routed, Status.opened, Status.answered, Status.closed})
ANSWERED = frozenset({Status.answered, Status.closed})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Progress(BaseModel):
    """Where an application stands now, as intake last heard it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: Status
    # The institution named by the latest status event (for `returned`: the one that gave it back).
    institution_code: str | None = None
    outcome: Outcome | None = None
    # The accepted answer's text, once the status says answered.
    answer_text: str | None = None
    deadline_at: datetime | None = None
    # When intake recorded this status.
    updated_at: datetime
    # When the status changed (tracking's `at`).
    at: datetime
    category_code: str | None = None
    overdue: bool = False


def _order(event: StatusChanged) -> int:
    """A number that grows with (at, lifecycle order): the only-forward condition compares it."""
    # Milliseconds (what MongoDB keeps of a time): the number stays well inside 2**53.
    millis = (event.at.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)
    return millis * 8 + _ORDER.index(event.status)


def _only_forward(
    application_id: str, field: str, beaten_by: str, value: object, update: dict[str, Any]
) -> list[UpdateOne]:
    """`update` when `field` is absent, or when its value `beaten_by` (`$lt`, `$gt`) `value`.

    Two updates, not one with `$or`: nx-27017 0.8.1 ignores the other conditions of an update
    filter that has an `$or`, `_id` included, and so updates another document. The two
    conditions exclude each other, so at most one applies, in either order.
    """
    return [
        UpdateOne({"_id": application_id, field: {"$exists": False}}, update),
        UpdateOne({"_id": application_id, field: {beaten_by: value}}, update),
    ]


def progress_of(document: Mapping[str, Any]) -> Progress | None:
    """The Progress held by an application document (one read with `progress` and the answers)."""
    stored = document.get("progress")
    if not stored:
        return None
    status = Status(stored["status"])
    institution = stored.get("institution_code")
    answer = None
    if status in ANSWERED and institution:
        answer = (document.get(ANSWERS) or {}).get(institution, {}).get("text")
    return Progress.model_validate({**stored, "answer_text": answer})


class ProgressStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._applications = db[COLLECTION]

    async def handle_status(self, events: list[StatusChanged]) -> None:
        """Tracking's status transitions: the newest of the batch per application, written if
        it is newer than the stored one, all in one bulk write."""
        newest: dict[str, StatusChanged] = {}
        for event in events:
            held = newest.get(event.application_id)
            if held is None or _order(event) > _order(held):
                newest[event.application_id] = event
        now = utcnow()
        ops = []
        for application_id, event in newest.items():
            update = {"$set": {"progress": self._progress(event, now)}}
            ops.extend(
                _only_forward(application_id, "progress.order", "$lt", _order(event), update)
            )
        if ops:
            await self._applications.bulk_write(ops, ordered=False)

    @staticmethod
    def _progress(event: StatusChanged, now: datetime) -> dict[str, Any]:
        progress = {
            "status": event.status.value,
            "institution_code": event.institution_code,
            "outcome": event.outcome.value if event.outcome else None,
            "deadline_at": event.deadline_at,
            "overdue": event.overdue,
            "at": event.at,
            "order": _order(event),
            "updated_at": now,
        }
        # Absent rather than null while routing has not decided it: queries look for it with
        # `$exists` (nx-27017 does not match a null inside a sub-document by `None`).
        if event.category_code is not None:
            progress["category_code"] = event.category_code
        return progress

    async def handle_responses(self, events: list[ApplicationResponse]) -> None:
        """Institutions' answers: the first of each institution per application is kept."""
        first: dict[tuple[str, str], ApplicationResponse] = {}
        for event in events:
            # The code becomes a field name: one that no institution topic could have is not
            # an institution's answer (tracking refuses it too).
            if not INSTITUTION_CODE_RE.fullmatch(event.institution_code):
                continue
            key = (event.application_id, event.institution_code)
            held = first.get(key)
            if held is None or event.responded_at < held.responded_at:
                first[key] = event
        ops = []
        for (application_id, institution), event in first.items():
            path = f"{ANSWERS}.{institution}"
            answer = {
                "text": event.text,
                "outcome": event.outcome.value,
                "at": event.responded_at,
                "event_id": str(event.event_id),
            }
            update = {"$set": {path: answer}}
            ops.extend(
                _only_forward(application_id, f"{path}.at", "$gt", event.responded_at, update)
            )
        if ops:
            await self._applications.bulk_write(ops, ordered=False)

    async def progress(self, application_id: str) -> Progress | None:
        document = await self._applications.find_one(
            {"_id": application_id}, {"progress": 1, ANSWERS: 1}
        )
        return progress_of(document) if document else None

    async def institution_of(self, application_id: str) -> str | None:
        """The institution handling the application now: None before it is routed and after
        an institution gave it back (until routing names another)."""
        document = await self._applications.find_one({"_id": application_id}, {"progress": 1})
        stored = (document or {}).get("progress") or {}
        if stored.get("status") in HELD:
            return stored.get("institution_code")
        return None
