"""The embedded request log: one SQLite file in WAL mode, every call off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlite_utils

from arbstr.recording.record import RequestRecord
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

__all__ = ["SqliteRequestLog"]

_UPSERT_KEYS = upsert_key_rollup("MAX")


_SLICE = 32  # rows per executemany: about 0.4 ms of writer CPU (index upkeep) at a time
log = logging.getLogger(__name__)
_BEHIND = 400  # requests in a batch that mean the writer is behind: write at full speed
_yield_core = getattr(os, "sched_yield", lambda: None)  # not on Windows


def _in_slices(
    conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]], behind: bool
) -> None:
    """Insert in short slices and yield the core between them, unless the writer is behind.

    On a core it shares with the event loop, the writer thread would otherwise run a whole
    batch (~2 ms for 170 rows with the request indexes) before the scheduler lets the loop
    back in: every request that arrived meanwhile waited, which was the whole p99 tail at
    concurrency 1 (1.9 -> 0.7 ms with slices; docs/benchmarks.md). Yielding also caps the
    writer's share of a saturated core below what it needs, so a large batch (a backlog)
    is written without yielding; batches shrink again once it has caught up.
    """
    if behind:
        conn.executemany(sql, rows)
        return
    for i in range(0, len(rows), _SLICE):
        if i:
            _yield_core()
        conn.executemany(sql, rows[i : i + _SLICE])


class SqliteRequestLog(SqlRequestLog):
    """One writer thread (and connection) for appends, one reader thread for queries."""

    backend = "sqlite"
    floor_expr = "CAST({x} AS INTEGER)"  # ts is never negative, so truncation is floor
    ts_unindexed = "+ts"

    def __init__(self, path: str) -> None:
        if path in ("", ":memory:"):
            # a named shared in-memory database, so the writer and reader threads see one db
            self.target = f"file:arbstr-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self.uri = True
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.target, self.uri = path, False
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="arbstr-sqlite-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="arbstr-sqlite-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._keepalive: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._reopened = False
        self._reader_stale = False
        if self.uri:
            self._keepalive = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.target, uri=self.uri, check_same_thread=False, isolation_level=None, timeout=5.0
        )
        conn.execute("PRAGMA busy_timeout=5000")
        if self.uri:
            # `memory://`: one shared-cache database, where a reader meeting the writer's table
            # lock fails at once ("database table is locked"; the busy timeout does not apply)
            conn.execute("PRAGMA read_uncommitted=1")
        else:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    async def _run(self, pool: ThreadPoolExecutor, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    # ---- writer thread ------------------------------------------------------------------
    def _w(self) -> sqlite3.Connection:
        if self._wconn is not None and not self.uri and not self._same_file():
            # the file was removed or replaced under us (its directory deleted, say): writes
            # would vanish into an unlinked inode with nothing counted as lost
            log.error("request log %s was removed or replaced; reopening it", self.target)
            with contextlib.suppress(sqlite3.Error):
                self._wconn.close()
            self._wconn = None
            self._reopened = True
        if self._wconn is None:
            if not self.uri:
                Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            self._wconn = self._connect()
            self._inode = self._file_id()
            if self._reopened:
                self._reopened = False
                self._reader_stale = True
                self._migrate()  # a new file needs its tables
        return self._wconn

    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.target)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _same_file(self) -> bool:
        return self._inode is not None and self._file_id() == self._inode

    def _migrate(self) -> MigrationStatus:
        db = sqlite_utils.Database(self._w())
        db.table("schema_migrations").create(
            {"version": int, "name": str}, pk="version", if_not_exists=True
        )
        done = {r["version"] for r in db.table("schema_migrations").rows}
        for version, name, statements in MIGRATIONS:
            if version in done:
                continue
            with db.conn:
                for statement in statements["sqlite"]:
                    db.execute(statement)
                db.table("schema_migrations").insert({"version": version, "name": name})
        return self._status()

    def _status(self) -> MigrationStatus:
        db = sqlite_utils.Database(self._w())
        done = set()
        if db.table("schema_migrations").exists():
            done = {r["version"] for r in db.table("schema_migrations").rows}
        pending = [name for version, name, _ in MIGRATIONS if version not in done]
        return MigrationStatus("sqlite", max(done, default=0), MIGRATIONS[-1][0], pending)

    def _write(
        self,
        requests: list[tuple[Any, ...]],
        attempts: list[tuple[Any, ...]],
        records: list[RequestRecord],
    ) -> None:
        conn = self._w()
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = [r[0] for r in requests]
            existing: set[str] = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ", ".join("?" for _ in chunk)
                existing.update(
                    row[0]
                    for row in conn.execute(
                        f"SELECT id FROM requests WHERE id IN ({marks})",  # noqa: S608 (only ? marks)
                        chunk,
                    )
                )
            if existing:  # a replayed batch: never count a request twice
                requests = [r for r in requests if r[0] not in existing]
                attempts = [a for a in attempts if a[0] not in existing]
                records = [r for r in records if r.id not in existing]
            behind = len(requests) >= _BEHIND  # one verdict per batch, attempts included
            _in_slices(conn, INSERT_REQUEST, requests, behind)
            _in_slices(conn, INSERT_ATTEMPT, attempts, behind)
            conn.executemany(UPSERT_ROLLUP, self.rollups(records))
            conn.executemany(_UPSERT_KEYS, key_rollup_rows(records))
            conn.executemany(UPSERT_BY_KEY, by_key_rollup_rows(records))
            conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (a full disk): only roll back what is
            # still open, and never let the rollback hide the error that caused it
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    # ---- reader thread ------------------------------------------------------------------
    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._reader_stale and self._rconn is not None:
            self._reader_stale = False
            with contextlib.suppress(sqlite3.Error):
                self._rconn.close()
            self._rconn = None
        if self._rconn is None:
            self._rconn = self._connect()
        return self._rconn.execute(sql, list(params)).fetchall()

    # ---- RequestLog ---------------------------------------------------------------------
    async def migrate(self) -> MigrationStatus:
        result: MigrationStatus = await self._run(self._writer, self._migrate)
        return result

    async def status(self) -> MigrationStatus:
        result: MigrationStatus = await self._run(self._writer, self._status)
        return result

    async def write(
        self,
        requests: list[tuple[Any, ...]],
        attempts: list[tuple[Any, ...]],
        rollups_of: list[RequestRecord],
    ) -> None:
        await self._run(self._writer, self._write, requests, attempts, rollups_of)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = await self._run(self._reader, self._fetch, sql, params)
        return rows

    async def aclose(self) -> None:
        def close(conn: sqlite3.Connection | None) -> None:
            if conn is not None:
                conn.close()

        await self._run(self._writer, close, self._wconn)
        await self._run(self._reader, close, self._rconn)
        self._wconn = self._rconn = None
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        if self._keepalive is not None:
            self._keepalive.close()
