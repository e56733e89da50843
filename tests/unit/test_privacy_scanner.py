"""The plaintext scan's rules (tests/zz_privacy_scan/scanner.py) on planted data: a TC Kimlik No
in clear is found wherever it stands, masked, with its place; look-alikes are not; an
institution topic's shielded application without consent may show no applicant."""

from __future__ import annotations

import json
import random

from tests.support import valid_tckn
from tests.zz_privacy_scan.scanner import (
    Hit,
    consent_of,
    mask,
    scan_document,
    scan_lines,
    scan_record,
    shield_hits,
    tckns_in,
)

TCKN = valid_tckn(random.Random(5))
MASKED = TCKN[:2] + "*******" + TCKN[-2:]
INSTITUTION = "acikkapi.institution.DESKI"


def test_a_planted_tckn_is_found_in_a_document_masked_with_its_path() -> None:
    document = {"_id": "a1", "x": [{"note": f"TC: {TCKN}."}], "n": int(TCKN)}
    hits = scan_document("t1_intake", "applications", document)
    assert [str(h) for h in hits] == [
        f"[mongo] t1_intake.applications._id=a1 x[0].note: tckn {MASKED}",
        f"[mongo] t1_intake.applications._id=a1 n: tckn {MASKED}",
    ]
    assert all(TCKN not in str(h) for h in hits)


def test_a_planted_tckn_is_found_in_a_record_key_value_and_header() -> None:
    hits = scan_record(
        "acikkapi.x",
        2,
        17,
        TCKN.encode(),
        json.dumps({"t": TCKN}).encode(),
        [("h", b"x " + TCKN.encode())],
    )
    assert [h.location for h in hits] == [
        "acikkapi.x:2:17 key",
        "acikkapi.x:2:17 value",
        "acikkapi.x:2:17 header h",
    ]
    assert {h.sample for h in hits} == {MASKED}


def test_a_planted_tckn_is_found_in_a_log_line() -> None:
    hits = scan_lines("svc.log", [b"ok\n", f"body={TCKN}\n".encode(), "yok\n"])
    assert hits == [Hit("log", "svc.log:2", "tckn", MASKED)]


def test_look_alikes_are_not_taken_for_a_tckn() -> None:
    wrong_check = TCKN[:10] + str((int(TCKN[10]) + 1) % 10)
    assert tckns_in(TCKN) == [TCKN]
    assert tckns_in(f"ş{TCKN}ğ") == [TCKN]  # Turkish letters around it: still a word of its own
    for text in (
        wrong_check,
        "0" + TCKN[1:],  # starts with 0
        "9" + TCKN,  # inside a longer number (a timestamp in ms, an offset)
        f"a{TCKN}",  # inside a hex hash or a base64 ciphertext
        f"{TCKN}f",
        f"3.{TCKN}",  # a float's fraction
    ):
        assert tckns_in(text) == [] and tckns_in(text.encode()) == [], text


def _assignment(application_type: str, applicant: object, **extra: object) -> bytes:
    event = {"application_id": "a1", "application_type": application_type, "applicant": applicant}
    return json.dumps({**event, **extra}, ensure_ascii=False).encode()


APPLICANT = {"first_name": "Ayşe", "last_name": "Yılmaz", "phone": "+905321234567"}


def test_a_shielded_applicant_without_consent_is_a_hit() -> None:
    hits = shield_hits(INSTITUTION, 0, 9, _assignment("sikayet", APPLICANT), {})
    assert [(h.location, h.kind, h.sample) for h in hits] == [
        (f"{INSTITUTION}:0:9 applicant", "shielded_applicant", "A*** Y*****"),
        (f"{INSTITUTION}:0:9 value", "shielded_phone", "+9053*"),  # the +90 5xx it matched
    ]


def test_a_phone_in_a_shielded_text_is_a_hit_even_without_an_applicant() -> None:
    value = _assignment("ihbar", None, text="Beni +90 532 123 45 67 numarasından arayın")
    assert [h.kind for h in shield_hits(INSTITUTION, 0, 1, value, {})] == ["shielded_phone"]


def test_an_event_id_is_not_taken_for_a_phone() -> None:
    value = _assignment("sikayet", None, event_id="a8b43df0-0090-558f-bec1-0a1b2c3d4e5f")
    assert shield_hits(INSTITUTION, 0, 1, value, {}) == []
    value = _assignment("sikayet", None, text="Numaram 0090 532 123 45 67")
    assert [h.kind for h in shield_hits(INSTITUTION, 0, 1, value, {})] == ["shielded_phone"]


def test_consent_or_another_type_or_another_topic_lets_the_applicant_through() -> None:
    consented = consent_of(json.dumps({"application_id": "a1", "identity_consent": True}).encode())
    assert consented == ("a1", True)
    value = _assignment("sikayet", APPLICANT)
    assert shield_hits(INSTITUTION, 0, 1, value, dict([consented])) == []
    assert (
        shield_hits(INSTITUTION, 0, 1, _assignment("sikayet", APPLICANT, identity_consent=True), {})
        == []
    )
    assert shield_hits(INSTITUTION, 0, 1, _assignment("istek", APPLICANT), {}) == []
    assert shield_hits("acikkapi.applications.received", 0, 1, value, {}) == []
    assert shield_hits(INSTITUTION, 0, 1, _assignment("sikayet", None), {}) == []


def test_mask() -> None:
    assert mask(TCKN) == MASKED
    assert mask("+905321234567") == "+9053********"
