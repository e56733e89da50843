"""A real SMTP server on loopback that keeps every message it accepts in a Maildir.

The local stack's stand-in for a mail relay: services send through plain SMTP, and tests or a
person read what an officer or a citizen would have received with python's mailbox.Maildir.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import mailbox
import signal
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("smtp_sink")


class MaildirHandler:
    """Stores each accepted message as it arrived, plus the envelope the sink saw."""

    def __init__(self, maildir: Path) -> None:
        # Maildir(create=True) leaves an existing but empty folder without its subfolders.
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(maildir, create=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        # Envelope headers first, like a delivery agent's Return-Path / Delivered-To: a test
        # can tell who the message was actually sent to, Bcc included.
        trace = f"X-Envelope-From: {envelope.mail_from}\r\n" + "".join(
            f"X-Envelope-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos
        )
        # Maildir files use plain newlines.
        raw = (trace.encode() + content).replace(b"\r\n", b"\n")
        key = self.maildir.add(raw)
        log.info("stored %s from %s to %s", key, envelope.mail_from, ", ".join(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, maildir: Path) -> None:
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        # A fixed hostname: the default asks DNS for this machine's FQDN, which can stall.
        lambda: SMTP(handler, hostname="localhost", enable_SMTPUTF8=True),
        host=host,
        port=port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on %s:%d, Maildir %s", host, port, maildir)
    async with server:
        await stop.wait()
    log.info("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # aiosmtpd logs every connection, the stack's readiness probes included: keep only problems.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.port, args.maildir))


if __name__ == "__main__":
    main()
