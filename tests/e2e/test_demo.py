"""`arbstr demo` and `arbstr demo --auth` run as a newcomer runs them: one process, real ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from .test_shared_state import free_port

pytestmark = pytest.mark.slow


def start(*extra: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "arbstr", "demo", "--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("demo exited:\n" + "".join(lines))
        lines.append(line)
        if "Stop with Ctrl-C" in line:
            return proc, f"http://127.0.0.1:{port}", lines
    raise AssertionError("demo did not print its banner:\n" + "".join(lines))


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=15)
    if proc.stdout:
        proc.stdout.close()


def test_the_demo_routes_without_any_key() -> None:
    proc, url, lines = start()
    try:
        assert f"Dashboard: {url}/ui" in "".join(lines)
        deadline = time.monotonic() + 30  # its own traffic: a failover and a cooldown
        failover = cooldown = False
        while not (failover and cooldown):
            assert time.monotonic() < deadline, (failover, cooldown)
            time.sleep(1)
            rows = httpx.get(url + "/v1/requests", params={"per_page": 50}).json()["data"]
            for row in rows:
                detail = httpx.get(url + f"/v1/requests/{row['id']}").json()
                failover |= row["success"] and len(detail["attempts"]) > 1
            limits = httpx.get(url + "/v1/ratelimits").json()
            cooldown |= "cooling" in str(limits) or "exhausted" in str(limits)
        assert "<svg" in httpx.get(url + "/ui").text
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        providers = {
            httpx.post(url + "/v1/chat/completions", json=body, timeout=10).headers[
                "x-arbstr-provider"
            ]
            for _ in range(6)
        }
        assert providers & {"cheap-flaky", "steady"}
    finally:
        stop(proc)


def test_the_demo_with_auth_prints_an_admin_token_and_a_key_that_work() -> None:
    proc, url, lines = start("--auth")
    try:
        text = "".join(lines)
        admin = re.search(r"admin token\s+(\S+)", text)
        key = re.search(r"virtual key\s+(sk-arb-\S+)", text)
        assert admin and key, text
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        anonymous = httpx.post(url + "/v1/chat/completions", json=body, timeout=10)
        assert anonymous.status_code == 401
        auth = {"authorization": f"Bearer {key.group(1)}"}
        ok = httpx.post(url + "/v1/chat/completions", json=body, headers=auth, timeout=10)
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-ratelimit-limit-requests"] == "60"
        keys = httpx.get(url + "/admin/keys", headers={"authorization": f"Bearer {admin.group(1)}"})
        assert keys.status_code == 200 and keys.json()["total"] == 1
    finally:
        stop(proc)
