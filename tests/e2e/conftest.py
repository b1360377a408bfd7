"""End-to-end fixtures: simulated providers and the gateway on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from arbstr.app import create_app
from arbstr.config import LimitsConfig, parse_settings
from arbstr.recording.record import MemorySink, RequestRecord
from arbstr.serving import LimitedHttpToolsProtocol, connection_cap
from arbstr.sim import SimCluster, SimProfile, run_in_thread

from .raw import RawUpstream


@dataclass
class SimSpec:
    """A simulated provider and how the gateway config prices it."""

    name: str
    profile: SimProfile = field(default_factory=SimProfile)
    input_rate: float = 10.0
    output_rate: float = 30.0
    base_fee: float = 0.0
    models: list[str] | None = None
    api_key: str | None = None
    extra: str = ""
    url: str | None = None  # a raw upstream of the test's own instead of the simulator


@dataclass
class Stack:
    """Running sims + a running gateway."""

    url: str
    sims: SimCluster
    sink: MemorySink
    names: list[str]
    app: Any = None
    gateway: GatewayThread | None = None

    def sim(self, name: str) -> Any:
        return self.sims.servers[self.names.index(name)]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def last_record(self, count: int = 1, timeout_s: float = 5.0) -> RequestRecord:
        """The newest record once `count` exist. A stream is recorded when its relay ends, just
        after the last bytes go out, so a client that stops reading at `[DONE]` (the SDKs) can
        be done before the record is submitted."""
        deadline = time.monotonic() + timeout_s
        while len(self.sink.records) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.sink.records[-1]


def limited_protocol(limits: LimitsConfig) -> type[LimitedHttpToolsProtocol]:
    """The server protocol `arbstr serve` runs, with these `[limits]`."""
    cap = connection_cap(limits, 20_000)
    return type(
        "TestProtocol", (LimitedHttpToolsProtocol,), {"limits": limits, "max_connections": cap}
    )


class GatewayThread:
    """uvicorn serving `create_app(settings)` on its own event loop in a daemon thread, through
    the same client-limits protocol as `arbstr serve`."""

    def __init__(self, app: Any, limits: LimitsConfig | None = None) -> None:
        limits = limits or LimitsConfig()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            loop="asyncio",
            http=limited_protocol(limits),
            timeout_keep_alive=limits.keepalive_timeout_s,  # type: ignore[arg-type]
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def tasks(self) -> int:
        """How many tasks the gateway's event loop holds right now."""
        loop = self.server.servers[0]._loop  # the loop serving the listening socket

        async def count() -> int:
            return len(asyncio.all_tasks())

        return asyncio.run_coroutine_threadsafe(count(), loop).result(5)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def config_text(specs: list[SimSpec], urls: list[str], head: str) -> str:
    lines = [head]
    for spec, url in zip(specs, urls, strict=True):
        lines += [
            "[[providers]]",
            f'name = "{spec.name}"',
            f'url = "{spec.url or url}"',
            f"input_rate = {spec.input_rate}",
            f"output_rate = {spec.output_rate}",
            f"base_fee = {spec.base_fee}",
        ]
        if spec.models is not None:
            lines.append("models = [" + ", ".join(f'"{m}"' for m in spec.models) + "]")
        if spec.api_key is not None:
            lines.append(f'api_key = "{spec.api_key}"')
        if spec.extra:
            lines.append(spec.extra)
    return "\n".join(lines) + "\n"


DEFAULT_HEAD = """
[database]
url = "memory://"
[reliability]
backoff_s = [0.0]
"""

StackFactory = Callable[..., Stack]


@pytest.fixture
def raw() -> Iterator[list[RawUpstream]]:
    """Raw upstreams a test starts (`raw.append(RawUpstream(...))`); all closed at teardown."""
    made: list[RawUpstream] = []
    yield made
    for upstream in made:
        upstream.close()


@pytest.fixture
def stack() -> Iterator[StackFactory]:
    """Start sims and a gateway: `stack(specs, head=..., tail=...)`; all stopped at teardown."""
    started: list[tuple[Any, GatewayThread]] = []

    def make(
        specs: list[SimSpec], head: str = DEFAULT_HEAD, tail: str = "", key_store: Any = None
    ) -> Stack:
        cm = run_in_thread([s.profile for s in specs])
        sims = cm.__enter__()
        text = config_text(specs, sims.urls, head) + tail
        settings = parse_settings(text, source="test.toml", env={})
        sink = MemorySink()
        app = create_app(settings, sink=sink, key_store=key_store)
        gateway = GatewayThread(app, settings.config.limits)
        started.append((cm, gateway))
        url = gateway.start()
        names = [s.name for s in specs]
        return Stack(url=url, sims=sims, sink=sink, names=names, app=app, gateway=gateway)

    yield make
    for cm, gateway in reversed(started):
        gateway.stop()
        cm.__exit__(None, None, None)
