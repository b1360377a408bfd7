"""Client-side limits of the HTTP server: header size and count, a header-read deadline
(slowloris), idle keep-alive, and a cap on connections below the descriptor limit.

uvicorn's httptools protocol caps none of these itself (300 MB of headers were accepted, idle
connections stayed open for minutes, and descriptor exhaustion reset every new client), so
`arbstr serve` runs it through `LimitedHttpToolsProtocol`. `uvicorn arbstr.app:app` gets the
same with `--http arbstr.serving:LimitedHttpToolsProtocol`; granian enforces its own header
timeout and buffer size (see the README's limits table). The body deadline is the app's
(`api/asgi.py`), so it holds under every host.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from arbstr.config import LimitsConfig

__all__ = ["LimitedHttpToolsProtocol", "connection_cap", "raise_nofile_limit"]

log = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def raise_nofile_limit() -> int:
    """Raise the soft descriptor limit to the hard one; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # pragma: no cover (a platform that refuses)
            pass
    return soft


def connection_cap(limits: LimitsConfig, nofile: int, upstream_pool: int = 512) -> int:
    """Client connections to accept at once: the configured cap, else what the descriptor limit
    leaves after the upstream pool and the process's own files."""
    if limits.max_connections:
        return limits.max_connections
    return max(16, nofile - upstream_pool - 64)


def _limits() -> LimitsConfig:
    """The `[limits]` of the config the app is built from ($ARBSTR_CONFIG), else defaults."""
    from arbstr.config import ConfigError, load_settings

    try:
        return load_settings(need_keys=False).config.limits
    except ConfigError:
        return LimitsConfig()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with arbstr's `[limits]` on what a client controls."""

    limits: LimitsConfig | None = None  # resolved once per process
    max_connections: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = _limits()
        if cls.max_connections is None:
            cls.max_connections = connection_cap(cls.limits, raise_nofile_limit())
        self._lim = cls.limits
        self._reading_head = True
        self._head_bytes = 0
        self._head_since = 0.0  # loop time the current head started (0: nothing read yet)
        self._refusal: int | None = None
        self._refusal_pending: tuple[int, str] | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = type(self).max_connections or 0
        if cap and len(self.connections) > cap:
            # past the cap a connection is closed before it costs more than its descriptor
            transport.close()
            return
        self._head_since = self.loop.time()
        _Sweeper.watch(self)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            if not self._head_bytes:
                self._head_since = self.loop.time()
            self._head_bytes += len(data)
            if self._head_bytes > self._lim.max_request_header_bytes:
                # the end of the head may straddle two reads: look at the last 3 bytes too
                seen = self._tail + data
                end = seen.find(b"\r\n\r\n")
                within = self._head_bytes - len(seen) + end + 4
                if end < 0 or within > self._lim.max_request_header_bytes:
                    limit = self._lim.max_request_header_bytes
                    self._refuse(431, f"request headers are larger than {limit} bytes")
                    return
            self._tail = data[-3:]
        super().data_received(data)

    def _answering(self) -> bool:
        """Whether a response is under way: a refusal now would corrupt it."""
        return self.cycle is not None and not self.cycle.response_complete

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        if len(self.headers) > self._lim.max_request_headers:
            # the byte cap bounds their memory already; the count is checked once, here
            self._refusal = 431
            raise ValueError("too many headers")  # stops the parser; answered below
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # the request is in whole: what follows is the next request's head (pipelined or after
        # the answer), counted and timed from its first byte
        self._reading_head = True
        self._head_bytes = 0
        self._tail = b""
        self._head_since = self.loop.time()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_since = self.loop.time()  # an idle kept-alive connection: uvicorn's timer
        if self._refusal_pending is not None:
            self._refuse(*self._refusal_pending)

    def head_overdue(self, now: float) -> None:
        """Called by the sweep: a head slower than `header_timeout_s` ends the connection."""
        if not self._reading_head or self.transport.is_closing():
            return
        if now - self._head_since < self._lim.header_timeout_s or self._answering():
            return
        if self._head_bytes:
            self._refuse(408, "request headers did not arrive in time")
        elif self.cycle is None:
            self.transport.close()  # a connection that never sent a request

    def send_400_response(self, msg: str) -> None:
        if self._refusal == 431:
            self._refuse(431, f"more than {self._lim.max_request_headers} request headers")
            return
        super().send_400_response(msg)

    def _refuse(self, status: int, message: str) -> None:
        """Answer in the OpenAI error shape and close: the rest of the request is not read.
        While a response is under way, reading stops and the refusal follows that response."""
        from arbstr.errors import error_body

        if self._answering():
            self._refusal_pending = (status, message)
            self._reading_head = False
            self.flow.pause_reading()
            return

        code = "request_timeout" if status == 408 else "request_header_fields_too_large"
        body = error_body(message, "invalid_request_error", code)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body)) + body
        )
        self.transport.close()
        self._reading_head = False


class _Sweeper:
    """One timer per event loop, every 0.25 s, instead of a timer armed and cancelled on every
    request: the connections still reading a head are checked against `header_timeout_s`."""

    loops: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connections: weakref.WeakSet[LimitedHttpToolsProtocol] = weakref.WeakSet()
        self.handle: asyncio.TimerHandle | None = None

    @classmethod
    def watch(cls, conn: LimitedHttpToolsProtocol) -> None:
        sweeper = cls.loops.get(conn.loop)
        if sweeper is None:
            sweeper = cls.loops[conn.loop] = cls(conn.loop)
        sweeper.connections.add(conn)
        if sweeper.handle is None:
            sweeper.handle = conn.loop.call_later(0.25, sweeper.sweep)

    def sweep(self) -> None:
        self.handle = None
        now = self.loop.time()
        for conn in list(self.connections):
            if conn.transport.is_closing():
                self.connections.discard(conn)
            else:
                conn.head_overdue(now)
        if self.connections and not self.loop.is_closed():
            self.handle = self.loop.call_later(0.25, self.sweep)
