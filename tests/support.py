"""Small helpers for tests: valid TC Kimlik Nos and staff tokens to send, and readers for what
the real stack produced, the SMS the fake SMSC received and the e-mail the SMTP sink kept.

How fakesmsc prints: it logs (on stderr, so the stack redirects `2>&1` into fakesmsc.out) one
line per message it received from the bearerbox:

    2026-11-28 18:23:20 [8198] [0] DEBUG: Got message 1: <SENDER RECEIVER KIND PAYLOAD>

KIND is `text` (GSM-7 coding: PAYLOAD is the text as raw UTF-8), `ucs-2` (PAYLOAD is the
UTF-16-BE bytes, URL-encoded with "+" for a 0x20 byte), `data` (8-bit, URL-encoded) or, for a
message with a user data header (each part of a concatenated SMS, or a national shift table),
`udh <URL-encoded UDH> data <URL-encoded part>`. That form does not say the coding, so parts
are joined by the UDH's concatenation reference and read as UCS-2 when they hold bytes below
0x09 or are not UTF-8 (GSM text is UTF-8 inside Kannel, and UTF-8 text has no such bytes).

GSM text under a national shift table (UDH IE 0x25 locking, 0x24 single shift) is the
default-alphabet spelling of its septets: Kannel's drivers map it onto the default alphabet
(anything else becomes "?"), and the handset reads those septets in the national tables. The
reader does the same, so it returns what the phone shows.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from stdnum.tr import tckimlik

from services.common.auth import Role, issue_token
from services.common.settings import Settings
from services.notification import gsm
from services.reporting.cells import ANY, DayFold, Scope, merged
from services.reporting.domain import facts_from_document
from services.reporting.query import Period
from services.reporting.report import assemble


def valid_tckn(rng: random.Random) -> str:
    """A TC Kimlik No that passes the checksum (never a real person's: generated at random)."""
    first9 = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
    return first9 + tckimlik.calc_check_digits(first9)


def bearer(
    settings: Settings, role: Role, *, subject: str | None = None, **claims: Any
) -> dict[str, str]:
    """Headers for a staff member with `role` (by default named `test-<role>`, which is what the
    services then record as the officer or institution that acted)."""
    token = issue_token(settings, subject=subject or f"test-{role.value}", role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


_LINE = re.compile(
    r"Got message \d+: <(?P<sender>\S+) (?P<receiver>\S+) (?P<kind>text|ucs-2|data|udh) "
    r"(?P<payload>.*)>\s*$"
)


@dataclass(frozen=True)
class FakeSms:
    sender: str
    receiver: str
    text: str
    parts: int
    # The GSM tables the handset reads it with (national ones named in the UDH); None for
    # UCS-2 and 8-bit data.
    alphabet: gsm.Alphabet | None = gsm.DEFAULT


def _unquote(payload: str) -> bytes:
    return unquote_to_bytes(payload.replace("+", " "))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _looks_ucs2(data: bytes) -> bool:
    return len(data) % 2 == 0 and (any(byte < 0x09 for byte in data) or not _is_utf8(data))


def _read(sender: str, receiver: str, data: bytes, alphabet: gsm.Alphabet, parts: int) -> FakeSms:
    """One whole message: UCS-2, or GSM text read through the tables its header named."""
    if _looks_ucs2(data):
        return FakeSms(sender, receiver, data.decode("utf-16-be"), parts, None)
    text = data.decode("utf-8", errors="replace")
    if alphabet != gsm.DEFAULT:
        septets = gsm.encode(text, gsm.DEFAULT, unknown="?")
        text = gsm.decode(septets, alphabet)
    return FakeSms(sender, receiver, text, parts, alphabet)


def parse_fakesmsc(lines: list[str]) -> list[FakeSms]:
    """The messages in a fakesmsc log, concatenated parts joined, in order of completion."""
    messages: list[FakeSms] = []
    pending: dict[tuple[str, str, int], dict[int, bytes]] = {}
    for line in lines:
        match = _LINE.search(line)
        if not match:
            continue
        sender, receiver, kind, payload = match.group("sender", "receiver", "kind", "payload")
        if kind == "text":
            messages.append(FakeSms(sender, receiver, payload, 1))
        elif kind == "ucs-2":
            text = _unquote(payload).decode("utf-16-be")
            messages.append(FakeSms(sender, receiver, text, 1, None))
        elif kind == "data":
            data = _unquote(payload)
            if _looks_ucs2(data):
                messages.append(FakeSms(sender, receiver, data.decode("utf-16-be"), 1, None))
            else:
                text = data.decode("utf-8", "replace")
                messages.append(FakeSms(sender, receiver, text, 1, None))
        else:
            udh_text, _, data_text = payload.partition(" data ")
            header = gsm.read_user_data_header(_unquote(udh_text))
            data = _unquote(data_text)
            if header.reference is None:
                messages.append(_read(sender, receiver, data, header.alphabet, 1))
                continue
            parts = pending.setdefault((sender, receiver, header.reference), {})
            parts[header.sequence] = data
            if len(parts) == header.total:
                del pending[(sender, receiver, header.reference)]
                joined = b"".join(parts[i] for i in sorted(parts))
                messages.append(_read(sender, receiver, joined, header.alphabet, header.total))
    return messages


def read_fakesmsc(path: Path) -> list[FakeSms]:
    if not path.exists():
        return []
    return parse_fakesmsc(path.read_bytes().decode("utf-8", errors="replace").splitlines())


def read_maildir(path: Path) -> list[EmailMessage]:
    """Every message in the sink's Maildir, parsed with the modern policy (headers decoded)."""
    if not (path / "new").exists():
        return []
    box = mailbox.Maildir(path, create=False)
    messages = []
    for key in box.keys():
        try:
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):  # moved by another reader meanwhile
            continue
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


def sms_texts_to(data_dir: Path, receiver_digits: str) -> list[str]:
    """Whole texts (concatenated parts joined) fakesmsc received for one phone number."""
    return [
        m.text for m in read_fakesmsc(data_dir / "fakesmsc.out") if m.receiver == receiver_digits
    ]


def summarize(docs: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """The province-wide report these read-model documents fold into (the fold's own rules,
    without a database: each document is folded into its day's cells, the province's are
    added up)."""
    fold = DayFold()
    for number, doc in enumerate(docs):
        facts = facts_from_document(doc)
        fold.add(
            int(doc.get("province_code") or 20),
            str(doc.get("received_day") or "1970-01-01"),
            facts,
            str(doc.get("_id") or number),
            doc.get("application_number"),
        )
    province = merged(c for s, c in fold.cells.items() if s.district == ANY == s.institution)
    return assemble(
        province,
        scope=Scope(20),
        period=Period(),
        generated_at=now,
        as_of=None,
        overdue=fold.overdue,
        overdue_total=len(fold.overdue),
    )


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float, interval: float = 0.2
) -> Any:
    """Poll until `check` returns something truthy (an assertion inside counts as not yet)."""
    last: Exception | None = None
    async with asyncio.timeout(timeout):
        while True:
            try:
                result = await check()
                if result:
                    return result
            except AssertionError as exc:
                last = exc
            await asyncio.sleep(interval)
    raise AssertionError(f"not reached: {last}")  # pragma: no cover
