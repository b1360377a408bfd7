"""Two gateway processes sharing state through PostgreSQL: one opens a circuit, the other skips."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arbstr.sim import SimProfile, run_in_thread
from tests.pg import PG_BASE, drop_schema, new_schema, require_pg

pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {proc.stdout.read() if proc.stdout else b''!r}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("gateway not ready")


@pytest.fixture
def schema() -> Iterator[str]:
    require_pg()
    name = new_schema()
    yield name
    asyncio.run(drop_schema(name))


def test_circuit_opened_by_one_replica_is_honoured_by_another(tmp_path: Path, schema: str) -> None:
    bad = SimProfile(failure_rate=1.0, failure_status=500)
    with run_in_thread([bad, SimProfile()]) as sims:
        cheap, dear = sims.urls
        config = tmp_path / "arbstr.toml"
        config.write_text(f"""
[database]
url = "{PG_BASE}?schema={schema}"
[state]
backend = "database"
[reliability]
backoff_s = [0.0]
circuit_open_s = 30
[[providers]]
name = "cheap"
url = "{cheap}"
input_rate = 1
[[providers]]
name = "dear"
url = "{dear}"
input_rate = 9
""")
        config.chmod(0o600)
        procs, urls = [], []
        try:
            for _ in range(2):
                port = free_port()
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "arbstr",
                            "serve",
                            "-c",
                            str(config),
                            "--listen",
                            f"127.0.0.1:{port}",
                            "--server",
                            "uvicorn",
                        ],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        env=os.environ.copy(),
                    )
                )
                urls.append(f"http://127.0.0.1:{port}")
            for url, proc in zip(urls, procs, strict=True):
                wait_ready(url, proc)
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            first = httpx.post(f"{urls[0]}/v1/chat/completions", json=body, timeout=10)
            assert first.headers["x-arbstr-provider"] == "dear"
            assert first.headers["x-arbstr-retries"] == "3/cheap"
            assert httpx.get(f"{urls[0]}/health").json()["providers"]["cheap"]["state"] == "open"
            opened = time.monotonic()
            hits = sims.servers[0].chat_hits
            while time.monotonic() - opened < 1.0:
                state = httpx.get(f"{urls[1]}/health").json()["providers"].get("cheap", {})
                if state.get("state") == "open":
                    break
                time.sleep(0.05)
            assert time.monotonic() - opened < 1.0, "the other replica did not see the circuit"
            second = httpx.post(f"{urls[1]}/v1/chat/completions", json=body, timeout=10)
            assert second.headers["x-arbstr-provider"] == "dear"
            assert second.headers["x-arbstr-attempts"] == "1"
            assert "x-arbstr-retries" not in second.headers
            assert sims.servers[0].chat_hits == hits  # the replica never called it
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=15)
                if proc.stdout:
                    proc.stdout.close()
