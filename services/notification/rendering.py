"""Turns a template name and its parameters into the SMS text or the e-mail a person reads.

Templates live in `templates/` as `<name>.sms.j2` or `<name>.email.{subject,txt,html}.j2`.
Undefined parameters are errors (StrictUndefined), HTML is autoescaped, and dates are shown
the Turkish way through the `tarih_saat` filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)

from services.common.events import NotificationChannel
from services.common.turkish_time import short_datetime

TEMPLATES_DIR = Path(__file__).parent / "templates"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class TemplateProblem(ValueError):
    """The request names no template we have, or lacks what the template needs: never sendable."""


@dataclass(frozen=True)
class RenderedSms:
    text: str


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _autoescape(name: str | None) -> bool:
    return bool(name and name.endswith(".html.j2"))


class Renderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.env = Environment(
            loader=FileSystemLoader(directory),
            undefined=StrictUndefined,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["tarih_saat"] = short_datetime

    def render(
        self, template: str, channel: NotificationChannel, params: dict[str, Any]
    ) -> RenderedSms | RenderedEmail:
        if not _NAME_RE.fullmatch(template):
            raise TemplateProblem(f"Bilinmeyen şablon / unknown template: {template!r}")
        if channel is NotificationChannel.sms:
            text = " ".join(self._render(f"{template}.sms.j2", template, channel, params).split())
            return RenderedSms(text)
        subject = self._render(f"{template}.email.subject.j2", template, channel, params)
        return RenderedEmail(
            # A header is one line: newlines in a parameter must not break (or inject) headers.
            subject=" ".join(subject.split()),
            text=self._render(f"{template}.email.txt.j2", template, channel, params).strip() + "\n",
            html=self._render(f"{template}.email.html.j2", template, channel, params),
        )

    def _render(
        self, filename: str, template: str, channel: NotificationChannel, params: dict[str, Any]
    ) -> str:
        try:
            compiled = self.env.get_template(filename)
        except TemplateNotFound as exc:
            raise TemplateProblem(
                f"Bilinmeyen şablon / unknown template: {template!r} ({channel.value} kanalı için)"
            ) from exc
        except TemplateSyntaxError as exc:  # a deployment bug, but the message still cannot go
            raise TemplateProblem(f"Şablon hatalı / broken template {filename}: {exc}") from exc
        try:
            return compiled.render(**params)
        except UndefinedError as exc:
            raise TemplateProblem(
                f"Eksik şablon parametresi / missing template parameter ({template}): {exc.message}"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise TemplateProblem(
                f"Geçersiz şablon parametresi / bad template parameter ({template}): {exc}"
            ) from exc


def build_email(rendered: RenderedEmail, *, sender: str, to: str, message_domain: str) -> Message:
    """A multipart/alternative message (text first, HTML second) with UTF-8 headers.

    A Turkish subject and display name go out as RFC 2047 words, so they survive any relay.
    Built with the compat32 MIME classes: the newer EmailMessage parses every header it is
    given, which cost more CPU than sending the e-mail itself.
    """
    message = MIMEMultipart("alternative")
    name, address = parseaddr(sender)
    message["From"] = formataddr((name, address), charset="utf-8")
    message["To"] = to
    message["Subject"] = Header(rendered.subject, "utf-8", header_name="Subject").encode()
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=message_domain)
    message.attach(MIMEText(rendered.text, "plain", "utf-8"))
    message.attach(MIMEText(rendered.html, "html", "utf-8"))
    return message
