"""Turns a template name and its parameters into the SMS text or the e-mail a person reads.

Templates live in `templates/` as `<name>.sms.j2` or `<name>.email.{subject,txt,html}.j2`,
each (name, channel) versioned in `templates/registry.json` (registry.py). Undefined parameters
are errors (StrictUndefined), HTML is autoescaped, dates are shown the Turkish way through the
`tarih_saat` filter, and `satirlar` keeps a text's line breaks in HTML.
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
from markupsafe import Markup, escape

from services.common.events import NotificationChannel
from services.common.turkish_time import short_datetime
from services.notification.registry import TEMPLATES_DIR, TemplateEntry, TemplateRegistry

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
    # An informational e-mail's signed unsubscribe link (List-Unsubscribe, RFC 2369 / 8058).
    unsubscribe_url: str | None = None


Rendered = RenderedSms | RenderedEmail


def content_of(rendered: Rendered) -> dict[str, str]:
    """What a message record keeps (sealed) to send later exactly what was rendered now."""
    if isinstance(rendered, RenderedSms):
        return {"text": rendered.text}
    content = {"subject": rendered.subject, "text": rendered.text, "html": rendered.html}
    if rendered.unsubscribe_url:
        content["unsubscribe_url"] = rendered.unsubscribe_url
    return content


def rendered_from(channel: NotificationChannel, content: dict[str, str]) -> Rendered:
    if channel is NotificationChannel.sms:
        return RenderedSms(content["text"])
    return RenderedEmail(
        content["subject"], content["text"], content["html"], content.get("unsubscribe_url")
    )


def _lines(value: object) -> Markup:
    """A plain text for HTML: escaped, its line breaks kept as <br>."""
    return Markup("<br>\n").join(escape(line) for line in str(value).splitlines())


def _autoescape(name: str | None) -> bool:
    return bool(name and name.endswith(".html.j2"))


class Renderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.registry = TemplateRegistry(directory)
        self.env = Environment(
            loader=FileSystemLoader(directory),
            undefined=StrictUndefined,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["tarih_saat"] = short_datetime
        self.env.filters["satirlar"] = _lines

    def entry(self, template: str, channel: NotificationChannel) -> TemplateEntry | None:
        """The template's registry entry (version, purpose); None for one not registered, which
        still renders (the unit test keeps the registry complete)."""
        return self.registry.get(template, channel)

    def render(
        self,
        template: str,
        channel: NotificationChannel,
        params: dict[str, Any],
        *,
        unsubscribe_url: str | None = None,
    ) -> Rendered:
        """The text (SMS) or the e-mail of a template. `unsubscribe_url` is given to the
        template as a parameter of that name and set as the e-mail's List-Unsubscribe."""
        if not _NAME_RE.fullmatch(template):
            raise TemplateProblem(f"Bilinmeyen şablon / unknown template: {template!r}")
        if unsubscribe_url is not None:
            params = {**params, "unsubscribe_url": unsubscribe_url}
        if channel is NotificationChannel.sms:
            text = " ".join(self._render(f"{template}.sms.j2", template, channel, params).split())
            return RenderedSms(text)
        subject = self._render(f"{template}.email.subject.j2", template, channel, params)
        return RenderedEmail(
            # A header is one line: newlines in a parameter must not break (or inject) headers.
            subject=" ".join(subject.split()),
            text=self._render(f"{template}.email.txt.j2", template, channel, params).strip() + "\n",
            html=self._render(f"{template}.email.html.j2", template, channel, params),
            unsubscribe_url=unsubscribe_url,
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
    if rendered.unsubscribe_url:
        # One-click unsubscribe (RFC 8058): the mail client POSTs to the link itself.
        message["List-Unsubscribe"] = f"<{rendered.unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.attach(MIMEText(rendered.text, "plain", "utf-8"))
    message.attach(MIMEText(rendered.html, "html", "utf-8"))
    return message
