"""The in-memory `KeyStore` (tests, `memory://` databases): same contract, nothing kept."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from arbstr.keys.model import AuditEvent, KeyRow, ProjectRow
from arbstr.stores.keys.base import (
    AuditQuery,
    Changes,
    Conflict,
    Missing,
    ProviderKeyRow,
    diff,
)

__all__ = ["MemoryKeyStore", "audit_matches"]


def audit_matches(e: AuditEvent, q: AuditQuery) -> bool:
    return (
        (q.action is None or e.action == q.action)
        and (q.actor is None or e.actor == q.actor)
        and (q.outcome is None or e.outcome == q.outcome)
        and (q.target is None or e.target == q.target)
        and (q.since is None or e.timestamp >= q.since)
        and (q.until is None or e.timestamp < q.until)
    )


class MemoryKeyStore:
    backend = "memory"

    def __init__(self) -> None:
        self._version = 0
        self.projects: dict[str, ProjectRow] = {}
        self.keys: dict[str, KeyRow] = {}
        self.provider_keys: dict[tuple[str, str], ProviderKeyRow] = {}
        self.audit: list[AuditEvent] = []
        self.counters: dict[tuple[str, float], float] = {}

    async def migrate(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None

    async def version(self) -> int:
        return self._version

    def _bump(self) -> int:
        self._version += 1
        return self._version

    async def changes_since(self, version: int, with_keys: bool = True) -> Changes:
        """Rows changed after `version`; the provider keys are each changed project's whole
        set (a project's `rev` moves when one of its provider keys does)."""
        projects = [p for p in self.projects.values() if p.rev > version]
        ids = {p.id for p in projects}
        return Changes(
            version=self._version,
            projects=projects,
            keys=[k for k in self.keys.values() if k.rev > version] if with_keys else [],
            provider_keys=[r for (p, _), r in self.provider_keys.items() if p in ids],
        )

    async def insert_project(self, row: ProjectRow, audit: AuditEvent) -> ProjectRow:
        if any(p.name == row.name for p in self.projects.values()):
            raise Conflict("name", f"a project named '{row.name}' exists")
        row = msgspec.structs.replace(row, rev=self._bump())
        self.projects[row.id] = row
        self.audit.append(audit)
        return row

    async def update_project(
        self, project_id: str, fields: dict[str, Any], audit: AuditEvent
    ) -> ProjectRow:
        before = self.projects.get(project_id)
        if before is None:
            raise Missing("id", f"no project '{project_id}'")
        if "name" in fields and any(
            p.name == fields["name"] and p.id != project_id for p in self.projects.values()
        ):
            raise Conflict("name", f"a project named '{fields['name']}' exists")
        after = msgspec.structs.replace(before, **fields, updated_at=time.time(), rev=self._bump())
        self.projects[project_id] = after
        audit.changes = diff(before, after)
        self.audit.append(audit)
        return after

    async def get_project(self, project_id: str) -> ProjectRow | None:
        return self.projects.get(project_id)

    async def list_projects(self, offset: int, limit: int) -> tuple[list[ProjectRow], int]:
        rows = sorted(self.projects.values(), key=lambda p: (p.created_at, p.id))
        return rows[offset : offset + limit], len(rows)

    async def insert_key(self, row: KeyRow, audit: AuditEvent) -> KeyRow:
        if row.project_id not in self.projects:
            raise Missing("project_id", f"no project '{row.project_id}'")
        if row.id in self.keys:
            raise Conflict("id", "key id taken")
        row = msgspec.structs.replace(row, rev=self._bump())
        self.keys[row.id] = row
        self.audit.append(audit)
        return row

    async def update_key(self, key_id: str, fields: dict[str, Any], audit: AuditEvent) -> KeyRow:
        before = self.keys.get(key_id)
        if before is None:
            raise Missing("id", f"no key '{key_id}'")
        after = msgspec.structs.replace(before, **fields, updated_at=time.time(), rev=self._bump())
        self.keys[key_id] = after
        audit.changes = diff(before, after)
        self.audit.append(audit)
        return after

    async def get_key(self, key_id: str) -> KeyRow | None:
        return self.keys.get(key_id)

    async def keys_page(self, after: str, limit: int) -> list[KeyRow]:
        return sorted((k for k in self.keys.values() if k.id > after), key=lambda k: k.id)[:limit]

    async def list_keys(
        self, project_id: str | None, active: bool | None, offset: int, limit: int
    ) -> tuple[list[KeyRow], int]:
        rows = [
            k
            for k in sorted(self.keys.values(), key=lambda k: (k.created_at, k.id))
            if (project_id is None or k.project_id == project_id)
            and (active is None or k.active == active)
        ]
        return rows[offset : offset + limit], len(rows)

    async def put_provider_key(self, row: ProviderKeyRow, audit: AuditEvent) -> None:
        if row.project_id not in self.projects:
            raise Missing("project_id", f"no project '{row.project_id}'")
        self.provider_keys[(row.project_id, row.provider)] = row
        project = self.projects[row.project_id]
        self.projects[row.project_id] = msgspec.structs.replace(project, rev=self._bump())
        self.audit.append(audit)

    async def delete_provider_key(self, project_id: str, provider: str, audit: AuditEvent) -> bool:
        if self.provider_keys.pop((project_id, provider), None) is None:
            return False
        project = self.projects[project_id]
        self.projects[project_id] = msgspec.structs.replace(project, rev=self._bump())
        self.audit.append(audit)
        return True

    async def add_audit(self, events: list[AuditEvent]) -> None:
        self.audit.extend(events)

    async def list_audit(self, query: AuditQuery) -> tuple[list[AuditEvent], int]:
        rows = [e for e in reversed(self.audit) if audit_matches(e, query)]
        return rows[query.offset : query.offset + query.limit], len(rows)

    async def lease(
        self, scope: str, window: float, amount: float, limit: float, seed: float
    ) -> float | None:
        used = self.counters.get((scope, window), seed)
        if used + amount > limit + 1e-9:
            self.counters[(scope, window)] = used
            return None
        self.counters[(scope, window)] = used + amount
        return used + amount

    async def charge(self, scope: str, window: float, amount: float, seed: float) -> float:
        used = self.counters.get((scope, window), seed) + amount
        self.counters[(scope, window)] = used
        return used
