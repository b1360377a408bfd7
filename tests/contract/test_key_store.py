"""One contract for every `KeyStore` backend: memory, SQLite (Piccolo), PostgreSQL (Piccolo)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arbstr.keys.model import AuditEvent, KeyRow, ProjectRow, new_id
from arbstr.stores.keys import KeyStore, MemoryKeyStore, open_key_store
from arbstr.stores.keys.base import AuditQuery, Conflict, Missing, ProviderKeyRow
from tests.pg import PG_BASE, drop_schema, new_schema, require_pg


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    schema = None
    s: KeyStore
    if request.param == "memory":
        s = MemoryKeyStore()
    elif request.param == "sqlite":
        s = open_key_store(f"sqlite:///{tmp_path / 'keys.db'}")
    else:
        require_pg()
        schema = new_schema()
        s = open_key_store(f"{PG_BASE}?schema={schema}")
    await s.migrate()
    await s.migrate()  # idempotent
    yield s
    await s.aclose()
    if schema:
        await drop_schema(schema)


def event(action: str, target: str | None = None) -> AuditEvent:
    return AuditEvent(
        id=new_id(16), timestamp=time.time(), actor="cli", action=action, target=target
    )


def project(name: str = "team", **kw: object) -> ProjectRow:
    return ProjectRow(id=new_id(), name=name, created_at=time.time(), **kw)  # type: ignore[arg-type]


def key(project_id: str, **kw: object) -> KeyRow:
    fields: dict[str, object] = {"name": "k", "key_hash": new_id(64), "created_at": time.time()}
    fields.update(kw)
    return KeyRow(id=new_id(), project_id=project_id, **fields)  # type: ignore[arg-type]


async def test_create_read_update_with_audit_and_versions(store: KeyStore) -> None:
    v0 = await store.version()
    p = await store.insert_project(
        project(allowed_models=["gpt-*"], metadata={"team": "a"}, budget_sats=5.5, rpm=3),
        event("project.create"),
    )
    got = await store.get_project(p.id)
    assert got is not None
    assert (got.allowed_models, got.metadata, got.budget_sats, got.rpm) == (
        ["gpt-*"], {"team": "a"}, 5.5, 3,
    )  # fmt: skip
    k = await store.insert_key(
        key(p.id, max_requests=9, expires_at=time.time() + 60), event("key.create")
    )
    assert await store.version() == v0 + 2
    audit = event("key.update", k.id)
    after = await store.update_key(k.id, {"active": False, "name": "renamed"}, audit)
    assert after.active is False and after.name == "renamed" and after.rev > k.rev
    events, total = await store.list_audit(AuditQuery(action="key.update"))
    assert total == 1 and events[0].changes == {"name": ["k", "renamed"], "active": [True, False]}
    assert events[0].target == k.id and events[0].outcome == "success"
    changes = await store.changes_since(k.rev)
    assert [c.id for c in changes.keys] == [k.id] and changes.projects == []
    full = await store.changes_since(0)
    assert {c.id for c in full.projects} == {p.id} and len(full.keys) == 1
    assert full.version == await store.version()


async def test_unique_names_and_missing_references_write_nothing(store: KeyStore) -> None:
    p = await store.insert_project(project("dup"), event("project.create"))
    before_audit = (await store.list_audit(AuditQuery()))[1]
    version = await store.version()
    with pytest.raises(Conflict) as conflict:
        await store.insert_project(project("dup"), event("project.create"))
    assert conflict.value.field == "name"
    with pytest.raises(Missing) as missing:
        await store.insert_key(key("nope"), event("key.create"))
    assert missing.value.field == "project_id"
    with pytest.raises(Missing):
        await store.update_key("nope", {"active": False}, event("key.update"))
    with pytest.raises(Missing):
        await store.update_project("nope", {"active": False}, event("project.update"))
    assert (await store.list_audit(AuditQuery()))[1] == before_audit
    assert await store.version() == version
    rows, total = await store.list_projects(0, 10)
    assert total == 1 and rows[0].id == p.id


async def test_pages_and_filters(store: KeyStore) -> None:
    a = await store.insert_project(project("a"), event("project.create"))
    b = await store.insert_project(project("b"), event("project.create"))
    for i in range(5):
        await store.insert_key(key(a.id, active=i % 2 == 0), event("key.create"))
    await store.insert_key(key(b.id), event("key.create"))
    rows, total = await store.list_keys(a.id, None, 0, 2)
    assert total == 5 and len(rows) == 2
    rows, total = await store.list_keys(a.id, True, 0, 10)
    assert total == 3 and all(r.active for r in rows)
    rows, total = await store.list_keys(None, None, 4, 10)
    assert total == 6 and len(rows) == 2
    events, total = await store.list_audit(AuditQuery(action="key.create", limit=4))
    assert total == 6 and len(events) == 4
    assert [e.timestamp for e in events] == sorted((e.timestamp for e in events), reverse=True)


async def test_provider_keys_travel_with_their_project(store: KeyStore) -> None:
    p = await store.insert_project(project(), event("project.create"))
    row = ProviderKeyRow(project_id=p.id, provider="alpha", ciphertext="c1", masked="sk-abc...***")
    await store.put_provider_key(row, event("project.provider_key.put"))
    rev = (await store.get_project(p.id)).rev  # type: ignore[union-attr]
    changes = await store.changes_since(rev - 1)
    assert [(k.provider, k.ciphertext) for k in changes.provider_keys] == [("alpha", "c1")]
    replaced = ProviderKeyRow(project_id=p.id, provider="alpha", ciphertext="c2", masked="m")
    await store.put_provider_key(replaced, event("project.provider_key.put"))
    assert [k.ciphertext for k in (await store.changes_since(0)).provider_keys] == ["c2"]
    assert await store.delete_provider_key(p.id, "alpha", event("project.provider_key.delete"))
    assert not await store.delete_provider_key(p.id, "alpha", event("project.provider_key.delete"))
    assert (await store.changes_since(0)).provider_keys == []
    with pytest.raises(Missing):
        await store.put_provider_key(
            ProviderKeyRow(project_id="nope", provider="alpha", ciphertext="c", masked="m"),
            event("project.provider_key.put"),
        )


async def test_leases_never_pass_the_limit_under_concurrency(store: KeyStore) -> None:
    results = await asyncio.gather(
        *(store.lease("key:k:requests", 0.0, 1, 30, 0) for _ in range(50))
    )
    granted = [r for r in results if r is not None]
    assert len(granted) == 30 and max(granted) == 30
    assert await store.lease("key:k:requests", 0.0, 1, 30, 0) is None
    assert await store.charge("key:k:requests", 0.0, -5, 0) == 25
    # a missing counter starts at its seed (the request log's figure for that window)
    assert await store.lease("key:k:sats", 86400.0, 2.5, 10, seed=7.0) == 9.5
    assert await store.lease("key:k:sats", 86400.0, 1.0, 10, seed=0.0) is None
    assert await store.charge("key:k:sats", 172800.0, 1.25, seed=3.0) == 4.25
