"""Intake's use cases: check a submission, register and number it, announce it on the bus.

Announcing uses the shared transactional outbox (services/common/outbox.py): the application
is stored with its two events (`received` and the receipt SMS request) in its own outbox, in
the one insert; then they are published and the outbox cleared, with other deliveries', in the
background. The relay publishes whatever a crash or a Kafka outage left there after a few
seconds, so nothing registered is ever lost. Consumers downstream are idempotent, and the
events carry deterministic ids, so a second publish is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

from prometheus_client import Counter
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from services.common import topics
from services.common.application_number import format_number
from services.common.errors import translate_validation_errors
from services.common.events import (
    APPLICATION_FACTS,
    ApplicantContact,
    ApplicationReceived,
    ApplicationSubmitted,
    AttachmentRef,
    Channel,
    Envelope,
    FieldError,
    NotificationChannel,
    NotificationRequest,
    SubmissionRejected,
    facts_of,
)
from services.common.messaging import Outgoing, each
from services.common.outbox import Pending
from services.common.pii import PiiCipher, mask_tckn
from services.intake.attachments import AttachmentRefused
from services.intake.channels import ChannelGate, ChannelRefused, Vouched, without_proofs
from services.intake.domain import (
    RULE_CODES,
    ApplicationForm,
    DistrictDirectory,
    Provinces,
    RegisteredApplication,
    SequenceAllocator,
    numbering_year,
    validate_application,
)
from services.intake.identity import (
    MISMATCH_MESSAGE,
    UNAVAILABLE_MESSAGE,
    IdentityClaim,
    IdentityUnavailable,
    IdentityVerifier,
)
from services.intake.limits import Applicant, DailyLimits, LimitExceeded
from services.intake.store import ApplicationRecords

log = logging.getLogger("acikkapi.intake")

PRODUCER = "intake"
# Event ids derive from the application id, so a republished event is recognisably the same.
_EVENT_NAMESPACE = uuid.UUID("6f1d3c56-7a0e-4f4e-9a43-0c2b1f3e9d21")

APPLICATIONS = Counter(
    "acikkapi_intake_applications_total",
    "Applications handled by intake, by source (http, kafka), channel and outcome",
    ["source", "channel", "outcome"],
)

Publish = Callable[[str, Envelope, str], Awaitable[None]]
SUBMISSION_CONCURRENCY = 64


class InvalidApplication(Exception):
    """The body breaks one or more rules; `errors` has one entry per bad field, in Turkish."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


class IdempotencyConflict(Exception):
    """The key was already used for a different body."""


class Unavailable(Exception):
    """Something intake must ask could not be asked now; nothing was registered."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Attachments(Protocol):
    """Uploaded files, claimed by the application that names them (AttachmentStore)."""

    async def claim(
        self, attachment_ids: Sequence[str], application_id: str
    ) -> list[AttachmentRef]: ...

    async def release(self, attachment_ids: Sequence[str], application_id: str) -> None: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...


def utc_now_ms() -> datetime:
    # MongoDB keeps milliseconds: the first answer must equal the stored one a repeat returns.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def bundled_districts() -> DistrictDirectory:
    text = resources.files("services.intake").joinpath("data/districts.json").read_text("utf-8")
    return DistrictDirectory.from_document(json.loads(text))


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """One entry per bad field: rule errors keep their own message, shape errors are translated."""
    errors: list[dict[str, Any]] = []
    seen: set[str | None] = set()
    for err in exc.errors():
        if err["type"] in RULE_CODES:
            field = ".".join(str(part) for part in err["loc"]) or None
            entry = {"field": field, "code": err["type"], "message": err["msg"]}
        else:
            entry = translate_validation_errors([dict(err)])[0]
        if entry["field"] not in seen:
            seen.add(entry["field"])
            errors.append(entry)
    return errors


def channel_label(body: Any) -> str:
    """A bounded metric label, whatever the body says."""
    channel = body.get("channel") if isinstance(body, Mapping) else None
    if isinstance(channel, str) and channel in Channel._value2member_map_:
        return channel
    return "unknown"


def received_events(
    app: RegisteredApplication, tracking_url: str
) -> tuple[ApplicationReceived, NotificationRequest]:
    """The announcement of a registered application and the receipt SMS to the applicant."""
    received = ApplicationReceived(
        event_id=uuid.uuid5(_EVENT_NAMESPACE, f"{app.application_id}:received"),
        occurred_at=app.received_at,
        producer=PRODUCER,
        **app.model_dump(
            include={
                *APPLICATION_FACTS,
                "application_id",
                "applicant",
                "submission_id",
                "identity_consent",
            }
        ),
    )
    sms_key = f"{app.application_id}:received:sms"
    sms = NotificationRequest(
        event_id=uuid.uuid5(_EVENT_NAMESPACE, sms_key),
        occurred_at=app.received_at,
        producer=PRODUCER,
        application_id=app.application_id,
        application_number=app.application_number,
        idempotency_key=sms_key,
        channel=NotificationChannel.sms,
        to=app.applicant.phone,
        template="application_received",
        params={"application_number": app.application_number, "tracking_url": tracking_url},
    )
    return received, sms


def receipt_email(app: RegisteredApplication, tracking_url: str) -> NotificationRequest | None:
    """The receipt by e-mail too, when the applicant gave an address (an informational e-mail:
    it carries an unsubscribe link, and is not sent to an address that used one)."""
    if not app.applicant.email:
        return None
    key = f"{app.application_id}:received:email"
    return NotificationRequest(
        event_id=uuid.uuid5(_EVENT_NAMESPACE, key),
        occurred_at=app.received_at,
        producer=PRODUCER,
        application_id=app.application_id,
        application_number=app.application_number,
        idempotency_key=key,
        channel=NotificationChannel.email,
        to=app.applicant.email,
        template="application_received",
        params={
            "application_number": app.application_number,
            "tracking_url": tracking_url,
            "received_at": app.received_at.isoformat(),
        },
    )


def received_messages(app: RegisteredApplication, tracking_url: str) -> list[Outgoing]:
    """The events of a registration, keyed, ready for the outbox: `received`, the receipt SMS
    and, when the applicant gave an address, the receipt e-mail."""
    received, sms = received_events(app, tracking_url)
    messages = [
        Outgoing.of(topics.RECEIVED, received, app.application_id),
        Outgoing.of(topics.NOTIFICATION_REQUESTS, sms, sms.idempotency_key),
    ]
    if (email := receipt_email(app, tracking_url)) is not None:
        messages.append(Outgoing.of(topics.NOTIFICATION_REQUESTS, email, email.idempotency_key))
    return messages


@dataclass(frozen=True)
class Registration:
    application: RegisteredApplication
    replayed: bool  # True: the key was seen before and this is the first answer again
    announced: bool = True  # False: Kafka did not take its events; the relay will publish them

    def answer(self) -> dict[str, str]:
        app = self.application
        return {
            "application_id": app.application_id,
            "application_number": app.application_number,
            "status": "received",
            "received_at": app.received_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        }


class Intake:
    """The intake use cases, wired to a store, a number allocator and a publisher."""

    PUBLISH_TIMEOUT = 5.0

    def __init__(
        self,
        *,
        store: ApplicationRecords,
        allocator: SequenceAllocator,
        publish: Publish,
        cipher: PiiCipher,
        districts: DistrictDirectory,
        served: Provinces,
        gate: ChannelGate,
        identities: IdentityVerifier,
        limits: DailyLimits,
        attachments: Attachments,
        tracking_url: str,
        clock: Clock = utc_now_ms,
    ) -> None:
        self._store = store
        self._allocator = allocator
        self._publish = publish
        self._cipher = cipher
        self._districts = districts
        self._served = served
        self.gate = gate
        self._identities = identities
        self._limits = limits
        self._attachments = attachments
        self._tracking_url = tracking_url
        self._clock = clock

    # --- checking ------------------------------------------------------------------------------

    def judging(self) -> bool:
        """Whether the provinces routing serves are known yet (a process that has just
        started is still reading them)."""
        return self._served.is_known()

    def validate(self, body: Any, *, identity_proven: bool = False) -> ApplicationForm:
        try:
            districts = self._served.districts(self._districts)
            return validate_application(
                body, districts, self._served, identity_proven=identity_proven
            )
        except ValidationError as exc:
            raise InvalidApplication(field_errors(exc)) from None

    async def admit(self, vouched: Vouched, form: ApplicationForm, request_key: str | None) -> None:
        """What a valid form must still pass before it is registered, in this order: a counter
        officer's province and district are the form's, the confirmed phone is the form's, the
        registry knows the person (unless the e-Devlet gateway proved them), today's limits,
        and the e-Devlet assertion is spent.

        Raises ChannelRefused, InvalidApplication (identity), LimitExceeded or Unavailable.
        """
        applicant = form.applicant
        self.gate.check_scope(vouched, form.province_code, form.district)
        self.gate.confirm_phone(vouched, applicant.phone)
        if not vouched.identity_proven:
            claim = IdentityClaim(
                applicant.tckn,
                applicant.first_name,
                applicant.last_name,
                applicant.mother_maiden_initials or "",
            )
            try:
                known = await self._identities.verify(claim)
            except IdentityUnavailable:
                raise Unavailable(UNAVAILABLE_MESSAGE, retry_after=30) from None
            if not known:
                raise InvalidApplication(
                    [
                        {
                            "field": "applicant",
                            "code": "identity_mismatch",
                            "message": MISMATCH_MESSAGE,
                        }
                    ]
                )
        await self._limits.admit(
            Applicant(
                form.channel,
                self._cipher.blind_index(applicant.tckn),
                self._cipher.blind_index(applicant.phone),
            )
        )
        await self.gate.spend(vouched, request_key)

    def fingerprint(self, body: Mapping[str, Any]) -> str:
        """A keyed hash of the body (it holds a TC Kimlik No, so a plain hash would not do)."""
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return self._cipher.blind_index(canonical)

    # --- registering ---------------------------------------------------------------------------

    async def register(
        self,
        form: ApplicationForm,
        *,
        body: Mapping[str, Any],
        idempotency_key: str | None = None,
        submission_id: str | None = None,
        recorded_by: str | None = None,
    ) -> Registration:
        """Number, store and announce an application; a repeated key returns the first one.

        `body` is what was submitted, before normalisation: a repeated key must come with the
        same body, or it is a conflict.
        """
        keyed = idempotency_key is not None or submission_id is not None
        fingerprint = self.fingerprint(body) if keyed else None
        application_id = str(uuid.uuid4())
        # Before a number is taken: unknown or too many files refuse the application (422).
        try:
            attachments = await self._attachments.claim(form.attachments, application_id)
        except AttachmentRefused as exc:
            raise InvalidApplication(exc.errors) from None
        received_at = self._clock()
        year = numbering_year(received_at)
        sequence = await self._allocator.next(form.province_code, year)
        applicant = form.applicant
        app = RegisteredApplication(
            application_id=application_id,
            application_number=format_number(form.province_code, year, sequence),
            received_at=received_at,
            attachments=tuple(attachments),
            **facts_of(form, exclude=("application_number", "received_at", "attachments")),
            applicant=ApplicantContact(
                tckn_masked=mask_tckn(applicant.tckn),
                **applicant.model_dump(include={"first_name", "last_name", "phone", "email"}),
            ),
            fingerprint=fingerprint,
            idempotency_key=idempotency_key,
            submission_id=submission_id,
            recorded_by=recorded_by,
            caller_number=form.caller_number,
            identity_consent=form.identity_consent,
        )
        try:
            pending = await self._store.insert(
                app,
                tckn=applicant.tckn,
                mother_maiden_initials=applicant.mother_maiden_initials or "",
                messages=received_messages(app, self._tracking_url),
            )
        except DuplicateKeyError:
            first = await self._first_with_key(idempotency_key, submission_id)
            if first is None:
                raise  # not a repeated key: a real inconsistency, not the caller's fault
            self._allocator.give_back(form.province_code, year, sequence)
            await self._attachments.release(form.attachments, application_id)
            if first.fingerprint != fingerprint:
                raise IdempotencyConflict from None
            announced = True
            if not first.published:
                # The first attempt may have died before publishing: publish again now.
                announced = await self._deliver(await self._store.pending(first.application_id))
            return Registration(first, replayed=True, announced=announced)
        return Registration(app, replayed=False, announced=await self._deliver(pending))

    async def replay(
        self,
        body: Any,
        *,
        idempotency_key: str | None = None,
        submission_id: str | None = None,
    ) -> Registration | None:
        """The first answer for a key that already registered this same body (its proofs
        aside), or None. A retry is answered so even when its token or assertion has expired
        since: the application was registered while they were valid."""
        if not isinstance(body, Mapping) or (idempotency_key is None and submission_id is None):
            return None
        first = await self._first_with_key(idempotency_key, submission_id)
        if first is None or first.fingerprint != self.fingerprint(without_proofs(body)):
            return None
        announced = True
        if not first.published:
            announced = await self._deliver(await self._store.pending(first.application_id))
        return Registration(first, replayed=True, announced=announced)

    async def _first_with_key(
        self, idempotency_key: str | None, submission_id: str | None
    ) -> RegisteredApplication | None:
        if idempotency_key is not None:
            return await self._store.find_by_idempotency_key(idempotency_key)
        if submission_id is not None:
            return await self._store.find_by_submission_id(submission_id)
        return None

    async def _deliver(self, pending: Pending | None) -> bool:
        """Publish an application's events; on failure leave them to the outbox relay."""
        try:
            async with asyncio.timeout(self.PUBLISH_TIMEOUT):
                await self._store.outbox.deliver([pending], clear_later=True)
        except Exception as exc:
            log.warning(
                "publishing failed; the outbox relay will publish later",
                extra={
                    "application_id": pending.document_id if pending else None,
                    "error": type(exc).__name__,
                },
            )
            return False
        return True

    async def application(self, application_id: str) -> RegisteredApplication | None:
        return await self._store.get(application_id)

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self._store.outbox.flush()

    # --- submissions from Kafka ----------------------------------------------------------------

    async def handle_submissions(self, events: list[ApplicationSubmitted]) -> None:
        """A batch of channel adapters' submissions, registered side by side: their inserts
        share round trips to MongoDB (the store's group commit)."""
        # Not one is judged before routing's provinces are known: a restarted process would
        # otherwise refuse every province while it reads them.
        await self._served.known()
        # Numbers are allocated in arrival order within a process, so one adapter's
        # submissions of a partition keep their order.
        await each(events, self.handle_submission, concurrency=SUBMISSION_CONCURRENCY)

    async def handle_submission(self, event: ApplicationSubmitted) -> None:
        """A channel adapter's submission: registered like an HTTP POST, or answered with a
        rejection listing the bad fields. The submission id is the idempotency key.

        A counter submission carries its officer's token, an e-Devlet one the gateway's
        assertion, as over HTTP (`channels.py`): a producer on this topic vouches for nobody.
        """
        body = dict(event.model_extra or {})
        channel = channel_label(body)
        try:
            vouched = self.gate.vouch(body)
            form = self.validate(vouched.body, identity_proven=vouched.identity_proven)
            await self.admit(vouched, form, event.submission_id)
            registration = await self.register(
                form,
                body=without_proofs(body),
                submission_id=event.submission_id,
                recorded_by=vouched.recorded_by,
            )
        except (ChannelRefused, LimitExceeded) as exc:
            # A redelivery after the proof expired, or counted again past a limit: what it
            # registered stands.
            if await self.replay(body, submission_id=event.submission_id) is None:
                APPLICATIONS.labels("kafka", channel, "rejected").inc()
                errors = (
                    exc.errors
                    if isinstance(exc, ChannelRefused)
                    else [{"field": None, "code": exc.code, "message": exc.message}]
                )
                await self._reject(event.submission_id, errors)
            return
        except InvalidApplication as exc:
            APPLICATIONS.labels("kafka", channel, "rejected").inc()
            await self._reject(event.submission_id, exc.errors)
            return
        except IdempotencyConflict:
            APPLICATIONS.labels("kafka", channel, "conflict").inc()
            message = "Bu gönderim kimliği daha önce başka içerikle kullanılmış."
            await self._reject(
                event.submission_id,
                [{"field": "submission_id", "code": "conflict", "message": message}],
            )
            return
        outcome = "replayed" if registration.replayed else "accepted"
        APPLICATIONS.labels("kafka", channel, outcome).inc()

    async def _reject(self, submission_id: str, errors: list[dict[str, Any]]) -> None:
        rejection = SubmissionRejected(
            producer=PRODUCER,
            submission_id=submission_id,
            errors=[
                FieldError(field=e["field"] or "body", code=e["code"], message=e["message"])
                for e in errors
            ],
        )
        await self._publish(topics.REJECTIONS, rejection, submission_id)
