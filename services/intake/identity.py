"""Whether a TC Kimlik No, the names and the mother's maiden-surname letters belong together.

The rules (domain.py) only know that a TC Kimlik No is well formed; only the population
registry (Nüfus ve Vatandaşlık İşleri, its Kimlik Paylaşım Sistemi) knows whose it is. Intake
asks an `IdentityVerifier` before registering an application a citizen typed in themselves:
- `RegistryFileVerifier` reads a registry file: locally the demo registry bundled with intake
  (`data/demo_registry.json`, synthetic people made by `deploy/local/demo_registry.py`);
- `RegistryServiceVerifier` asks the registry's service over HTTP (`AK_IDENTITY_SERVICE_URL`,
  the institution's KPS gateway), with the same question and the same answer.

The answer is yes or no, never which field was wrong: telling that would let anyone find a
stranger's names from their number one field at a time. e-Devlet applicants are not asked
(the gateway proved who they are). Nothing here logs what it is asked.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import httpx

from services.common.settings import Settings
from services.common.turkish import turkish_upper

MISMATCH_MESSAGE = (
    "Kimlik bilgileriniz doğrulanamadı: TC Kimlik No, ad, soyad ve anne kızlık soyadının ilk "
    "ve son harfi nüfus kayıtlarıyla birlikte tutmuyor. Lütfen kimlik kartınızdaki bilgileri "
    "kontrol edin."
)
UNAVAILABLE_MESSAGE = (
    "Kimlik bilgileri şu anda nüfus kayıtlarından doğrulanamıyor. Başvurunuz kaydedilmedi; "
    "lütfen biraz sonra tekrar deneyin."
)
_CIRCUMFLEX = str.maketrans("ÂÎÛ", "AIU")


@dataclass(frozen=True)
class IdentityClaim:
    """What the applicant says about themselves, already through the rules (normalised)."""

    tckn: str
    first_name: str
    last_name: str
    mother_maiden_initials: str


class IdentityUnavailable(Exception):
    """The registry could not be asked; nothing can be concluded."""


class IdentityVerifier(Protocol):
    async def verify(self, claim: IdentityClaim) -> bool:
        """True if the registry holds exactly this person; IdentityUnavailable if it cannot
        be asked."""
        ...


def comparable(name: str) -> str:
    """A name as the registry compares it: NFC, Turkish upper case, circumflexes dropped
    (the registry writes "NAZIM" for "Nâzım"), single spaces."""
    upper = turkish_upper(" ".join(unicodedata.normalize("NFC", name).split()))
    return upper.translate(_CIRCUMFLEX)


def _key(claim: IdentityClaim) -> tuple[str, str, str, str]:
    return (
        claim.tckn,
        comparable(claim.first_name),
        comparable(claim.last_name),
        comparable(claim.mother_maiden_initials),
    )


class AcceptAll:
    """No check (`AK_IDENTITY_VERIFIER=off`): for a deployment that checks identity before
    intake, and for tests of everything else."""

    async def verify(self, claim: IdentityClaim) -> bool:
        return True


class RegistryFileVerifier:
    """A registry held in a JSON file: {"persons": [{tckn, first_name, last_name,
    mother_maiden_initials}, ...]}. Read once, at start."""

    def __init__(self, persons: list[dict[str, Any]]) -> None:
        self._people = {
            _key(
                IdentityClaim(
                    str(p["tckn"]),
                    str(p["first_name"]),
                    str(p["last_name"]),
                    str(p["mother_maiden_initials"]),
                )
            )
            for p in persons
        }

    @classmethod
    def from_file(cls, path: str) -> RegistryFileVerifier:
        if path:
            return cls(json.loads(Path(path).read_text("utf-8"))["persons"])
        return cls(demo_persons())

    def __len__(self) -> int:
        return len(self._people)

    async def verify(self, claim: IdentityClaim) -> bool:
        return _key(claim) in self._people


DEMO_REGISTRY = "data/demo_registry.json"


def demo_persons() -> list[dict[str, str]]:
    """The people of the bundled demo registry, each with a mobile number of their own (the
    demo data, the tests and the benchmarks apply as them)."""
    text = resources.files("services.intake").joinpath(DEMO_REGISTRY).read_text("utf-8")
    persons: list[dict[str, str]] = json.loads(text)["persons"]
    return persons


class RegistryServiceVerifier:
    """The population registry's identity check over HTTP: POST the claim as JSON, answer
    {"match": true|false}. Any other answer, or none within the timeout, is IdentityUnavailable
    (the application is refused with 503, never registered unchecked)."""

    TIMEOUT = 5.0

    def __init__(self, url: str, token: str, client: httpx.AsyncClient | None = None) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = client or httpx.AsyncClient(timeout=self.TIMEOUT)

    async def verify(self, claim: IdentityClaim) -> bool:
        body = {
            "tckn": claim.tckn,
            "first_name": comparable(claim.first_name),
            "last_name": comparable(claim.last_name),
            "mother_maiden_initials": comparable(claim.mother_maiden_initials),
        }
        try:
            answer = await self._client.post(self._url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise IdentityUnavailable(type(exc).__name__) from None
        if answer.status_code != 200:
            raise IdentityUnavailable(f"HTTP {answer.status_code}")
        try:
            match = answer.json()["match"]
        except (ValueError, KeyError, TypeError):
            raise IdentityUnavailable("unreadable answer") from None
        if not isinstance(match, bool):
            raise IdentityUnavailable("unreadable answer")
        return match

    async def aclose(self) -> None:
        await self._client.aclose()


def identity_verifier(settings: Settings) -> IdentityVerifier:
    """The verifier the settings name."""
    kind = settings.identity_verifier
    if kind == "registry_file":
        return RegistryFileVerifier.from_file(settings.identity_registry_file)
    if kind == "kps":
        if not settings.identity_service_url:
            raise ValueError("AK_IDENTITY_VERIFIER=kps needs AK_IDENTITY_SERVICE_URL")
        return RegistryServiceVerifier(
            settings.identity_service_url, settings.identity_service_token
        )
    if kind == "off":
        return AcceptAll()
    raise ValueError(f"unknown AK_IDENTITY_VERIFIER: {kind!r} (registry_file, kps or off)")


def _show_demo_people(count: int = 3) -> None:
    """`python -m services.intake.identity --demo`: people to apply as on a local stack."""
    for person in demo_persons()[:count]:
        print(
            f"TC Kimlik No {person['tckn']} · {person['first_name']} {person['last_name']} · "
            f"anne kızlık soyadı harfleri {person['mother_maiden_initials']} · "
            f"cep {person['phone']}"
        )


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--demo"]:
        raise SystemExit("kullanım: python -m services.intake.identity --demo")
    _show_demo_people()
