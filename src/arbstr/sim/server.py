"""One simulated provider: routes, behaviours from its profile, and counters."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
from collections.abc import Callable
from typing import Any

import msgspec

from arbstr.sim._http import SSE, Connection, Request, frame
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
_profile = msgspec.json.Decoder(SimProfile)
_enc = msgspec.json.Encoder()
_GARBAGE = frame(b"data: {not json\n\n")
_MALFORMED = b"<html><body>arbstr-sim: this is not JSON</body></html>"
_SSE_HEADERS = b"cache-control: no-cache\r\n"
_GET, _POST = frozenset({b"GET"}), frozenset({b"POST"})


def _fault(p: SimProfile, total: int) -> tuple[int, str]:
    """How many events a stream sends, then how it ends: end, cut, stall or garbage."""
    sent, ending = total, "end"
    for after, kind in (
        (p.cut_after_chunks, "cut"),
        (p.stall_after_chunks, "stall"),
        (p.garbage_after_chunks, "garbage"),
    ):
        if after is not None and after < sent:
            sent, ending = after, kind
    return sent, ending


def _error(status: int, name: str) -> bytes:
    if status == 429:
        type_, code = "rate_limit_error", "rate_limit_exceeded"
    else:
        type_, code = ("invalid_request_error" if status < 500 else "server_error"), f"sim_{status}"
    return error_body(f"simulated {status} from {name} (arbstr-sim)", type_, code)


def _headers(p: SimProfile, status: int) -> bytes:
    """The profile's rate-limit headers; a 429 says zero remaining, and when to retry."""
    items = p.ratelimit_headers
    if status == 429:
        items = dict(items)
        if p.retry_after is not None:
            items["retry-after"] = p.retry_after
        reset = p.retry_after if p.retry_after and p.retry_after.isdigit() else "1"
        items["x-ratelimit-remaining-requests"] = "0"
        items["x-ratelimit-reset-requests"] = f"{reset}s"
    if not items:
        return b""
    return "".join(f"{k}: {v}\r\n" for k, v in items.items()).encode("latin-1")


class SimServer:
    """A simulated provider; counters are readable in process and at `GET /_sim/stats`."""

    def __init__(self, profile: SimProfile | None = None) -> None:
        self.port = 0
        self.host = "127.0.0.1"
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._conns: set[Connection] = set()
        self._idle: asyncio.Event | None = None  # set when the last connection is gone
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = f"chatcmpl-sim-{os.urandom(3).hex()}-"
        self._next_id = itertools.count(1)
        self._profile = profile or SimProfile()
        self.reset()

    @property
    def profile(self) -> SimProfile:
        """The behaviour; assigning one restarts its status script and reseeds its failures."""
        return self._profile

    @profile.setter
    def profile(self, profile: SimProfile) -> None:
        self._profile = profile
        self._script = 0
        self._rng = random.Random(profile.seed)

    def reset(self) -> None:
        """Zero the counters and restart the status script."""
        self.hits = 0  # API requests (not `/_sim/*`)
        self.chat_hits = 0
        self.in_flight = 0
        self.disconnects = 0
        self.last_headers_raw: dict[bytes, bytes] = {}
        self.last_body: bytes = b"null"
        self.profile = self._profile

    @property
    def last_headers(self) -> dict[str, str]:
        """The lower-cased headers of the last chat request."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.last_headers_raw.items()}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        """Counters and the last chat request, as `GET /_sim/stats` shows them."""
        try:
            body: Any = msgspec.json.decode(self.last_body)
        except msgspec.DecodeError:
            body = None
        return {
            "hits": self.hits,
            "chat_hits": self.chat_hits,
            "in_flight": self.in_flight,
            "disconnects": self.disconnects,
            "connections": self.connections,
            "last_headers": self.last_headers,
            "last_body": body,
            "profile": self._profile.name,
        }

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), host, port, backlog=1024, reuse_address=True
        )
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every connection, cancelling what they were doing."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._conns):
            conn.close()
        if self._conns:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await self._idle.wait()
            self._idle = None
        for conn in list(self._conns):
            conn.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    # ---- connection callbacks -------------------------------------------------------------
    def opened(self, conn: Connection) -> None:
        self.connections += 1
        self._conns.add(conn)

    def closed(self, conn: Connection, interrupted: bool) -> None:
        self._conns.discard(conn)
        if self._idle is not None and not self._conns:
            self._idle.set()
        if interrupted:
            self.disconnects += 1

    def handle(self, conn: Connection, request: Request) -> None:
        path = request.path
        if b"?" in path:
            path = path.split(b"?", 1)[0]
        route = _ROUTES.get(path)
        if route is None:
            message = f"unknown path {path.decode('latin-1')} (arbstr-sim)"
            conn.respond(404, error_body(message, "invalid_request_error", "not_found"))
            return
        methods, answer = route
        if request.method not in methods:
            allow = b"allow: " + b", ".join(sorted(methods)) + b"\r\n"
            message = f"{request.method.decode('latin-1')} not allowed here (arbstr-sim)"
            body = error_body(message, "invalid_request_error", "method_not_allowed")
            conn.respond(405, body, allow)
            return
        if not path.startswith(b"/_sim/"):
            self.hits += 1
        answer(self, conn, request)

    # ---- routes ---------------------------------------------------------------------------
    def _decode(self, conn: Connection, body: bytes) -> RequestView | None:
        try:
            return _view.decode(body)
        except msgspec.DecodeError as exc:
            conn.respond(400, error_body(f"invalid JSON: {exc}", "invalid_request_error", None))
        except msgspec.ValidationError as exc:
            conn.respond(400, error_body(f"invalid request: {exc}", "invalid_request_error", None))
        return None

    def _embeddings(self, conn: Connection, request: Request) -> None:
        view = self._decode(conn, request.body)
        if view is not None:
            conn.respond(200, embeddings_body(view))

    def _models(self, conn: Connection, request: Request) -> None:
        conn.respond(200, models_body(self._profile))

    def _stats(self, conn: Connection, request: Request) -> None:
        conn.respond(200, _enc.encode(self.stats()))

    def _reset(self, conn: Connection, request: Request) -> None:
        self.reset()
        conn.respond(200, b'{"reset":true}')

    def _profile_route(self, conn: Connection, request: Request) -> None:
        if request.method == b"POST":
            try:
                self.profile = _profile.decode(request.body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                body = error_body(f"invalid profile: {exc}", "invalid_request_error", None)
                conn.respond(400, body)
                return
        conn.respond(200, _enc.encode(self._profile))

    def _status(self, p: SimProfile) -> int:
        seq = self._script
        self._script += 1
        if seq < len(p.status_script):
            return p.status_script[seq]
        if p.rate_limited:
            return 429
        if p.failure_rate and self._rng.random() < p.failure_rate:
            return p.failure_status
        return 200

    def _chat(self, conn: Connection, request: Request) -> None:
        view = self._decode(conn, request.body)
        if view is None:
            return
        self.chat_hits += 1
        self.last_headers_raw, self.last_body = request.headers, request.body
        p = self._profile
        status = self._status(p)
        id_ = f"{self._ids}{next(self._next_id)}"
        streams = view.stream and status == 200 and not p.malformed
        if (
            p.hang
            or p.latency_ms > 0
            or (streams and (p.tokens_per_s > 0 or p.stall_after_chunks is not None))
        ):
            self.in_flight += 1
            task = conn.spawn(self._later(conn, view, p, status, id_))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif streams:
            self._stream_now(conn, view, p, id_)
        else:
            self._answer(conn, view, p, status, id_)

    def _answer(
        self, conn: Connection, view: RequestView, p: SimProfile, status: int, id_: str
    ) -> None:
        """Everything but a stream: an error, a malformed body or a chat completion."""
        headers = _headers(p, status)
        if status != 200:
            conn.respond(status, _error(status, p.name), headers)
        elif p.malformed:
            conn.respond(200, _MALFORMED, headers)
        else:
            conn.respond(200, chat_body(view, p, id_), headers)

    def _stream_now(self, conn: Connection, view: RequestView, p: SimProfile, id_: str) -> None:
        """An instant stream in one write (no stall: that needs a task)."""
        events = stream_events(view, p, id_)
        sent, ending = _fault(p, len(events))
        head = conn.head(200, _SSE_HEADERS + _headers(p, 200), SSE)
        conn.write(head + b"".join([frame(e) for e in events[:sent]]))
        self._end(conn, ending)

    @staticmethod
    def _end(conn: Connection, ending: str) -> None:
        if ending == "cut":
            conn.close()  # no terminating chunk: the client sees a broken body
        elif ending == "garbage":
            conn.end_stream(_GARBAGE)
        elif ending == "end":
            conn.end_stream()

    async def _later(
        self, conn: Connection, view: RequestView, p: SimProfile, status: int, id_: str
    ) -> None:
        """A response that waits: hang, latency, paced or stalling streams."""
        try:
            if p.hang:
                await asyncio.get_running_loop().create_future()
            if p.latency_ms > 0:
                await asyncio.sleep(p.latency_ms / 1000)
            if not (view.stream and status == 200 and not p.malformed):
                self._answer(conn, view, p, status, id_)
                return
            events = stream_events(view, p, id_)
            sent, ending = _fault(p, len(events))
            conn.write(conn.head(200, _SSE_HEADERS + _headers(p, 200), SSE))
            delay = 1 / p.tokens_per_s if p.tokens_per_s > 0 else 0.0
            if not delay:
                conn.write(b"".join([frame(e) for e in events[:sent]]))
            for i in range(sent if delay else 0):
                if i:
                    await asyncio.sleep(delay)
                conn.write(frame(events[i]))
                await conn.drain()
            if ending == "stall":  # keep the connection open and silent until the client leaves
                await asyncio.get_running_loop().create_future()
            self._end(conn, ending)
        finally:
            self.in_flight -= 1


_Answer = Callable[[SimServer, Connection, Request], None]
_ROUTES: dict[bytes, tuple[frozenset[bytes], _Answer]] = {
    b"/v1/chat/completions": (_POST, SimServer._chat),
    b"/chat/completions": (_POST, SimServer._chat),
    b"/v1/embeddings": (_POST, SimServer._embeddings),
    b"/embeddings": (_POST, SimServer._embeddings),
    b"/v1/models": (_GET, SimServer._models),
    b"/models": (_GET, SimServer._models),
    b"/_sim/stats": (_GET, SimServer._stats),
    b"/_sim/reset": (_POST, SimServer._reset),
    b"/_sim/profile": (_GET | _POST, SimServer._profile_route),
}
