"""Two gateway processes on one PostgreSQL schema share keys, budgets and limits (DESIGN §7):
a burst split between them never passes a budget, an rpm or a lifetime request count, and a
change made through either one, or through the CLI, is honoured by both within a second."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arbstr.sim import SimProfile, run_in_thread
from tests.pg import PG_BASE

from .keyed import ADMIN, PROMPT
from .test_shared_state import free_port, schema, wait_ready

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
__all__ = ["schema"]
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 10}


class Replicas:
    def __init__(self, config: Path, urls: list[str], sims: Any) -> None:
        self.config, self.urls, self.sims = config, urls, sims

    def admin(self, i: int, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN}"}
        return httpx.request(method, self.urls[i] + path, headers=headers, timeout=10, **kw)

    def key(self, **fields: Any) -> dict[str, Any]:
        project = self.admin(0, "POST", "/admin/projects", json={"name": f"p{time.time_ns()}"})
        assert project.status_code == 201, project.text
        made = self.admin(
            0,
            "POST",
            "/admin/keys",
            json={"project_id": project.json()["id"], "name": "k", **fields},
        )
        assert made.status_code == 201, made.text
        started = time.monotonic()  # a new key reaches the other replica within a second too
        auth = {"authorization": f"Bearer {made.json()['key']}"}
        while httpx.get(self.urls[1] + "/v1/key", headers=auth).status_code != 200:
            assert time.monotonic() - started < 1.0
            time.sleep(0.02)
        return dict(made.json())

    def chat(self, i: int, key: str) -> httpx.Response:
        return httpx.post(
            self.urls[i] + "/v1/chat/completions",
            json=BODY,
            headers={"authorization": f"Bearer {key}"},
            timeout=10,
        )

    async def burst(self, key: str, n: int) -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            rs = await asyncio.gather(*(
                client.post(self.urls[i % 2] + "/v1/chat/completions", json=BODY,
                            headers={"authorization": f"Bearer {key}"})
                for i in range(n)
            ))  # fmt: skip
        return [r.status_code for r in rs]

    def until_refused(self, i: int, key: str, started: float) -> float:
        while time.monotonic() - started < 5:
            if self.chat(i, key).status_code in (401, 403):
                took = time.monotonic() - started
                print(f"refused by replica {i} after {took * 1000:.0f} ms")
                return took
            time.sleep(0.02)
        raise AssertionError(f"replica {i} still accepts the key after 5 s")


@pytest.fixture
def replicas(tmp_path: Path, schema: str) -> Iterator[Replicas]:
    with run_in_thread([SimProfile()]) as sims:
        config = tmp_path / "arbstr.toml"
        config.write_text(f"""
[database]
url = "{PG_BASE}?schema={schema}"
[state]
backend = "database"
[auth]
enabled = true
admin_token = "${{ARBSTR_ADMIN_TOKEN}}"
[[providers]]
name = "alpha"
url = "{sims.urls[0]}"
models = ["gpt-4o-mini"]
input_rate = 10
output_rate = 30
base_fee = 1
""")
        config.chmod(0o600)
        env = {**os.environ, "ARBSTR_ADMIN_TOKEN": ADMIN}
        migrate = [sys.executable, "-m", "arbstr", "db", "migrate", "-c", str(config)]
        subprocess.run(migrate, env=env, check=True, capture_output=True)
        procs, urls = [], []
        try:
            for _ in range(2):
                port = free_port()
                cmd = [sys.executable, "-m", "arbstr", "serve", "-c", str(config),
                       "--listen", f"127.0.0.1:{port}"]  # fmt: skip
                procs.append(
                    subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
                )
                urls.append(f"http://127.0.0.1:{port}")
            for url, proc in zip(urls, procs, strict=True):
                wait_ready(url, proc)
            yield Replicas(config, urls, sims)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=15)
                if proc.stdout:
                    proc.stdout.close()


def test_budget_rpm_and_request_count_hold_across_two_replicas(replicas: Replicas) -> None:
    sim = replicas.sims.servers[0]
    budget = replicas.key(budget_sats=7.0)  # five requests of 1.4 sats
    statuses = asyncio.run(replicas.burst(budget["key"], 20))
    admitted = statuses.count(200)
    # the leases never sum past the budget; slices other replica holds may refuse a few early
    print(f"budget burst: {admitted} of 20 admitted (budget: 5)")
    assert 3 <= admitted <= 5, statuses
    assert set(statuses) <= {200, 402}
    assert sim.chat_hits == admitted
    time.sleep(2.6)  # idle slices go back to the counter after 2 s
    more = [replicas.chat(i % 2, budget["key"]).status_code for i in range(6)]
    assert admitted + more.count(200) == 5, (statuses, more)
    hits = sim.chat_hits

    rpm = replicas.key(rpm=10)
    statuses = asyncio.run(replicas.burst(rpm["key"], 30))
    print(f"rpm burst: {statuses.count(200)} of 30 admitted (rpm: 10)")
    assert 8 <= statuses.count(200) <= 10, statuses
    assert sim.chat_hits - hits == statuses.count(200)
    time.sleep(2.6)
    more = [replicas.chat(i % 2, rpm["key"]).status_code for i in range(4)]
    if time.time() % 60 > 5:  # still the same minute window (else it has reset: skip the sum)
        assert statuses.count(200) + more.count(200) <= 10

    counted = replicas.key(max_requests=6)
    statuses = asyncio.run(replicas.burst(counted["key"], 20))
    print(f"max_requests burst: {statuses.count(200)} of 20 admitted (max: 6)")
    assert statuses.count(200) <= 6
    time.sleep(2.6)
    more = [replicas.chat(i % 2, counted["key"]).status_code for i in range(8)]
    assert statuses.count(200) + more.count(200) == 6


def test_changes_reach_the_other_replica_within_a_second(replicas: Replicas) -> None:
    revoked = replicas.key()
    assert replicas.chat(1, revoked["key"]).status_code == 200
    started = time.monotonic()
    assert replicas.admin(0, "POST", f"/admin/keys/{revoked['id']}/revoke").status_code == 200
    assert replicas.until_refused(1, revoked["key"], started) < 1.0

    by_cli = replicas.key()
    assert replicas.chat(0, by_cli["key"]).status_code == 200
    assert replicas.chat(1, by_cli["key"]).status_code == 200
    env = {**os.environ, "ARBSTR_ADMIN_TOKEN": ADMIN}
    cmd = [
        sys.executable,
        "-m",
        "arbstr",
        "keys",
        "revoke",
        by_cli["id"],
        "-c",
        str(replicas.config),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    started = time.monotonic()
    assert replicas.until_refused(0, by_cli["key"], started) < 1.0
    assert replicas.until_refused(1, by_cli["key"], started) < 1.0

    member = replicas.key()
    project_id = member["project_id"]
    assert replicas.chat(0, member["key"]).status_code == 200
    started = time.monotonic()
    r = replicas.admin(1, "PATCH", f"/admin/projects/{project_id}", json={"active": False})
    assert r.status_code == 200, r.text
    assert replicas.until_refused(0, member["key"], started) < 1.0
    answer = replicas.chat(0, member["key"]).json()
    assert answer["error"]["code"] == "project_inactive"
