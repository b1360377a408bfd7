"""The configured database as the cache: SQLite (one file, its own connection, in a thread)
or PostgreSQL (shared by replicas; asyncpg). A database that does not answer is a miss."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

from arbstr.cache.base import CachedAnswer, decode_entry, encode_entry
from arbstr.stores.pg import DDL_LOCK, create_schema
from arbstr.stores.urls import is_postgres, split_schema, sqlite_path

__all__ = ["SqlCache"]

log = logging.getLogger(__name__)
_GET_PG = "SELECT entry FROM arbstr_response_cache WHERE key = $1 AND expires_at > $2"
_PUT_PG = (
    "INSERT INTO arbstr_response_cache (key, expires_at, entry) VALUES ($1, $2, $3) "
    "ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at, entry = EXCLUDED.entry"
)
_PUT_SQLITE = (
    "INSERT OR REPLACE INTO arbstr_response_cache (key, expires_at, entry) VALUES (?, ?, ?)"
)
_SWEEP_SQLITE = "DELETE FROM arbstr_response_cache WHERE expires_at <= ?"


class SqlCache:
    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.postgres = is_postgres(url)
        self.dsn, self.schema = split_schema(url) if self.postgres else (url, None)
        self._pool: Any = None
        self._sqlite: sqlite3.Connection | None = None
        self._ready = False
        self._setup_lock = asyncio.Lock()
        self.errors = 0
        self._puts = 0

    async def _setup(self) -> None:
        async with self._setup_lock:
            if self._ready:
                return
            if self.postgres:
                import asyncpg

                settings = {"search_path": self.schema} if self.schema else None
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=4, server_settings=settings
                )
                async with self._pool.acquire() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
                    await create_schema(conn, self.schema)
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS arbstr_response_cache (key TEXT PRIMARY KEY, "
                        "expires_at DOUBLE PRECISION NOT NULL, entry BYTEA NOT NULL)"
                    )
            else:
                self._sqlite = await asyncio.to_thread(self._open_sqlite)
            self._ready = True

    def _open_sqlite(self) -> sqlite3.Connection:
        conn = sqlite3.connect(sqlite_path(self.url), check_same_thread=False, timeout=1)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS arbstr_response_cache (key TEXT PRIMARY KEY, "
            "expires_at REAL NOT NULL, entry BLOB NOT NULL)"
        )
        conn.commit()
        return conn

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._setup()
                now = time.time()
                if self._pool is not None:
                    row = await self._pool.fetchrow(
                        _GET_PG,
                        key,
                        now,
                    )
                    data = bytes(row[0]) if row else None
                else:
                    data = await asyncio.to_thread(self._sqlite_get, key, now)
        except Exception as exc:  # the database is down or slow: a miss
            self._failed(exc)
            return None
        return decode_entry(data) if data is not None else None

    def _sqlite_get(self, key: str, now: float) -> bytes | None:
        assert self._sqlite is not None
        row = self._sqlite.execute(
            "SELECT entry FROM arbstr_response_cache WHERE key = ? AND expires_at > ?",
            (key, now),
        ).fetchone()
        return bytes(row[0]) if row else None

    async def put(self, key: str, entry: CachedAnswer) -> None:
        expires = entry.stored_at + entry.ttl_s
        data = encode_entry(entry)
        self._puts += 1
        sweep = self._puts % 500 == 0  # expired rows go now and then, not on every write
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._setup()
                if self._pool is not None:
                    await self._pool.execute(
                        _PUT_PG,
                        key, expires, data,
                    )  # fmt: skip
                    if sweep:
                        await self._pool.execute(
                            "DELETE FROM arbstr_response_cache WHERE expires_at <= $1", time.time()
                        )
                else:
                    await asyncio.to_thread(self._sqlite_put, key, expires, data, sweep)
        except Exception as exc:
            self._failed(exc)

    def _sqlite_put(self, key: str, expires: float, data: bytes, sweep: bool) -> None:
        assert self._sqlite is not None
        with self._sqlite:
            self._sqlite.execute(
                _PUT_SQLITE,
                (key, expires, data),
            )
            if sweep:
                self._sqlite.execute(
                    "DELETE FROM arbstr_response_cache WHERE expires_at <= ?", (time.time(),)
                )

    def _failed(self, exc: BaseException) -> None:
        if not self.errors:
            log.warning("response cache: the database failed (%s); answering without it", exc)
        self.errors += 1

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._sqlite is not None:
            self._sqlite.close()

    def figures(self) -> dict[str, float]:
        return {"errors": self.errors}
