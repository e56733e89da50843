"""The edge to the outside world: Kannel's HTTP sendsms interface and an SMTP server.

Each call answers a GatewayReply instead of raising, so the handler decides about retries. The
line drawn between `transient` and `ambiguous` is what keeps sending at most once: only an error
that proves the request never reached the gateway (connection refused, connect timeout, an
explicit "not now" answer) may be retried.
"""

from __future__ import annotations

import asyncio
import socket
import time
from email.message import Message
from email.policy import SMTP as _SMTP_POLICY
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib

from services.common.settings import Settings
from services.notification import domain
from services.notification.domain import GatewayOutcome, GatewayReply
from services.notification.metrics import GATEWAY_SECONDS
from services.notification.rendering import RenderedEmail, build_email

# The connect timeout covers waiting for a pooled connection too: both mean "never sent".
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=3.0, sock_read=10.0)
SMTP_TIMEOUT = 15.0
# E-mails go to institutions, a few per application at most: a handful of sessions suffice.
SMTP_CONNECTIONS = 8
# A connection idle this long may have been closed by the server: NOOP before reusing it.
SMTP_IDLE_CHECK_SECONDS = 5.0
# Enough pooled connections for every request a batch has in flight (handlers.SEND_CONCURRENCY).
SEND_CONNECTIONS = 64


class SmsGateway(Protocol):
    async def send_sms(
        self, *, to: str, text: str, encoding: domain.SmsEncoding, dlr_url: str
    ) -> GatewayReply: ...


class EmailGateway(Protocol):
    async def send_email(self, *, to: str, rendered: RenderedEmail) -> GatewayReply: ...


class KannelGateway:
    """Kannel's sendsms over one pooled aiohttp session, opened on first use. (httpx cost
    1.6 ms of CPU per request here, aiohttp 0.09 ms: at hundreds of SMS a second that is the
    difference between the client and Kannel being the limit.)"""

    def __init__(
        self,
        settings: Settings,
        *,
        connections: int = SEND_CONNECTIONS,
        timeout: aiohttp.ClientTimeout = HTTP_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.connections = connections
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=self.connections),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send_sms(
        self, *, to: str, text: str, encoding: domain.SmsEncoding, dlr_url: str
    ) -> GatewayReply:
        """coding=0 for GSM 7-bit: a Turkish locking shift text goes with its header in `udh`
        and the text in its default-alphabet spelling, which Kannel maps septet for septet
        (domain.kannel_text); coding=2 for UCS-2. Kannel cuts a long text into parts itself."""
        sms = domain.kannel_text(text, encoding)
        params = {
            "username": self.settings.sms_username,
            "password": self.settings.sms_password,
            "from": self.settings.sms_sender,
            "to": to,
            "text": sms.text,
            "charset": "UTF-8",
            "coding": str(sms.coding),
            "dlr-mask": str(domain.DLR_MASK),
            "dlr-url": dlr_url,
        }
        if sms.udh:
            # Raw header octets (all below 0x80), percent-encoded on the way: %03%25%01%01.
            params["udh"] = sms.udh.decode("ascii")
        started = time.perf_counter()
        try:
            async with self._client().get(self.settings.sms_gateway_url, params=params) as answer:
                reply = domain.classify_kannel_reply(answer.status, await answer.text())
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Never reached Kannel (refused, or no connection within the connect timeout).
            reply = GatewayReply(GatewayOutcome.transient, f"Kannel'e ulaşılamadı: {exc!r}"[:500])
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The request may have reached Kannel: resending could text the citizen twice.
            reply = GatewayReply(GatewayOutcome.ambiguous, f"Kannel yanıt vermedi: {exc!r}"[:500])
        GATEWAY_SECONDS.labels("sms", reply.outcome.value).observe(time.perf_counter() - started)
        return reply


class SmtpGateway:
    """Sends over a few long-lived SMTP connections, opened on demand and reused: a session per
    e-mail (connect, greeting, EHLO, QUIT) costs more than the e-mail itself. A connection that
    failed is dropped; one that sat idle is checked with NOOP before it carries a message, so
    a server's idle timeout never makes a sent e-mail look ambiguous."""

    def __init__(
        self,
        settings: Settings,
        *,
        connections: int = SMTP_CONNECTIONS,
        idle_check_seconds: float = SMTP_IDLE_CHECK_SECONDS,
    ) -> None:
        self.settings = settings
        address = settings.smtp_sender.rpartition("<")[2].rstrip(">").strip()
        self.message_domain = address.rpartition("@")[2] or "acikkapi.local"
        self.sender_address = address
        # Looked up once: aiosmtplib would ask the resolver on every connection.
        self.local_hostname = socket.getfqdn()
        self._slots = asyncio.Semaphore(connections)
        self.idle_check_seconds = idle_check_seconds
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def send_email(self, *, to: str, rendered: RenderedEmail) -> GatewayReply:
        message = build_email(
            rendered, sender=self.settings.smtp_sender, to=to, message_domain=self.message_domain
        )
        started = time.perf_counter()
        async with self._slots:
            try:
                client = await self._connection()
            except (aiosmtplib.SMTPException, OSError) as exc:
                reply = GatewayReply(GatewayOutcome.transient, f"SMTP'ye ulaşılamadı: {exc}"[:500])
            else:
                reply = await self._send_over(client, message, to)
        GATEWAY_SECONDS.labels("email", reply.outcome.value).observe(time.perf_counter() - started)
        return reply

    async def _send_over(self, client: aiosmtplib.SMTP, message: Message, to: str) -> GatewayReply:
        """Sends on `client`, one SMTP step at a time, because where a connection breaks
        decides what may be retried: the server takes a message only when it answers the end
        of DATA, so a break during MAIL or RCPT (a server restarted, a pooled connection it
        closed) is transient, and only a break during DATA is ambiguous. A connection goes back
        to the pool only after a message went through it."""
        wire = message.as_bytes(policy=_SMTP_POLICY)
        sending_data = False
        try:
            await client.mail(self.sender_address)
            await client.rcpt(to)
            sending_data = True
            answer = await client.data(wire)
        except aiosmtplib.SMTPResponseException as exc:
            # An explicit answer (4xx: not now; 5xx: never): nothing was taken.
            reply = domain.classify_smtp_code(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            if sending_data:
                # Dropped or timed out during DATA: the server may already have queued it.
                reply = GatewayReply(GatewayOutcome.ambiguous, f"SMTP yanıt vermedi: {exc!r}"[:500])
            else:
                reply = GatewayReply(
                    GatewayOutcome.transient, f"SMTP bağlantısı ileti gitmeden koptu: {exc!r}"[:500]
                )
        else:
            self._idle.append((client, time.monotonic()))
            return GatewayReply(GatewayOutcome.accepted, f"{answer.code} {answer.message}"[:500])
        client.close()
        return reply

    async def _connection(self) -> aiosmtplib.SMTP:
        """An open connection: a pooled one (checked if it sat idle) or a new one."""
        while self._idle:
            client, since = self._idle.pop()
            if not client.is_connected:
                continue
            if time.monotonic() - since < self.idle_check_seconds:
                return client
            try:
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        client = aiosmtplib.SMTP(
            hostname=self.settings.smtp_host,
            port=self.settings.smtp_port,
            timeout=SMTP_TIMEOUT,
            local_hostname=self.local_hostname,
        )
        await client.connect()
        return client

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client, _since in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


def dlr_url(settings: Settings, key: str) -> str:
    """Kannel calls this back for each delivery report, filling in %d (status) and %A (answer)."""
    base = settings.sms_dlr_base_url.rstrip("/")
    if not urlsplit(base).scheme:
        base = "http://" + base
    signature = domain.dlr_signature(
        domain.dlr_secret(settings.sms_dlr_secret or settings.jwt_secret), key
    )
    return (
        f"{base}/api/v1/sms/dlr?key={domain.dlr_key_param(key)}&status=%d&answer=%A&sig={signature}"
    )
