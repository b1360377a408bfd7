"""A cluster on one machine: N `arbstr serve` processes on one PostgreSQL database behind
HAProxy, on loopback ports. `arbstr cluster` runs it; the scale-out tests drive the same class.

The HAProxy configuration is written by `haproxy_config`, which also renders the committed
`deploy/haproxy.cfg` that compose uses (a test keeps the two identical): health checks on
`/health/ready`, a fallback to any live replica when none is ready (a shared-database outage:
the replicas still serve from memory), retries on another replica of what never reached one,
and OpenAI-shaped JSON for the balancer's own errors.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from arbstr.config import ConfigError, load_settings

__all__ = ["ClusterError", "LocalCluster", "Replica", "free_port", "haproxy_config", "wait_ready"]

_ERRORS = {
    502: ("bad_gateway", "the gateway replica failed while answering"),
    503: ("service_unavailable", "no gateway replica is available"),
    504: ("gateway_timeout", "the gateway replica did not answer in time"),
}


class ClusterError(Exception):
    """The cluster cannot start; the message says what to change."""


def haproxy_config(
    bind: str,
    servers: Sequence[tuple[str, str]],
    *,
    check_interval_ms: int = 500,
    header: str = "written by `arbstr cluster`",
    nameserver: str | None = None,
) -> str:
    """HAProxy in front of `servers` ((name, host:port), ...); `nameserver` (compose's DNS)
    re-resolves the replicas' names at run time, so a recreated container is found again."""
    errors = "\n".join(
        f"    http-error status {status} content-type application/json string "
        f'\'{{"error":{{"message":"{message}","type":"server_error",'
        f'"param":null,"code":"{code}"}}}}\''
        for status, (code, message) in _ERRORS.items()
    )

    def backend(name: str, path: str) -> str:
        lines = [
            f"backend {name}",
            "    balance leastconn",
            f"    option httpchk GET {path}",
            "    http-check expect status 200",
            f"    default-server inter {check_interval_ms}ms fall 2 rise 2"
            f" init-addr last,libc,none{' resolvers dns' if nameserver else ''}",
            *(f"    server {n} {addr} check" for n, addr in servers),
        ]
        return "\n".join(lines)

    dns = ""
    if nameserver:
        dns = f"\nresolvers dns\n    nameserver dns {nameserver}\n    hold valid 5s\n"
    return f"""# arbstr replicas behind HAProxy ({header})
global
    maxconn 4096
{dns}
defaults
    mode http
    option dontlognull
    timeout connect 2s
    timeout client 130s
    timeout server 130s
    timeout http-request 10s
    timeout http-keep-alive 5s
    timeout queue 10s
    # a request that never reached a replica (refused, reset before sending) is retried on
    # another one, whatever its method; one a replica may have started (an empty or late
    # answer) only when it is idempotent: a POST could be answered, and billed, twice
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
{errors}

frontend arbstr
    bind {bind}
    http-request disable-l7-retry unless METH_GET || METH_HEAD
    http-response set-header x-arbstr-replica %[srv_name]
    # while no replica is ready (the shared database is down) any live one serves from memory
    use_backend ready if {{ nbsrv(ready) gt 0 }}
    default_backend live

{backend("ready", "/health/ready")}

{backend("live", "/health/live")}
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    name: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class LocalCluster:
    """`replicas` gateway processes on `config` (PostgreSQL, `[state] backend = "database"`)
    behind HAProxy on `front`. Each replica has its own working directory (its spill file)."""

    config: Path
    workdir: Path
    replicas: int = 3
    front: str = "127.0.0.1:8080"
    drain_delay_s: float = 1.5
    check_interval_ms: int = 500
    output: IO[bytes] | int | None = subprocess.DEVNULL
    env: dict[str, str] | None = None  # the replicas' environment (default: this process's)
    nodes: list[Replica] = field(default_factory=list)
    balancer: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.config = Path(self.config).resolve()
        self.workdir = Path(self.workdir)

    @property
    def url(self) -> str:
        return f"http://{self.front}"

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.check()
        self.migrate()
        for i in range(self.replicas):
            node = Replica(f"gw{i + 1}", free_port(), self.workdir / f"gw{i + 1}")
            node.workdir.mkdir(parents=True, exist_ok=True)
            self.nodes.append(node)
        for node in self.nodes:
            self.start_replica(node, wait=False)
        for node in self.nodes:
            self.wait_ready(node)
        self.start_balancer()

    def check(self) -> None:
        try:
            settings = load_settings(self.config, self.env, need_keys=False)
        except ConfigError as exc:
            raise ClusterError(str(exc)) from None
        if not settings.config.database.effective_url.startswith(("postgres://", "postgresql")):
            raise ClusterError(
                "replicas share keys, budgets, circuits and the request log through PostgreSQL:"
                ' set [database] url = "postgresql://..." (or pass --database-url)'
            )
        if settings.config.state.backend != "database":
            raise ClusterError(
                'replicas share circuit and cooldown state only with [state] backend = "database"'
            )
        if shutil.which("haproxy") is None:
            raise ClusterError("haproxy is not installed (Debian: apt-get install haproxy)")

    def migrate(self) -> None:
        """The migration one-shot: once, before any replica starts."""
        done = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "arbstr", "db", "migrate", "-c", str(self.config)],
            capture_output=True,
            check=False,
            env=self.env,
        )
        if done.returncode != 0:
            raise ClusterError(f"arbstr db migrate failed: {done.stderr.decode().strip()}")

    def start_replica(self, node: Replica, *, wait: bool = True) -> None:
        cmd = [sys.executable, "-m", "arbstr", "serve", "-c", str(self.config)]
        cmd += ["--listen", f"127.0.0.1:{node.port}", "--drain-delay", str(self.drain_delay_s)]
        node.proc = subprocess.Popen(  # noqa: S603
            cmd, cwd=node.workdir, stdout=self.output, stderr=subprocess.STDOUT, env=self.env
        )
        node.starts += 1
        if wait:
            self.wait_ready(node)

    def wait_ready(self, node: Replica, timeout_s: float = 30.0) -> None:
        if node.proc is None:
            raise ClusterError(f"replica {node.name} is not running")
        wait_ready(node.url, node.proc, f"replica {node.name}", timeout_s)

    def stop_replica(self, node: Replica, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        """Signal a replica and wait for it to exit; its exit status."""
        return _stop(node.proc, sig, timeout_s) if node.proc is not None else 0

    def start_balancer(self) -> None:
        path = self.workdir / "haproxy.cfg"
        servers = [(n.name, f"127.0.0.1:{n.port}") for n in self.nodes]
        path.write_text(
            haproxy_config(self.front, servers, check_interval_ms=self.check_interval_ms)
        )
        self.balancer = subprocess.Popen(  # noqa: S603
            ["haproxy", "-db", "-f", str(path)],  # noqa: S607 (found on PATH, checked above)
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        wait_ready(self.url, self.balancer, f"haproxy on {self.front}", 15.0)

    def stop(self) -> list[int]:
        """SIGTERM every replica (they drain), then the balancer; the replicas' exit statuses."""
        for node in self.nodes:
            if node.running and node.proc is not None:
                node.proc.send_signal(signal.SIGTERM)
        codes = [self.stop_replica(node) for node in self.nodes]
        if self.balancer is not None:
            _stop(self.balancer, signal.SIGTERM, 10)
        return codes

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    """Until `url/health/ready` answers 200; `ClusterError` if `proc` exits or time runs out
    (also what the benchmarks and process tests wait with)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"{what} exited (status {proc.returncode})")
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ClusterError(f"{what} was not ready within {timeout_s:g} s")


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout_s: float) -> int:
    """Signal `proc` (if it still runs) and wait for it, killing it past `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
