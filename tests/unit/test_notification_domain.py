"""Notification's pure rules: SMS encoding and segments, recipients, masking, gateway answers,
delivery reports and the dlr-url key."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from services.common.turkish_time import short_datetime
from services.notification import domain
from services.notification.domain import (
    GatewayOutcome,
    InvalidRecipient,
    NotificationState,
    SmsEncoding,
)


@pytest.mark.parametrize("letter", ["ş", "ğ", "ı", "İ", "Ş", "Ğ", "ç"])
def test_turkish_letters_outside_the_default_alphabet_take_the_turkish_table(letter: str):
    assert domain.choose_encoding(f"Basvuru {letter}") is SmsEncoding.gsm7_tr_locking
    assert SmsEncoding.gsm7_tr_locking.kannel_coding == 0


@pytest.mark.parametrize("char", ["ب", "🙂", "я"])
def test_characters_no_gsm_table_has_force_ucs2(char: str):
    assert domain.choose_encoding(f"Başvuru {char}") is SmsEncoding.ucs2
    assert SmsEncoding.ucs2.kannel_coding == 2


def test_gsm_letters_and_extension_stay_gsm7():
    text = "Ödeme Ümit Ç öü @£$ {x} [y] ~^|\\ €"
    assert domain.choose_encoding(text) is SmsEncoding.gsm7
    assert SmsEncoding.gsm7.kannel_coding == 0
    # Each extension character costs two septets.
    assert domain.sms_units("{}€", SmsEncoding.gsm7) == 6


@pytest.mark.parametrize(
    ("length", "segments"), [(0, 1), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3)]
)
def test_gsm7_segments(length: int, segments: int):
    assert domain.segment_count("a" * length) == segments


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_segments(length: int, segments: int):
    text = "ب" * length
    assert domain.segment_count(text) == segments


def test_one_turkish_letter_keeps_a_long_text_in_one_gsm_segment():
    text = "a" * 100
    assert domain.segment_count(text) == 1
    assert domain.sms_shape(text + "ı") == domain.SmsShape(SmsEncoding.gsm7_tr_locking, 101, 1)
    assert domain.segment_count(text + "ı", SmsEncoding.ucs2) == 2


def test_extension_characters_can_push_a_gsm_text_over_one_segment():
    assert domain.segment_count("a" * 158 + "€") == 1  # 160 septets
    assert domain.segment_count("a" * 159 + "€") == 2  # 161 septets


def test_characters_outside_the_bmp_count_two_ucs2_units():
    assert domain.sms_units("🙂", SmsEncoding.ucs2) == 2
    assert domain.segment_count("🙂" * 35) == 1
    assert domain.segment_count("🙂" * 36) == 2


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+905321234567", "905321234567"),
        ("905321234567", "905321234567"),
        ("05321234567", "905321234567"),
        ("532 123 45 67", "905321234567"),
        ("0090 532 123 4567", "905321234567"),
        ("+4915112345678", "4915112345678"),
    ],
)
def test_kannel_recipient_is_international_digits(phone: str, expected: str):
    assert domain.kannel_recipient(phone) == expected


@pytest.mark.parametrize("phone", ["abc", "", "+90", "123", "+0905321234567", "05321234567x"])
def test_bad_numbers_are_invalid_recipients(phone: str):
    with pytest.raises(InvalidRecipient):
        domain.kannel_recipient(phone)


def test_email_check_and_masking():
    assert domain.check_email(" kurum@denizli.gov.tr ") == "kurum@denizli.gov.tr"
    for bad in ["kurum", "a@b", "a b@c.tr", "x@y.tr\r\nBcc: z@w.tr"]:
        with pytest.raises(InvalidRecipient):
            domain.check_email(bad)
    assert domain.mask_email("ayse.yilmaz@denizli.gov.tr") == "ay***@denizli.gov.tr"
    assert domain.mask_email("ab@x.tr") == "a***@x.tr"
    assert domain.mask_recipient("email", "ayse.yilmaz@denizli.gov.tr") == "ay***@denizli.gov.tr"
    assert domain.mask_recipient("sms", "+905321234567") == "+90 5** *** ** 67"


REJECTED = GatewayOutcome.rejected


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (202, "0: Accepted for delivery", GatewayOutcome.accepted),
        (202, "3: Queued for later delivery", GatewayOutcome.accepted),
        (202, "Sent.", GatewayOutcome.accepted),
        (202, "something odd", GatewayOutcome.ambiguous),
        (400, "Number(s) has/have been denied by white- and/or black-lists.", REJECTED),
        (403, "Authorization failed for sendsms", GatewayOutcome.rejected),
        (503, "Temporal failure, try again later.", GatewayOutcome.transient),
        (500, "", GatewayOutcome.transient),
    ],
)
def test_kannel_replies(status: int, body: str, outcome: GatewayOutcome):
    reply = domain.classify_kannel_reply(status, body)
    assert reply.outcome is outcome
    assert reply.detail.startswith(str(status))


def test_smtp_codes_follow_smtp_semantics():
    assert domain.classify_smtp_code(250, "OK").outcome is GatewayOutcome.accepted
    assert domain.classify_smtp_code(451, "try later").outcome is GatewayOutcome.transient
    assert domain.classify_smtp_code(550, "no such user").outcome is GatewayOutcome.rejected


def test_states_after_gateway_and_results():
    assert domain.state_after(GatewayOutcome.accepted) is NotificationState.sent
    assert domain.state_after(GatewayOutcome.rejected) is NotificationState.failed
    assert domain.state_after(GatewayOutcome.transient) is NotificationState.failed
    assert domain.state_after(GatewayOutcome.ambiguous) is NotificationState.uncertain
    assert domain.result_status("sent") == "sent"
    assert domain.result_status("delivered") == "delivered"
    assert domain.result_status("uncertain") is None
    assert domain.result_status("sending") is None


def test_delivery_report_codes():
    assert domain.delivery_report(1).final_state is NotificationState.delivered
    assert domain.delivery_report(2).final_state is NotificationState.failed
    assert domain.delivery_report(16).final_state is NotificationState.failed
    assert domain.delivery_report(8).final_state is None
    assert domain.delivery_report(8).name == "submitted"
    assert domain.delivery_report(4).name == "buffered"
    assert domain.delivery_report(99).name == "unknown"


@pytest.mark.parametrize(
    "key", ["app-1:received:sms", "a/b c&d=e%f", "b64.looks-encoded", "başvuru:ğ", "x:İ:%C"]
)
def test_dlr_key_survives_kannel_substitution(key: str):
    param = domain.dlr_key_param(key)
    # Kannel replaces %<letter> escapes in the dlr-url; an encoded key must not contain one.
    assert all(not (c == "%" and param[i + 1 : i + 2].isalpha()) for i, c in enumerate(param))
    assert domain.parse_dlr_key(unquote(param)) == key


def test_dlr_signature_is_per_key_and_per_secret():
    secret = domain.dlr_secret("s1")
    sig = domain.dlr_signature(secret, "k1")
    assert domain.dlr_signature_ok(secret, "k1", sig)
    assert not domain.dlr_signature_ok(secret, "k2", sig)
    assert not domain.dlr_signature_ok(domain.dlr_secret("s2"), "k1", sig)


def test_a_non_ascii_dlr_signature_is_refused_not_an_error():
    # hmac.compare_digest raises TypeError for non-ASCII str: the callback answered 500.
    assert not domain.dlr_signature_ok(domain.dlr_secret("s1"), "k1", "é" * 32)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2026-03-02T09:30:00+00:00", "02.03.2026 12:30"),
        ("2026-03-02T09:30:00Z", "02.03.2026 12:30"),
        ("2026-12-31T22:05:00", "01.01.2027 01:05"),  # no offset: UTC
        (datetime(2026, 7, 15, 6, 0, tzinfo=UTC), "15.07.2026 09:00"),
    ],
)
def test_turkish_datetime_on_istanbul_clock(value, shown: str):
    assert short_datetime(value) == shown


def test_bad_date_is_a_value_error():
    with pytest.raises(ValueError, match="Geçersiz tarih"):
        short_datetime("yarın")


def test_a_gateways_answer_never_carries_the_recipient():
    reply = domain.classify_smtp_code(
        550, "5.1.1 <ayse.yilmaz@example.org>: Recipient address rejected"
    )
    assert "ayse" not in reply.detail and "<e-posta>" in reply.detail
    assert reply.detail.startswith("550 5.1.1")
    kannel = domain.GatewayReply(domain.GatewayOutcome.rejected, "bad to 905321234567 refused")
    assert "5321234567" not in kannel.detail and "<telefon>" in kannel.detail
    # Application numbers and status codes stay readable.
    assert domain.redact("20-2026-0000123-4 451") == "20-2026-0000123-4 451"
