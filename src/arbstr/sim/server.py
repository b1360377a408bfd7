"""A simulated OpenAI-compatible provider on a raw asyncio HTTP/1.1 server (fast, keep-alive)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, cast

import msgspec

from arbstr.sim.profile import SimProfile
from arbstr.sim.responses import (
    RequestView,
    chat_body,
    embeddings_body,
    error_body,
    models_body,
    stream_events,
)

__all__ = ["SimServer"]

_view = msgspec.json.Decoder(RequestView)
_enc = msgspec.json.Encoder()
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    402: b"Payment Required",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
_CHAT = frozenset({b"/v1/chat/completions", b"/chat/completions"})
_EMBED = frozenset({b"/v1/embeddings", b"/embeddings"})
_MODELS = frozenset({b"/v1/models", b"/models"})


def _head(
    status: int, content_type: bytes, extra: list[tuple[str, str]], length: int | None
) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Status")),
        b"content-type: " + content_type,
        b"server: arbstr-sim",
    ]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in extra]
    lines.append(
        b"content-length: %d" % length if length is not None else b"transfer-encoding: chunked"
    )
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class SimServer:
    """One simulated provider. Counters are readable in-process and at `GET /_sim/stats`."""

    def __init__(self, profile: SimProfile | None = None) -> None:
        self.profile = profile or SimProfile()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self.reset()

    def reset(self) -> None:
        self.hits = 0
        self.chat_hits = 0
        self.in_flight = 0
        self.disconnects = 0
        self.last_headers: dict[str, str] = {}
        self.last_body: bytes = b"null"
        self.rng = random.Random(self.profile.seed)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        try:
            body = msgspec.json.decode(self.last_body)
        except msgspec.DecodeError:
            body = None
        return {
            "hits": self.hits,
            "chat_hits": self.chat_hits,
            "in_flight": self.in_flight,
            "disconnects": self.disconnects,
            "last_headers": self.last_headers,
            "last_body": body,
            "profile": self.profile.name,
        }

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), host, port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._conns):
            conn.close()
        await self._server.wait_closed()
        self._server = None

    # ---- request handling ---------------------------------------------------------------
    def route(
        self, conn: _Conn, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        self.hits += 1
        path = path.split(b"?", 1)[0]
        if path in _CHAT or path in _EMBED:
            if method != b"POST":
                conn.send(
                    405,
                    error_body("method not allowed", "invalid_request_error", "method_not_allowed"),
                )
                return
            try:
                view = _view.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                conn.send(
                    400, error_body(f"invalid body: {exc}", "invalid_request_error", "invalid_json")
                )
                return
            if path in _EMBED:
                conn.send(200, embeddings_body(view))
                return
            self.chat_hits += 1
            self.last_headers = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()
            }
            self.last_body = body
            p = self.profile
            if p.hang or p.latency_ms or view.stream:
                conn.spawn(self._chat(conn, view, self.chat_hits - 1))
            else:  # the fast path: no task, answered inline
                self._respond(conn, view, self.chat_hits - 1)
        elif path in _MODELS:
            conn.send(200, models_body(self.profile))
        elif path == b"/_sim/stats":
            conn.send(200, _enc.encode(self.stats()))
        elif path == b"/_sim/reset" and method == b"POST":
            self.reset()
            conn.send(200, b"{}")
        elif path == b"/_sim/profile" and method == b"POST":
            try:
                self.profile = msgspec.json.decode(body, type=SimProfile)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                conn.send(400, error_body(str(exc), "invalid_request_error", "invalid_profile"))
                return
            conn.send(200, b"{}")
        else:
            conn.send(
                404,
                error_body(
                    f"unknown route {path.decode('latin-1')}", "invalid_request_error", "not_found"
                ),
            )

    def _status_for(self, seq: int) -> int:
        p = self.profile
        if seq < len(p.status_script):
            return p.status_script[seq]
        if p.rate_limited:
            return 429
        if p.failure_rate and self.rng.random() < p.failure_rate:
            return p.failure_status
        return 200

    async def _chat(self, conn: _Conn, view: RequestView, seq: int) -> None:
        p = self.profile
        if p.hang:
            await asyncio.Event().wait()
        if p.latency_ms:
            await asyncio.sleep(p.latency_ms / 1000)
        extra = self._respond(conn, view, seq)
        if extra is not None:
            await self._stream(conn, view, seq, extra)

    def _respond(self, conn: _Conn, view: RequestView, seq: int) -> list[tuple[str, str]] | None:
        """Answer an error, a malformed body or JSON; the headers to stream with otherwise."""
        p = self.profile
        extra = list(p.ratelimit_headers.items())
        status = self._status_for(seq)
        if status != 200:
            if status == 429:  # these override the profile's own rate-limit headers
                limited = dict(extra)
                if p.retry_after is not None:
                    limited["retry-after"] = p.retry_after
                limited["x-ratelimit-remaining-requests"] = "0"
                limited["x-ratelimit-reset-requests"] = f"{p.retry_after or '1'}s"
                extra = list(limited.items())
            code = "rate_limit_exceeded" if status == 429 else f"sim_{status}"
            type_ = (
                "rate_limit_error"
                if status == 429
                else ("invalid_request_error" if status < 500 else "server_error")
            )
            conn.send(status, error_body(f"simulated {status} from {p.name}", type_, code), extra)
            return None
        if p.malformed:
            conn.send(200, b"<html>this is not json</html>", extra)
            return None
        if not view.stream:
            conn.send(200, chat_body(view, p, seq), extra)
            return None
        return extra

    async def _stream(
        self, conn: _Conn, view: RequestView, seq: int, extra: list[tuple[str, str]]
    ) -> None:
        p = self.profile
        events = stream_events(view, p, seq)
        conn.write(_head(200, b"text/event-stream", [("cache-control", "no-cache"), *extra], None))
        delay = 1 / p.tokens_per_s if p.tokens_per_s > 0 else 0.0
        for i, event in enumerate(events):
            if p.cut_after_chunks is not None and i >= p.cut_after_chunks:
                conn.abort()
                return
            if p.stall_after_chunks is not None and i >= p.stall_after_chunks:
                await asyncio.Event().wait()
            if p.garbage_after_chunks is not None and i == p.garbage_after_chunks:
                conn.write(_chunk(b"data: {not json\n\n"))
                conn.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                return
            if delay and i:
                await asyncio.sleep(delay)
            conn.write(_chunk(event))
        conn.write(b"0\r\n\r\n")


class _Conn(asyncio.Protocol):
    """One client connection: parses pipelined HTTP/1.1 requests, one response at a time."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._conns.discard(self)
        if self.task is not None and not self.task.done():
            self.server.disconnects += 1
            self.task.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None:
            self._process()

    def _process(self) -> None:
        while self.task is None and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            try:
                method, path, _version = lines[0].split(b" ", 2)
            except ValueError:
                self.abort()
                return
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                key, _, value = line.partition(b":")
                headers[key.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0") or 0)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.keep_alive = headers.get(b"connection", b"").lower() != b"close"
            self.server.route(self, method, path, headers, body)

    # ---- writing ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, status: int, body: bytes, extra: list[tuple[str, str]] | None = None) -> None:
        self.write(_head(status, b"application/json", extra or [], len(body)) + body)
        if not self.keep_alive:
            self.close()

    def spawn(self, coro: Any) -> None:
        self.server.in_flight += 1
        self.task = asyncio.get_running_loop().create_task(coro)
        self.task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.server.in_flight -= 1
        self.task = None
        if not task.cancelled() and task.exception() is not None:
            self.abort()
            return
        if self.transport is not None and not self.keep_alive:
            self.close()
        elif self.buf:
            self._process()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.abort()
