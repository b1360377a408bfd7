"""The exact response cache (`[cache]`): memory, Redis or the database, one protocol."""

from __future__ import annotations

from arbstr.cache.base import (
    CacheControl,
    CachedAnswer,
    ResponseCache,
    cache_key,
    parse_cache_control,
)
from arbstr.cache.memory import MemoryCache

__all__ = [
    "CacheControl",
    "CachedAnswer",
    "MemoryCache",
    "ResponseCache",
    "cache_key",
    "open_cache",
    "parse_cache_control",
]


def open_cache(backend: str, *, redis_url: str, database_url: str, max_entries: int,
               max_bytes: int) -> ResponseCache:  # fmt: skip
    if backend == "redis":
        from arbstr.cache.redis_cache import RedisCache

        return RedisCache(redis_url)
    if backend == "database":
        from arbstr.cache.sql import SqlCache

        return SqlCache(database_url)
    return MemoryCache(max_entries, max_bytes)
