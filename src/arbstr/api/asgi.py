"""Raw ASGI plumbing for the proxy routes: read a capped body, send a gateway response."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from arbstr.errors import ArbstrError, ClientAborted, PayloadTooLarge, RequestTimeout
from arbstr.ids import new_request_id

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send

    from arbstr.pipeline.context import GatewayResponse

__all__ = ["new_request_id", "read_body", "send_error", "send_response"]

log = logging.getLogger(__name__)
_JSON = (b"content-type", b"application/json")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, timeout_s: float = 30.0) -> bytes:
    """The whole request body: more than `limit` bytes is 413 (refused before reading it all
    when declared), a body not in within `timeout_s` is 408, and a client that leaves before
    sending what it declared is `ClientAborted` (a truncated body never goes upstream)."""
    declared_raw = _header(scope, b"content-length")
    declared = int(declared_raw) if declared_raw is not None and declared_raw.isdigit() else None
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    task = asyncio.current_task()
    assert task is not None
    _BodyDeadlines.watch(task, timeout_s)
    try:  # the first receive too: a body may never come
        body = await _read_all(await receive(), receive, limit)
    except asyncio.CancelledError:
        if not _BodyDeadlines.expired(task):
            raise
        task.uncancel()
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    finally:
        _BodyDeadlines.forget(task)
    if declared is not None and len(body) != declared:
        raise ClientAborted(f"the client sent {len(body)} of the {declared} bytes it declared")
    return body


class _BodyDeadlines:
    """Body deadlines without a timer per request: `asyncio.timeout` costs ~3.5 us a use (2% of
    a proxied request's CPU); one sweep per event loop every 0.25 s cancels the reads that are
    late instead, and the read turns that cancellation into a 408. A read that finished has
    already left the table (it leaves synchronously, before its next await), so only a read
    still waiting on the client can be cancelled."""

    deadlines: ClassVar[dict[asyncio.Task[Any], float]] = {}
    late: ClassVar[set[asyncio.Task[Any]]] = set()
    sweeping: ClassVar[set[asyncio.AbstractEventLoop]] = set()

    @classmethod
    def watch(cls, task: asyncio.Task[Any], timeout_s: float) -> None:
        loop = task.get_loop()
        cls.deadlines[task] = loop.time() + timeout_s
        if loop not in cls.sweeping:
            cls.sweeping.add(loop)
            loop.call_later(0.25, cls._sweep, loop)

    @classmethod
    def forget(cls, task: asyncio.Task[Any]) -> None:
        cls.deadlines.pop(task, None)
        cls.late.discard(task)

    @classmethod
    def expired(cls, task: asyncio.Task[Any]) -> bool:
        return task in cls.late

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        mine = [t for t in cls.deadlines if t.get_loop() is loop]
        for task in mine:
            if cls.deadlines[task] <= now and task not in cls.late:
                cls.late.add(task)
                task.cancel()
        if mine and not loop.is_closed():
            loop.call_later(0.25, cls._sweep, loop)
        else:
            cls.sweeping.discard(loop)


async def _read_all(message: Any, receive: Receive, limit: int) -> bytes:
    if message["type"] == "http.disconnect":
        raise ClientAborted("the client disconnected before sending its body")
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientAborted("the client disconnected in the middle of its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def send_error(
    send: Send, error: ArbstrError, request_id: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [_JSON, (b"x-arbstr-request-id", request_id.encode())]
    if error.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(error.retry_after))).encode()))
    if extra:
        headers.extend(extra)
    body = error.body()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_response(
    scope: Scope, receive: Receive, send: Send, response: GatewayResponse, request_id: str = ""
) -> None:
    """Send a gateway response; a stream is cancelled as soon as the client goes away.

    A whole body goes out with its length (not chunked): clients and intermediaries can size it.
    """
    headers = response.headers
    if response.stream is None:
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": False})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await _send_stream(receive, send, response.stream, request_id)


async def _send_stream(
    receive: Receive, send: Send, stream: AsyncIterator[bytes], request_id: str
) -> None:
    async def pump() -> None:
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def watch() -> None:
        while True:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                return

    pump_task = asyncio.ensure_future(pump())
    watch_task = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump_task, watch_task):
            if not task.done():
                task.cancel()
        for task in (pump_task, watch_task):
            with contextlib.suppress(asyncio.CancelledError, OSError, Exception):
                await task
        failure = None if pump_task.cancelled() else pump_task.exception()
        if failure is not None and not isinstance(failure, OSError):
            # the relay recorded the request (its `finally`); a bug must not pass silently
            log.error("stream %s failed while relaying", request_id, exc_info=failure)
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
