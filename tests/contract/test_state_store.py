"""One contract for every `StateStore` backend: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arbstr.stores.state import (
    MemoryStateStore,
    PostgresStateStore,
    SqliteStateStore,
    StateRow,
    StateStore,
    open_state_store,
)
from tests.pg import PG_BASE, drop_schema, new_schema, require_pg


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    schema = None
    s: StateStore
    if request.param == "memory":
        s = MemoryStateStore()
    elif request.param == "sqlite":
        s = SqliteStateStore(str(tmp_path / "state.db"))
    else:
        require_pg()
        schema = new_schema()
        s = PostgresStateStore(PG_BASE, schema)
    await s.setup()
    await s.setup()  # idempotent
    yield s
    await s.aclose()
    if schema:
        await drop_schema(schema)


def row(provider: str, **kw: object) -> StateRow:
    base: dict[str, object] = {
        "kind": "circuit",
        "state": "open",
        "until": time.time() + 30,
        "failure_count": 3,
        "origin": "r1",
    }
    base.update(kw)
    return StateRow(provider=provider, **base)  # type: ignore[arg-type]


async def test_publish_then_read_changes(store: StateStore) -> None:
    before = time.time() - 0.001
    await store.publish(
        [row("a"), row("b", kind="cooldown", model="m", state="cooldown", reason="429 retry-after")]
    )
    rows = {(r.provider, r.kind): r for r in await store.changes_since(before)}
    assert set(rows) == {("a", "circuit"), ("b", "cooldown")}
    assert rows[("a", "circuit")].failure_count == 3
    assert rows[("b", "cooldown")].model == "m"
    assert rows[("b", "cooldown")].reason == "429 retry-after"
    assert rows[("a", "circuit")].updated >= before


async def test_upsert_replaces_and_since_filters(store: StateStore) -> None:
    await store.publish([row("a", failure_count=3)])
    await asyncio.sleep(0.01)
    mark = time.time()
    await asyncio.sleep(0.01)
    await store.publish([row("a", state="closed", until=None, failure_count=0, origin="r2")])
    changed = await store.changes_since(mark)
    assert len(changed) == 1
    assert (changed[0].state, changed[0].until, changed[0].origin) == ("closed", None, "r2")
    assert await store.changes_since(time.time() + 5) == []
    assert len(await store.changes_since(0)) == 1


async def test_empty_publish_and_ping(store: StateStore) -> None:
    await store.publish([])
    assert await store.ping()


def test_open_state_store_picks_backend(tmp_path: Path) -> None:
    assert isinstance(open_state_store("memory://"), MemoryStateStore)
    assert isinstance(open_state_store(f"sqlite:///{tmp_path}/x.db"), SqliteStateStore)
    pg = open_state_store("postgresql://u@h:5432/db?schema=abc")
    assert isinstance(pg, PostgresStateStore)
    assert (pg.dsn, pg.schema) == ("postgresql://u@h:5432/db", "abc")
