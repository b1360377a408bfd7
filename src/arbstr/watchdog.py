"""The event loop watchdog: a blocked loop (a slow callback, blocking I/O by mistake) stalls
every request at once, so it is detected, logged with what the loop is running, and counted.

A heartbeat task stamps the time every `interval_s`; a daemon thread (which runs while the loop
cannot) looks at the stamp. When it is older than `threshold_s` the thread logs one warning with
the loop thread's current stack (file, line and code of each frame, never local values), and
one more line when the loop is free again with how long it was held. The thread costs a wake-up
every `interval_s`, the heartbeat one timer callback: nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import traceback

__all__ = ["LoopWatch"]

log = logging.getLogger(__name__)


class LoopWatch:
    def __init__(self, threshold_s: float = 1.0, interval_s: float = 0.25) -> None:
        self.threshold_s = threshold_s
        self.interval_s = min(interval_s, threshold_s / 4)
        self.blocked = 0  # times the loop was held past the threshold
        self.longest_s = 0.0  # the longest hold seen
        self._beat = time.monotonic()
        self._loop_thread = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._heartbeat())
        self._thread = threading.Thread(target=self._watch, name="arbstr-loopwatch", daemon=True)
        self._thread.start()

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.interval_s)

    def _watch(self) -> None:
        held_since: float | None = None
        while not self._stop.wait(self.interval_s):
            beat = self._beat
            stale = time.monotonic() - beat
            if held_since is None and stale > self.threshold_s:
                held_since = beat
                self.blocked += 1
                log.warning(
                    "event loop blocked for %.1f s so far (every request waits); it runs:\n%s",
                    stale,
                    self._stack(),
                )
            elif held_since is not None and beat > held_since:
                held = beat - held_since
                self.longest_s = max(self.longest_s, held)
                log.warning("event loop free again after %.1f s", held)
                held_since = None

    def _stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "  (no stack)"
        return "".join(traceback.format_stack(frame, limit=12)).rstrip()

    def figures(self) -> dict[str, float]:
        return {
            "blocked": float(self.blocked),
            "longest_block_seconds": self.longest_s,
            "tasks": float(len(asyncio.all_tasks(self._loop))) if self._loop is not None else 0.0,
        }

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)
