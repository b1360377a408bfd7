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
from collections.abc import AsyncIterator

import httpx

from arbstr.upstream._conn import HeadersTooLarge, _Conn

__all__ = ["HeadersTooLarge", "Http1Transport"]

_ONE_WRITE = 1 << 16  # bodies below this go out in the same write as the head
_Origin = tuple[bytes, bytes, int]
_UNVERIFIED = b"https+unverified"  # the scheme of an origin whose certificate is not checked


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
                    conn.raise_error()
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
        max_headers: int = 256,
        max_head_bytes: int = 64 << 10,
    ) -> None:
        self.max_connections = max_connections
        self.limits = (max_headers, max_head_bytes)
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._unverified: ssl.SSLContext | None = None
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
        if scheme == b"https" and request.extensions.get("verify") is False:
            scheme = _UNVERIFIED  # its own pool: never shares a connection with a checked one
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
                conn.raise_error()
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
        tls = None
        if scheme == b"https":
            tls = self._ssl_context()
        elif scheme == _UNVERIFIED:
            tls = self._unverified = self._unverified or _unverified_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                _, conn = await loop.create_connection(
                    lambda: _Conn(origin, self.limits),
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


def _unverified_context() -> ssl.SSLContext:
    """TLS without a certificate check, for a provider that sets `verify = false`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


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
