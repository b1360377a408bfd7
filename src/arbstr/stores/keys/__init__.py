"""The key store: projects, virtual keys, provider keys, audit events, usage counters."""

from __future__ import annotations

from arbstr.stores.keys.base import KeyStore
from arbstr.stores.keys.memory import MemoryKeyStore

__all__ = ["KeyStore", "MemoryKeyStore", "open_key_store"]


def open_key_store(url: str) -> KeyStore:
    """`memory://` keeps nothing; `sqlite:///path` (the request log's file) and
    `postgresql://...?schema=` use the Piccolo tables."""
    if url.startswith("sqlite://") or url.startswith("postgres"):
        from arbstr.stores.keys.sql import SqlKeyStore

        return SqlKeyStore(url)
    return MemoryKeyStore()
