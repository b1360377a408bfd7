"""`KeyRing`: the per-process mirror of every project and key. Authentication reads only this
(a SHA-256 and two dict lookups): an unknown key never costs a database round trip."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from arbstr.errors import AuthRequired
from arbstr.keys.model import KEY_PREFIX, KeyEntry, ProjectRow, key_digest, parse_key
from arbstr.secrets import ApiKey
from arbstr.stores.keys.base import Changes, ProviderKeyRow

__all__ = ["KeyRefused", "KeyRing"]

log = logging.getLogger(__name__)


class KeyRefused(AuthRequired):
    """An authentication refusal that may know which key it was (inactive, expired)."""

    def __init__(
        self, message: str, code: str, key_id: str | None = None, status: int = 401
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.key_id = key_id
        self.project_id: str | None = None


class KeyRing:
    """Projects and keys by id, keys by hash (the current secret and, during a rotation's
    grace, the previous one), and each project's decrypted upstream keys."""

    def __init__(self, decrypt: Callable[[ProviderKeyRow], ApiKey | None] | None = None) -> None:
        self.version = 0
        self.projects: dict[str, ProjectRow] = {}
        self.keys: dict[str, KeyEntry] = {}
        self.by_hash: dict[bytes, KeyEntry] = {}  # the current digest and, in a grace, the old
        self.provider_keys: dict[str, dict[str, ApiKey]] = {}
        self._decrypt = decrypt

    def apply(self, changes: Changes) -> None:
        """Lay changed rows over what is held (a full load is the changes since version 0)."""
        for project in changes.projects:
            self.projects[project.id] = project
            self.provider_keys.pop(project.id, None)
        for row in changes.provider_keys:
            if self._decrypt is None:
                continue
            key = self._decrypt(row)
            if key is not None:
                self.provider_keys.setdefault(row.project_id, {})[row.provider] = key
        for key_row in changes.keys:
            entry = KeyEntry.of(key_row)
            old = self.keys.get(entry.id)
            if old is not None:
                self.by_hash.pop(old.digest, None)
                if old.prev_digest:
                    self.by_hash.pop(old.prev_digest, None)
            self.keys[entry.id] = entry
            self.by_hash[entry.digest] = entry
            if entry.prev_digest:
                self.by_hash[entry.prev_digest] = entry
        self.version = max(self.version, changes.version)

    def identify(self, authorization: bytes | None, now: float) -> tuple[KeyEntry, ProjectRow]:
        """The key and project a request's `Authorization` names; raises the refusal."""
        if authorization is None:
            raise KeyRefused(
                "missing API key: send 'Authorization: Bearer sk-arb-...'", "invalid_api_key"
            )
        text = authorization.decode("latin-1")
        scheme, _, token = text.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise KeyRefused(
                "malformed Authorization header: expected 'Bearer sk-arb-...'", "invalid_api_key"
            )
        digest = key_digest(token) if token.startswith(KEY_PREFIX) else b""
        key = self.by_hash.get(digest) if digest else None
        if key is None:  # the format is checked only to say why (a hit is well formed)
            if parse_key(token) is None:
                raise KeyRefused("invalid API key: not an arbstr virtual key", "invalid_api_key")
            raise KeyRefused("invalid API key", "invalid_api_key")
        if not hmac.compare_digest(digest, key.digest) and (key.prev_valid_until or 0) <= now:
            raise KeyRefused("invalid API key: this secret was rotated", "invalid_api_key", key.id)
        if not key.active:
            raise KeyRefused(f"key {key.id} is revoked or inactive", "key_inactive", key.id)
        if key.expires_at is not None and key.expires_at <= now:
            raise KeyRefused(f"key {key.id} has expired", "key_expired", key.id)
        project = self.projects.get(key.project_id)
        if project is None or not project.active:
            refusal = KeyRefused(
                f"project of key {key.id} is inactive", "project_inactive", key.id, 403
            )
            refusal.project_id = key.project_id
            raise refusal
        return key, project

    def upstream_key(self, project_id: str, provider: str) -> ApiKey | None:
        keys = self.provider_keys.get(project_id)
        return keys.get(provider) if keys else None
