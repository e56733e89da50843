"""The edge to the outside world: Kannel's HTTP sendsms interface and an SMTP server.

Each call answers a GatewayReply instead of raising, so the handler decides about retries. The
line drawn between `transient` and `ambiguous` is what keeps sending at most once: only an error
that proves the request never reached the gateway (connection refused, connect timeout, an
explicit "not now" answer) may be retried.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from services.common.settings import Settings
from services.notification import domain
from services.notification.domain import GatewayOutcome, GatewayReply
from services.notification.metrics import GATEWAY_SECONDS
from services.notification.rendering import RenderedEmail, build_email

# httpx logs each request URL at INFO, and a sendsms URL carries Kannel's password and the
# citizen's phone number.
logging.getLogger("httpx").setLevel(logging.WARNING)

HTTP_TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=5.0, pool=5.0)
SMTP_TIMEOUT = 15.0
# Enough pooled connections for every request a batch has in flight (handlers.SEND_CONCURRENCY).
SEND_CONNECTIONS = 64


class SmsGateway(Protocol):
    async def send_sms(
        self, *, to: str, text: str, encoding: domain.SmsEncoding, dlr_url: str
    ) -> GatewayReply: ...


class EmailGateway(Protocol):
    async def send_email(self, *, to: str, rendered: RenderedEmail) -> GatewayReply: ...


def make_http_client() -> httpx.AsyncClient:
    """One client for the process: its connection pool is reused by every SMS."""
    return httpx.AsyncClient(
        timeout=HTTP_TIMEOUT, limits=httpx.Limits(max_connections=SEND_CONNECTIONS)
    )


class KannelGateway:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    async def send_sms(
        self, *, to: str, text: str, encoding: domain.SmsEncoding, dlr_url: str
    ) -> GatewayReply:
        params = {
            "username": self.settings.sms_username,
            "password": self.settings.sms_password,
            "from": self.settings.sms_sender,
            "to": to,
            "text": text,
            "charset": "UTF-8",
            "coding": str(encoding.kannel_coding),
            "dlr-mask": str(domain.DLR_MASK),
            "dlr-url": dlr_url,
        }
        started = time.perf_counter()
        try:
            response = await self.client.get(self.settings.sms_gateway_url, params=params)
            reply = domain.classify_kannel_reply(response.status_code, response.text)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            reply = GatewayReply(GatewayOutcome.transient, f"Kannel'e ulaşılamadı: {exc!r}"[:500])
        except httpx.HTTPError as exc:
            # The request may have reached Kannel: resending could text the citizen twice.
            reply = GatewayReply(GatewayOutcome.ambiguous, f"Kannel yanıt vermedi: {exc!r}"[:500])
        GATEWAY_SECONDS.labels("sms", reply.outcome.value).observe(time.perf_counter() - started)
        return reply


class SmtpGateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        address = settings.smtp_sender.rpartition("<")[2].rstrip(">").strip()
        self.message_domain = address.rpartition("@")[2] or "acikkapi.local"

    async def send_email(self, *, to: str, rendered: RenderedEmail) -> GatewayReply:
        message = build_email(
            rendered, sender=self.settings.smtp_sender, to=to, message_domain=self.message_domain
        )
        started = time.perf_counter()
        try:
            _refused, answer = await aiosmtplib.send(
                message,
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                timeout=SMTP_TIMEOUT,
            )
            reply = GatewayReply(GatewayOutcome.accepted, f"250 {answer}"[:500])
        except aiosmtplib.SMTPConnectError as exc:
            reply = GatewayReply(GatewayOutcome.transient, f"SMTP'ye ulaşılamadı: {exc}"[:500])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [err.code for err in exc.recipients]
            worst = max(codes) if codes else 550
            reply = domain.classify_smtp_code(worst, "; ".join(str(e) for e in exc.recipients))
        except aiosmtplib.SMTPResponseException as exc:
            reply = domain.classify_smtp_code(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Dropped mid-dialogue or timed out: the server may already have queued it.
            reply = GatewayReply(GatewayOutcome.ambiguous, f"SMTP yanıt vermedi: {exc!r}"[:500])
        GATEWAY_SECONDS.labels("email", reply.outcome.value).observe(time.perf_counter() - started)
        return reply


def dlr_url(settings: Settings, key: str) -> str:
    """Kannel calls this back for each delivery report, filling in %d (status) and %A (answer)."""
    base = settings.sms_dlr_base_url.rstrip("/")
    if not urlsplit(base).scheme:
        base = "http://" + base
    signature = domain.dlr_signature(domain.dlr_secret(settings.jwt_secret), key)
    return (
        f"{base}/api/v1/sms/dlr?key={domain.dlr_key_param(key)}&status=%d&answer=%A&sig={signature}"
    )
