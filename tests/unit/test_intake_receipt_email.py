"""Intake asks for the receipt by e-mail too, beside the SMS, when the applicant gave an address:
registered through the same outbox, under a key of its own, and announced once."""

from __future__ import annotations

from services.common import topics
from services.common.events import NotificationChannel, NotificationRequest
from services.intake.handlers import Intake, receipt_email, received_messages
from tests.unit import test_intake_handlers as handler_tests
from tests.unit.test_intake_handlers import TRACKING_URL, FakeBus, FakeStore, submit
from tests.unit.test_intake_rules import body

# The fixtures of intake's handler tests, as they are.
bus = handler_tests.bus
clock = handler_tests.clock
intake = handler_tests.intake
store = handler_tests.store
uploads = handler_tests.uploads


def requests_on(bus: FakeBus) -> list[NotificationRequest]:
    return [e for e in bus.on(topics.NOTIFICATION_REQUESTS) if isinstance(e, NotificationRequest)]


async def test_an_applicant_with_an_address_gets_the_receipt_by_email_too(
    intake: Intake, store: FakeStore, bus: FakeBus
) -> None:
    registration = await submit(intake, body(applicant_email="ayse.yilmaz@ornek.com.tr"))
    app = registration.application
    sms, mail = requests_on(bus)
    assert sms.channel is NotificationChannel.sms
    assert mail.channel is NotificationChannel.email
    assert mail.idempotency_key == f"{app.application_id}:received:email"
    assert mail.to == "ayse.yilmaz@ornek.com.tr"
    assert mail.template == "application_received" and not mail.urgent
    assert mail.params == {
        "application_number": app.application_number,
        "tracking_url": TRACKING_URL,
        "received_at": app.received_at.isoformat(),
    }
    # Deterministic, as every event of a registration: a relay's second publication is the same.
    again = receipt_email(app, TRACKING_URL)
    assert again is not None and again.event_id == mail.event_id
    keys = [m.key for m in received_messages(app, TRACKING_URL)]
    assert keys == [app.application_id, sms.idempotency_key, mail.idempotency_key]


async def test_no_address_no_email(intake: Intake, bus: FakeBus) -> None:
    registration = await submit(intake, body())
    [sms] = requests_on(bus)
    assert sms.channel is NotificationChannel.sms
    assert receipt_email(registration.application, TRACKING_URL) is None
