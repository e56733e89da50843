"""Pure shared rules: application numbers, personal-data protection, tokens, log redaction."""

from __future__ import annotations

import io
import logging

import jwt
import pytest
from cryptography.exceptions import InvalidTag
from stdnum import damm

from services.common import application_number as numbers
from services.common.auth import Role, decode_token, issue_token
from services.common.observability import JsonFormatter, redact
from services.common.pii import PiiCipher, mask_phone, mask_tckn
from services.common.settings import Settings
from services.common.topics import dlq, institution_topic


class TestApplicationNumber:
    def test_carries_plate_year_sequence_and_check_digit(self):
        number = numbers.format_number(20, 2026, 123)
        assert number.startswith("20-2026-0000123-")
        assert damm.is_valid(numbers.normalize(number))

    def test_parse_accepts_any_separators(self):
        number = numbers.format_number(7, 2027, 9_999_999)
        assert numbers.parse_number(number.replace("-", " ")) == (7, 2027, 9_999_999)
        assert numbers.canonical(numbers.normalize(number)) == number

    @pytest.mark.parametrize("position", range(12))
    def test_every_single_digit_error_is_caught(self, position):
        digits = list(numbers.normalize(numbers.format_number(20, 2026, 4567)))
        digits[position] = str((int(digits[position]) + 3) % 10)
        with pytest.raises(numbers.InvalidApplicationNumber) as err:
            numbers.parse_number("".join(digits))
        assert err.value.shape_ok

    def test_adjacent_swaps_are_caught(self):
        digits = numbers.normalize(numbers.format_number(20, 2026, 1234567))
        for i in range(len(digits) - 1):
            if digits[i] == digits[i + 1]:
                continue
            swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
            with pytest.raises(numbers.InvalidApplicationNumber):
                numbers.parse_number(swapped)

    @pytest.mark.parametrize("text", ["", "20-2026-123", "AB-2026-0000123-4", "2020260000123456"])
    def test_bad_shapes_are_refused_as_shape_errors(self, text):
        with pytest.raises(numbers.InvalidApplicationNumber) as err:
            numbers.parse_number(text)
        assert not err.value.shape_ok

    def test_out_of_range_parts_are_refused(self):
        with pytest.raises(ValueError):
            numbers.format_number(82, 2026, 1)
        with pytest.raises(ValueError):
            numbers.format_number(20, 2026, 0)


class TestPersonalData:
    cipher = PiiCipher(Settings(pii_key="test-key").pii_key_bytes())

    def test_encryption_round_trips_and_hides_the_value(self):
        token = self.cipher.encrypt("10000000146")
        assert "10000000146" not in token
        assert self.cipher.decrypt(token) == "10000000146"
        assert self.cipher.encrypt("10000000146") != token  # fresh nonce each time

    def test_a_different_key_cannot_decrypt(self):
        other = PiiCipher(Settings(pii_key="another-key").pii_key_bytes())
        with pytest.raises(InvalidTag):
            other.decrypt(self.cipher.encrypt("10000000146"))

    def test_blind_index_is_stable_and_keyed(self):
        other = PiiCipher(Settings(pii_key="another-key").pii_key_bytes())
        assert self.cipher.blind_index("4567") == self.cipher.blind_index("4567")
        assert self.cipher.blind_index("4567") != other.blind_index("4567")

    def test_masks(self):
        assert mask_tckn("10000000146") == "10*******46"
        assert mask_phone("+905321234567") == "+90 5** *** ** 67"

    def test_base64_key_of_32_bytes_is_used_as_is(self):
        key = "A" * 43 + "="
        assert len(Settings(pii_key=key).pii_key_bytes()) == 32


class TestLogs:
    def test_tckn_never_reaches_a_log_line(self):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter("test"))
        logger = logging.getLogger("test.redaction")
        logger.addHandler(handler)
        logger.propagate = False
        logger.warning("başvuru 10000000146 alındı", extra={"tckn": "10000000146"})
        assert "10000000146" not in stream.getvalue()
        assert "başvuru" in stream.getvalue()

    def test_redact_leaves_other_numbers(self):
        assert redact("no 20-2026-0000123-4 tel 5321234567") == (
            "no 20-2026-0000123-4 tel 5321234567"
        )


class TestTokens:
    settings = Settings(jwt_secret="s" * 32)

    def test_round_trip(self):
        token = issue_token(
            self.settings, subject="ayse", role=Role.institution, institution="DESKI"
        )
        principal = decode_token(self.settings, token)
        assert (principal.role, principal.institution) == (Role.institution, "DESKI")

    def test_wrong_secret_is_refused(self):
        token = issue_token(self.settings, subject="ayse", role=Role.officer)
        with pytest.raises(jwt.InvalidSignatureError):
            decode_token(Settings(jwt_secret="x" * 32), token)

    def test_institution_token_needs_a_code(self):
        with pytest.raises(ValueError):
            issue_token(self.settings, subject="x", role=Role.institution)


def test_topic_names():
    assert institution_topic("DENIZLI-VALILIK") == "acikkapi.institution.DENIZLI-VALILIK"
    assert dlq("acikkapi.applications.received") == "acikkapi.applications.received.dlq"
    with pytest.raises(ValueError):
        institution_topic("bad code!")
