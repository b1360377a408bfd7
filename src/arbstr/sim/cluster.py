"""Simulated providers on an event loop in a daemon thread, for synchronous callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType

from arbstr.sim.profile import SimProfile
from arbstr.sim.server import SimServer

__all__ = ["SimCluster", "run_in_thread"]


class SimCluster:
    """Several `SimServer`s served from one background loop; a context manager."""

    def __init__(self, profiles: Sequence[SimProfile], host: str = "127.0.0.1") -> None:
        self.servers = [SimServer(p) for p in profiles]
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="arbstr-sim", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def urls(self) -> list[str]:
        """The servers' `/v1` base URLs, in profile order."""
        return [s.url for s in self.servers]

    def __enter__(self) -> SimCluster:
        self._thread.start()
        try:
            for server in self.servers:
                asyncio.run_coroutine_threadsafe(server.start(self.host), self.loop).result(10)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every server, cancel what is left on the loop, end the thread."""
        if self.loop.is_closed():
            return

        async def _shutdown() -> None:
            for server in self.servers:
                await server.stop()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def run_in_thread(profiles: Sequence[SimProfile]) -> SimCluster:
    """Start simulated providers in a background thread: `with run_in_thread([...]) as c:`."""
    return SimCluster(profiles)
