"""`serve` and `demo`: run the gateway under an ASGI server."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from arbstr.cli.config_cmds import ConfigOpt, err, load_or_exit, out
from arbstr.config import LimitsConfig
from arbstr.serving import connection_cap, raise_nofile_limit

__all__ = [
    "ListenOpt",
    "Server",
    "ServerOpt",
    "exit_if_taken",
    "run_server",
    "serve",
    "split_listen",
]


class Server(StrEnum):
    granian = "granian"
    uvicorn = "uvicorn"


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """Several workers share one directory of metric files, so any worker's `/metrics` counts
    them all; it must be set before a worker imports prometheus_client, and goes at exit."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (tmpfs for mmaps)
    path = tempfile.mkdtemp(prefix="arbstr-metrics-", dir=base)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def port_in_use(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound (a message for the operator), or None when it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def exit_if_taken(host: str, port: int) -> None:
    why = port_in_use(host, port)
    if why is not None:
        err.print(
            f"Cannot listen on {host}:{port}: {why}. Is another gateway running? "
            f"Pick another port with --listen {host}:{port + 1}",
            markup=False,
        )
        raise typer.Exit(1)


def run_server(
    host: str,
    port: int,
    workers: int,
    server: Server,
    level: str = "info",
    grace_s: float = 10.0,
    on_ready: Callable[[], None] | None = None,
    limits: LimitsConfig | None = None,
) -> None:
    """Serve `arbstr.app:app` (built from $ARBSTR_CONFIG in each worker); `on_ready` runs once
    the socket is bound (one uvicorn worker; otherwise just before serving)."""
    if workers > 1:  # virtual keys: several processes lease their usage from the store
        os.environ["ARBSTR_WORKERS"] = str(workers)
    with _metrics_dir(workers):
        _run_server(host, port, workers, server, level, grace_s, on_ready, limits or LimitsConfig())


def _run_server(
    host: str,
    port: int,
    workers: int,
    server: Server,
    level: str,
    grace_s: float,
    on_ready: Callable[[], None] | None,
    limits: LimitsConfig,
) -> None:
    nofile = raise_nofile_limit()
    cap = connection_cap(limits, nofile)
    logging.getLogger("arbstr.serving").info(
        "descriptor limit %d: at most %d client connections", nofile, cap
    )
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if (server is Server.granian or workers > 1) and on_ready is not None:
        on_ready()
    if server is Server.granian:
        from granian import Granian
        from granian.constants import Interfaces, Loops
        from granian.http import HTTP1Settings

        Granian(
            "arbstr.app:app",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            loop=Loops.auto,
            log_access=False,
            log_level=level,  # type: ignore[arg-type]
            backpressure=cap,
            http1_settings=HTTP1Settings(
                header_read_timeout=int(limits.header_timeout_s * 1000),
                max_buffer_size=limits.max_request_header_bytes,
            ),
        ).serve()
        return
    import uvicorn

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "auto",
        "access_log": False,
        "log_level": level,
        "lifespan": "on",
        "proxy_headers": False,  # nothing reads the client address; skip the per-request wrapper
        "timeout_graceful_shutdown": max(1, round(grace_s)),
        # [limits]: header size and count, header deadline and connection cap (serving.py)
        "http": "arbstr.serving:LimitedHttpToolsProtocol",
        "timeout_keep_alive": limits.keepalive_timeout_s,
        "limit_concurrency": cap,
        "h11_max_incomplete_event_size": limits.max_request_header_bytes,
    }
    if workers > 1:
        uvicorn.run("arbstr.app:app", workers=workers, **options)
        return
    orderly = _OrderlyServer(uvicorn.Config("arbstr.app:app", **options))
    orderly.on_ready = on_ready
    orderly.run()


def _orderly_server_class() -> type[Any]:
    import uvicorn

    class OrderlyServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown (exit status 143); an orderly
        shutdown that drained every request and record is a success: exit 0."""

        on_ready: Callable[[], None] | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and self.on_ready is not None:
                self.on_ready()  # the socket is bound: now a printed URL works

    return OrderlyServer


def _OrderlyServer(config: Any) -> Any:
    return _orderly_server_class()(config)


ListenOpt = Annotated[
    str | None, typer.Option("--listen", "-l", help="HOST:PORT (overrides config)")
]
WorkersOpt = Annotated[int | None, typer.Option("--workers", "-w", help="Worker processes")]
ServerOpt = Annotated[Server, typer.Option("--server", help="ASGI server")]


def serve(
    config: ConfigOpt = None,
    listen: ListenOpt = None,
    workers: WorkersOpt = None,
    server: ServerOpt = Server.uvicorn,
    demo_mode: Annotated[bool, typer.Option("--demo", help="Same as `arbstr demo`")] = False,
    drain_delay: Annotated[
        float | None,
        typer.Option(
            "--drain-delay",
            help="Seconds /health/ready answers 503 after SIGTERM before the listener closes "
            "(overrides [server] drain_delay_s)",
        ),
    ] = None,
) -> None:
    """Run the gateway."""
    if demo_mode:
        from arbstr.cli.demo import demo

        demo(listen=listen, server=server)
        return
    settings = load_or_exit(config)
    if settings.source and Path(settings.source).exists():
        os.environ["ARBSTR_CONFIG"] = str(Path(settings.source).resolve())
    if drain_delay is not None:  # every worker builds its app from the environment
        os.environ["ARBSTR_DRAIN_DELAY_S"] = str(max(0.0, drain_delay))
    host, port = split_listen(listen or settings.config.server.listen)
    exit_if_taken(host, port)
    n = workers or settings.config.server.workers
    out.print(
        f"arbstr listening on http://{host}:{port} ({n} worker(s), {server.value})", markup=False
    )
    run_server(
        host,
        port,
        n,
        server,
        settings.config.logging.level,
        settings.config.server.shutdown_grace_s,
        limits=settings.config.limits,
    )
