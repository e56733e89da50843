"""The gateway adapters against real servers: what Kannel and SMTP answer becomes accepted,
rejected (never retried), transient (retried) or ambiguous (never resent)."""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from services.common.settings import Settings
from services.notification.domain import GatewayOutcome, SmsEncoding
from services.notification.gateways import KannelGateway, SmtpGateway
from services.notification.rendering import RenderedEmail

pytestmark = pytest.mark.integration

if not os.environ.get("AK_DATA_DIR"):
    # Kannel and the SMTP sink come with the local stack, which exports AK_DATA_DIR.
    pytest.skip("needs the local stack's Kannel and SMTP sink", allow_module_level=True)

MAIL = RenderedEmail(subject="Açık Kapı: deneme ışığı", text="gövde\n", html="<p>gövde</p>")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def send(gateway: KannelGateway, to: str = "905321234567"):
    try:
        return await gateway.send_sms(
            to=to,
            text="Açık Kapı deneme",
            encoding=SmsEncoding.ucs2,
            dlr_url="http://127.0.0.1:9/x",
        )
    finally:
        await gateway.aclose()


async def test_kannel_accepts(settings: Settings):
    reply = await send(KannelGateway(settings))
    assert reply.outcome is GatewayOutcome.accepted, reply.detail
    assert "Accepted for delivery" in reply.detail


async def test_kannel_rejections_are_permanent(settings: Settings):
    wrong_password = settings.model_copy(update={"sms_password": "yanlış"})
    reply = await send(KannelGateway(wrong_password))
    assert reply.outcome is GatewayOutcome.rejected and reply.detail.startswith("403")
    reply = await send(KannelGateway(settings), to="abc")
    assert reply.outcome is GatewayOutcome.rejected and reply.detail.startswith("400")


async def test_kannel_unreachable_is_transient(settings: Settings):
    closed = f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms"
    reply = await send(KannelGateway(settings.model_copy(update={"sms_gateway_url": closed})))
    assert reply.outcome is GatewayOutcome.transient


async def test_kannel_silent_after_the_request_is_ambiguous(settings: Settings):
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # takes the request, never answers
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = settings.model_copy(update={"sms_gateway_url": f"http://127.0.0.1:{port}/sendsms"})
    try:
        timeout = aiohttp.ClientTimeout(connect=2.0, sock_read=0.5)
        reply = await send(KannelGateway(silent, timeout=timeout))
    finally:
        server.close()
    assert reply.outcome is GatewayOutcome.ambiguous


async def test_smtp_accepts(settings: Settings):
    reply = await SmtpGateway(settings).send_email(to="kurum@denizli.gov.tr", rendered=MAIL)
    assert reply.outcome is GatewayOutcome.accepted and reply.detail.startswith("250 ")


async def test_smtp_unreachable_is_transient(settings: Settings):
    closed = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": free_port()})
    reply = await SmtpGateway(closed).send_email(to="kurum@denizli.gov.tr", rendered=MAIL)
    assert reply.outcome is GatewayOutcome.transient


class Counting:
    """An SMTP server that counts the sessions (EHLO) and messages it gets."""

    def __init__(self) -> None:
        self.sessions = 0
        self.messages = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages += 1
        return "250 OK"


async def test_smtp_reuses_its_connections_and_replaces_a_dropped_one(settings: Settings):
    port = free_port()
    smtp = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    gateway = SmtpGateway(smtp, connections=2, idle_check_seconds=0.0)
    first = Counting()
    controller = Controller(first, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        replies = [
            await gateway.send_email(to="kurum@denizli.gov.tr", rendered=MAIL) for _ in range(5)
        ]
    finally:
        controller.stop()  # drops the pooled connection
    assert [r.outcome for r in replies] == [GatewayOutcome.accepted] * 5
    assert (first.sessions, first.messages) == (1, 5)

    second = Counting()
    controller = Controller(second, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        reply = await gateway.send_email(to="kurum@denizli.gov.tr", rendered=MAIL)
        await gateway.aclose()
    finally:
        controller.stop()
    assert reply.outcome is GatewayOutcome.accepted  # not "ambiguous": NOOP found it dead
    assert (second.sessions, second.messages) == (1, 1)


class Refusing:
    """An SMTP server that refuses recipients with the code it is given."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        return self.answer


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ("550 5.1.1 Böyle bir kullanıcı yok", GatewayOutcome.rejected),
        ("451 4.3.0 Try again later", GatewayOutcome.transient),
    ],
)
async def test_smtp_codes(settings: Settings, answer: str, outcome: GatewayOutcome):
    port = free_port()
    controller = Controller(Refusing(answer), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
        reply = await SmtpGateway(smtp).send_email(to="kurum@denizli.gov.tr", rendered=MAIL)
    finally:
        controller.stop()
    assert reply.outcome is outcome
    assert reply.detail.startswith(answer[:3])


async def test_smtp_connection_lost_before_data_is_transient_not_ambiguous(settings: Settings):
    """A pooled connection the server dropped (a restart) fails at MAIL, before anything of
    the message left: it may be sent again. Only a break during DATA is ambiguous."""
    port = free_port()
    smtp = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    gateway = SmtpGateway(smtp, connections=1, idle_check_seconds=3600.0)  # no NOOP first
    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        first = await gateway.send_email(to="kurum@denizli.gov.tr", rendered=MAIL)
    finally:
        controller.stop()  # the pooled connection is now dead
    second = await gateway.send_email(to="kurum@denizli.gov.tr", rendered=MAIL)
    await gateway.aclose()
    assert first.outcome is GatewayOutcome.accepted
    assert second.outcome is GatewayOutcome.transient, second.detail
    assert "koptu" in second.detail or "ulaşılamadı" in second.detail
