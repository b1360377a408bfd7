"""A raw upstream for hostile and framing tests: answers each request with scripted bytes."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["RawUpstream", "sse_response"]

# parts of one answer: bytes to write, or a float to sleep between writes
Script = Sequence[bytes | float]


def sse_response(*events: bytes) -> list[bytes | float]:
    """A 200 `text/event-stream` answer delimited by the connection's end, one write per event
    with a short pause between them (so they arrive as separate network reads)."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    parts: list[bytes | float] = [head]
    for event in events:
        parts += [event, 0.02]
    return parts


@dataclass
class RawUpstream:
    """One asyncio server in a thread; `script(request_bytes)` gives the answer's parts."""

    script: Callable[[bytes], Script]
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    tls: ssl.SSLContext | None = None  # serve HTTPS with this context

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._ready.wait(5)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        )
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            self.requests.append(head + body)
            for part in self.script(head + body):
                if isinstance(part, float):
                    await writer.drain()
                    await asyncio.sleep(part)
                else:
                    writer.write(part)
            await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
