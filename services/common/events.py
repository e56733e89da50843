"""Event contracts: every message on the bus is one of these models, wrapped in the same envelope.

The envelope fields (`event_id`, `event_type`, `schema_version`, `occurred_at`,
`application_id`, `application_number`, `producer`) come first; the payload follows flat,
as the public contract describes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from services.common.pii import Sealed


def utcnow() -> datetime:
    return datetime.now(UTC)


class Channel(StrEnum):
    web = "web"
    mobile = "mobile"
    counter = "counter"
    edevlet = "edevlet"
    kiosk = "kiosk"
    call_center = "call_center"
    open311 = "open311"


class ApplicationType(StrEnum):
    istek = "istek"
    sikayet = "sikayet"
    oneri = "oneri"
    bilgi_edinme = "bilgi_edinme"
    ihbar = "ihbar"
    tesekkur = "tesekkur"


class Priority(StrEnum):
    """Applicants the counter escorts and every queue lists first (marked by an officer)."""

    sehit_yakini = "sehit_yakini"
    gazi = "gazi"
    engelli = "engelli"
    yasli = "yasli"


class Outcome(StrEnum):
    olumlu = "olumlu"
    olumsuz = "olumsuz"
    kismen_olumlu = "kismen_olumlu"


class Status(StrEnum):
    received = "received"
    awaiting_routing = "awaiting_routing"
    routed = "routed"
    opened = "opened"
    answered = "answered"
    closed = "closed"
    returned = "returned"


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: str | None = Field(default=None, max_length=500)


# Complaints and tip-offs: the institution sees who sent one only if the applicant consented
# (CİMER's "lekelenmeme hakkı"), or a supervisor unmasked it with a reason (tracking).
SHIELDED_TYPES = frozenset({ApplicationType.sikayet, ApplicationType.ihbar})


def identity_shielded(application_type: ApplicationType, identity_consent: bool) -> bool:
    """Whether the applicant's identity is kept from the institution."""
    return application_type in SHIELDED_TYPES and not identity_consent


class ApplicantContact(BaseModel):
    """What may travel past intake about the applicant inside the system: never the clear TC
    Kimlik No; names, phone and e-mail sealed on the wire (`Sealed`), clear in Python."""

    tckn_masked: str
    first_name: Sealed
    last_name: Sealed
    phone: Sealed  # E.164, e.g. +905321234567
    email: Sealed | None = None


class InstitutionContact(BaseModel):
    """The applicant as an institution reads it on its topic: in clear, since institutions are
    outside the system and have no key; given only when the shield allows (`identity_shielded`)."""

    tckn_masked: str
    first_name: str
    last_name: str
    phone: str
    email: str | None = None

    @classmethod
    def of(cls, applicant: ApplicantContact) -> InstitutionContact:
        return cls.model_validate(applicant.model_dump())


class Envelope(BaseModel):
    """The envelope of every event; subclasses set `EVENT_TYPE` and add their payload."""

    model_config = ConfigDict(extra="ignore")

    EVENT_TYPE: ClassVar[str] = "event"
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: str = ""
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    application_id: str | None = None
    application_number: str | None = None
    producer: str = ""

    def model_post_init(self, context: Any, /) -> None:
        if not self.event_type:
            self.event_type = self.EVENT_TYPE
            self.schema_version = self.SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def kafka_headers(self) -> dict[str, str]:
        """Headers a consumer can filter on without decoding the body."""
        return {"event_type": self.event_type, "content-type": "application/json"}


class InstitutionEntry(BaseModel):
    """An institution of a province as routing announces it (who may receive a forward)."""

    code: str
    name: str
    kind: str
    district: str | None = None
    # The institution's official address: deadline warnings and its morning list go there.
    email: str | None = None


class CategoryBrief(BaseModel):
    code: str
    name: str


class HeadingBrief(BaseModel):
    code: str
    name: str
    categories: list[CategoryBrief]


class TaxonomyPublished(Envelope):
    """A province routing serves, with the version of its taxonomy (topic `acikkapi.taxonomy`,
    key: the plate code). Intake registers applications only for these provinces."""

    EVENT_TYPE: ClassVar[str] = "taxonomy.published"

    province_code: int = Field(ge=1, le=81)
    province: str
    version: str
    districts: list[str]
    category_codes: list[str]
    # The headings and their categories, by name, for the pages and Open311's service list.
    headings: list[HeadingBrief] = Field(default_factory=list)
    # The province's institutions: tracking checks a forward's or a split's target against them.
    institutions: list[InstitutionEntry] = Field(default_factory=list)


class LeaveDayEntry(BaseModel):
    """A day an administrator closed (idari izin, köprü günü): not a business day."""

    day: date
    kind: str
    reason: str


class CalendarPublished(Envelope):
    """The whole calendar of leave days, one version of it (topic `acikkapi.calendar`,
    compacted, key `TR`). Tracking makes the versions; every tracking and routing process reads
    the topic whole and computes deadlines with the newest (services/common/calendar_live.py)."""

    EVENT_TYPE: ClassVar[str] = "calendar.published"

    version: int = Field(ge=0)
    leave_days: list[LeaveDayEntry] = Field(default_factory=list)
    changed_at: datetime


class ApplicationSubmitted(Envelope):
    """A submission on `acikkapi.intake.submissions`: the HTTP body plus `submission_id`.

    Kept loose on purpose: intake validates it with the same rules as the HTTP POST and
    answers a bad one on `acikkapi.intake.rejections`.
    """

    EVENT_TYPE: ClassVar[str] = "application.submitted"
    model_config = ConfigDict(extra="allow")

    submission_id: str = Field(min_length=1, max_length=128)


class FieldError(BaseModel):
    field: str
    code: str
    message: str


class SubmissionRejected(Envelope):
    EVENT_TYPE: ClassVar[str] = "application.rejected"

    submission_id: str
    errors: list[FieldError]


class AttachmentRef(BaseModel):
    """A file attached to an application: metadata only, the bytes stay in intake, served to
    those who handle the application (GET /api/v1/applications/{id}/attachments/{attachment_id})."""

    model_config = ConfigDict(frozen=True)

    attachment_id: str
    sha256: str
    content_type: str
    size: int
    name: str


class ApplicationFacts(BaseModel):
    """What an application is, said once: events, stored documents and HTTP answers take their
    copy from here (`facts_of`), so a new field is added in this class and nowhere else."""

    application_number: str
    channel: Channel
    application_type: ApplicationType
    category_code: str | None = None
    province_code: int
    district: str
    subject: str
    text: str
    location: Location | None = None
    received_at: datetime
    priority: Priority | None = None
    attachments: tuple[AttachmentRef, ...] = ()


APPLICATION_FACTS = tuple(ApplicationFacts.model_fields)


def facts_of(source: object, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The application's facts as held by any object that has them as attributes."""
    skip = set(exclude)
    return {name: getattr(source, name) for name in APPLICATION_FACTS if name not in skip}


class ApplicationReceived(ApplicationFacts, Envelope):
    """Intake registered and numbered an application."""

    EVENT_TYPE: ClassVar[str] = "application.received"

    application_id: str
    application_number: str  # required here, optional in the envelope
    applicant: ApplicantContact
    submission_id: str | None = None
    # The applicant agreed that the institution may see who they are (matters for
    # SHIELDED_TYPES only: other types always show it).
    identity_consent: bool = False


class ApplicationRouted(Envelope):
    """Routing decided the category and the responsible institution."""

    EVENT_TYPE: ClassVar[str] = "application.routed"
    event_type: Literal["application.routed"] = "application.routed"

    application_id: str
    application_number: str
    category_code: str
    heading_code: str
    institution_code: str
    institution_kind: str
    institution_name: str
    # "institution": an institution forwarded it, or split it off as a part (tracking's
    # `returned` with `forward_to` or `parts`).
    routed_by: Literal["auto", "officer", "institution"]
    officer: str | None = None
    deadline_at: datetime
    # Display names, so readers of the decision (reporting) need not keep a taxonomy copy.
    category_name: str | None = None
    heading_name: str | None = None
    # Set only when routing chose the category itself from the text (no category given, no
    # officer): how sure its learned model was of the institution. The mark of auto-routing.
    auto_confidence: float | None = None


class ApplicationAwaitingRouting(Envelope):
    """An application with no category: it waits in the officers' pending queue."""

    EVENT_TYPE: ClassVar[str] = "application.awaiting_routing"
    event_type: Literal["application.awaiting_routing"] = "application.awaiting_routing"

    application_id: str
    application_number: str
    reason: str


class InstitutionAssignment(ApplicationFacts, Envelope):
    """What an institution reads on its own topic `acikkapi.institution.<CODE>`."""

    EVENT_TYPE: ClassVar[str] = "institution.assignment"

    application_id: str
    application_number: str  # required here, optional in the envelope
    institution_code: str
    category_code: str  # routed: always known
    category_name: str
    heading_code: str
    deadline_at: datetime
    # None when the shield keeps the applicant from the institution (`identity_shielded`).
    applicant: InstitutionContact | None
    identity_shielded: bool = False
    # As on ApplicationRouted: set when routing's model chose the category, no officer.
    auto_confidence: float | None = None


class ApplicationResponse(Envelope):
    """An institution's answer; produced by institutions or by tracking's HTTP endpoint."""

    EVENT_TYPE: ClassVar[str] = "application.response"

    application_id: str
    institution_code: str = Field(min_length=2, max_length=64)
    outcome: Outcome
    text: str = Field(min_length=1, max_length=10_000)
    responded_by: str | None = None
    responded_at: datetime = Field(default_factory=utcnow)
    # Set by tracking when it publishes an answer an Açık Kapı supervisor approved (informative:
    # an answer from an institution's own producer still waits for approval where it is needed).
    approved_by: str | None = None


class StatusChanged(Envelope):
    """Every status transition, as tracking records it."""

    EVENT_TYPE: ClassVar[str] = "application.status_changed"

    application_id: str
    application_number: str
    status: Status
    previous_status: Status | None = None
    at: datetime
    province_code: int | None = None
    district: str | None = None
    channel: Channel | None = None
    application_type: ApplicationType | None = None
    category_code: str | None = None
    institution_code: str | None = None
    outcome: Outcome | None = None
    received_at: datetime | None = None
    deadline_at: datetime | None = None
    answered_at: datetime | None = None
    overdue: bool = False

    def kafka_headers(self) -> dict[str, str]:
        return {**super().kafka_headers(), "status": self.status.value}

    # Why, when the institution gave it to say so (status `returned`: "not our competence").
    reason: str | None = None
    # A `returned` that tells routing where the application goes now: to one institution
    # (a forward), or in parts to several (a split). Without either, routing's officers decide.
    forward_to: str | None = None
    parts: list[PartSpec] | None = None
    # Set on the events of a part of a split application: the application it is a part of.
    parent_application_id: str | None = None


class PartSpec(BaseModel):
    """One part of a split application: who answers it (an institution, or the institution a
    category resolves to in the applicant's district) and what of the application it covers."""

    part_no: int = Field(ge=1)
    application_id: str
    application_number: str
    institution_code: str | None = None
    category_code: str | None = None
    note: str


class DeadlineEvent(Envelope):
    EVENT_TYPE: ClassVar[str] = "application.deadline"

    application_id: str
    application_number: str
    # warning: `warning_days` business days left; missed: the deadline passed unanswered;
    # escalated: the governorship's supervisor was told of the miss; changed: the deadline was
    # computed again (an extension, the clock stopped for or resumed after a question to the
    # citizen, a leave day declared) — `deadline_at` is the new one.
    kind: Literal["warning", "missed", "escalated", "changed"]
    institution_code: str | None = None
    deadline_at: datetime
    previous_deadline_at: datetime | None = None
    # service_level | extension | paused | resumed | calendar (with `changed`).
    reason: str | None = None
    # The clock stands still while the citizen is asked for information: nothing is watched.
    paused: bool = False


class ApplicationRated(Envelope):
    """A citizen's rating of the answer, 1 (poor) to 5 (very good), given once per application
    through the signed link in the answer SMS (topic `acikkapi.ratings`, key: application_id).
    The citizen's optional comment stays in tracking, sealed: it is personal data."""

    EVENT_TYPE: ClassVar[str] = "application.rated"

    application_id: str
    application_number: str
    rating: int = Field(ge=1, le=5)
    institution_code: str | None = None
    category_code: str | None = None
    province_code: int | None = Field(default=None, ge=1, le=81)
    rated_at: datetime


class NotificationChannel(StrEnum):
    sms = "sms"
    email = "email"


class NotificationRequest(Envelope):
    """A message to send. `idempotency_key` is the Kafka key: a repeat is never sent twice."""

    EVENT_TYPE: ClassVar[str] = "notification.requested"

    idempotency_key: str = Field(min_length=1, max_length=200)
    channel: NotificationChannel
    to: Sealed = Field(min_length=3, max_length=320)
    template: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    # Never held for quiet hours (a one-time code, an alert that cannot wait till morning).
    urgent: bool = False


class NotificationResult(Envelope):
    EVENT_TYPE: ClassVar[str] = "notification.result"

    idempotency_key: str
    channel: NotificationChannel
    # skipped_optout: an informational e-mail to an address that unsubscribed, not sent.
    status: Literal["sent", "delivered", "failed", "skipped_duplicate", "skipped_optout"]
    detail: str | None = None
    segments: int | None = None


class DeadLetter(BaseModel):
    """What lands on `<topic>.dlq`: the original bytes (as text) and why it was set aside."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    reason: str
    error_type: str
    attempts: int
    consumer: str
    failed_at: datetime = Field(default_factory=utcnow)
    original: str
    # What was tried before giving up (notification: each gateway attempt's time and answer).
    history: list[dict[str, Any]] = Field(default_factory=list)


class RoutingOutcome(
    RootModel[
        Annotated[ApplicationRouted | ApplicationAwaitingRouting, Field(discriminator="event_type")]
    ]
):
    """What `acikkapi.applications.routed` carries: a decision, or a wait for an officer."""
