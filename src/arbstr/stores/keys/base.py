"""The `KeyStore` protocol: projects, virtual keys, provider keys, audit events and the usage
counters replicas lease from. One contract suite (tests/contract/test_key_store.py) runs
against every backend."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from arbstr.keys.model import AuditEvent, KeyRow, ProjectRow

__all__ = [
    "AuditQuery",
    "Changes",
    "Conflict",
    "KeyStore",
    "Missing",
    "ProviderKeyRow",
    "diff",
]


class Conflict(Exception):
    """A unique field is taken (`field` names it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Missing(Exception):
    """A row the change refers to does not exist (`field` names the reference)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ProviderKeyRow(msgspec.Struct, kw_only=True):
    project_id: str
    provider: str
    ciphertext: str  # base64(nonce || AES-256-GCM(ciphertext+tag)), never the key itself
    masked: str
    updated_at: float = 0.0


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    action: str | None = None
    actor: str | None = None
    outcome: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None
    offset: int = 0
    limit: int = 50


class Changes(msgspec.Struct, kw_only=True):
    """What changed since a version: the mirror applies these rows over what it holds."""

    version: int
    projects: list[ProjectRow]
    keys: list[KeyRow]
    provider_keys: list[ProviderKeyRow]  # the whole set of each changed project


def diff(before: msgspec.Struct, after: msgspec.Struct) -> dict[str, list[Any]]:
    """`{field: [before, after]}` of what an update changed (secrets are never fields here:
    hashes are left out)."""
    out: dict[str, list[Any]] = {}
    for name in before.__struct_fields__:
        if name in ("updated_at", "rev", "key_hash", "prev_hash"):
            continue
        a, b = getattr(before, name), getattr(after, name)
        if a != b:
            out[name] = [a, b]
    return out


@runtime_checkable
class KeyStore(Protocol):
    """Every change writes its audit event in the same transaction and bumps the version the
    replicas poll; reads of the whole set happen at startup and after a version change."""

    backend: str

    async def migrate(self) -> None: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...

    async def version(self) -> int: ...

    async def changes_since(self, version: int, with_keys: bool = True) -> Changes: ...

    async def keys_page(self, after: str, limit: int) -> list[KeyRow]:
        """Keys ordered by id, those after `after`: a full load in pages (the mirror of
        100,000 keys never holds every row object at once)."""
        ...

    async def insert_project(self, row: ProjectRow, audit: AuditEvent) -> ProjectRow: ...

    async def update_project(
        self, project_id: str, fields: dict[str, Any], audit: AuditEvent
    ) -> ProjectRow: ...

    async def get_project(self, project_id: str) -> ProjectRow | None: ...

    async def list_projects(self, offset: int, limit: int) -> tuple[list[ProjectRow], int]: ...

    async def insert_key(self, row: KeyRow, audit: AuditEvent) -> KeyRow: ...

    async def update_key(
        self, key_id: str, fields: dict[str, Any], audit: AuditEvent
    ) -> KeyRow: ...

    async def get_key(self, key_id: str) -> KeyRow | None: ...

    async def list_keys(
        self, project_id: str | None, active: bool | None, offset: int, limit: int
    ) -> tuple[list[KeyRow], int]: ...

    async def put_provider_key(self, row: ProviderKeyRow, audit: AuditEvent) -> None: ...

    async def delete_provider_key(
        self, project_id: str, provider: str, audit: AuditEvent
    ) -> bool: ...

    async def add_audit(self, events: list[AuditEvent]) -> None: ...

    async def list_audit(self, query: AuditQuery) -> tuple[list[AuditEvent], int]: ...

    async def lease(
        self, scope: str, window: float, amount: float, limit: float, seed: float
    ) -> float | None:
        """Add `amount` to the counter of (scope, window) when it stays <= `limit`; the new
        total, or None when it would not fit. A missing counter starts at `seed` (what the
        request log already holds for that window)."""
        ...

    async def charge(self, scope: str, window: float, amount: float, seed: float) -> float:
        """Add `amount` (a debt, or a negative give-back) unconditionally; the new total."""
        ...
