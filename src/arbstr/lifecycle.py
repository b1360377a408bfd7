"""The drain: from the first SIGTERM, `/health/ready` answers 503 while the process goes on
serving; after `[server] drain_delay_s` the host's own shutdown runs (stop accepting, finish
what is in flight, flush the recorder).

A balancer that checks readiness stops sending new requests during the delay, so a replica
goes without a client noticing. The hook wraps whatever Python handler the ASGI host installed
for SIGTERM (uvicorn's, one worker or many, and gunicorn's uvicorn workers), so it holds under
each of them; a host that handles signals outside Python (granian) still drains, without the
delay. A second SIGTERM, or SIGINT (Ctrl-C), shuts down at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["DRAIN", "Drain"]

log = logging.getLogger(__name__)

_Handler = Callable[[int, FrameType | None], Any]


class Drain:
    """Process-wide drain state; one instance, `DRAIN`."""

    def __init__(self) -> None:
        self.since: float | None = None  # wall time the drain began
        self._saved: dict[int, Any] = {}
        self.on_stop: list[Callable[[], None]] = []  # run as the host's shutdown starts

    @property
    def draining(self) -> bool:
        return self.since is not None

    def begin(self, why: str) -> None:
        if self.since is None:
            self.since = time.time()
            log.info("draining (%s): /health/ready now answers 503", why)

    def reset(self) -> None:
        """A new app in this process (tests build several) starts undrained."""
        self.since = None
        self.on_stop.clear()

    def _stopping(self) -> None:
        for callback in self.on_stop:
            try:
                callback()
            except Exception:  # one failing hook must not keep the process from stopping
                log.exception("a shutdown hook failed")

    def arm(self, loop: asyncio.AbstractEventLoop, delay_s: float) -> None:
        """Wrap the host's SIGTERM and SIGINT handlers; `disarm` puts them back."""
        self.reset()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                current = signal.getsignal(sig)
            except ValueError:  # pragma: no cover (not the main thread)
                return
            if not callable(current) or sig in self._saved:
                continue  # default or ignored: the host did not ask to see it
            wrapped = self._wrap(loop, sig, current, delay_s if sig == signal.SIGTERM else 0.0)
            try:
                signal.signal(sig, wrapped)
            except ValueError:  # pragma: no cover (not the main thread)
                return
            self._saved[sig] = current

    def disarm(self) -> None:
        for sig, handler in self._saved.items():
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(sig, handler)
        self._saved.clear()

    def _wrap(
        self, loop: asyncio.AbstractEventLoop, sig: int, host: _Handler, delay_s: float
    ) -> _Handler:
        def handler(signum: int, frame: FrameType | None) -> None:
            first = not self.draining
            self.begin(signal.Signals(signum).name)
            if not first or delay_s <= 0 or loop.is_closed():
                if not loop.is_closed():
                    loop.call_soon_threadsafe(self._stopping)
                host(signum, frame)
                return

            def stop() -> None:
                self._stopping()
                host(signum, None)

            # the host's shutdown after the delay; call_later is not signal-safe, so schedule
            # it from the loop itself
            loop.call_soon_threadsafe(loop.call_later, delay_s, stop)

        return handler


DRAIN = Drain()
