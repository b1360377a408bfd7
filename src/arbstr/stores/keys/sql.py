"""The key store on Piccolo: SQLite (the embedded default, the request log's file) and
PostgreSQL (one schema per deployment or test run). Every change and its audit event commit in
one transaction that also bumps the version row, which serialises writers and lets replicas
reload only the rows whose `rev` is newer than what they hold."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
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
from arbstr.stores.keys.tables import Tables
from arbstr.stores.urls import is_postgres, split_schema, sqlite_path

__all__ = ["SqlKeyStore"]

_JSON_FIELDS = ("allowed_models", "metadata", "changes")
_enc = msgspec.json.Encoder()


def _to_db(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (_enc.encode(v).decode() if k in _JSON_FIELDS else v) for k, v in row.items()}


_EMPTY_JSON: dict[str, Any] = {"": None, "[]": [], "{}": {}}


def _from_db(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON text columns decoded, in place (the common empty values without a parse)."""
    for k in _JSON_FIELDS:
        v = row.get(k)
        if v is None:
            continue
        if v in _EMPTY_JSON:
            empty = _EMPTY_JSON[v]
            if empty is None:
                del row[k]  # the Struct's default
            else:
                row[k] = type(empty)()
        else:
            row[k] = msgspec.json.decode(v)
    return row


def _unique_violation(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return ("unique" in text or "duplicate" in text) and "audit" not in text


class SqlKeyStore:
    def __init__(self, url: str) -> None:
        if is_postgres(url):
            from piccolo.engine.postgres import PostgresEngine

            dsn, self.schema = split_schema(url)
            self.engine: Any = PostgresEngine(config={"dsn": dsn}, log_queries=False)
            self.backend = "postgres"
        else:
            from piccolo.engine.sqlite import SQLiteEngine

            path = sqlite_path(url) if url.startswith("sqlite://") else url
            self.engine = SQLiteEngine(path=path, timeout=30)
            self.schema = None
            self.backend = "sqlite"
        self.t = Tables(self.engine, self.schema)
        self._pool = False
        self._poller: ThreadPoolExecutor | None = None
        self._poll_conn: sqlite3.Connection | None = None

    # ---- plumbing ------------------------------------------------------------------------
    def _tx(self) -> Any:
        if self.backend == "sqlite":
            from piccolo.engine.sqlite import TransactionType

            return self.engine.transaction(transaction_type=TransactionType.immediate)
        return self.engine.transaction()

    async def _start(self) -> None:
        if self.backend == "postgres" and not self._pool:
            await self.engine.start_connection_pool(min_size=1, max_size=4)
            self._pool = True

    async def _raw(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        rows = await self.t.version.raw(sql, *args)
        return [dict(r) for r in rows]

    def _name(self, table: Any) -> str:
        return str(table._meta.get_formatted_tablename())

    async def migrate(self) -> None:
        """Apply the Piccolo migrations not yet applied (recorded in `arbstr_key_migrations`)."""
        from arbstr.stores.keys.migrations import apply

        await self._start()
        await apply(self)

    def _qualify(self, table: str) -> str:
        return f'"{self.schema}"."{table}"' if self.schema else f'"{table}"'

    async def ping(self) -> bool:
        try:
            await self._raw("SELECT 1")
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        if self._poller is not None:
            conn, self._poll_conn = self._poll_conn, None
            if conn is not None:
                self._poller.submit(conn.close).result()
            self._poller.shutdown(wait=True)
            self._poller = None
        if self._pool:
            await self.engine.close_connection_pool()
            self._pool = False

    async def _bump(self) -> int:
        rows = await self._raw(
            f"UPDATE {self._name(self.t.version)} SET version = version + 1 "
            "WHERE id = 1 RETURNING version"
        )
        return int(rows[0]["version"])

    async def version(self) -> int:
        """The change counter every process polls: on SQLite one kept connection and thread
        (Piccolo opens a connection, and a thread, per query: 1.1 ms of CPU a poll)."""
        if self.backend == "sqlite":
            if self._poller is None:
                self._poller = ThreadPoolExecutor(1, thread_name_prefix="arbstr-keys-poll")
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._poller, self._sqlite_version)
        rows = await self.t.version.select(self.t.version.version).where(self.t.version.id == 1)
        return int(rows[0]["version"]) if rows else 0

    def _sqlite_version(self) -> int:
        if self._poll_conn is None:
            self._poll_conn = sqlite3.connect(self.engine.path, timeout=5, check_same_thread=False)
        row = self._poll_conn.execute(
            "SELECT version FROM arbstr_keys_version WHERE id = 1"
        ).fetchone()
        return int(row[0]) if row else 0

    async def changes_since(self, version: int, with_keys: bool = True) -> Changes:
        t = self.t
        async with self._tx():  # one snapshot: the version and the rows agree
            current = await self.version()
            projects = await t.projects.select().where(t.projects.rev > version)
            keys = await t.keys.select().where(t.keys.rev > version) if with_keys else []
            ids = [p["id"] for p in projects]
            pkeys = (
                await t.provider_keys.select().where(t.provider_keys.project_id.is_in(ids))
                if ids
                else []
            )
        return Changes(
            version=current,
            projects=[self._project(r) for r in projects],
            keys=[self._key(r) for r in keys],
            provider_keys=[self._pkey(r) for r in pkeys],
        )

    @staticmethod
    def _project(row: dict[str, Any]) -> ProjectRow:
        return msgspec.convert(_from_db(row), ProjectRow, strict=False)

    @staticmethod
    def _key(row: dict[str, Any]) -> KeyRow:
        return msgspec.convert(_from_db(row), KeyRow, strict=False)

    @staticmethod
    def _pkey(row: dict[str, Any]) -> ProviderKeyRow:
        row = {k: v for k, v in row.items() if k != "id"}
        return msgspec.convert(row, ProviderKeyRow)

    async def _audit(self, event: AuditEvent) -> None:
        row = _to_db(msgspec.structs.asdict(event))
        row["repeats"] = row.pop("count", 1)
        await self.t.audit.insert(self.t.audit(**row))

    # ---- projects ------------------------------------------------------------------------
    async def insert_project(self, row: ProjectRow, audit: AuditEvent) -> ProjectRow:
        t = self.t
        try:
            async with self._tx():
                row = msgspec.structs.replace(row, rev=await self._bump())
                await t.projects.insert(t.projects(**_to_db(msgspec.structs.asdict(row))))
                await self._audit(audit)
        except Exception as exc:
            if _unique_violation(exc):
                raise Conflict("name", f"a project named '{row.name}' exists") from None
            raise
        return row

    async def update_project(
        self, project_id: str, fields: dict[str, Any], audit: AuditEvent
    ) -> ProjectRow:
        t = self.t
        try:
            async with self._tx():
                found = await t.projects.select().where(t.projects.id == project_id)
                if not found:
                    raise Missing("id", f"no project '{project_id}'")
                before = self._project(found[0])
                after = msgspec.structs.replace(
                    before, **fields, updated_at=time.time(), rev=await self._bump()
                )
                values = _to_db({k: getattr(after, k) for k in (*fields, "updated_at", "rev")})
                await t.projects.update(values).where(t.projects.id == project_id)
                audit.changes = diff(before, after)
                await self._audit(audit)
        except Missing:
            raise
        except Exception as exc:
            if _unique_violation(exc):
                raise Conflict("name", f"a project named '{fields.get('name')}' exists") from None
            raise
        return after

    async def get_project(self, project_id: str) -> ProjectRow | None:
        rows = await self.t.projects.select().where(self.t.projects.id == project_id)
        return self._project(rows[0]) if rows else None

    async def list_projects(self, offset: int, limit: int) -> tuple[list[ProjectRow], int]:
        t = self.t.projects
        rows = await t.select().order_by(t.created_at, t.id).offset(offset).limit(limit)
        return [self._project(r) for r in rows], await t.count()

    # ---- keys ----------------------------------------------------------------------------
    async def insert_key(self, row: KeyRow, audit: AuditEvent) -> KeyRow:
        t = self.t
        try:
            async with self._tx():
                if not await t.projects.exists().where(t.projects.id == row.project_id):
                    raise Missing("project_id", f"no project '{row.project_id}'")
                row = msgspec.structs.replace(row, rev=await self._bump())
                await t.keys.insert(t.keys(**_to_db(msgspec.structs.asdict(row))))
                await self._audit(audit)
        except Missing:
            raise
        except Exception as exc:
            if _unique_violation(exc):
                raise Conflict("id", "key id taken") from None
            raise
        return row

    async def update_key(self, key_id: str, fields: dict[str, Any], audit: AuditEvent) -> KeyRow:
        t = self.t
        async with self._tx():
            found = await t.keys.select().where(t.keys.id == key_id)
            if not found:
                raise Missing("id", f"no key '{key_id}'")
            before = self._key(found[0])
            after = msgspec.structs.replace(
                before, **fields, updated_at=time.time(), rev=await self._bump()
            )
            values = _to_db({k: getattr(after, k) for k in (*fields, "updated_at", "rev")})
            await t.keys.update(values).where(t.keys.id == key_id)
            audit.changes = diff(before, after)
            await self._audit(audit)
        return after

    async def keys_page(self, after: str, limit: int) -> list[KeyRow]:
        t = self.t.keys
        rows = await t.select().where(t.id > after).order_by(t.id).limit(limit)
        return [self._key(r) for r in rows]

    async def get_key(self, key_id: str) -> KeyRow | None:
        rows = await self.t.keys.select().where(self.t.keys.id == key_id)
        return self._key(rows[0]) if rows else None

    async def list_keys(
        self, project_id: str | None, active: bool | None, offset: int, limit: int
    ) -> tuple[list[KeyRow], int]:
        t = self.t.keys
        where: list[Any] = []
        if project_id is not None:
            where.append(t.project_id == project_id)
        if active is not None:
            where.append(t.active == active)
        query = t.select().order_by(t.created_at, t.id).offset(offset).limit(limit)
        count = t.count()
        for w in where:
            query, count = query.where(w), count.where(w)
        return [self._key(r) for r in await query], await count

    # ---- provider keys -------------------------------------------------------------------
    async def put_provider_key(self, row: ProviderKeyRow, audit: AuditEvent) -> None:
        t = self.t
        pk = f"{row.project_id}/{row.provider}"
        async with self._tx():
            if not await t.projects.exists().where(t.projects.id == row.project_id):
                raise Missing("project_id", f"no project '{row.project_id}'")
            await t.provider_keys.delete().where(t.provider_keys.id == pk)
            await t.provider_keys.insert(t.provider_keys(id=pk, **msgspec.structs.asdict(row)))
            rev = await self._bump()
            await t.projects.update({t.projects.rev: rev}).where(t.projects.id == row.project_id)
            await self._audit(audit)

    async def delete_provider_key(self, project_id: str, provider: str, audit: AuditEvent) -> bool:
        t = self.t
        pk = f"{project_id}/{provider}"
        async with self._tx():
            if not await t.provider_keys.exists().where(t.provider_keys.id == pk):
                return False
            await t.provider_keys.delete().where(t.provider_keys.id == pk)
            rev = await self._bump()
            await t.projects.update({t.projects.rev: rev}).where(t.projects.id == project_id)
            await self._audit(audit)
        return True

    # ---- audit ---------------------------------------------------------------------------
    async def add_audit(self, events: list[AuditEvent]) -> None:
        if not events:
            return
        async with self._tx():
            for event in events:
                await self._audit(event)

    async def list_audit(self, query: AuditQuery) -> tuple[list[AuditEvent], int]:
        t = self.t.audit
        where: list[Any] = []
        for name in ("action", "actor", "outcome", "target"):
            value = getattr(query, name)
            if value is not None:
                where.append(getattr(t, name) == value)
        if query.since is not None:
            where.append(t.timestamp >= query.since)
        if query.until is not None:
            where.append(t.timestamp < query.until)
        select = t.select().order_by(t.timestamp, ascending=False).order_by(t.id, ascending=False)
        select = select.offset(query.offset).limit(query.limit)
        count = t.count()
        for w in where:
            select, count = select.where(w), count.where(w)
        rows = [
            msgspec.convert({**_from_db(r), "count": r["repeats"]}, AuditEvent, strict=False)
            for r in await select
        ]
        return rows, await count

    # ---- usage counters ------------------------------------------------------------------
    async def _ensure(self, cid: str, seed: float) -> None:
        await self._raw(
            f"INSERT INTO {self._name(self.t.usage)} (id, used) VALUES ({{}}, {{}}) "
            "ON CONFLICT (id) DO NOTHING",
            cid,
            float(seed),
        )

    async def lease(
        self, scope: str, window: float, amount: float, limit: float, seed: float
    ) -> float | None:
        cid = f"{scope}@{window:.0f}"
        table = self._name(self.t.usage)
        sql = (
            f"UPDATE {table} SET used = used + CAST({{}} AS DOUBLE PRECISION) WHERE id = {{}} "
            "AND used + CAST({} AS DOUBLE PRECISION) <= CAST({} AS DOUBLE PRECISION) "
            "RETURNING used"
        )
        args = (float(amount), cid, float(amount), float(limit) + 1e-9)
        rows = await self._raw(sql, *args)
        if not rows:  # over the limit, or no counter yet: create it (seeded) and ask once more
            await self._ensure(cid, seed)
            rows = await self._raw(sql, *args)
            if not rows:
                return None
        return float(rows[0]["used"])

    async def charge(self, scope: str, window: float, amount: float, seed: float) -> float:
        cid = f"{scope}@{window:.0f}"
        await self._ensure(cid, seed)
        rows = await self._raw(
            f"UPDATE {self._name(self.t.usage)} SET used = used + CAST({{}} AS DOUBLE PRECISION) "
            "WHERE id = {} RETURNING used",
            float(amount),
            cid,
        )
        return float(rows[0]["used"])
