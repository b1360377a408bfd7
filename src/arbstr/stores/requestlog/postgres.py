"""The request log on PostgreSQL (asyncpg pool): replicas share one log."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from arbstr.recording.record import RequestRecord
from arbstr.stores.pg import DDL_LOCK, create_schema
from arbstr.stores.requestlog.base import MigrationStatus
from arbstr.stores.requestlog.schema import MIGRATIONS, by_key_rollup_rows, key_rollup_rows
from arbstr.stores.requestlog.sql import (
    INSERT_ATTEMPT,
    INSERT_REQUEST,
    UPSERT_BY_KEY,
    UPSERT_ROLLUP,
    SqlRequestLog,
    upsert_key_rollup,
)

__all__ = ["PostgresRequestLog"]

_UPSERT_KEYS = upsert_key_rollup("GREATEST")


@lru_cache(maxsize=256)
def _dollar(sql: str) -> str:
    """`?` placeholders to asyncpg's `$1, $2, ...` (our SQL has no `?` inside literals)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


class PostgresRequestLog(SqlRequestLog):
    backend = "postgres"

    def __init__(self, dsn: str, schema: str | None = None) -> None:
        self.dsn, self.schema = dsn, schema
        self._pool: Any = None

    async def _ensure(self) -> Any:
        if self._pool is None:
            import asyncpg

            settings = {"search_path": self.schema} if self.schema else None
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=4, server_settings=settings
            )
        return self._pool

    async def migrate(self) -> MigrationStatus:
        pool = await self._ensure()
        async with pool.acquire() as conn, conn.transaction():
            # one migrator at a time across replicas
            await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
            await create_schema(conn, self.schema)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements["postgres"]:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, name)
        return await self.status()

    async def status(self) -> MigrationStatus:
        pool = await self._ensure()
        exists = await pool.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        done = set()
        if exists:
            done = {r[0] for r in await pool.fetch("SELECT version FROM schema_migrations")}
        pending = [name for version, name, _ in MIGRATIONS if version not in done]
        return MigrationStatus("postgres", max(done, default=0), MIGRATIONS[-1][0], pending)

    async def write(
        self,
        requests: list[tuple[Any, ...]],
        attempts: list[tuple[Any, ...]],
        rollups_of: list[RequestRecord],
    ) -> None:
        pool = await self._ensure()
        async with pool.acquire() as conn, conn.transaction():
            ids = [r[0] for r in requests]
            existing = {
                r[0] for r in await conn.fetch("SELECT id FROM requests WHERE id = ANY($1)", ids)
            }
            if existing:  # a replayed batch: never count a request twice
                requests = [r for r in requests if r[0] not in existing]
                attempts = [a for a in attempts if a[0] not in existing]
                rollups_of = [r for r in rollups_of if r.id not in existing]
            if requests:
                await conn.executemany(_dollar(INSERT_REQUEST), requests)
            if attempts:
                await conn.executemany(_dollar(INSERT_ATTEMPT), attempts)
            rollups = self.rollups(rollups_of)
            if rollups:
                await conn.executemany(_dollar(UPSERT_ROLLUP), rollups)
            keyed = key_rollup_rows(rollups_of)
            if keyed:
                await conn.executemany(_dollar(_UPSERT_KEYS), keyed)
                await conn.executemany(_dollar(UPSERT_BY_KEY), by_key_rollup_rows(rollups_of))

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        pool = await self._ensure()
        records = await pool.fetch(_dollar(sql), *params)
        return [tuple(r) for r in records]

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
