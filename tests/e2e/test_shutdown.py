"""SIGTERM under load: in-flight requests finish, the recorder drains, exit 0, no row lost."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from arbstr.sim import SimProfile, run_in_thread
from tests.e2e.test_shared_state import free_port, wait_ready


@pytest.mark.slow
def test_sigterm_under_load_records_every_answered_request(tmp_path: Path) -> None:
    with run_in_thread([SimProfile(latency_ms=20, chunks=5, tokens_per_s=100)]) as sims:
        db = tmp_path / "arbstr.db"
        config = tmp_path / "arbstr.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{db}"\n[[providers]]\nname = "sim"\n'
            f'url = "{sims.urls[0]}"\n'
        )
        config.chmod(0o600)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "arbstr",
                "serve",
                "-c",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(url, proc)
            answered: list[str] = []
            lock = threading.Lock()
            stop = threading.Event()

            def client(stream: bool) -> None:
                body = {
                    "model": "m",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": stream,
                }
                with httpx.Client(timeout=10) as c:
                    while not stop.is_set():
                        try:
                            r = c.post(f"{url}/v1/chat/completions", json=body)
                        except httpx.HTTPError:
                            return  # refused after shutdown began: never reached the gateway
                        with lock:
                            answered.append(r.headers.get("x-arbstr-request-id", "?"))

            threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(8)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            stop.set()
            for t in threads:
                t.join(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            out = proc.stdout.read().decode() if proc.stdout else ""
            if proc.stdout:
                proc.stdout.close()
        assert code == 0, out
        assert len(answered) > 20
        conn = sqlite3.connect(db)
        ids = {row[0] for row in conn.execute("SELECT id FROM requests")}
        conn.close()
        assert set(answered) <= ids
        assert "?" not in answered
