"""`StateStore`: circuit and cooldown state shared by replicas; memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from arbstr.stores.pg import DDL_LOCK, create_schema
from arbstr.stores.urls import is_postgres, split_schema, sqlite_path

__all__ = [
    "MemoryStateStore",
    "PostgresStateStore",
    "SqliteStateStore",
    "StateRow",
    "StateStore",
    "open_state_store",
]


class StateRow(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's circuit (`kind="circuit"`, model "") or one cooldown (`kind="cooldown"`)."""

    provider: str
    model: str = ""
    kind: str
    state: str
    until: float | None = None  # wall-clock seconds
    failure_count: int = 0
    reason: str | None = None
    origin: str = ""  # the replica that wrote it
    updated: float = 0.0  # wall-clock seconds, set by the store


@runtime_checkable
class StateStore(Protocol):
    """Narrow on purpose: upsert rows, read what changed. Never called on the request path."""

    async def setup(self) -> None: ...

    async def publish(self, rows: Sequence[StateRow]) -> None: ...

    async def changes_since(self, since: float) -> list[StateRow]: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...


def _stamp(rows: Sequence[StateRow]) -> list[StateRow]:
    now = time.time()
    return [msgspec.structs.replace(r, updated=now) for r in rows]


class MemoryStateStore:
    """In-process store: shares state between gateways of one process (tests)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], StateRow] = {}

    async def setup(self) -> None:
        return None

    async def publish(self, rows: Sequence[StateRow]) -> None:
        for row in _stamp(rows):
            self.rows[(row.provider, row.model, row.kind)] = row

    async def changes_since(self, since: float) -> list[StateRow]:
        return [r for r in self.rows.values() if r.updated > since]

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


_COLUMNS = (
    "provider",
    "model",
    "kind",
    "state",
    "until",
    "failure_count",
    "reason",
    "origin",
    "updated",
)
# constant text (no input reaches it): the column list is fixed above
_SELECT = "SELECT " + ", ".join(_COLUMNS) + " FROM provider_state WHERE updated > "  # noqa: S608


class SqliteStateStore:
    """One SQLite file shared by the workers of one host; every call runs in a thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def _db(self) -> Any:
        import sqlite_utils

        db = sqlite_utils.Database(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _setup(self) -> None:
        db = self._db()
        db["provider_state"].create(
            {
                "provider": str,
                "model": str,
                "kind": str,
                "state": str,
                "until": float,
                "failure_count": int,
                "reason": str,
                "origin": str,
                "updated": float,
            },
            pk=("provider", "model", "kind"),
            if_not_exists=True,
        )
        db["provider_state"].create_index(["updated"], if_not_exists=True)
        db.close()

    async def setup(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._setup)

    def _publish(self, rows: list[StateRow]) -> None:
        db = self._db()
        with db.conn:
            db["provider_state"].upsert_all(
                [msgspec.to_builtins(r) for r in rows], pk=("provider", "model", "kind")
            )
        db.close()

    async def publish(self, rows: Sequence[StateRow]) -> None:
        if rows:
            await asyncio.to_thread(self._publish, _stamp(rows))

    def _changes(self, since: float) -> list[StateRow]:
        db = self._db()
        cur = db.execute(_SELECT + "?", [since])
        rows = [StateRow(**dict(zip(_COLUMNS, r, strict=True))) for r in cur.fetchall()]
        db.close()
        return rows

    async def changes_since(self, since: float) -> list[StateRow]:
        return await asyncio.to_thread(self._changes, since)

    async def ping(self) -> bool:
        try:
            await asyncio.to_thread(self._changes, time.time() + 1)
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        return None


class PostgresStateStore:
    """PostgreSQL shared by replicas; an asyncpg pool, atomic upserts."""

    def __init__(self, dsn: str, schema: str | None = None) -> None:
        self.dsn = dsn
        self.schema = schema
        self._pool: Any = None

    async def setup(self) -> None:
        import asyncpg

        settings = {"search_path": self.schema} if self.schema else None
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=2, server_settings=settings
            )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
            await create_schema(conn, self.schema)
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS provider_state (
                    provider TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
                    state TEXT NOT NULL, until DOUBLE PRECISION, failure_count INTEGER NOT NULL,
                    reason TEXT, origin TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL,
                    PRIMARY KEY (provider, model, kind))"""
            )
            await conn.execute(
                "CREATE INDEX IF NOT EXISTS provider_state_updated ON provider_state (updated)"
            )

    async def publish(self, rows: Sequence[StateRow]) -> None:
        if not rows:
            return
        stamped = _stamp(rows)
        await self._pool.executemany(
            """INSERT INTO provider_state VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (provider, model, kind) DO UPDATE SET state = EXCLUDED.state,
               until = EXCLUDED.until, failure_count = EXCLUDED.failure_count,
               reason = EXCLUDED.reason, origin = EXCLUDED.origin, updated = EXCLUDED.updated""",
            [tuple(getattr(r, c) for c in _COLUMNS) for r in stamped],
        )

    async def changes_since(self, since: float) -> list[StateRow]:
        records = await self._pool.fetch(_SELECT + "$1", since)
        return [StateRow(**dict(r)) for r in records]

    async def ping(self) -> bool:
        try:
            await self._pool.fetchval("SELECT 1")
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def open_state_store(url: str) -> StateStore:
    """The backend for a `[database] url`: sqlite:///PATH, postgresql://..., memory://."""
    if url.startswith("sqlite://"):
        return SqliteStateStore(sqlite_path(url))
    if is_postgres(url):
        return PostgresStateStore(*split_schema(url))
    return MemoryStateStore()
