"""What a request carries through the stages, and the per-process wiring the stages share."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arbstr.cache.base import CachedAnswer
from arbstr.config import Settings
from arbstr.keys.accounts import Reservation
from arbstr.keys.model import KeyEntry, ProjectRow
from arbstr.keys.runtime import KeyService
from arbstr.pipeline.slots import StreamSlots
from arbstr.recording.record import RecordSink, RequestRecord
from arbstr.reliability.health import ProviderHealth
from arbstr.reliability.retry import RetryHeader
from arbstr.routing import RoutePlan, Router
from arbstr.routing.resolve import Candidate
from arbstr.schemas.chat import ChatView, EmbeddingsView
from arbstr.secrets import Scrubber
from arbstr.upstream.body import rewrite_body
from arbstr.upstream.client import Upstream

if TYPE_CHECKING:
    from arbstr.pipeline.cached import CacheState

__all__ = ["GatewayResponse", "Header", "RequestContext", "RequestMeta", "Shared"]

Header = tuple[bytes, bytes]
_JSON: Header = (b"content-type", b"application/json")


@dataclass(slots=True)
class RequestMeta:
    """What the HTTP layer learned before the gateway takes over."""

    request_id: str
    started: float  # time.monotonic() at arrival
    policy_header: str | None = None
    key_id: str | None = None
    wall: float = field(default_factory=time.time)
    authorization: bytes | None = None  # the raw header value: read by `authenticate` only
    client_ip: str | None = None
    project_id: str | None = None  # set by `authenticate`: the project's own upstream keys
    operator: bool = False  # the dashboard's playground, behind an admin session: no key
    receive: Callable[[], Awaitable[Any]] | None = None  # ASGI receive: a queued client leaving
    cache_control: str | None = None  # the request's Cache-Control ([cache] enabled)


@dataclass(slots=True)
class GatewayResponse:
    """Status, raw ASGI headers, and either a body or a byte stream."""

    status: int
    headers: list[Header]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


@dataclass(slots=True)
class RequestContext:
    """One request on its way through the stages: what arrived, what was decided, what the
    attempts produced; the record is filled as it goes and submitted once, by `finish`."""

    meta: RequestMeta
    body: bytes
    endpoint: str  # chat | embeddings
    record: RequestRecord
    view: ChatView | EmbeddingsView | None = None
    plan: RoutePlan | None = None
    streaming: bool = False
    model: str = ""  # the requested model, once the view is decoded
    retries: RetryHeader | None = None
    calls: int = 0  # upstream calls made (x-arbstr-attempts)
    upstream_s: float = 0.0  # time spent waiting on upstream calls and backoff sleeps
    # the rewritten body per upstream model (and provider type, where a preset has quirks)
    bodies: dict[str | tuple[str, str], bytes] = field(default_factory=dict)
    key: KeyEntry | None = None  # the virtual key, once authenticated (auth on)
    project: ProjectRow | None = None
    reservation: Reservation | None = None
    attempts_from: float = 0.0  # monotonic start of the attempts' deadline (0: the arrival)
    cache_key: str | None = None  # set when the answer may be read from or written to the cache
    cache_ttl: float = 0.0
    cache_status: str | None = None  # Cache-Status: fwd=miss | fwd=request | fwd=bypass
    cached: CachedAnswer | None = None  # a hit
    stream_slot: str | None = None  # the client whose stream slot this request holds

    @classmethod
    def start(cls, body: bytes, meta: RequestMeta, endpoint: str) -> RequestContext:
        record = RequestRecord(
            id=meta.request_id, timestamp=meta.wall, model=None, endpoint=endpoint
        )
        record.key_id = meta.key_id
        return cls(meta=meta, body=body, endpoint=endpoint, record=record)


class Shared:
    """Per-process wiring every stage reads: settings, router, pool, health, sink, limits."""

    def __init__(
        self, settings: Settings, upstream: Upstream, sink: RecordSink, health: ProviderHealth
    ) -> None:
        self.upstream = upstream
        self.sink = sink
        self.health = health
        self.scrubber = Scrubber([*(p.api_key for p in settings.providers), settings.admin_token])
        self.keys: KeyService | None = None  # virtual keys (`[auth] enabled`), set by the app
        self.cache: CacheState | None = None  # the response cache (`[cache] enabled`), likewise
        self._base_headers: dict[str, list[Header]] = {}
        self.stream_slots: StreamSlots | None = None  # [limits] max_streams_per_client
        self.replace(settings)

    def replace(self, settings: Settings) -> None:
        """Take new settings (a reload): the router, limits and provider headers, each one
        assignment, so a request sees either the old routing or the new. Requests already
        routed keep their candidates; a removed provider's headers stay for them."""
        config = settings.config
        headers = dict(self._base_headers)
        for p in settings.providers:
            base: list[Header] = [_JSON, (b"accept-encoding", b"identity")]
            if p.api_key is not None:
                base.append((b"authorization", f"Bearer {p.api_key.reveal()}".encode()))
                self.scrubber.add(p.api_key)
            base += [(k.encode(), v.encode()) for k, v in p.headers]  # the preset's, the config's
            headers[p.name] = base
        self._base_headers = headers
        self.max_body_bytes = config.server.max_body_bytes
        self.request_timeout_s = config.server.request_timeout_s
        self.idle_timeout_s = config.reliability.stream_idle_timeout_s
        self.max_stream_s = config.reliability.max_stream_s
        self.max_sse_event_bytes = config.limits.max_sse_event_bytes
        self.body_timeout_s = config.limits.body_timeout_s
        streams = config.limits.max_streams_per_client
        if not streams:
            self.stream_slots = None
        elif self.stream_slots is None:
            self.stream_slots = StreamSlots(streams)
        else:  # a reload keeps the count of streams open now
            self.stream_slots.limit = streams
        self.router = Router(settings)
        self.settings = settings

    def latency(self) -> dict[str, float] | None:
        """Observed latencies, only built when a strategy ranks by them."""
        return self.health.latency_map() if self.router.needs_latency else None

    def headers(self, cand: Candidate, meta: RequestMeta) -> list[Header]:
        """The provider's own key, never the client's `Authorization`; the request id as
        `Idempotency-Key` so every retry of one request carries the same one."""
        base = self._base_headers[cand.provider.name]
        if meta.project_id is not None and self.keys is not None:
            own = self.keys.ring.upstream_key(meta.project_id, cand.provider.name)
            if own is not None:  # the project brings its own key for this provider
                base = [h for h in base if h[0] != b"authorization"]
                base.append((b"authorization", f"Bearer {own.reveal()}".encode()))
        return [*base, (b"idempotency-key", meta.request_id.encode())]

    def body_for(self, ctx: RequestContext, cand: Candidate) -> bytes:
        """The client's bytes with only `model` (chains) and `stream_options` rewritten, and
        the provider's quirks (presets.py) applied."""
        upstream, quirks = cand.upstream_model, cand.provider.quirks
        slot = (upstream, cand.provider.type) if quirks else upstream
        payload = ctx.bodies.get(slot)
        if payload is None:
            payload = rewrite_body(
                ctx.body,
                model=None if upstream == ctx.model else upstream,
                include_usage=ctx.streaming,
                quirks=quirks,
                upstream_model=upstream,
            )
            ctx.bodies[slot] = payload
        return payload
