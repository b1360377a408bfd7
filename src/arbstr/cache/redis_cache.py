"""Redis as the cache (`redis.asyncio`): entries shared by every replica, expired by Redis.

A Redis that does not answer is a miss (and a put that is dropped), never a failed request:
each call is bounded by `timeout_s`."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from arbstr.cache.base import CachedAnswer, decode_entry, encode_entry

__all__ = ["RedisCache"]

log = logging.getLogger(__name__)


class RedisCache:
    def __init__(self, url: str, prefix: str = "arbstr:cache:", timeout_s: float = 0.25) -> None:
        self.prefix, self.timeout_s = prefix, timeout_s
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.errors = 0

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                data = await self._client.get(self.prefix + key)
        except (TimeoutError, aioredis.RedisError, OSError) as exc:
            self._failed(exc)
            return None
        return decode_entry(data) if isinstance(data, bytes) else None

    async def put(self, key: str, entry: CachedAnswer) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._client.set(
                    self.prefix + key, encode_entry(entry), px=max(1, int(entry.ttl_s * 1000))
                )
        except (TimeoutError, aioredis.RedisError, OSError) as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if not self.errors:
            log.warning(
                "response cache: Redis failed (%s); answering without it", type(exc).__name__
            )
        self.errors += 1

    async def aclose(self) -> None:
        await self._client.aclose()

    def figures(self) -> dict[str, float]:
        return {"errors": self.errors}
