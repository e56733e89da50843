"""Which templates exist, at which version, and what each is for: `templates/registry.json`.

Each (template, channel) has a version, the date it last changed, its purpose and sample
parameters (the preview endpoint renders with them). A fingerprint of its files ties the entry
to their text: a template edited without a new version fails the unit test, and

    python -m services.notification.registry check    lists what is out of step
    python -m services.notification.registry stamp    gives every changed template its next
                                                      version, dated today, and adds new ones

Every message record keeps the version (and fingerprint) it was rendered with.

Purposes, which the sending rules read:
- `informational`: tells the citizen something they need not act on (the receipt). SMS wait
  for the end of quiet hours; e-mail carries an unsubscribe link and honours opt-outs.
- `legal`: part of the application's procedure (the answer, a question the institution asks).
  SMS wait for the end of quiet hours; e-mail cannot be opted out of.
- `service`: to institutions and supervisors (assignments, deadline warnings, digests). No
  quiet hours apply to e-mail, and no opt-out.
- `security`: one-time codes and the like: urgent, never held.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.common.events import NotificationChannel
from services.common.turkish_time import ISTANBUL

TEMPLATES_DIR = Path(__file__).parent / "templates"
REGISTRY_NAME = "registry.json"
EMAIL_PARTS = ("subject", "txt", "html")
_FILE_RE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.(?P<rest>sms|email\.(subject|txt|html))\.j2$")

Purpose = Literal["informational", "legal", "service", "security"]


class TemplateEntry(BaseModel):
    name: str
    channel: NotificationChannel
    version: int = Field(ge=1)
    changed: date
    purpose: Purpose
    description: str
    # Never held for quiet hours, whatever the request says.
    urgent: bool = False
    # sha256 over the template's files, in a fixed order: see `fingerprint`.
    fingerprint: str
    sample: dict[str, Any] = Field(default_factory=dict)

    @property
    def opt_out_allowed(self) -> bool:
        """Only informational e-mail: the law wants the answer delivered (3071, 4982), and an
        institution cannot unsubscribe from its own applications."""
        return self.channel is NotificationChannel.email and self.purpose == "informational"


def template_files(name: str, channel: NotificationChannel) -> list[str]:
    if channel is NotificationChannel.sms:
        return [f"{name}.sms.j2"]
    return [f"{name}.email.{part}.j2" for part in EMAIL_PARTS]


def fingerprint(directory: Path, name: str, channel: NotificationChannel) -> str | None:
    """A short sha256 over the template's files (None when one is missing)."""
    digest = hashlib.sha256()
    for filename in template_files(name, channel):
        path = directory / filename
        if not path.is_file():
            return None
        digest.update(filename.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class TemplateRegistry:
    """The registry file of a templates folder, read once."""

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.directory = directory
        self.path = directory / REGISTRY_NAME
        raw = json.loads(self.path.read_text()) if self.path.exists() else {"templates": []}
        self.entries: dict[tuple[str, NotificationChannel], TemplateEntry] = {}
        for item in raw["templates"]:
            entry = TemplateEntry.model_validate(item)
            self.entries[(entry.name, entry.channel)] = entry

    def get(self, name: str, channel: NotificationChannel) -> TemplateEntry | None:
        return self.entries.get((name, channel))

    def all(self) -> list[TemplateEntry]:
        return sorted(self.entries.values(), key=lambda e: (e.name, e.channel.value))

    def on_disk(self) -> set[tuple[str, NotificationChannel]]:
        """The (template, channel) pairs that have at least one file in the folder."""
        found = set()
        for path in self.directory.glob("*.j2"):
            match = _FILE_RE.match(path.name)
            if match:
                channel = NotificationChannel(match["rest"].partition(".")[0])
                found.add((match["name"], channel))
        return found

    def problems(self) -> list[str]:
        """What is out of step between the files and the registry (empty: all is well)."""
        found: list[str] = []
        for name, channel in sorted(self.on_disk() - set(self.entries)):
            found.append(f"{name}.{channel.value}: not in {REGISTRY_NAME}")
        for (name, channel), entry in sorted(self.entries.items()):
            current = fingerprint(self.directory, name, channel)
            if current is None:
                files = ", ".join(template_files(name, channel))
                found.append(f"{name}.{channel.value}: a file is missing ({files})")
            elif current != entry.fingerprint:
                found.append(
                    f"{name}.{channel.value}: changed since version {entry.version} "
                    "(give it a new version: python -m services.notification.registry stamp)"
                )
        return found

    def stamp(self, today: date) -> list[str]:
        """Give every changed template its next version dated `today`; add unregistered ones
        (version 1, purpose `service` until a person says otherwise). What changed, in words."""
        changes: list[str] = []
        for (name, channel), entry in sorted(self.entries.items()):
            current = fingerprint(self.directory, name, channel)
            if current is not None and current != entry.fingerprint:
                entry.version += 1
                entry.changed = today
                entry.fingerprint = current
                changes.append(f"{name}.{channel.value}: version {entry.version}")
        for name, channel in sorted(self.on_disk() - set(self.entries)):
            current = fingerprint(self.directory, name, channel)
            if current is None:
                continue
            self.entries[(name, channel)] = TemplateEntry(
                name=name,
                channel=channel,
                version=1,
                changed=today,
                purpose="service",
                description="(açıklama ekleyin)",
                fingerprint=current,
            )
            changes.append(f"{name}.{channel.value}: added as version 1 (check its purpose)")
        if changes:
            self.save()
        return changes

    def save(self) -> None:
        body = {"templates": [entry.model_dump(mode="json") for entry in self.all()]}
        self.path.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bildirim şablonlarının sürüm kaydı.")
    parser.add_argument("command", choices=("check", "stamp"))
    args = parser.parse_args(argv)
    registry = TemplateRegistry()
    if args.command == "check":
        problems = registry.problems()
        for line in problems:
            print(line)
        print("şablon kaydı güncel" if not problems else f"{len(problems)} sorun")
        return 1 if problems else 0

    changes = registry.stamp(datetime.now(ISTANBUL).date())
    for line in changes:
        print(line)
    print(f"{len(changes)} değişiklik yazıldı" if changes else "değişiklik yok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
