"""The plaintext scan's rules, without any I/O: what counts as a TC Kimlik No in clear, what an
institution topic may not carry for a shielded application, and where each hit is.

A TC Kimlik No is 11 digits, the first not 0, both check digits right (the checksum intake's
rule uses, python-stdnum's `tckimlik`), standing on its own: not inside a longer run of digits
or letters (so a hex hash, a base64 ciphertext or a timestamp that happens to hold 11 checksum-
valid digits is not taken for one; a TC Kimlik No written as a word is). A hit is reported
with the number masked (first two and last two digits), as the service's own masking does.

On an institution topic (`acikkapi.institution.<CODE>`), an application of a shielded type
(şikayet, ihbar) without the applicant's consent must carry no applicant (the event's
`applicant` is null) and no Turkish mobile number (+90 5xx) anywhere in the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stdnum.tr import tckimlik

from services.common import topics
from services.common.events import SHIELDED_TYPES

_TCKN = re.compile(r"(?<![0-9A-Za-z.])[1-9][0-9]{10}(?![0-9A-Za-z])")
# The same on raw bytes (ASCII digits and letters are single bytes in UTF-8): records and log
# lines are searched undecoded, the scan's hot loop.
_TCKN_BYTES = re.compile(rb"(?<![0-9A-Za-z.])[1-9][0-9]{10}(?![0-9A-Za-z])")
# +90 5xx in the spellings a message may hold: +905…, +90 5…, 0090 5…, URL-encoded %2B90….
_MOBILE = re.compile(r"(?:\+|%2[Bb]|(?<![0-9A-Za-z\-])00)90[ .\-]?\(?5[0-9]{2}(?![A-Za-z])")
SHIELDED = frozenset(str(t.value) for t in SHIELDED_TYPES)


@dataclass(frozen=True)
class Hit:
    """One finding: `source` (mongo, kafka, log), where exactly, what, and a masked sample."""

    source: str
    location: str
    kind: str  # tckn | shielded_applicant | shielded_phone
    sample: str

    def __str__(self) -> str:
        return f"[{self.source}] {self.location}: {self.kind} {self.sample}"


def mask(value: str) -> str:
    """12*******90 for a TC Kimlik No; a phone keeps its first five characters."""
    if len(value) == 11 and value.isdigit():
        return value[:2] + "*" * 7 + value[-2:]
    return value[:5] + "*" * max(0, len(value) - 5)


def tckns_in(text: str | bytes | memoryview) -> list[str]:
    """The checksum-valid TC Kimlik Nos standing on their own in `text`."""
    if not isinstance(text, str):
        found = [m.group(0).decode() for m in _TCKN_BYTES.finditer(text)]
    else:
        found = [m.group(0) for m in _TCKN.finditer(text)]
    return [number for number in found if tckimlik.is_valid(number)]


def mobiles_in(text: str) -> list[str]:
    return [m.group(0) for m in _MOBILE.finditer(text)]


def strings_of(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string (and number, and bytes) inside a document, with its dotted path."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from strings_of(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from strings_of(child, f"{path}[{index}]")
    elif isinstance(value, bytes):
        yield path, value.decode("utf-8", errors="replace")
    elif isinstance(value, str):
        yield path, value
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, str(value)


def scan_document(database: str, collection: str, document: dict[str, Any]) -> list[Hit]:
    location = f"{database}.{collection}._id={document.get('_id')!s}"
    return [
        Hit("mongo", f"{location} {path}", "tckn", mask(found))
        for path, text in strings_of(document)
        for found in tckns_in(text)
    ]


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", errors="replace")


def scan_record(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] = (),
) -> list[Hit]:
    """One Kafka record: its key, value and headers as raw bytes (the shield's rules for an
    institution topic are `shield_hits`, which needs the consents of the whole bus)."""
    where = f"{topic}:{partition}:{offset}"
    parts = [("key", key or b""), ("value", value or b"")]
    parts += [(f"header {name}", raw or b"") for name, raw in headers]
    hits = [
        Hit("kafka", f"{where} {part}", "tckn", mask(found))
        for part, text in parts
        for found in tckns_in(text)
    ]
    return hits


def consent_of(value: bytes | None) -> tuple[str, bool] | None:
    """From an `acikkapi.applications.received` record: (application_id, identity_consent)."""
    try:
        event = json.loads(_text(value))
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("application_id"), str):
        return None
    return event["application_id"], event.get("identity_consent") is True


def shield_hits(
    topic: str, partition: int, offset: int, value: bytes | None, consents: Mapping[str, bool]
) -> list[Hit]:
    """An institution topic's record of a shielded type: without the applicant's consent (the
    event's own `identity_consent` if it carries one, else what intake announced for the
    application on the received topic; unknown counts as none, the field's default) it may
    carry no applicant and no mobile number."""
    if not topic.startswith(topics.INSTITUTION_PREFIX):
        return []
    where = f"{topic}:{partition}:{offset}"
    text = _text(value)
    try:
        event = json.loads(text)
    except ValueError:
        return []
    if not isinstance(event, dict) or event.get("application_type") not in SHIELDED:
        return []
    consent = event.get("identity_consent")
    if not isinstance(consent, bool):
        consent = consents.get(str(event.get("application_id")), False)
    if consent:
        return []
    hits: list[Hit] = []
    applicant = event.get("applicant")
    if applicant is not None:
        names = (
            [str(applicant.get(k) or "") for k in ("first_name", "last_name")]
            if isinstance(applicant, dict)
            else [str(applicant)]
        )
        sample = " ".join(n[:1] + "*" * (len(n) - 1) for n in names if n)
        hits.append(Hit("kafka", f"{where} applicant", "shielded_applicant", sample))
    hits += [
        Hit("kafka", f"{where} value", "shielded_phone", mask(found)) for found in mobiles_in(text)
    ]
    return hits


def scan_lines(name: str, lines: Iterable[str | bytes]) -> list[Hit]:
    """A log file, line by line (`name:line`)."""
    return [
        Hit("log", f"{name}:{number}", "tckn", mask(found))
        for number, line in enumerate(lines, start=1)
        for found in tckns_in(line)
    ]
