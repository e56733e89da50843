"""Personal data at rest (KVKK): AES-GCM encryption, a keyed blind index, and masking."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"v1"


class PiiCipher:
    """Encrypts personal fields with a key from settings; the key never leaves this object."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("PII key must be 32 bytes")
        self._aead = AESGCM(key)
        self._index_key = hashlib.sha256(b"blind-index:" + key).digest()

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), _VERSION)
        return _VERSION.decode() + ":" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        version, _, payload = token.partition(":")
        if version.encode() != _VERSION:
            raise ValueError("unknown PII ciphertext version")
        raw = base64.b64decode(payload)
        return self._aead.decrypt(raw[:12], raw[12:], _VERSION).decode()

    def blind_index(self, value: str) -> str:
        """A keyed hash: equal values can be found without storing them in the clear."""
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).hexdigest()


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
