"""A lean HTTP/1.1 keep-alive transport for httpx: an asyncio protocol and httptools' C parser.

Why our own (docs/adr/0009-own-http1-transport.md): the upstream call was the largest cost in the
gateway's CPU per request, and aiohttp's client under httpx does far more per request (cookie
jars, tracing hooks, payload registries, timer contexts) than a proxy needs. This transport
writes a request in one `write`, parses the response with httptools and hands the body over as
it arrives. HTTP/1.1 only, with or without TLS, no proxies (`trust_env` is off anyway), no HEAD.
Errors are httpx's own classes, so callers cannot tell it from any other transport.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import httptools
import httpx

__all__ = ["Http1Transport"]

_PAUSE_AT = 1 << 20  # unread body bytes before the socket stops being read
_ONE_WRITE = 1 << 16  # bodies below this go out in the same write as the head
_Origin = tuple[bytes, bytes, int]


class _Conn(asyncio.Protocol):
    """One connection; one request at a time and, with keep-alive, many in a row."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.lost = False
        self.slot = True  # counts against the pool's connection limit until dropped
        self.idle_since = 0.0
        self.reset()

    def reset(self) -> None:
        """Ready for the next request on this connection."""
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.keep_alive = False
        self.until_close = False
        self.complete = False
        self.received = False
        self.error: Exception | None = None
        self.chunks: deque[bytes] = deque()
        self.pending = 0
        self.paused = False

    # ---- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(httpx.RemoteProtocolError(f"malformed HTTP response from upstream: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.head_done and self.until_close:
            self.complete = True  # a body delimited by the end of the connection
        elif not self.complete:
            if self.head_done:
                self.fail(httpx.RemoteProtocolError("upstream closed the connection mid-body"))
            else:
                self.fail(httpx.RemoteProtocolError("upstream disconnected without a response"))
        self.wake()

    # ---- httptools callbacks ------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:  # an interim response: the real one follows
            self.headers = []
            return
        self.head_done = True
        # llhttp forgets this once the message is complete: read it while the head is fresh
        self.keep_alive = self.parser.should_keep_alive()
        if self.status not in (204, 304) and not any(
            n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.headers
        ):
            self.until_close = True
        self.wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.pending += len(body)
        if self.pending > _PAUSE_AT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self.wake()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            return
        self.complete = True
        self.wake()

    # ---- used by the transport ----------------------------------------------------------
    def fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout_s: float | None) -> None:
        """Until something new arrives (head, body, end or error), at most `timeout_s`."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self.waiter
        except TimeoutError:
            raise httpx.ReadTimeout("upstream sent nothing within the read timeout") from None
        finally:
            self.waiter = None

    def take(self) -> bytes:
        """Everything received and not yet handed over, as one bytes object."""
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.pending = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and self.error is None
            and not self.lost
            and not self.until_close
            and self.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    """The response body as it arrives; the connection goes back to the pool at its end."""

    def __init__(self, conn: _Conn, owner: Http1Transport, read_s: float | None) -> None:
        self._conn: _Conn | None = conn
        self._owner = owner
        self._read_s = read_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                if conn.chunks:
                    yield conn.take()
                elif conn.complete:
                    break
                elif conn.error is not None:
                    raise conn.error
                else:
                    await conn.wait(self._read_s)
        finally:  # also on errors, timeouts and a consumer that stops early
            self._finish()

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._owner.release(conn)

    async def aclose(self) -> None:
        self._finish()


class Http1Transport(httpx.AsyncBaseTransport):
    """A keep-alive connection pool per origin (scheme, host, port), HTTP/1.1 only."""

    def __init__(
        self,
        *,
        max_connections: int = 512,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[_Origin, list[_Conn]] = {}
        self.open_connections = 0
        self._freed: asyncio.Event | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the upstream transport is closed", request=request)
        url = request.url
        scheme = url.raw_scheme
        port = url.port or (443 if scheme == b"https" else 80)
        origin: _Origin = (scheme, url.raw_host, port)
        timeouts = request.extensions.get("timeout") or {}
        connect_s, read_s = timeouts.get("connect"), timeouts.get("read")
        body = await request.aread()
        head = _head(request, body)
        conn, reused = await self._acquire(origin, connect_s, timeouts.get("pool"))
        try:
            try:
                await self._exchange(conn, head, body, read_s)
            except httpx.RemoteProtocolError:
                if not reused or conn.received:
                    raise
                # a kept-alive connection the upstream had already closed: the request never
                # reached it, so it goes once more on a fresh connection
                self._drop(conn)  # frees the slot the fresh connection takes, with no await between
                conn = await self._connect(origin, connect_s)
                await self._exchange(conn, head, body, read_s)
        except BaseException:
            self._drop(conn)
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(conn, self, read_s),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    @staticmethod
    async def _exchange(conn: _Conn, head: bytes, body: bytes, read_s: float | None) -> None:
        assert conn.transport is not None
        if len(body) < _ONE_WRITE:
            conn.transport.write(head + body)
        else:
            conn.transport.write(head)
            conn.transport.write(body)
        while not conn.head_done:
            if conn.error is not None:
                raise conn.error
            await conn.wait(read_s)

    async def _acquire(
        self, origin: _Origin, connect_s: float | None, pool_s: float | None
    ) -> tuple[_Conn, bool]:
        """An idle kept-alive connection to `origin`, else a new one once a slot is free."""
        deadline = None if pool_s is None else asyncio.get_running_loop().time() + pool_s
        while True:
            conn = self._take_idle(origin)
            if conn is not None:
                return conn, True
            if self.open_connections < self.max_connections or self._drop_oldest_idle():
                return await self._connect(origin, connect_s), False
            if self._freed is None:
                self._freed = asyncio.Event()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._freed.wait()
            except TimeoutError:
                raise httpx.PoolTimeout("no upstream connection became free in time") from None

    def _take_idle(self, origin: _Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since < self.keepalive_expiry:
                conn.reset()
                return conn
            self._drop(conn)
        return None

    def _drop_oldest_idle(self) -> bool:
        """At the limit with idle connections to other origins: close one to make room."""
        for conns in self._idle.values():
            if conns:
                self._drop(conns.pop(0))
                return True
        return False

    async def _connect(self, origin: _Origin, connect_s: float | None) -> _Conn:
        self.open_connections += 1
        scheme, host, port = origin
        name = host.decode("ascii")
        tls = self._ssl_context() if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                _, conn = await loop.create_connection(
                    lambda: _Conn(origin),
                    name,
                    port,
                    ssl=tls,
                    server_hostname=name if tls is not None else None,
                )
        except BaseException as exc:
            self._free_slot()
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"connecting to {name}:{port} timed out") from None
            if isinstance(exc, OSError):
                raise httpx.ConnectError(f"cannot connect to {name}:{port}: {exc}") from exc
            raise
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def release(self, conn: _Conn) -> None:
        """A response is done with `conn`: keep it for the next request, or close it."""
        if conn.reusable and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
            self._wake_waiters()
        else:
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        if conn.slot:
            conn.slot = False
            self._free_slot()

    def _free_slot(self) -> None:
        self.open_connections -= 1
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        if self._freed is not None:
            self._freed.set()
            self._freed = None

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                self._drop(conn)
        self._idle.clear()


def _head(request: httpx.Request, body: bytes) -> bytes:
    """Request line and headers; Host and Content-Length added when the caller did not set them."""
    url = request.url
    lines = [request.method.encode("ascii"), b" ", url.raw_path or b"/", b" HTTP/1.1\r\n"]
    has_host = has_length = False
    for name, value in request.headers.raw:
        low = name.lower()
        if low == b"host":
            has_host = True
        elif low == b"content-length":
            has_length = True
        elif low == b"transfer-encoding":
            continue  # the body is always sent whole, with a length
        if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
            # a CR or LF would end the header early and smuggle a second request onto the
            # kept-alive connection: never write one (the value itself stays out of the message)
            raise httpx.LocalProtocolError(f"refusing to send header {name!r}: contains CR or LF")
        lines += (name, b": ", value, b"\r\n")
    if not has_host:
        lines += (b"host: ", url.netloc, b"\r\n")
    if not has_length and (body or request.method not in ("GET", "HEAD")):
        lines += (b"content-length: ", str(len(body)).encode(), b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)
