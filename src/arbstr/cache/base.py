"""The exact response cache's parts every backend shares: the entry, the protocol, the key,
and the `Cache-Control` a request opts in with (DESIGN §12)."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import msgspec

from arbstr.errors import BadRequest

__all__ = ["CacheControl", "CachedAnswer", "ResponseCache", "cache_key", "parse_cache_control"]


class CachedAnswer(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """One answer as it was sent: a JSON body, or a stream's upstream events in order."""

    status: int
    content_type: str
    body: bytes = b""
    events: list[bytes] = msgspec.field(default_factory=list)  # a stream: each event's bytes
    cost_sats: float = 0.0  # what it cost when it was fetched (a hit records it as savings)
    provider: str = ""
    upstream_model: str = ""
    stored_at: float = 0.0  # unix seconds
    ttl_s: float = 0.0

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(e) for e in self.events) + 128


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CachedAnswer)


def encode_entry(entry: CachedAnswer) -> bytes:
    return _encoder.encode(entry)


def decode_entry(data: bytes) -> CachedAnswer | None:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        return None  # a foreign or older value: a miss, never a crash


class ResponseCache(Protocol):
    """What the gateway needs of a cache backend (memory, Redis, the database)."""

    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, entry: CachedAnswer) -> None: ...

    async def aclose(self) -> None: ...

    def figures(self) -> dict[str, float]: ...


def cache_key(project: str | None, route: str, model: str, body: bytes) -> str:
    """SHA-256 of (project, route, model, the canonical body): tenants never share an entry;
    key order and spacing do not matter; every field does (stream, temperature, tools...)."""
    canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    digest = hashlib.sha256()
    for part in (project or "", route, model):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(canonical)
    return digest.hexdigest()


class CacheControl(msgspec.Struct, frozen=True):
    max_age: float | None  # None: not asked (the default applies)
    no_cache: bool = False  # refresh: skip the lookup, store the answer
    no_store: bool = False  # neither read nor write


def parse_cache_control(value: str | None) -> CacheControl:
    """The request's `Cache-Control`; a malformed `max-age` is a 400 naming the header."""
    if not value:
        return CacheControl(None)
    max_age: float | None = None
    flags: dict[str, Any] = {}
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        name = name.strip().lower()
        if name == "max-age":
            arg = arg.strip().strip('"')
            if not arg.isdigit() or len(arg) > 9:
                raise BadRequest(
                    f"Cache-Control max-age must be a non-negative integer of seconds, not {arg!r}",
                    param="cache-control",
                )
            max_age = float(arg)
        elif name in ("no-cache", "no-store"):
            flags[name.replace("-", "_")] = True
    return CacheControl(max_age, **flags)
