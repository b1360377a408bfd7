"""A simulated OpenAI-compatible provider (labelled a simulator everywhere): demo, tests, bench."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType

from arbstr.sim.profile import BUILTIN_PROFILES, SimProfile, builtin_profile
from arbstr.sim.server import SimServer

__all__ = [
    "BUILTIN_PROFILES",
    "SimCluster",
    "SimProfile",
    "SimServer",
    "builtin_profile",
    "run_in_thread",
]


class SimCluster:
    """Simulated providers on an event loop in a daemon thread; a context manager."""

    def __init__(self, profiles: Sequence[SimProfile], host: str = "127.0.0.1") -> None:
        self.servers = [SimServer(p) for p in profiles]
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="arbstr-sim", daemon=True
        )

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def __enter__(self) -> SimCluster:
        self._thread.start()
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.start(self.host), self.loop).result(10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.stop(), self.loop).result(10)

        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_drain(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def run_in_thread(profiles: Sequence[SimProfile]) -> SimCluster:
    """Start simulated providers in a background thread: `with run_in_thread([...]) as c:`."""
    return SimCluster(profiles)
