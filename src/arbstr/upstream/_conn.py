"""One upstream HTTP/1.1 connection: an asyncio protocol fed to httptools' parser, with limits.

Private to `upstream/http1.py` (the transport and its pool); see that module and ADR 0009.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NoReturn, cast

import httptools
import httpx

__all__ = ["HeadersTooLarge"]

_PAUSE_AT = 1 << 20  # unread body bytes before the socket stops being read
_Origin = tuple[bytes, bytes, int]


class _Stop(Exception):
    """Raised from a parser callback to stop parsing the rest of a read."""


class HeadersTooLarge(httpx.RemoteProtocolError):
    """The upstream's status line and headers passed a limit (count or bytes)."""


class _Conn(asyncio.Protocol):
    """One connection; one request at a time and, with keep-alive, many in a row."""

    def __init__(self, origin: _Origin, limits: tuple[int, int] = (256, 64 << 10)) -> None:
        self.origin = origin
        self.max_headers, self.max_head_bytes = limits
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
        self.failed = False
        self.chunks: deque[bytes] = deque()
        self.pending = 0
        self.paused = False
        self.head_bytes = 0
        self.tail = b""
        self.extra = False  # bytes after the end of the response: the connection is unusable

    def raise_error(self) -> NoReturn:
        """Raise the connection's failure without keeping it: a stored exception whose
        traceback holds the frames that hold this connection is a cycle that keeps a failed
        connection (and everything it buffered) alive until a full collection."""
        exc, self.error = self.error, None
        self.failed = True
        assert exc is not None
        raise exc

    # ---- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.complete:
            self._unusable()  # more than the response said it had: never reuse this one
            return
        if not self.head_done:
            # counted before parsing: one endless header line must not grow without bound
            self.head_bytes += len(data)
            if self.head_bytes > self.max_head_bytes and not self._head_fits(data):
                return
            self.tail = data[-3:]
        try:
            self.parser.feed_data(data)
        except _Stop:
            pass
        except httptools.HttpParserError as exc:
            if self.complete:
                self._unusable()
                return
            self.fail(httpx.RemoteProtocolError(f"malformed HTTP response from upstream: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def _head_fits(self, data: bytes) -> bool:
        """Whether the head ends within the limit in this read (the rest is body); the end may
        straddle two reads, so the previous read's last bytes are looked at too."""
        seen = self.tail + data
        end = seen.find(b"\r\n\r\n")
        if end >= 0 and self.head_bytes - len(seen) + end + 4 <= self.max_head_bytes:
            return True
        self._too_large(f"more than {self.max_head_bytes} bytes of status line and headers")
        return False

    def _too_large(self, what: str) -> None:
        self.fail(HeadersTooLarge(f"upstream response has {what}"))
        self.headers = []
        if self.transport is not None:
            self.transport.close()

    def _unusable(self) -> None:
        self.extra = True
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
    def on_message_begin(self) -> None:
        if self.complete:  # a second response in the same read: stop parsing it
            self._unusable()
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.max_headers:
            self._too_large(f"more than {self.max_headers} header lines")
            raise _Stop
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
        if self.complete:
            return
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
            and not self.failed
            and not self.extra
            and not self.lost
            and not self.until_close
            and self.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()
