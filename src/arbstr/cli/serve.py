"""`serve` and `demo`: run the gateway under an ASGI server."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from arbstr.cli.config_cmds import ConfigOpt, load_or_exit, out
from arbstr.secrets import convention_var

__all__ = ["Server", "demo", "run_server", "serve"]


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


def run_server(
    host: str, port: int, workers: int, server: Server, level: str = "info", grace_s: float = 10.0
) -> None:
    """Serve `arbstr.app:app` (built from $ARBSTR_CONFIG in each worker)."""
    with _metrics_dir(workers):
        _run_server(host, port, workers, server, level, grace_s)


def _run_server(
    host: str, port: int, workers: int, server: Server, level: str, grace_s: float
) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if server is Server.granian:
        from granian import Granian
        from granian.constants import Interfaces, Loops

        Granian(
            "arbstr.app:app",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            loop=Loops.auto,
            log_access=False,
            log_level=level,  # type: ignore[arg-type]
        ).serve()
        return
    import uvicorn

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "auto",
        "http": "auto",
        "access_log": False,
        "log_level": level,
        "lifespan": "on",
        "proxy_headers": False,  # nothing reads the client address; skip the per-request wrapper
        "timeout_graceful_shutdown": max(1, round(grace_s)),
    }
    if workers > 1:
        uvicorn.run("arbstr.app:app", workers=workers, **options)
        return
    _OrderlyServer(uvicorn.Config("arbstr.app:app", **options)).run()


def _orderly_server_class() -> type[Any]:
    import uvicorn

    class OrderlyServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown (exit status 143); an orderly
        shutdown that drained every request and record is a success: exit 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

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
) -> None:
    """Run the gateway."""
    if demo_mode:
        demo(listen=listen, server=server)
        return
    settings = load_or_exit(config)
    if settings.source and Path(settings.source).exists():
        os.environ["ARBSTR_CONFIG"] = str(Path(settings.source).resolve())
    host, port = split_listen(listen or settings.config.server.listen)
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
    )


DEMO_PROVIDERS = (
    # name, profile, input rate, output rate, base fee, description
    ("cheap-flaky", "flaky", 2.0, 6.0, 0.0, "cheapest; fails 30% of requests"),
    ("mid-limited", "ratelimited", 5.0, 15.0, 0.0, "rate-limited (answers 429)"),
    ("steady", "healthy", 10.0, 30.0, 1.0, "most expensive; always healthy"),
)


def demo_config(urls: list[str], listen: str, db: str) -> str:
    lines = [
        "[server]",
        f'listen = "{listen}"',
        "[database]",
        f'url = "sqlite:///{db}"',
        "[reliability]",
        "backoff_s = [0.05, 0.1]",
        "circuit_open_s = 10",
        "cooldown_default_s = 15",
    ]
    for (name, _, inp, outp, fee, _desc), url in zip(DEMO_PROVIDERS, urls, strict=True):
        lines += [
            "[[providers]]",
            f'name = "{name}"',
            f'url = "{url}"',
            'models = ["gpt-4o-mini", "gpt-4o"]',
            f"input_rate = {inp}",
            f"output_rate = {outp}",
            f"base_fee = {fee}",
        ]
    lines += [
        "[[chains]]",
        'name = "waterfall"',
        'entries = [{ provider = "mid-limited", model = "gpt-4o-mini" },'
        ' { provider = "steady", model = "gpt-4o-mini" }]',
    ]
    return "\n".join(lines) + "\n"


def demo(listen: ListenOpt = None, server: ServerOpt = Server.uvicorn) -> None:
    """Three local simulated providers (cheap+flaky, rate-limited, steady) behind the gateway."""
    from arbstr.sim import SimProfile, builtin_profile, run_in_thread

    listen = listen or "127.0.0.1:8080"
    host, port = split_listen(listen)
    profiles: list[SimProfile] = [
        builtin_profile(profile, name=name) for name, profile, *_ in DEMO_PROVIDERS
    ]
    with run_in_thread(profiles) as cluster:
        workdir = Path(tempfile.mkdtemp(prefix="arbstr-demo-"))
        path = workdir / "arbstr.toml"
        path.write_text(demo_config(cluster.urls, listen, str(workdir / "arbstr.db")))
        path.chmod(0o600)
        os.environ["ARBSTR_CONFIG"] = str(path)
        for name, *_ in DEMO_PROVIDERS:  # keys by the env convention, as a real setup should
            os.environ[convention_var(name)] = f"sim-{name}-key-not-a-secret"
        base = f"http://{host}:{port}"
        out.print("arbstr demo: three SIMULATED providers (no real API is called)", style="bold")
        for (name, _p, inp, outp, fee, desc), url in zip(DEMO_PROVIDERS, cluster.urls, strict=True):
            out.print(
                f"  {name:<12} {url:<28} {inp:g}/{outp:g} sats per 1k in/out, fee {fee:g}: {desc}",
                markup=False,
            )
        out.print(f"\nGateway on {base}  (config: {path})\nTry:", markup=False)
        out.print(
            f"  curl -si {base}/v1/chat/completions -H 'content-type: application/json' \\\n"
            '    -d \'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}\'\n'
            f"  curl -s {base}/health\n"
            f"  curl -s {base}/providers\n"
            f"  curl -s {base}/v1/models\n"
            '  (model "waterfall" walks mid-limited -> steady; repeat the first curl to watch '
            "x-arbstr-provider and x-arbstr-retries change)\n",
            markup=False,
        )
        run_server(host, port, 1, server)
