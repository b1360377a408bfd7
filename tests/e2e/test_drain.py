"""SIGTERM starts a drain: `/health/ready` answers 503 at once, requests are still served for
`--drain-delay`, then the process finishes in-flight work and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from arbstr.sim import SimProfile, run_in_thread
from tests.e2e.test_shared_state import free_port, wait_ready

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.slow
def test_sigterm_fails_readiness_then_serves_through_the_drain_delay(tmp_path: Path) -> None:
    with run_in_thread([SimProfile()]) as sims:
        config = tmp_path / "arbstr.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "a.db"}"\n'
            f'[[providers]]\nname = "sim"\nurl = "{sims.urls[0]}"\n'
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "arbstr", "serve", "-c", str(config)]
        cmd += ["--listen", f"127.0.0.1:{port}", "--drain-delay", "1.5"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, proc)
            with httpx.Client(base_url=url, timeout=5) as client:
                assert client.get("/health/ready").json()["status"] == "ok"
                sent = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                while client.get("/health/ready").status_code == 200:
                    assert time.monotonic() - sent < 0.5, "readiness still 200 after SIGTERM"
                    time.sleep(0.01)
                ready = client.get("/health/ready")
                assert ready.status_code == 503
                assert ready.json()["status"] == "draining"
                assert ready.json()["checks"]["accepting"] is False
                assert client.get("/health/live").status_code == 200
                # still serving during the delay, on this connection and on new ones
                assert client.post("/v1/chat/completions", json=BODY).status_code == 200
                assert httpx.post(f"{url}/v1/chat/completions", json=BODY).status_code == 200
                assert proc.poll() is None
            assert proc.wait(timeout=15) == 0
            assert time.monotonic() - sent >= 1.5
        finally:
            if proc.poll() is None:
                proc.kill()
            out = proc.stdout.read().decode() if proc.stdout else ""
            if proc.stdout:
                proc.stdout.close()
        assert "draining (SIGTERM)" in out


@pytest.mark.slow
def test_a_second_sigterm_skips_the_delay(tmp_path: Path) -> None:
    with run_in_thread([SimProfile()]) as sims:
        config = tmp_path / "arbstr.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "a.db"}"\n[server]\ndrain_delay_s = 30\n'
            f'[[providers]]\nname = "sim"\nurl = "{sims.urls[0]}"\n'
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "arbstr", "serve", "-c", str(config)]
        proc = subprocess.Popen([*cmd, "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL)
        try:
            wait_ready(url, proc)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert proc.poll() is None  # the configured delay holds it
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - sent < 8
        finally:
            if proc.poll() is None:
                proc.kill()
