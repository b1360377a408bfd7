"""Queue when exhausted (`[queue] enabled`): a request every candidate of which is cooling
down waits, first come first served per model or chain, until the earliest cooldown ends, then
tries again, instead of getting 429 `all_providers_rate_limited`.

One timer per line (model or chain), set to the earliest end any waiter reported: no request
polls. When it fires, every waiter is woken in order of arrival; one that finds its candidates
still cooling takes its place back (its arrival time is its place). A full line answers 503
`queue_full`, a wait past `max_wait_s` 503 `queue_timeout`, shutdown 503 `queue_shutdown`; a
client that disconnects leaves at once.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from arbstr.errors import ArbstrError, ClientAborted

__all__ = ["QueueFull", "QueueShutdown", "QueueTimeout", "WaitQueues"]


class QueueFull(ArbstrError):
    status = 503
    code = "queue_full"


class QueueTimeout(ArbstrError):
    status = 503
    code = "queue_timeout"


class QueueShutdown(ArbstrError):
    status = 503
    code = "queue_shutdown"


@dataclass
class _Line:
    waiters: list[tuple[float, int, asyncio.Future[None]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    timer_at: float = 0.0


class WaitQueues:
    """The lines of one process. `arrival` (the request's monotonic arrival time) orders them."""

    def __init__(self, max_size: int, max_wait_s: float) -> None:
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._lines: dict[str, _Line] = {}
        self._closed = False
        self._ids = 0
        self.served = 0  # woken and gone on (metrics)
        self.refused: dict[str, int] = {"queue_full": 0, "queue_timeout": 0, "queue_shutdown": 0}

    async def wait(
        self,
        key: str,
        arrival: float,
        ready_in: float,
        disconnected: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Wait in `key`'s line until a cooldown ends (`ready_in` seconds from now at most);
        raises `QueueFull`, `QueueTimeout`, `QueueShutdown`; returns when the request should
        try its candidates again. `disconnected()` completes when the client goes."""
        if self._closed:
            raise self._refuse(QueueShutdown("the gateway is shutting down"))
        loop = asyncio.get_running_loop()
        now = loop.time()
        waited = (
            time.monotonic() - arrival
        )  # `arrival` is time.monotonic(); the loop's clock may differ
        deadline = now + self.max_wait_s - waited
        if now >= deadline:
            raise self._refuse(QueueTimeout(self._timeout_message()))
        line = self._lines.setdefault(key, _Line())
        returning = any(a == arrival for a, _, _ in line.waiters)
        if len(line.waiters) >= self.max_size and not returning:
            raise self._refuse(
                QueueFull(f"the queue for '{key}' is full ({self.max_size} waiting)")
            )
        self._ids += 1
        entry = (arrival, self._ids, loop.create_future())
        bisect.insort(line.waiters, entry)
        self._arm(key, line, now + max(0.0, ready_in))
        watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            async with asyncio.timeout_at(deadline):
                if watcher is None:
                    await entry[2]
                else:
                    await asyncio.wait({entry[2], watcher}, return_when=asyncio.FIRST_COMPLETED)
                    if not entry[2].done():  # the client left: so does its request
                        raise ClientAborted("the client disconnected while queued")
                    entry[2].result()
        except TimeoutError:
            raise self._refuse(QueueTimeout(self._timeout_message())) from None
        finally:
            if watcher is not None:
                watcher.cancel()
            self._leave(key, line, entry)
        self.served += 1

    def _arm(self, key: str, line: _Line, at: float) -> None:
        if line.timer is not None and line.timer_at <= at:
            return  # an earlier wake-up is set already
        if line.timer is not None:
            line.timer.cancel()
        loop = asyncio.get_running_loop()
        line.timer, line.timer_at = loop.call_at(at, self._wake, key), at

    def _wake(self, key: str) -> None:
        line = self._lines.get(key)
        if line is None:
            return
        line.timer = None
        for _, _, future in line.waiters:  # in order of arrival: the loop resumes them so
            if not future.done():
                future.set_result(None)

    def _leave(self, key: str, line: _Line, entry: tuple[float, int, asyncio.Future[None]]) -> None:
        with contextlib.suppress(ValueError):
            line.waiters.remove(entry)
        if not line.waiters:
            if line.timer is not None:
                line.timer.cancel()
            self._lines.pop(key, None)

    def close(self) -> None:
        """Shutdown: every waiter gets `queue_shutdown` now; no new one is taken."""
        self._closed = True
        for line in list(self._lines.values()):
            for _, _, future in line.waiters:
                if not future.done():
                    future.set_exception(QueueShutdown("the gateway is shutting down"))
                    self.refused["queue_shutdown"] += 1

    def _refuse(self, error: ArbstrError) -> ArbstrError:
        self.refused[error.code] = self.refused.get(error.code, 0) + 1
        return error

    def _timeout_message(self) -> str:
        return f"no provider became available within max_wait_s ({self.max_wait_s:g} s)"

    def snapshot(self) -> list[dict[str, object]]:
        """Per line: depth and the oldest waiter's wait so far (`/v1/ratelimits`, `/metrics`)."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            return []
        mono = time.monotonic()
        return [
            {
                "model": key,
                "depth": len(line.waiters),
                "oldest_wait_s": round(mono - line.waiters[0][0], 3) if line.waiters else 0.0,
                "next_try_in_s": round(max(0.0, line.timer_at - now), 3) if line.timer else None,
            }
            for key, line in sorted(self._lines.items())
        ]
