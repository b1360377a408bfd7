"""Per-project upstream keys at rest: AES-256-GCM (`cryptography`), the key from
`ARBSTR_ENCRYPTION_KEY` (32 bytes, base64 or hex). The project and provider are the associated
data, so a ciphertext moved to another row does not decrypt."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["ENV", "Cipher", "CipherError"]

ENV = "ARBSTR_ENCRYPTION_KEY"


class CipherError(ValueError):
    """No usable encryption key, or a ciphertext that does not decrypt; never holds a key."""


def _decode_key(text: str) -> bytes:
    text = text.strip()
    for decode in (bytes.fromhex, base64.urlsafe_b64decode, base64.standard_b64decode):
        try:
            raw = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(raw) == 32:
            return raw
    raise CipherError(f"{ENV} must be 32 bytes, base64 or hex (e.g. `openssl rand -base64 32`)")


class Cipher:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Cipher | None:
        value = (env if env is not None else os.environ).get(ENV)
        return cls(_decode_key(value)) if value else None

    def encrypt(self, plaintext: str, project_id: str, provider: str) -> str:
        nonce = os.urandom(12)
        aad = f"{project_id}/{provider}".encode()
        sealed = self._aead.encrypt(nonce, plaintext.encode(), aad)
        return base64.b64encode(nonce + sealed).decode()

    def decrypt(self, ciphertext: str, project_id: str, provider: str) -> str:
        try:
            raw = base64.b64decode(ciphertext)
            aad = f"{project_id}/{provider}".encode()
            return self._aead.decrypt(raw[:12], raw[12:], aad).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise CipherError(
                f"the stored key of {project_id}/{provider} does not decrypt with {ENV}"
            ) from None
