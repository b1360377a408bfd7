"""`arbstr cluster`: N replicas on PostgreSQL behind HAProxy, on loopback, until Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from arbstr.cli.config_cmds import ConfigOpt, err, load_or_exit, out
from arbstr.cli.demo import demo_config, demo_profiles
from arbstr.cli.serve import exit_if_taken, split_listen
from arbstr.secrets import convention_var

__all__ = ["cluster"]


def cluster(
    config: ConfigOpt = None,
    replicas: Annotated[int, typer.Option("--replicas", "-n", min=1, max=32)] = 3,
    listen: Annotated[
        str, typer.Option("--listen", "-l", help="HOST:PORT of the balancer")
    ] = "127.0.0.1:8080",
    demo: Annotated[
        bool, typer.Option("--demo", help="Behind the replicas: the demo's simulated providers")
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="ARBSTR_DATABASE_URL",
            help="PostgreSQL for --demo (the replicas' shared state)",
        ),
    ] = None,
    drain_delay: Annotated[float, typer.Option("--drain-delay", min=0)] = 1.5,
) -> None:
    """Run replicas of the gateway on one PostgreSQL database behind HAProxy (loopback)."""
    from arbstr.cluster import ClusterError, LocalCluster

    host, port = split_listen(listen)
    exit_if_taken(host, port)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: nothing is left running
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="arbstr-cluster-")))
        if demo:
            from arbstr.sim import run_in_thread

            if not database_url:
                err.print("--demo needs --database-url postgresql://... (or ARBSTR_DATABASE_URL)")
                raise typer.Exit(2)
            sims = stack.enter_context(run_in_thread(demo_profiles()))
            path = workdir / "arbstr.toml"
            text = demo_config(sims.urls, listen, "unused.db").replace(
                'url = "sqlite:///unused.db"', f'url = "{database_url}"'
            )
            path.write_text(text + '[state]\nbackend = "database"\n')
            path.chmod(0o600)
            for name in ("cheap-flaky", "mid-limited", "steady"):
                os.environ[convention_var(name)] = f"sim-{name}-key-not-a-secret"
        else:
            path = Path(load_or_exit(config).source)
        nodes = LocalCluster(
            path, workdir, replicas=replicas, front=f"{host}:{port}", drain_delay_s=drain_delay
        )
        stack.callback(nodes.stop)  # Ctrl-C while starting stops what started
        try:
            nodes.start()
        except ClusterError as exc:
            err.print(f"cluster: {exc}", markup=False)
            raise typer.Exit(1) from None
        out.print(f"arbstr cluster: {replicas} replica(s) behind HAProxy", markup=False)
        for node in nodes.nodes:
            out.print(f"  {node.name}  {node.url}", markup=False)
        out.print(f"Front: {nodes.url}  (Dashboard: {nodes.url}/ui). Stop with Ctrl-C.")
        try:
            while True:
                time.sleep(1)
                for node in nodes.nodes:
                    if not node.running and node.proc is not None and node.proc.returncode:
                        err.print(f"replica {node.name} exited ({node.proc.returncode})")
                        node.proc = None
        except KeyboardInterrupt:
            out.print("stopping: the replicas drain, then the balancer stops")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
