"""Piccolo migrations of the key store, applied in order by `arbstr db migrate` (and at startup
when `database.migrate_on_start`). Each module has Piccolo's `forwards()`, which returns the
`MigrationManager` of that step; `apply` runs the ones not yet recorded in
`arbstr_key_migrations`, under PostgreSQL's DDL advisory lock (replicas start together)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import time
import types
from typing import TYPE_CHECKING

from arbstr.stores.pg import DDL_LOCK

if TYPE_CHECKING:
    from arbstr.stores.keys.sql import SqlKeyStore

__all__ = ["apply"]

_lock = asyncio.Lock()


async def apply(store: SqlKeyStore) -> None:
    from arbstr.stores.keys.migrations import m0001_keys_projects_audit as m1

    await store._start()
    async with _lock:  # Piccolo finds its engine through one global conf module
        conf = types.ModuleType("_arbstr_piccolo_conf")
        conf.DB = store.engine  # type: ignore[attr-defined]
        sys.modules[conf.__name__] = conf
        previous = os.environ.get("PICCOLO_CONF")
        os.environ["PICCOLO_CONF"] = conf.__name__
        try:
            async with store._tx():
                if store.backend == "postgres":
                    await store._raw("SELECT pg_advisory_xact_lock({})", DDL_LOCK)
                    if store.schema:
                        await store._raw(f'CREATE SCHEMA IF NOT EXISTS "{store.schema}"')
                mig = store._qualify("arbstr_key_migrations")
                await store._raw(
                    f"CREATE TABLE IF NOT EXISTS {mig} (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
                )
                done = {r["version"] for r in await store._raw(f"SELECT version FROM {mig}")}
                for module in (m1,):
                    if module.VERSION in done:
                        continue
                    manager = await module.forwards(store.schema)
                    with contextlib.redirect_stdout(io.StringIO()):
                        await manager.run()
                    await store._raw(
                        f"INSERT INTO {mig} VALUES ({{}}, {{}}, {{}})",
                        module.VERSION,
                        module.ID,
                        time.time(),
                    )
                if not await store.t.version.exists().where(store.t.version.id == 1):
                    await store.t.version.insert(store.t.version(id=1, version=0))
        finally:
            if previous is None:
                os.environ.pop("PICCOLO_CONF", None)
            else:
                os.environ["PICCOLO_CONF"] = previous
            sys.modules.pop(conf.__name__, None)
