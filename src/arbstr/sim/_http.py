"""The simulator's HTTP/1.1 wire layer: an asyncio Protocol with a small hand-written parser."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, NamedTuple, Protocol, cast

__all__ = ["JSON", "SSE", "Connection", "Handler", "Request", "frame"]

log = logging.getLogger(__name__)

JSON = b"application/json"
SSE = b"text/event-stream"
MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024
# Requests buffered behind a busy response beyond this pause reading until it finishes.
_MAX_BACKLOG = 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}
_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = _REASONS.get(status, "Status")
        line = f"HTTP/1.1 {status} {reason}\r\nserver: arbstr-sim\r\n".encode()
        _STATUS_LINES[status] = line
    return line


def frame(data: bytes) -> bytes:
    """One chunk of a chunked transfer-encoded body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class Request(NamedTuple):
    """One parsed request; header names are lower-cased."""

    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes


class Handler(Protocol):
    """What a connection reports to: the server owning it."""

    def opened(self, conn: Connection) -> None: ...

    def closed(self, conn: Connection, interrupted: bool) -> None: ...

    def handle(self, conn: Connection, request: Request) -> None: ...


class Connection(asyncio.Protocol):
    """One client connection: parses pipelined requests and answers them strictly in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.keep_alive = True
        self._buf = bytearray()
        self._head: tuple[bytes, bytes, dict[bytes, bytes], int] | None = None
        self._conn_header = b""
        self._closing = False  # we closed it on purpose: not a client disconnect
        self._paused = False
        self._drain: asyncio.Future[None] | None = None

    # ---- asyncio callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.handler.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        busy = self.task is not None and not self.task.done()
        self.transport = None
        if self._drain is not None and not self._drain.done():
            self._drain.cancel()
        if busy and self.task is not None:
            self.task.cancel()  # stops writing and cancels any pending sleep
        self.handler.closed(self, busy and not self._closing)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self.task is None:
            self._process()
        elif len(self._buf) > _MAX_BACKLOG and self.transport is not None:
            self.transport.pause_reading()

    # ---- parsing --------------------------------------------------------------------------
    def _process(self) -> None:
        buf = self._buf
        while self.task is None and self.transport is not None and not self._closing:
            if self._head is None:
                while buf[:2] == b"\r\n":  # stray line breaks between requests are allowed
                    del buf[:2]
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        self.reject(431, "request head too large")
                    return
                if not self._parse_head(end):
                    return
            assert self._head is not None
            method, path, headers, length = self._head
            if len(buf) < length:
                return
            body = bytes(buf[:length])
            del buf[:length]
            self._head = None
            try:
                self.handler.handle(self, Request(method, path, headers, body))
            except Exception:
                log.exception("arbstr-sim: handler failed")
                self.reject(500, "simulator error")

    def _parse_head(self, end: int) -> bool:
        lines = bytes(self._buf[:end]).split(b"\r\n")
        del self._buf[: end + 4]
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            self.reject(400, "malformed request line")
            return False
        method, target, version = parts
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:].isspace():
                self.reject(400, "malformed header line")
                return False
            headers[name.lower()] = value.strip()
        if b"transfer-encoding" in headers:
            self.reject(411, "request bodies need content-length")
            return False
        raw_length = headers.get(b"content-length", b"0")
        if not raw_length.isdigit():
            self.reject(400, "bad content-length")
            return False
        length = int(raw_length)
        if length > MAX_BODY:
            self.reject(413, "request body too large")
            return False
        option = headers.get(b"connection", b"").lower()
        if version == b"HTTP/1.1":
            self.keep_alive = b"close" not in option
            self._conn_header = b"" if self.keep_alive else b"connection: close\r\n"
        else:
            self.keep_alive = b"keep-alive" in option
            self._conn_header = (
                b"connection: keep-alive\r\n" if self.keep_alive else b"connection: close\r\n"
            )
        if length and headers.get(b"expect", b"").lower() == b"100-continue":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._head = (method, target, headers, length)
        return True

    # ---- answering ------------------------------------------------------------------------
    @property
    def open(self) -> bool:
        """Whether writes still go anywhere."""
        return self.transport is not None and not self.transport.is_closing()

    def head(
        self, status: int, headers: bytes = b"", content_type: bytes = JSON, length: int = -1
    ) -> bytes:
        """A response head; `length` -1 means a chunked body. `headers` are `name: value\\r\\n`."""
        size = (
            b"transfer-encoding: chunked\r\n\r\n"
            if length < 0
            else b"content-length: %d\r\n\r\n" % length
        )
        return (
            _status_line(status)
            + b"content-type: "
            + content_type
            + b"\r\n"
            + headers
            + self._conn_header
            + size
        )

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def respond(
        self, status: int, body: bytes, headers: bytes = b"", content_type: bytes = JSON
    ) -> None:
        """A whole response with a Content-Length body."""
        self.write(self.head(status, headers, content_type, len(body)) + body)
        self.complete()

    def end_stream(self, last: bytes = b"") -> None:
        """Finish a chunked body (`last` is already framed)."""
        self.write(last + b"0\r\n\r\n")
        self.complete()

    def complete(self) -> None:
        """The current response is whole: close unless the connection is kept alive."""
        if not self.keep_alive:
            self.close()

    def reject(self, status: int, message: str) -> None:
        """Answer a request we cannot parse, then close: the byte stream is unusable."""
        self._conn_header = b"connection: close\r\n"
        self.keep_alive = False
        body = (
            b'{"error":{"message":"%b","type":"invalid_request_error","param":null,"code":null}}'
            % message.encode()
        )
        self.respond(status, body)

    async def drain(self) -> None:
        """Wait while the client is not reading (transport flow control)."""
        if self._paused and self.transport is not None:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Produce the current response in a task; later requests wait for it."""
        self.task = asyncio.get_running_loop().create_task(coro)
        self.task.add_done_callback(self._task_done)
        return self.task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.task = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("arbstr-sim: response failed", exc_info=exc)
            self.abort()
            return
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()
            self._process()

    def close(self) -> None:
        """Close after what is buffered has been sent."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()
