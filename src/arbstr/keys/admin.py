"""`KeyAdmin`: every change to projects and keys, for the admin API and the CLI alike.

It validates (each failure a 400/404/409 naming the field), writes the change and its audit
event in one store transaction, and answers with spend read from the request log (the ledger).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET

from arbstr.errors import ArbstrError, BadRequest, NotFound
from arbstr.keys import answers
from arbstr.keys.crypto import ENV, Cipher
from arbstr.keys.model import (
    AuditEvent,
    KeyRow,
    ProjectRow,
    hash_key,
    new_id,
    new_key,
)
from arbstr.keys.schemas import (
    AuditOut,
    AuditPage,
    KeyCreate,
    KeyOut,
    KeyPage,
    KeyPatch,
    ProjectCreate,
    ProjectOut,
    ProjectPage,
    ProjectPatch,
    RotateBody,
)
from arbstr.secrets import ApiKey
from arbstr.stores.keys.base import AuditQuery, Conflict, KeyStore, Missing, ProviderKeyRow
from arbstr.stores.requestlog.base import RequestLog
from arbstr.stores.requestlog.sql import iso

__all__ = ["Actor", "KeyAdmin", "parse_when"]

MAX_PER_PAGE = 100


@dataclass(frozen=True, slots=True)
class Actor:
    name: str  # admin | cli | key:<id>
    client_ip: str | None = None
    request_id: str | None = None


class Conflicting(ArbstrError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


def parse_when(value: float | str, field: str) -> float:
    """Unix seconds or ISO 8601 (`Z` or an offset; a naive time is UTC)."""
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise BadRequest(f"{field} must be a finite time", param=field)
        return float(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{field} must be unix seconds or ISO 8601", param=field) from None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _page(page: int, per_page: int) -> tuple[int, int]:
    if page < 1:
        raise BadRequest("page must be >= 1", param="page")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(f"per_page must be between 1 and {MAX_PER_PAGE}", param="per_page")
    return (page - 1) * per_page, per_page


def _pages(total: int, per_page: int) -> int:
    return math.ceil(total / per_page) if total else 0


class KeyAdmin:
    def __init__(
        self,
        store: KeyStore,
        log: RequestLog,
        providers: set[str],
        cipher: Cipher | None = None,
        changed: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.store, self.log, self.providers, self.cipher = store, log, providers, cipher
        self._changed = changed

    def _event(self, actor: Actor, action: str, target: str | None) -> AuditEvent:
        return AuditEvent(
            id=new_id(16),
            timestamp=time.time(),
            actor=actor.name,
            action=action,
            target=target,
            client_ip=actor.client_ip,
            request_id=actor.request_id,
        )

    async def record(
        self, actor: Actor, action: str, target: str | None, changes: dict[str, list[Any]]
    ) -> None:
        """An audit row for a change made elsewhere (the config file, through the admin API)."""
        event = self._event(actor, action, target)
        event.changes = changes
        await self.store.add_audit([event])

    async def _done(self) -> None:
        if self._changed is not None:
            await self._changed()

    async def _failed(self, actor: Actor, action: str, target: str | None, why: str) -> None:
        event = self._event(actor, action, target)
        event.outcome, event.changes = "error", {"error": [None, why]}
        await self.store.add_audit([event])

    # ---- projects ------------------------------------------------------------------------
    async def create_project(self, body: ProjectCreate, actor: Actor) -> ProjectOut:
        now = time.time()
        row = ProjectRow(id=new_id(), created_at=now, **msgspec.structs.asdict(body))
        try:
            row = await self.store.insert_project(row, self._event(actor, "project.create", row.id))
        except Conflict as exc:
            await self._failed(actor, "project.create", None, str(exc))
            raise Conflicting(str(exc), param=exc.field) from None
        await self._done()
        return (await answers.projects(self.store, self.log, [row]))[0]

    async def update_project(
        self, project_id: str, patch: ProjectPatch, actor: Actor
    ) -> ProjectOut:
        fields = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not UNSET}
        if not fields:
            raise BadRequest("nothing to change: send at least one field", param="body")
        before = await self.store.get_project(project_id)
        if before is None:
            raise NotFound(f"no project '{project_id}'", param="id")
        if "active" in fields and fields["active"] == before.active:
            state = "active" if before.active else "inactive"
            raise Conflicting(f"project {project_id} is already {state}", param="active")
        try:
            row = await self.store.update_project(
                project_id, fields, self._event(actor, "project.update", project_id)
            )
        except Conflict as exc:
            raise Conflicting(str(exc), param=exc.field) from None
        except Missing as exc:
            raise NotFound(str(exc), param="id") from None
        await self._done()
        return (await answers.projects(self.store, self.log, [row]))[0]

    async def get_project(self, project_id: str) -> ProjectOut:
        row = await self.store.get_project(project_id)
        if row is None:
            raise NotFound(f"no project '{project_id}'", param="id")
        return (await answers.projects(self.store, self.log, [row], provider_keys=True))[0]

    async def list_projects(self, page: int = 1, per_page: int = 20) -> ProjectPage:
        offset, limit = _page(page, per_page)
        rows, total = await self.store.list_projects(offset, limit)
        data = await answers.projects(self.store, self.log, rows)
        return ProjectPage(data, page, per_page, total, _pages(total, per_page))

    # ---- keys ----------------------------------------------------------------------------
    def _expiry(self, expires_at: float | str | None, ttl_s: float | None) -> float | None:
        if expires_at is not None and ttl_s is not None:
            raise BadRequest("send expires_at or ttl_s, not both", param="ttl_s")
        now = time.time()
        if ttl_s is not None:
            return now + ttl_s
        if expires_at is None:
            return None
        when = parse_when(expires_at, "expires_at")
        if when <= now:
            raise BadRequest("expires_at is in the past", param="expires_at")
        return when

    async def create_key(self, body: KeyCreate, actor: Actor) -> KeyOut:
        expires = self._expiry(body.expires_at, body.ttl_s)
        key_id = new_id()
        plaintext = new_key(key_id)
        fields = msgspec.structs.asdict(body)
        fields.pop("ttl_s")
        fields["expires_at"] = expires
        row = KeyRow(id=key_id, key_hash=hash_key(plaintext), created_at=time.time(), **fields)
        try:
            row = await self.store.insert_key(row, self._event(actor, "key.create", key_id))
        except Missing as exc:
            await self._failed(actor, "key.create", None, str(exc))
            raise BadRequest(f"unknown project '{body.project_id}'", param=exc.field) from None
        await self._done()
        out = (await answers.keys(self.log, [row]))[0]
        out.key = plaintext
        return out

    async def _key(self, key_id: str) -> KeyRow:
        row = await self.store.get_key(key_id)
        if row is None:
            raise NotFound(f"no key '{key_id}'", param="id")
        return row

    async def update_key(self, key_id: str, patch: KeyPatch, actor: Actor) -> KeyOut:
        fields = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not UNSET}
        if not fields:
            raise BadRequest("nothing to change: send at least one field", param="body")
        before = await self._key(key_id)
        if "expires_at" in fields:
            fields["expires_at"] = self._expiry(fields["expires_at"], None)
        if "active" in fields and fields["active"] == before.active:
            state = "active" if before.active else "inactive"
            raise Conflicting(f"key {key_id} is already {state}", param="active")
        if fields.get("active") is True:
            fields["revoked_at"] = None
        row = await self.store.update_key(key_id, fields, self._event(actor, "key.update", key_id))
        await self._done()
        return (await answers.keys(self.log, [row]))[0]

    async def revoke_key(self, key_id: str, actor: Actor) -> KeyOut:
        before = await self._key(key_id)
        if not before.active:
            raise Conflicting(f"key {key_id} is already revoked", param="active")
        row = await self.store.update_key(
            key_id,
            {"active": False, "revoked_at": time.time()},
            self._event(actor, "key.revoke", key_id),
        )
        await self._done()
        return (await answers.keys(self.log, [row]))[0]

    async def rotate_key(self, key_id: str, body: RotateBody, actor: Actor) -> KeyOut:
        before = await self._key(key_id)
        if not before.active:
            raise Conflicting(f"key {key_id} is revoked: it cannot be rotated", param="active")
        plaintext = new_key(key_id)
        grace = body.grace_s
        fields: dict[str, Any] = {
            "key_hash": hash_key(plaintext),
            "prev_hash": before.key_hash if grace > 0 else None,
            "prev_valid_until": time.time() + grace if grace > 0 else None,
        }
        event = self._event(actor, "key.rotate", key_id)
        row = await self.store.update_key(key_id, fields, event)
        event.changes = {"grace_s": [None, grace]}
        await self._done()
        out = (await answers.keys(self.log, [row]))[0]
        out.key = plaintext
        return out

    async def get_key(self, key_id: str) -> KeyOut:
        return (await answers.keys(self.log, [await self._key(key_id)]))[0]

    async def list_keys(
        self, project_id: str | None, active: bool | None, page: int = 1, per_page: int = 20
    ) -> KeyPage:
        offset, limit = _page(page, per_page)
        rows, total = await self.store.list_keys(project_id, active, offset, limit)
        return KeyPage(
            await answers.keys(self.log, rows), page, per_page, total, _pages(total, per_page)
        )

    # ---- provider keys -------------------------------------------------------------------
    async def put_provider_key(
        self, project_id: str, provider: str, api_key: str, actor: Actor
    ) -> ProjectOut:
        if provider not in self.providers:
            raise NotFound(f"no provider '{provider}' is configured", param="provider")
        if self.cipher is None:
            raise BadRequest(
                f"storing a provider key needs {ENV} (32 bytes, base64) in the environment",
                param="api_key",
                code="encryption_key_missing",
            )
        if "\r" in api_key or "\n" in api_key:
            raise BadRequest("api_key must not contain a line break", param="api_key")
        row = ProviderKeyRow(
            project_id=project_id,
            provider=provider,
            ciphertext=self.cipher.encrypt(api_key, project_id, provider),
            masked=ApiKey(api_key).masked(),
            updated_at=time.time(),
        )
        try:
            await self.store.put_provider_key(
                row, self._event(actor, "project.provider_key.put", f"{project_id}/{provider}")
            )
        except Missing:
            raise NotFound(f"no project '{project_id}'", param="id") from None
        await self._done()
        return await self.get_project(project_id)

    async def delete_provider_key(self, project_id: str, provider: str, actor: Actor) -> None:
        target = f"{project_id}/{provider}"
        event = self._event(actor, "project.provider_key.delete", target)
        if not await self.store.delete_provider_key(project_id, provider, event):
            raise NotFound(f"project '{project_id}' has no key for '{provider}'", param="provider")
        await self._done()

    # ---- audit ---------------------------------------------------------------------------
    async def audit(self, query: AuditQuery, page: int = 1, per_page: int = 50) -> AuditPage:
        offset, limit = _page(page, per_page)
        q = msgspec.structs.replace(query, offset=offset, limit=limit)
        rows, total = await self.store.list_audit(q)
        data = [
            AuditOut(
                id=e.id,
                timestamp=iso(e.timestamp),
                actor=e.actor,
                action=e.action,
                target=e.target,
                outcome=e.outcome,
                client_ip=e.client_ip,
                request_id=e.request_id,
                changes=e.changes,
                count=e.count,
            )
            for e in rows
        ]
        return AuditPage(data, page, per_page, total, _pages(total, per_page))
