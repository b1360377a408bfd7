"""Ways to serve arbstr, tried as a new user would: `litestar run` and `arbstr serve --workers`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arbstr.sim import SimCluster, SimProfile, run_in_thread
from tests.e2e.test_shared_state import free_port, wait_ready

ROOT = Path(__file__).parents[2]
LITESTAR = Path(sys.executable).parent / "litestar"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    with run_in_thread([SimProfile()]) as cluster:
        yield cluster


def write_config(tmp_path: Path, sim: SimCluster) -> Path:
    config = tmp_path / "arbstr.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "arbstr.db"}"\n'
        f'[[providers]]\nname = "sim"\nurl = "{sim.urls[0]}"\n'
    )
    config.chmod(0o600)
    return config


def serve(cmd: list[str], config: Path, cwd: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ARBSTR_CONFIG": str(config)}
    log = (config.parent / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    except RuntimeError:
        stop(proc)
        raise RuntimeError((config.parent / "server.log").read_text()) from None
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--app", "autodiscovery"])
def test_litestar_run_serves_arbstr(tmp_path: Path, sim: SimCluster, how: str) -> None:
    config = write_config(tmp_path, sim)
    port = free_port()
    cmd = [str(LITESTAR)]
    if how == "--app":
        cmd += ["--app", "arbstr.app:app"]
    cmd += ["run", "--host", "127.0.0.1", "--port", str(port)]
    # a bare `litestar run` in the project root finds `app.py` there
    proc = serve(cmd, config, ROOT if how == "autodiscovery" else tmp_path, port)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok"
        answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=10)
        assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "sim"
        assert answer.json()["choices"][0]["message"]["content"]
    finally:
        stop(proc)


def _requests_total(text: str) -> float:
    pattern = r"^arbstr_requests_total\{[^}]*\} ([0-9.e+]+)$"
    return sum(float(m) for m in re.findall(pattern, text, flags=re.M))


@pytest.mark.slow
def test_metrics_count_every_worker(tmp_path: Path, sim: SimCluster) -> None:
    config = write_config(tmp_path, sim)
    port = free_port()
    cmd = [sys.executable, "-m", "arbstr", "serve", "-c", str(config), "--listen",
           f"127.0.0.1:{port}", "--workers", "2"]  # fmt: skip
    proc = serve(cmd, config, tmp_path, port)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(20):  # new connections: the kernel spreads them over both workers
            with httpx.Client(timeout=10) as c:
                assert c.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
        seen = set()
        for _ in range(6):  # whichever worker answers the scrape counts all 20
            with httpx.Client(timeout=10) as c:
                text = c.get(f"{url}/metrics").text
            seen.add(_requests_total(text))
        assert seen == {20.0}, seen
        assert "arbstr_circuit_state" in text and "arbstr_recorder_queue_depth" in text
    finally:
        stop(proc)
    assert proc.returncode == 0


BIN = Path(sys.executable).parent
HOSTS = {  # docs/deploy.md, "Any ASGI host": each command as written there, two workers
    "uvicorn": [str(BIN / "uvicorn"), "arbstr.app:app", "--workers", "2",
                "--http", "arbstr.serving:LimitedHttpToolsProtocol"],
    "granian": [str(BIN / "granian"), "--interface", "asgi", "--workers", "2", "arbstr.app:app"],
    "gunicorn": [str(BIN / "gunicorn"), "arbstr.app:app", "-k", "uvicorn.workers.UvicornWorker",
                 "-w", "2"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("host", sorted(HOSTS))
def test_the_documented_asgi_hosts_serve_arbstr_with_two_workers(
    tmp_path: Path, sim: SimCluster, host: str
) -> None:
    port = free_port()
    cmd = list(HOSTS[host])
    cmd += ["-b", f"127.0.0.1:{port}"] if host == "gunicorn" else []
    cmd += ["--host", "127.0.0.1", "--port", str(port)] if host != "gunicorn" else []
    proc = serve(cmd, write_config(tmp_path, sim), tmp_path, port)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/health/ready", timeout=5).json()["status"] == "ok"
        for _ in range(4):  # both workers answer (the balancing is the kernel's)
            answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=10)
            assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "sim"
    finally:
        stop(proc)
