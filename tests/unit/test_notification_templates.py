"""Notification templates: Turkish texts, Turkish dates, strict parameters, escaped HTML,
e-mails whose Turkish subject survives the trip through SMTP encoding, the citizen's receipt
and answer e-mails, and the registry that versions every template."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from services.common.events import NotificationChannel
from services.notification import domain
from services.notification.registry import TEMPLATES_DIR, TemplateRegistry, template_files
from services.notification.rendering import (
    RenderedEmail,
    RenderedSms,
    Renderer,
    TemplateProblem,
    build_email,
    content_of,
    rendered_from,
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
    assert shape.encoding is domain.SmsEncoding.gsm7_tr_locking
    assert shape.segments == 1  # two as UCS-2


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
        ("information_requested", EMAIL),  # exists only as SMS
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


# --- the citizen's e-mails ------------------------------------------------------------------

UNSUBSCRIBE = "https://acikkapi.denizli.gov.tr/eposta/ayril?t=abc.def"
TCKN_RUN = re.compile(r"\d{11}")


def test_receipt_email_gives_the_number_the_link_and_a_way_out(renderer: Renderer):
    rendered = renderer.render(
        "application_received",
        EMAIL,
        {
            "application_number": NUMBER,
            "tracking_url": TRACKING,
            "received_at": "2026-03-02T07:15:00+00:00",
        },
        unsubscribe_url=UNSUBSCRIBE,
    )
    assert isinstance(rendered, RenderedEmail)
    assert rendered.subject == f"Açık Kapı: Başvurunuz alındı ({NUMBER})"
    assert rendered.unsubscribe_url == UNSUBSCRIBE
    for part in (rendered.text, rendered.html):
        assert NUMBER in part and TRACKING in part and "02.03.2026 10:15" in part
        assert "son dört hanesiyle" in part  # how to open the status page
        assert "Kimlik" not in part and not TCKN_RUN.search(part)
    assert UNSUBSCRIBE in rendered.text
    assert 'href="https://acikkapi.denizli.gov.tr/eposta/ayril?t=abc.def"' in rendered.html
    without_date = renderer.render(
        "application_received",
        EMAIL,
        {"application_number": NUMBER, "tracking_url": TRACKING},
        unsubscribe_url=UNSUBSCRIBE,
    )
    assert isinstance(without_date, RenderedEmail) and "Alınma zamanı" not in without_date.text


def test_receipt_email_needs_its_unsubscribe_link(renderer: Renderer):
    with pytest.raises(TemplateProblem, match="unsubscribe_url"):
        renderer.render(
            "application_received", EMAIL, {"application_number": NUMBER, "tracking_url": TRACKING}
        )


def answer_params(**extra) -> dict:
    return {
        "application_number": NUMBER,
        "outcome": "olumsuz",
        "outcome_label": "olumsuz",
        "tracking_url": TRACKING,
        "answer": "Talebiniz incelendi.\n<script>alert(1)</script> & yol ÇALIŞMASI yapılacak.",
        **extra,
    }


def test_answer_email_carries_the_answer_escaped_with_its_lines(renderer: Renderer):
    rendered = renderer.render("application_answered", EMAIL, answer_params())
    assert isinstance(rendered, RenderedEmail)
    assert rendered.subject == f"Açık Kapı: {NUMBER} numaralı başvurunuz yanıtlandı"
    assert rendered.unsubscribe_url is None
    assert "Talebiniz incelendi.\n<script>alert(1)</script> & yol" in rendered.text
    assert (
        "Talebiniz incelendi.<br>\n&lt;script&gt;alert(1)&lt;/script&gt; &amp; yol ÇALIŞMASI"
        in rendered.html
    )
    assert "<script>" not in rendered.html
    for part in (rendered.text, rendered.html):
        assert "olumsuz" in part and TRACKING in part and "3071" in part and "4982" in part
        assert "puanla" not in part
    rated = renderer.render(
        "application_answered", EMAIL, answer_params(rating_url="https://x/puan/1")
    )
    assert isinstance(rated, RenderedEmail) and "https://x/puan/1" in rated.text
    bare = renderer.render("application_answered", EMAIL, answer_params(answer=""))
    assert isinstance(bare, RenderedEmail) and "Kurumun yanıtı" not in bare.text


def test_list_unsubscribe_headers_only_when_there_is_a_link(renderer: Renderer):
    receipt = renderer.render(
        "application_received",
        EMAIL,
        {"application_number": NUMBER, "tracking_url": TRACKING},
        unsubscribe_url=UNSUBSCRIBE,
    )
    answer = renderer.render("application_answered", EMAIL, answer_params())
    assert isinstance(receipt, RenderedEmail) and isinstance(answer, RenderedEmail)
    kwargs = {"sender": "Açık Kapı <a@denizli.gov.tr>", "to": "v@ornek.com", "message_domain": "d"}
    with_link = build_email(receipt, **kwargs)
    assert with_link["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert with_link["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert build_email(answer, **kwargs)["List-Unsubscribe"] is None


def test_what_a_record_keeps_renders_the_same_message(renderer: Renderer):
    for rendered in (
        renderer.render("application_answered", EMAIL, answer_params()),
        renderer.render(
            "application_received", SMS, {"application_number": NUMBER, "tracking_url": TRACKING}
        ),
    ):
        channel = SMS if isinstance(rendered, RenderedSms) else EMAIL
        assert rendered_from(channel, content_of(rendered)) == rendered


# --- the registry: every template versioned ---------------------------------------------------


def test_every_template_is_registered_at_its_current_version():
    problems = TemplateRegistry().problems()
    assert problems == [], (
        "templates changed without a new version; run "
        "`python -m services.notification.registry stamp` and check the purposes:\n"
        + "\n".join(problems)
    )


def test_every_registered_template_renders_its_sample(renderer: Renderer):
    registry = TemplateRegistry()
    assert len(registry.all()) >= 10
    for entry in registry.all():
        unsubscribe = UNSUBSCRIBE if entry.opt_out_allowed else None
        rendered = renderer.render(
            entry.name, entry.channel, entry.sample, unsubscribe_url=unsubscribe
        )
        if isinstance(rendered, RenderedSms):
            assert rendered.text and "{{" not in rendered.text
        else:
            assert rendered.subject and "{{" not in rendered.html + rendered.text


def test_only_informational_email_may_be_opted_out_of():
    registry = TemplateRegistry()
    allowed = {(e.name, e.channel.value) for e in registry.all() if e.opt_out_allowed}
    assert allowed == {("application_received", "email")}
    answered = registry.get("application_answered", EMAIL)
    assert answered is not None and answered.purpose == "legal"
    assert all(
        e.purpose == "service"
        for e in registry.all()
        if e.name.startswith(("institution_", "deadline_"))
    )


@pytest.fixture
def template_copy(tmp_path: Path) -> Path:
    for path in TEMPLATES_DIR.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_an_edited_template_fails_the_check_until_stamped(template_copy: Path):
    sms = template_copy / template_files("application_received", SMS)[0]
    sms.write_text(sms.read_text().replace("alındı", "kaydedildi"))
    registry = TemplateRegistry(template_copy)
    [problem] = registry.problems()
    assert problem.startswith("application_received.sms: changed since version")
    before = registry.get("application_received", SMS)
    assert before is not None
    version = before.version
    changes = registry.stamp(date(2027, 1, 4))
    assert changes == [f"application_received.sms: version {version + 1}"]
    reread = TemplateRegistry(template_copy)
    assert reread.problems() == []
    entry = reread.get("application_received", SMS)
    assert entry is not None and entry.version == version + 1
    assert entry.changed == date(2027, 1, 4)
    assert Renderer(template_copy).entry("application_received", SMS) == entry


def test_a_new_template_must_be_registered(template_copy: Path):
    (template_copy / "hello_world.sms.j2").write_text("Merhaba {{ ad }}")
    registry = TemplateRegistry(template_copy)
    assert registry.problems() == ["hello_world.sms: not in registry.json"]
    assert registry.stamp(date(2027, 1, 4)) == [
        "hello_world.sms: added as version 1 (check its purpose)"
    ]
    added = TemplateRegistry(template_copy).get("hello_world", SMS)
    assert added is not None and added.purpose == "service" and added.version == 1
