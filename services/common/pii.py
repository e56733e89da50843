"""Personal data at rest and on the bus (KVKK): AES-GCM under a keyring, a keyed blind index,
sealed event fields, and masking.

A keyring is one current key, which encrypts, and old keys, which only decrypt: keys rotate
without downtime (`AK_PII_KEY` becomes one of `AK_PII_OLD_KEYS`, a new `AK_PII_KEY` is set,
every process restarts with both, and `python -m services.common.rotate_keys` re-encrypts what
is stored under the old one). A ciphertext names its key: "v2:<kid>:<base64(nonce+sealed)>",
the key id a short hash of the key. "v1:<base64>" (before key ids) is tried with every key.

Blind indexes (look-ups of equal values) use a key of their own that does not rotate with the
encryption key: `AK_PII_INDEX_KEY`, by default derived from `AK_PII_KEY` exactly as before,
so the indexes already stored stay valid. Once old keys are configured it must be set (to the
key the indexes were made with), or a rotation would quietly stop every look-up matching.

Events seal personal fields (`Sealed`) with a transport keyring derived from the same keys
(label "bus:"): every service of the system opens them, nobody reading the topics without
the key does. Python code sees clear strings; only the JSON on the wire is sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BeforeValidator, PlainSerializer

if TYPE_CHECKING:
    from services.common.settings import Settings

_V1 = b"v1"
_V2 = "v2"
_NONCE = 12
_TAG = 16
KID_LENGTH = 8
BUS_LABEL = b"bus:"

# What a ciphertext of this module looks like; anything else is a clear value.
_CIPHERTEXT = re.compile(r"^(?:v1|v2:([0-9a-f]{8})):([A-Za-z0-9+/]+={0,2})$")


class PiiKeyError(ValueError, InvalidTag):
    """A ciphertext none of the keyring's keys opens (wrong key, unknown key id, damaged).

    Also an `InvalidTag`, what callers caught before key ids existed."""


def key_bytes(value: str) -> bytes:
    """A 32-byte AES key from a setting: the value as base64 if it decodes to 32 bytes, else
    its SHA-256 (so a passphrase works too)."""
    try:
        raw = base64.b64decode(value, validate=True)
        if len(raw) == 32:
            return raw
    except ValueError:
        pass
    return hashlib.sha256(value.encode()).digest()


def key_id(key: bytes) -> str:
    """A short, stable name of a key, written into its ciphertexts (the key is not derivable)."""
    return hashlib.sha256(b"acikkapi-pii-kid:" + key).hexdigest()[:KID_LENGTH]


def index_root(settings: Settings) -> bytes:
    """The key blind indexes derive from: `AK_PII_INDEX_KEY`, else `AK_PII_KEY` (as before)."""
    return key_bytes(settings.pii_index_key or settings.pii_key)


def index_key_of(key: bytes) -> bytes:
    """The blind-index key derived from a PII key, as it always was."""
    return hashlib.sha256(b"blind-index:" + key).digest()


def is_ciphertext(value: str) -> bool:
    """Whether `value` has the shape of a ciphertext of this module (v1 or v2)."""
    match = _CIPHERTEXT.match(value)
    if match is None:
        return False
    try:
        raw = base64.b64decode(match.group(2), validate=True)
    except (ValueError, binascii.Error):
        return False
    return len(raw) >= _NONCE + _TAG


def ciphertext_kid(value: str) -> str | None:
    """The key id a v2 ciphertext names; None for v1 (or for anything else)."""
    match = _CIPHERTEXT.match(value)
    return match.group(1) if match else None


class PiiCipher:
    """Encrypts personal fields with the current key of a keyring; decrypts with any of its
    keys. The keys never leave this object."""

    def __init__(
        self, key: bytes, old_keys: Iterable[bytes] = (), *, index_key: bytes | None = None
    ) -> None:
        keys = [key, *old_keys]
        if any(len(k) != 32 for k in keys):
            raise ValueError("PII key must be 32 bytes")
        self._keys = keys
        self.kid = key_id(key)
        self._aead = AESGCM(key)
        self._by_kid: dict[str, AESGCM] = {}
        for k in keys:
            self._by_kid.setdefault(key_id(k), AESGCM(k))
        self._index_key = index_key if index_key is not None else index_key_of(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> PiiCipher:
        """The keyring `AK_PII_KEY`, `AK_PII_OLD_KEYS`, `AK_PII_INDEX_KEY` describe."""
        old = [key_bytes(v.strip()) for v in settings.pii_old_keys.split(",") if v.strip()]
        if old and not settings.pii_index_key:
            raise ValueError(
                "AK_PII_OLD_KEYS is set but AK_PII_INDEX_KEY is not: set AK_PII_INDEX_KEY to the "
                "key the blind indexes were made with (the first AK_PII_KEY), or look-ups by "
                "TC Kimlik No and phone would stop matching after the rotation"
            )
        return cls(key_bytes(settings.pii_key), old, index_key=index_key_of(index_root(settings)))

    def derive(self, label: bytes) -> PiiCipher:
        """A keyring of keys derived from these for another purpose (e.g. `BUS_LABEL`): the
        same rotation, other key ids, and no way back to the keys at rest."""
        current, *old = (hashlib.sha256(label + k).digest() for k in self._keys)
        return PiiCipher(current, old, index_key=self._index_key)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._by_kid)

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(_NONCE)
        aad = f"{_V2}:{self.kid}".encode()
        sealed = self._aead.encrypt(nonce, plaintext.encode(), aad)
        return f"{_V2}:{self.kid}:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        version, _, rest = token.partition(":")
        if version == _V2:
            kid, _, payload = rest.partition(":")
            aead = self._by_kid.get(kid)
            if aead is None:
                raise PiiKeyError(
                    f"PII ciphertext under the unknown key id {kid!r}: its key is neither "
                    "AK_PII_KEY nor one of AK_PII_OLD_KEYS"
                )
            candidates, aad = [aead], f"{_V2}:{kid}".encode()
        elif version.encode() == _V1:
            candidates, payload, aad = list(self._by_kid.values()), rest, _V1
        else:
            raise PiiKeyError("unknown PII ciphertext version")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (ValueError, binascii.Error):
            raise PiiKeyError("PII ciphertext is not base64") from None
        for aead in candidates:
            try:
                return aead.decrypt(raw[:_NONCE], raw[_NONCE:], aad).decode()
            except InvalidTag:
                continue
        raise PiiKeyError(
            "no key of the PII keyring opens this ciphertext (a wrong AK_PII_KEY, a missing "
            "old key, or a damaged value)"
        )

    def is_stale(self, token: str) -> bool:
        """A ciphertext this keyring opens but that is not under its current key: what the
        rotation re-encrypts (v1, or v2 under an old key id)."""
        if not is_ciphertext(token):
            return False
        kid = ciphertext_kid(token)
        return kid is None or (kid != self.kid and kid in self._by_kid)

    def blind_index(self, value: str) -> str:
        """A keyed hash: equal values can be found without storing them in the clear."""
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).hexdigest()


# --- Sealed event fields -------------------------------------------------------------------------

_transport: PiiCipher | None = None


def configure_transport(cipher: PiiCipher) -> None:
    """Set the keyring events are sealed with in this process (`Service` does, from its
    settings): the transport keyring derived from `cipher`."""
    global _transport
    _transport = cipher.derive(BUS_LABEL)


def transport() -> PiiCipher:
    """The process's transport keyring; from the environment's settings unless configured."""
    global _transport
    if _transport is None:
        from services.common.settings import get_settings

        _transport = PiiCipher.from_settings(get_settings()).derive(BUS_LABEL)
    return _transport


def seal(value: str) -> str:
    return transport().encrypt(value)


def unseal(value: object) -> object:
    """A sealed value opened; a clear one (an event written before fields were sealed) as it is."""
    if isinstance(value, str) and is_ciphertext(value):
        return transport().decrypt(value)
    return value


# A personal string of an event: clear in Python, sealed in JSON (on the wire, in an outbox).
Sealed = Annotated[
    str,
    BeforeValidator(unseal),
    PlainSerializer(seal, return_type=str, when_used="json"),
]


# --- Masking -------------------------------------------------------------------------------------


def mask_tckn(tckn: str) -> str:
    """Show the first two and last two digits only: 12*******90."""
    if len(tckn) < 5:
        return "*" * len(tckn)
    return tckn[:2] + "*" * (len(tckn) - 4) + tckn[-2:]


def mask_phone(phone: str) -> str:
    """+905321234567 -> +90 5** *** ** 67."""
    digits = phone[-10:]
    if len(digits) < 10:
        return "*" * len(phone)
    return f"+90 {digits[0]}** *** ** {digits[-2:]}"
