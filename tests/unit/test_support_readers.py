"""The readers in tests/support.py, checked against lines Kannel 1.4.5's fakesmsc really printed
and against a Maildir like the SMTP sink's."""

from __future__ import annotations

import email.policy
import mailbox
from email.message import EmailMessage
from pathlib import Path

from tests.support import parse_fakesmsc, read_maildir

# Lines fakesmsc printed on this machine (Kannel 1.4.5), shortened only where marked.
SAMPLE = [
    "2026-11-28 18:23:15 [8198] [0] DEBUG: Connecting to <127.0.0.1>",
    "2026-11-28 18:23:20 [8198] [0] DEBUG: Got message 1: <ACIKKAPI 905321234567 ucs-2 "
    "%00A%00%E7%011%00k%00+%00K%00a%00p%011%00%3A%00+%00B%00a%01_%00v%00u%00r%00u%00n%00u%00z"
    "%00+%00a%00l%011%00n%00d%011%00.%00+%010%01%5E%01%1E%00+%01%1F%00%FC%01_%00i%00%F6%00%E7>",
    "2026-11-28 18:23:20 [8198] [0] DEBUG: Got message 2: <ACIKKAPI 905321234567 text "
    "Hello plain text & more>",
    "2026-11-28 18:23:38 [8198] [0] DEBUG: Got message 6: <ACIKKAPI 905321234567 udh "
    "%05%00%03%04%02%01 data " + "%01_" * 67 + ">",
    "2026-11-28 18:23:38 [8198] [0] DEBUG: Got message 4: <ACIKKAPI 905321234567 udh "
    "%05%00%03%03%02%01 data " + "A" * 153 + ">",
    "2026-11-28 18:23:38 [8198] [0] DEBUG: Got message 5: <ACIKKAPI 905321234567 udh "
    "%05%00%03%03%02%02 data " + "A" * 47 + ">",
    "2026-11-28 18:23:38 [8198] [0] DEBUG: Got message 7: <ACIKKAPI 905321234567 udh "
    "%05%00%03%04%02%02 data " + "%01_" * 33 + ">",
]


def test_fakesmsc_lines_are_decoded():
    messages = parse_fakesmsc(SAMPLE)
    assert [m.text for m in messages] == [
        "Açık Kapı: Başvurunuz alındı. İŞĞ ğüşiöç",
        "Hello plain text & more",
        "A" * 200,
        "ş" * 100,
    ]
    assert [m.parts for m in messages] == [1, 1, 2, 2]
    assert {(m.sender, m.receiver) for m in messages} == {("ACIKKAPI", "905321234567")}


def test_maildir_reader_decodes_turkish_subjects(tmp_path: Path):
    message = EmailMessage()
    message["From"] = "Açık Kapı <acikkapi@denizli.gov.tr>"
    message["To"] = "kurum@denizli.gov.tr"
    message["Subject"] = "Başvuru yönlendirildi: ŞĞİ ışığı"
    message.set_content("gövde")
    mailbox.Maildir(tmp_path / "mail").add(message.as_bytes(policy=email.policy.SMTP))
    [read] = read_maildir(tmp_path / "mail")
    assert read["Subject"] == "Başvuru yönlendirildi: ŞĞİ ışığı"
    assert str(read["From"]) == "Açık Kapı <acikkapi@denizli.gov.tr>"
