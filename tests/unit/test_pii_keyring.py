"""The PII keyring (key ids, rotation, v1 compatibility, stable blind indexes), the sealed
event fields, the complainant shield, and the rotation command's pure parts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from services.common import pii
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationType,
    Channel,
    InstitutionAssignment,
    InstitutionContact,
    NotificationChannel,
    NotificationRequest,
    identity_shielded,
)
from services.common.messaging import Outgoing
from services.common.outbox import Outbox
from services.common.pii import PiiCipher, PiiKeyError, key_bytes
from services.common.rotate_keys import Counts, Keyrings, changes_of
from services.common.settings import Settings

A, B, C = b"A" * 32, b"B" * 32, b"C" * 32
PHONE = "+905321234567"


def legacy_v1(key: bytes, plaintext: str) -> str:
    """A ciphertext as the code before key ids wrote it."""
    nonce = os.urandom(12)
    return (
        "v1:"
        + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), b"v1")).decode()
    )


@pytest.fixture
def transport_of() -> Iterator[object]:
    """Sets the process's transport keyring for a test, and puts the previous one back."""
    saved = pii._transport

    def use(cipher: PiiCipher) -> None:
        pii.configure_transport(cipher)

    yield use
    pii._transport = saved


class TestKeyring:
    def test_new_ciphertexts_name_their_key(self):
        token = PiiCipher(A).encrypt("10000000146")
        version, kid, _ = token.split(":")
        assert (version, kid) == ("v2", pii.key_id(A)) and len(kid) == 8
        assert pii.key_id(A) == pii.key_id(A) != pii.key_id(B)
        assert pii.is_ciphertext(token) and not pii.is_ciphertext("Ayşe")

    def test_rotation_old_values_open_with_the_old_key_new_ones_use_the_new(self):
        before = PiiCipher(A).encrypt("10000000146")
        rotated = PiiCipher(B, [A])
        assert rotated.decrypt(before) == "10000000146"
        after = rotated.encrypt("10000000146")
        assert pii.ciphertext_kid(after) == pii.key_id(B)
        assert rotated.is_stale(before) and not rotated.is_stale(after)
        # A process still on A alone (mid-way through a rollout) learns B as an old key first.
        assert PiiCipher(A, [B]).decrypt(after) == "10000000146"

    def test_v1_ciphertexts_still_open_with_the_current_or_an_old_key(self):
        old = legacy_v1(A, "+905321234567")
        assert PiiCipher(A).decrypt(old) == "+905321234567"
        assert PiiCipher(B, [C, A]).decrypt(old) == "+905321234567"
        assert PiiCipher(A).is_stale(old)  # the rotation rewrites it as v2

    def test_a_wrong_key_is_a_clear_error(self):
        token = PiiCipher(A).encrypt("x")
        with pytest.raises(PiiKeyError, match="unknown key id"):
            PiiCipher(B).decrypt(token)
        with pytest.raises(PiiKeyError, match="no key of the PII keyring"):
            PiiCipher(B, [C]).decrypt(legacy_v1(A, "x"))
        # Still what callers caught before key ids: an InvalidTag.
        with pytest.raises(InvalidTag):
            PiiCipher(B).decrypt(token)
        damaged = token[:-6] + ("AAAA" if token[-6:-2] != "AAAA" else "BBBB") + token[-2:]
        with pytest.raises(PiiKeyError):
            PiiCipher(A).decrypt(damaged)

    def test_blind_indexes_survive_the_rotation(self):
        before = PiiCipher.from_settings(Settings(pii_key="first-key"))
        after = PiiCipher.from_settings(
            Settings(pii_key="second-key", pii_old_keys="first-key", pii_index_key="first-key")
        )
        assert before.blind_index("10000000146") == after.blind_index("10000000146")
        # Exactly the index the code before key ids computed: stored indexes stay valid.
        legacy = hashlib.sha256(b"blind-index:" + key_bytes("first-key")).digest()
        expected = hmac.new(legacy, b"10000000146", hashlib.sha256).hexdigest()
        assert before.blind_index("10000000146") == expected
        assert after.decrypt(before.encrypt("x")) == "x"

    def test_old_keys_without_an_index_key_are_refused(self):
        with pytest.raises(ValueError, match="AK_PII_INDEX_KEY"):
            PiiCipher.from_settings(Settings(pii_key="second", pii_old_keys="first"))

    def test_settings_read_the_keyring(self):
        settings = Settings(pii_key="k2", pii_old_keys=" k1 , k0 ", pii_index_key="k0")
        ring = PiiCipher.from_settings(settings)
        assert ring.kids == {pii.key_id(key_bytes(k)) for k in ("k2", "k1", "k0")}
        assert ring.kid == pii.key_id(settings.pii_key_bytes())

    def test_the_bus_keyring_is_derived_and_distinct(self):
        rest = PiiCipher(B, [A])
        bus = rest.derive(pii.BUS_LABEL)
        assert bus.kid != rest.kid and not (bus.kids & rest.kids)
        with pytest.raises(PiiKeyError):
            rest.decrypt(bus.encrypt("x"))
        assert PiiCipher(A).derive(pii.BUS_LABEL).kid in bus.kids


def received(**fields: object) -> ApplicationReceived:
    values: dict[str, object] = {
        "application_id": str(uuid.uuid4()),
        "application_number": "20-2026-0000123-4",
        "channel": Channel.web,
        "application_type": ApplicationType.sikayet,
        "province_code": 20,
        "district": "Merkezefendi",
        "subject": "Su kesintisi",
        "text": "Mahallemizde iki gündür sular akmıyor.",
        "applicant": ApplicantContact(
            tckn_masked="12*******90",
            first_name="Ayşe",
            last_name="Yıldırım",
            phone=PHONE,
            email="ayse@ornek.com",
        ),
        "received_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    }
    return ApplicationReceived.model_validate(values | fields)


class TestSealedFields:
    def test_personal_fields_are_sealed_on_the_wire_and_clear_in_python(self, transport_of):
        transport_of(PiiCipher(A))
        event = received()
        wire = event.to_bytes()
        for clear in (b"Ay\xc5\x9fe", b"Y\xc4\xb1ld", b"5321234567", b"ayse@ornek"):
            assert clear not in wire
        body = json.loads(wire)
        assert body["applicant"]["tckn_masked"] == "12*******90"
        assert all(pii.is_ciphertext(body["applicant"][k]) for k in ("first_name", "phone"))
        back = ApplicationReceived.model_validate_json(wire)
        assert back.applicant == event.applicant and back.applicant.phone == PHONE
        assert event.model_dump()["applicant"]["phone"] == PHONE  # Python mode: clear

    def test_an_old_event_with_clear_fields_still_decodes(self, transport_of):
        transport_of(PiiCipher(A))
        body = json.loads(received().to_bytes())
        body["applicant"] |= {"first_name": "Ayşe", "last_name": "Yıldırım", "phone": PHONE}
        assert ApplicationReceived.model_validate(body).applicant.first_name == "Ayşe"

    def test_the_recipient_of_a_notification_is_sealed(self, transport_of):
        transport_of(PiiCipher(A))
        request = NotificationRequest(
            idempotency_key="k", channel=NotificationChannel.sms, to=PHONE, template="t"
        )
        assert PHONE.encode() not in request.to_bytes()
        assert NotificationRequest.model_validate_json(request.to_bytes()).to == PHONE

    def test_events_sealed_before_a_rotation_decode_after_it(self, transport_of):
        transport_of(PiiCipher(A))
        wire = received().to_bytes()
        transport_of(PiiCipher(B, [A]))
        assert ApplicationReceived.model_validate_json(wire).applicant.phone == PHONE
        transport_of(PiiCipher(C))
        with pytest.raises(ValidationError, match="unknown key id"):
            ApplicationReceived.model_validate_json(wire)

    def test_the_schema_still_says_string(self):
        schema = ApplicantContact.model_json_schema(mode="serialization")
        assert schema["properties"]["phone"]["type"] == "string"


class TestShield:
    @pytest.mark.parametrize(
        ("kind", "consent", "shielded"),
        [
            (ApplicationType.sikayet, False, True),
            (ApplicationType.ihbar, False, True),
            (ApplicationType.sikayet, True, False),
            (ApplicationType.ihbar, True, False),
            (ApplicationType.istek, False, False),
            (ApplicationType.oneri, False, False),
            (ApplicationType.bilgi_edinme, False, False),
            (ApplicationType.tesekkur, False, False),
        ],
    )
    def test_only_complaints_and_tip_offs_without_consent_are_shielded(
        self, kind: ApplicationType, consent: bool, shielded: bool
    ):
        assert identity_shielded(kind, consent) is shielded

    def test_consent_defaults_to_no(self):
        assert received().identity_consent is False

    def test_the_institution_reads_its_contact_in_clear(self, transport_of):
        transport_of(PiiCipher(A))
        event = received()
        assignment = InstitutionAssignment(
            **event.model_dump(
                include={
                    "application_id",
                    "application_number",
                    "channel",
                    "application_type",
                    "province_code",
                    "district",
                    "subject",
                    "text",
                    "received_at",
                }
            ),
            institution_code="DESKI",
            category_code="ALT-001",
            category_name="İçme suyu kesintisi",
            heading_code="ALT",
            deadline_at=datetime(2026, 3, 11, tzinfo=UTC),
            applicant=InstitutionContact.of(event.applicant),
        )
        body = json.loads(assignment.to_bytes())
        assert body["applicant"]["phone"] == PHONE and body["applicant"]["first_name"] == "Ayşe"
        assert body["identity_shielded"] is False


class TestRotationWalk:
    def test_an_outbox_entry_and_the_sealed_fields_inside_it_are_renewed(self, transport_of):
        old = PiiCipher(A)
        transport_of(old)
        outbox_old = Outbox(None, None, old)  # type: ignore[arg-type]
        entry = outbox_old.seal(Outgoing.of("acikkapi.applications.received", received(), "k"))
        new = PiiCipher(B, [A])
        rings = Keyrings(new)
        renewed = rings.renew(entry)
        assert renewed is not None and pii.ciphertext_kid(renewed) == new.kid
        inner = json.loads(json.loads(new.decrypt(renewed))["value"])
        assert pii.ciphertext_kid(inner["applicant"]["phone"]) == rings.bus.kid
        transport_of(new)
        message = Outbox(None, None, new).open(renewed)  # type: ignore[arg-type]
        assert ApplicationReceived.model_validate_json(message.value).applicant.phone == PHONE
        assert rings.renew(renewed) is None  # idempotent

    def test_the_writes_compare_and_set_each_value_where_it_is(self):
        old, new = PiiCipher(A), PiiCipher(B, [A])
        rings = Keyrings(new)
        current = new.encrypt("kept")
        document = {
            "_id": "app-1",
            "applicant": {"phone_enc": old.encrypt(PHONE), "tckn_bidx": "ab12", "masked": "12*"},
            "outbox": [current, old.encrypt("{}")],
            "legacy": legacy_v1(A, "x"),
            "nested": [[old.encrypt("deep")]],
            "broken": PiiCipher(C).encrypt("unknown key: left alone, not counted as stale"),
        }
        counts = Counts()
        changes = {c.match: c for c in changes_of(document, rings, counts)}
        assert set(changes) == {"applicant.phone_enc", "outbox", "legacy"}
        assert changes["outbox"].target == "outbox.$"
        assert changes["outbox"].old == document["outbox"][1]
        assert changes["applicant.phone_enc"].target == "applicant.phone_enc"
        assert new.decrypt(changes["legacy"].new) == "x"
        assert counts.unsupported == 1  # the array inside an array
        write = changes["legacy"].write()
        assert write._filter == {"_id": "app-1", "legacy": document["legacy"]}

    def test_a_damaged_old_value_is_counted_not_written(self):
        rings = Keyrings(PiiCipher(B, [A]))
        token = PiiCipher(A).encrypt("x")
        damaged = token[:-6] + ("AAAA" if token[-6:-2] != "AAAA" else "BBBB") + token[-2:]
        counts = Counts()
        assert changes_of({"_id": 1, "v": damaged}, rings, counts) == []
        assert counts.unreadable == 1
