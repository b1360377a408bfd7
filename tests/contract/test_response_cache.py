"""One contract for every `ResponseCache` backend: memory, Redis, SQLite, PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arbstr.cache import CachedAnswer, MemoryCache, ResponseCache, cache_key, open_cache
from arbstr.cache.redis_cache import RedisCache
from tests.pg import PG_BASE, drop_schema, new_schema, require_pg


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(
    params=["memory", "redis", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseCache]:
    schema = None
    c: ResponseCache
    if request.param == "memory":
        c = MemoryCache()
    elif request.param == "redis":
        if not redis_reachable():
            pytest.skip("Redis is not running on 127.0.0.1:6379 (CI and dev machines start it)")
        c = RedisCache("redis://127.0.0.1:6379/0", prefix=f"arbstr-test:{uuid.uuid4().hex}:")
    elif request.param == "sqlite":
        c = open_cache("database", redis_url="", database_url=f"sqlite:///{tmp_path / 'c.db'}",
                       max_entries=1, max_bytes=1)  # fmt: skip
    else:
        require_pg()
        schema = new_schema()
        c = open_cache("database", redis_url="", database_url=f"{PG_BASE}?schema={schema}",
                       max_entries=1, max_bytes=1)  # fmt: skip
    yield c
    await c.aclose()
    if schema:
        await drop_schema(schema)


def entry(body: bytes = b'{"ok":true}', ttl_s: float = 60, **kw: object) -> CachedAnswer:
    return CachedAnswer(status=200, content_type="application/json", body=body,
                        stored_at=time.time(), ttl_s=ttl_s, **kw)  # type: ignore[arg-type]  # fmt: skip


async def test_a_put_entry_comes_back_whole(cache: ResponseCache) -> None:
    events = [b'data: {"a":1}\n\n', b"data: [DONE]\n\n"]
    stream = entry(b"", events=events, cost_sats=1.25, provider="p", upstream_model="m")
    await cache.put("k1", stream)
    got = await cache.get("k1")
    assert got is not None and got.events == events and got.cost_sats == 1.25
    assert (got.provider, got.upstream_model, got.content_type) == ("p", "m", "application/json")
    assert await cache.get("k2") is None


async def test_an_entry_expires_and_a_put_overwrites(cache: ResponseCache) -> None:
    await cache.put("k", entry(b"old", ttl_s=0.3))
    await cache.put("k", entry(b"new", ttl_s=0.3))
    got = await cache.get("k")
    assert got is not None and got.body == b"new"
    await asyncio.sleep(0.5)
    assert await cache.get("k") is None


async def test_binary_bodies_survive(cache: ResponseCache) -> None:
    body = bytes(range(256)) * 10
    await cache.put("bin", entry(body))
    got = await cache.get("bin")
    assert got is not None and got.body == body


async def test_memory_is_bounded_by_bytes_lru_first() -> None:
    cache = MemoryCache(max_entries=100, max_bytes=3 * (1000 + 128))
    for name in ("a", "b", "c"):
        await cache.put(name, entry(b"x" * 1000))
    assert await cache.get("a") is not None  # a is now the most recent
    await cache.put("d", entry(b"x" * 1000))
    assert await cache.get("b") is None and await cache.get("a") is not None
    assert cache.figures()["evictions"] == 1 and cache.bytes <= cache.max_bytes
    await cache.put("huge", entry(b"x" * 10_000))  # larger than the whole cache: not kept
    assert await cache.get("huge") is None


def test_the_key_is_per_tenant_route_and_model_and_ignores_spacing() -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}'
    spaced = b'{ "temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m" }'
    assert cache_key("p1", "chat", "m", body) == cache_key("p1", "chat", "m", spaced)
    assert cache_key("p1", "chat", "m", body) != cache_key("p2", "chat", "m", body)
    assert cache_key(None, "chat", "m", body) != cache_key(None, "embeddings", "m", body)
    other = body.replace(b'"temperature":0', b'"temperature":1')
    assert cache_key("p1", "chat", "m", body) != cache_key("p1", "chat", "m", other)


async def test_a_redis_that_does_not_answer_is_a_miss() -> None:
    dead = RedisCache("redis://127.0.0.1:1/0", timeout_s=0.2)
    started = time.monotonic()
    await dead.put("k", entry())
    assert await dead.get("k") is None
    assert time.monotonic() - started < 2 and dead.figures()["errors"] == 2
    await dead.aclose()
