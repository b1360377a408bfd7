"""Live configuration under load: 500 requests in flight while the file is reloaded with a
provider removed and one added; the admin API's edits of the file; an invalid file refused."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arbstr.app import create_app
from arbstr.config import load_settings
from arbstr.sim import SimCluster, SimProfile, run_in_thread
from tests.e2e.conftest import GatewayThread

ADMIN = "live-config-admin-token-0123"
AFTER = 20  # sent after the swap, one after another, each on a new connection
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def provider(name: str, url: str, rate: float, models: str = '["m"]') -> str:
    return (
        f'[[providers]]\nname = "{name}"\nurl = "{url}"\nmodels = {models}\ninput_rate = {rate}\n'
    )


@pytest.fixture
def sims() -> Iterator[SimCluster]:
    slow = SimProfile(latency_ms=2000)
    broken = SimProfile(failure_rate=1.0, failure_status=500)
    with run_in_thread([slow, SimProfile(), SimProfile(), broken]) as cluster:
        yield cluster


def start(path: Path) -> tuple[GatewayThread, str]:
    settings = load_settings(path)
    gateway = GatewayThread(create_app(settings), settings.config.limits)
    return gateway, gateway.start()


@pytest.mark.slow
def test_reload_under_load_drops_nothing_and_keeps_health_state(
    tmp_path: Path, sims: SimCluster
) -> None:
    old, steady, new, broken = sims.urls
    head = '[database]\nurl = "memory://"\n[reliability]\nmax_retries = 0\nbackoff_s = [0.0]\n'
    keep = provider("steady", steady, 9, '["m", "bm"]') + provider("broken", broken, 1, '["bm"]')
    path = tmp_path / "arbstr.toml"
    path.write_text(head + provider("old", old, 1) + keep)
    gateway, url = start(path)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(3):  # open broken's circuit
                client.post("/v1/chat/completions", json={**CHAT, "model": "bm"})
            assert client.get("/health").json()["providers"]["broken"]["state"] == "open"

            async def load() -> tuple[list[httpx.Response], list[httpx.Response], float]:
                limits = httpx.Limits(max_connections=600)
                async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
                    first = [asyncio.create_task(c.post("/v1/chat/completions", json=CHAT))
                             for _ in range(500)]  # fmt: skip
                    deadline = time.monotonic() + 20  # all 500 at "old" (2 s each) before the swap
                    while sims.servers[0].in_flight < 500:
                        assert time.monotonic() < deadline, sims.servers[0].in_flight
                        await asyncio.sleep(0.02)
                    path.write_text(head + provider("new", new, 0.5) + keep)
                    swap = await c.post("/admin/reload")
                    assert swap.status_code == 200, swap.text
                    assert swap.json()["added"] == ["new"] and swap.json()["removed"] == ["old"]
                    swapped = time.monotonic()
                    after = []
                    for _ in range(AFTER):  # while the 500 are still in flight
                        async with httpx.AsyncClient(base_url=url, timeout=30) as fresh:
                            after.append(await fresh.post("/v1/chat/completions", json=CHAT))
                    return list(await asyncio.gather(*first)), list(after), swapped

            hits_before = sims.servers[0].chat_hits
            during, after, _ = asyncio.run(load())
            assert [r.status_code for r in during] == [200] * 500  # none dropped
            assert {r.headers["x-arbstr-provider"] for r in during} == {"old"}
            assert [r.status_code for r in after] == [200] * AFTER
            # the removed provider gets nothing new; "new" (cheapest) takes them, "steady" only
            # as a fallback (under coverage on a loaded host a first connection can fail)
            served = {r.headers["x-arbstr-provider"] for r in after}
            assert "old" not in served and "new" in served, [
                (r.headers["x-arbstr-provider"], r.headers.get("x-arbstr-retries")) for r in after
            ]
            assert sims.servers[0].chat_hits - hits_before == 500  # nothing new went to "old"
            health = client.get("/health").json()["providers"]
            assert health["broken"]["state"] == "open"  # an unchanged provider keeps its state
            assert "old" not in health

            # an invalid file: refused with `arbstr check`'s message, nothing changes
            path.write_text(head + provider("new", new, 0.5) + provider("new", steady, 1) + keep)
            refused = client.post("/admin/reload")
            check = subprocess.run([sys.executable, "-m", "arbstr", "check", "-c", str(path)],
                                   capture_output=True, text=True, check=False)  # fmt: skip
            assert refused.status_code == 400 and check.returncode == 1
            message = refused.json()["error"]["message"]
            assert "duplicate provider name 'new'" in message
            assert message == check.stderr.strip().splitlines()[-1]
            names = [p["name"] for p in client.get("/providers").json()["providers"]]
            assert names == ["new", "steady", "broken"]
            ok = client.post("/v1/chat/completions", json=CHAT)
            assert ok.status_code == 200 and ok.headers["x-arbstr-provider"] == "new"
    finally:
        gateway.stop()


@pytest.fixture
def keyed_file(tmp_path: Path, sims: SimCluster) -> Iterator[tuple[str, Path]]:
    path = tmp_path / "arbstr.toml"
    path.write_text(
        "# the operator's own comment\n"
        f'[database]\nurl = "sqlite:///{tmp_path / "a.db"}"\n'
        f'[auth]\nenabled = true\nadmin_token = "{ADMIN}"\n'
        + provider("steady", sims.urls[1], 9)
        + '[[chains]]\nname = "c"\nentries = [{ provider = "steady", model = "m" }]\n'
    )
    path.chmod(0o600)
    gateway, url = start(path)
    try:
        yield url, path
    finally:
        gateway.stop()


def test_the_admin_api_edits_the_file_and_audits_it(
    keyed_file: tuple[str, Path], sims: SimCluster
) -> None:
    url, path = keyed_file
    admin = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=url, headers=admin, timeout=10) as client:
        body = {"url": sims.urls[2], "models": ["m"], "input_rate": 1, "api_key": "sk-literal-1"}
        made = client.put("/admin/providers/cheap", json=body)
        assert made.status_code == 201 and made.json()["added"] == ["cheap"]
        text = path.read_text()
        assert "# the operator's own comment" in text and 'name = "cheap"' in text
        assert path.stat().st_mode & 0o777 == 0o600
        bad = client.put("/admin/providers/cheap", json={"url": "ftp://x"})
        assert bad.status_code == 400 and "must be an http(s) URL" in bad.json()["error"]["message"]
        assert path.read_text() == text  # an invalid edit never reaches the file
        in_use = client.delete("/admin/providers/steady")
        assert in_use.status_code == 409 and "chain(s) c" in in_use.json()["error"]["message"]
        assert client.put("/admin/chains/c", json={"entries": [
            {"provider": "cheap", "model": "m"}]}).status_code == 200  # fmt: skip
        assert client.delete("/admin/providers/steady").status_code == 200
        assert client.delete("/admin/providers/steady").status_code == 404
        names = [p["name"] for p in client.get("/providers").json()["providers"]]
        assert names == ["cheap"]
        audit = client.get("/admin/audit", params={"action": "config.provider.put"}).json()
        assert audit["data"] and "sk-literal-1" not in str(audit)  # a literal key is masked
    anonymous = httpx.put(f"{url}/admin/providers/x", json={"url": "http://h/v1"})
    assert anonymous.status_code == 401


@pytest.mark.slow
def test_sighup_reloads_the_file(tmp_path: Path, sims: SimCluster) -> None:
    from tests.e2e.test_shared_state import free_port, wait_ready

    path = tmp_path / "arbstr.toml"
    path.write_text('[database]\nurl = "memory://"\n' + provider("one", sims.urls[1], 1))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "arbstr",
        "serve",
        "-c",
        str(path),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        path.write_text(path.read_text() + provider("two", sims.urls[2], 0.5))
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while len(httpx.get(f"{base}/providers").json()["providers"]) != 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        r = httpx.post(f"{base}/v1/chat/completions", json=CHAT)
        assert r.headers["x-arbstr-provider"] == "two"
    finally:
        proc.terminate()
        proc.wait(10)
