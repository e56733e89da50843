"""Notification templates: Turkish texts, Turkish dates, strict parameters, escaped HTML, and
e-mails whose Turkish subject survives the trip through SMTP encoding."""

from __future__ import annotations

import email
import email.policy

import pytest

from services.common.events import NotificationChannel
from services.notification import domain
from services.notification.rendering import (
    RenderedEmail,
    RenderedSms,
    Renderer,
    TemplateProblem,
    build_email,
)

SMS = NotificationChannel.sms
EMAIL = NotificationChannel.email
NUMBER = "20-2026-0000123-4"
TRACKING = "https://acikkapi.denizli.gov.tr/takip"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def assignment_params(**extra) -> dict:
    return {
        "application_number": NUMBER,
        "institution_name": "Pamukkale Belediyesi",
        "category_name": "Yol ve kaldırım",
        "subject": "Kaldırım çöktü",
        "district": "Pamukkale",
        "deadline_at": "2026-03-02T09:30:00+00:00",
        **extra,
    }


def test_application_received_sms(renderer: Renderer):
    rendered = renderer.render(
        "application_received", SMS, {"application_number": NUMBER, "tracking_url": TRACKING}
    )
    assert isinstance(rendered, RenderedSms)
    assert rendered.text == (
        f"Açık Kapı: Başvurunuz alındı. Başvuru no: {NUMBER}. Takip: {TRACKING}"
    )
    shape = domain.sms_shape(rendered.text)
    assert shape.encoding is domain.SmsEncoding.ucs2
    assert shape.segments <= 2


def test_application_answered_sms(renderer: Renderer):
    rendered = renderer.render(
        "application_answered",
        SMS,
        {
            "application_number": NUMBER,
            "outcome": "kismen_olumlu",
            "outcome_label": "kısmen olumlu",
            "tracking_url": TRACKING,
        },
    )
    assert isinstance(rendered, RenderedSms)
    assert NUMBER in rendered.text and "kısmen olumlu" in rendered.text
    assert "\n" not in rendered.text
    assert domain.segment_count(rendered.text) <= 2


def test_institution_assignment_email_with_turkish_date(renderer: Renderer):
    rendered = renderer.render("institution_assignment", EMAIL, assignment_params())
    assert isinstance(rendered, RenderedEmail)
    assert NUMBER in rendered.subject and "yönlendirildi" in rendered.subject
    for part in (rendered.text, rendered.html):
        assert "02.03.2026 12:30" in part  # 09:30 UTC on Istanbul's clock
        assert "Yol ve kaldırım" in part and "Kaldırım çöktü" in part and "Pamukkale" in part


def test_html_is_autoescaped_text_is_not(renderer: Renderer):
    rendered = renderer.render(
        "institution_assignment", EMAIL, assignment_params(subject="<script>x</script> & ğ")
    )
    assert isinstance(rendered, RenderedEmail)
    assert "&lt;script&gt;x&lt;/script&gt; &amp; ğ" in rendered.html
    assert "<script>" not in rendered.html
    assert "<script>x</script> & ğ" in rendered.text


def test_subject_stays_one_line(renderer: Renderer):
    rendered = renderer.render(
        "institution_assignment", EMAIL, assignment_params(application_number="1\r\nBcc: x@y.tr")
    )
    assert isinstance(rendered, RenderedEmail)
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_deadline_missed_optional_fields(renderer: Renderer):
    minimal = renderer.render(
        "deadline_missed",
        EMAIL,
        {
            "application_number": NUMBER,
            "institution_name": "Denizli Su İdaresi",
            "deadline_at": "2026-01-05T14:00:00Z",
        },
    )
    assert isinstance(minimal, RenderedEmail)
    assert "05.01.2026 17:00" in minimal.text and "Konu" not in minimal.text
    full = renderer.render("deadline_missed", EMAIL, assignment_params())
    assert isinstance(full, RenderedEmail)
    assert "Kaldırım çöktü" in full.text and "Kaldırım çöktü" in full.html


def test_missing_parameter_is_a_clear_template_problem(renderer: Renderer):
    with pytest.raises(TemplateProblem, match="tracking_url") as info:
        renderer.render("application_received", SMS, {"application_number": NUMBER})
    assert "Eksik şablon parametresi" in str(info.value)


def test_bad_date_parameter_is_a_template_problem(renderer: Renderer):
    with pytest.raises(TemplateProblem, match="Geçersiz"):
        renderer.render("institution_assignment", EMAIL, assignment_params(deadline_at="yarın"))


@pytest.mark.parametrize(
    ("template", "channel"),
    [
        ("no_such_template", SMS),
        ("../../etc/passwd", SMS),
        ("application_received", EMAIL),  # exists only as SMS
        ("institution_assignment", SMS),  # exists only as e-mail
    ],
)
def test_unknown_templates(renderer: Renderer, template: str, channel: NotificationChannel):
    with pytest.raises(TemplateProblem, match="Bilinmeyen şablon"):
        renderer.render(template, channel, assignment_params(tracking_url=TRACKING))


def test_email_message_keeps_turkish_subject_and_both_parts(renderer: Renderer):
    rendered = renderer.render("institution_assignment", EMAIL, assignment_params())
    assert isinstance(rendered, RenderedEmail)
    message = build_email(
        rendered,
        sender="Açık Kapı <acikkapi@denizli.gov.tr>",
        to="kurum@denizli.gov.tr",
        message_domain="denizli.gov.tr",
    )
    wire = message.as_bytes(policy=email.policy.SMTP)
    assert wire.isascii()  # headers are RFC 2047 encoded, bodies transfer-encoded
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert parsed["Subject"] == rendered.subject
    assert str(parsed["From"]) == "Açık Kapı <acikkapi@denizli.gov.tr>"
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert "02.03.2026 12:30" in plain.get_content()
    assert "Kaldırım çöktü" in html.get_content()
    assert parsed["Message-ID"].endswith("@denizli.gov.tr>")
