"""The in-process cache: LRU bounded by entries and by bytes, entries expire by their TTL."""

from __future__ import annotations

import time
from collections import OrderedDict

from arbstr.cache.base import CachedAnswer

__all__ = ["MemoryCache"]


class MemoryCache:
    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 << 20) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[str, CachedAnswer] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.stored_at + entry.ttl_s <= time.time():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: CachedAnswer) -> None:
        self.put_now(key, entry)

    def put_now(self, key: str, entry: CachedAnswer) -> None:
        """`put` without a task: nothing here waits."""
        if entry.size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self.bytes += entry.size
        while self._entries and (
            self.bytes > self.max_bytes or len(self._entries) > self.max_entries
        ):
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size

    async def aclose(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def figures(self) -> dict[str, float]:
        return {"entries": len(self._entries), "bytes": self.bytes, "evictions": self.evictions}
