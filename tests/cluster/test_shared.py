"""Three replicas share one state: a circuit opened through one is honoured by the others
within 1 s; a key's budget and rpm hold across the three (ADR 0011's bounds); a key revoked
through one is refused by all within 1 s."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arbstr.cluster import LocalCluster, free_port
from arbstr.sim import SimProfile, run_in_thread
from tests.cluster.harness import ADMIN, PROMPT, cluster_config, require_haproxy
from tests.e2e.test_shared_state import schema
from tests.pg import PG_BASE

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.slow]
__all__ = ["schema"]
BODY = {"model": "m", "messages": PROMPT, "max_tokens": 10}


class Shared:
    def __init__(self, nodes: LocalCluster, sims: Any) -> None:
        self.nodes, self.sims = nodes, sims
        self.urls = [n.url for n in nodes.nodes]

    def admin(self, i: int, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN}"}
        return httpx.request(method, self.urls[i] + path, headers=headers, timeout=10, **kw)

    def key(self, **fields: Any) -> dict[str, Any]:
        project = self.admin(0, "POST", "/admin/projects", json={"name": f"p{time.time_ns()}"})
        body = {"project_id": project.json()["id"], "name": "k", **fields}
        made = self.admin(0, "POST", "/admin/keys", json=body)
        assert made.status_code == 201, made.text
        key = str(made.json()["key"])
        for url in self.urls:  # known everywhere before the test uses it
            deadline = time.monotonic() + 2
            while self.chat(url, key, "/v1/key").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        return dict(made.json())

    @staticmethod
    def chat(url: str, key: str, path: str = "/v1/chat/completions") -> httpx.Response:
        auth = {"authorization": f"Bearer {key}"}
        if path != "/v1/chat/completions":
            return httpx.get(url + path, headers=auth, timeout=10)
        return httpx.post(url + path, json=BODY, headers=auth, timeout=10)

    async def burst(self, key: str, n: int) -> list[int]:
        auth = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(timeout=15) as client:
            rs = await asyncio.gather(*(
                client.post(self.urls[i % 3] + "/v1/chat/completions", json=BODY, headers=auth)
                for i in range(n)
            ))  # fmt: skip
        return [r.status_code for r in rs]


@pytest.fixture
def shared(tmp_path: Path, schema: str) -> Iterator[Shared]:
    require_haproxy()
    bad = SimProfile(failure_rate=1.0, failure_status=500)
    with run_in_thread([bad, SimProfile()]) as sims:
        url = f"{PG_BASE}?schema={schema}"
        config = cluster_config(tmp_path / "arbstr.toml", url, sims.urls, auth=True)
        env = {**os.environ, "ARBSTR_ADMIN_TOKEN": ADMIN}
        nodes = LocalCluster(config, tmp_path, front=f"127.0.0.1:{free_port()}", env=env)
        with nodes:
            yield Shared(nodes, sims)


def test_state_keys_budgets_and_limits_are_shared_by_three_replicas(shared: Shared) -> None:
    # a circuit opened through gw1 ...
    key = shared.key()["key"]
    first = shared.chat(shared.urls[0], key)
    assert first.status_code == 200 and first.headers["x-arbstr-provider"] == "sim1"
    assert httpx.get(shared.urls[0] + "/health").json()["providers"]["sim0"]["state"] == "open"
    opened = time.monotonic()
    seen: list[float] = []
    for url in shared.urls[1:]:
        while httpx.get(url + "/health").json()["providers"]["sim0"]["state"] != "open":
            assert time.monotonic() - opened < 1.0, f"{url} did not see the circuit in 1 s"
            time.sleep(0.02)
        seen.append(time.monotonic() - opened)
    hits = shared.sims.servers[0].chat_hits
    for url in shared.urls[1:]:  # ... is honoured by gw2 and gw3: they never call sim0
        r = shared.chat(url, key)
        assert r.headers["x-arbstr-provider"] == "sim1" and "x-arbstr-retries" not in r.headers
    assert shared.sims.servers[0].chat_hits == hits

    # rpm 10 and max_requests 6 across the three, 30 and 20 concurrent requests
    rpm = shared.key(rpm=10)["key"]
    rpm_codes = asyncio.run(shared.burst(rpm, 30))
    capped = shared.key(max_requests=6)["key"]
    capped_codes = asyncio.run(shared.burst(capped, 20))
    # a budget worth a few requests: never passed
    budget = shared.key(budget_sats=0.5)
    budget_codes = asyncio.run(shared.burst(budget["key"], 20))
    deadline = time.monotonic() + 10  # the ledger is the request log: written just after
    while (spent := shared.admin(0, "GET", f"/admin/keys/{budget['id']}").json())[
        "requests"
    ] < budget_codes.count(200):
        assert time.monotonic() < deadline, spent
        time.sleep(0.2)

    # a key revoked through gw3 is refused by all three within 1 s
    victim = shared.key()
    assert shared.chat(shared.urls[0], victim["key"]).status_code == 200
    revoked = time.monotonic()
    assert shared.admin(2, "POST", f"/admin/keys/{victim['id']}/revoke").status_code == 200
    refused: list[float] = []
    for url in shared.urls:
        while shared.chat(url, victim["key"]).status_code != 401:
            assert time.monotonic() - revoked < 1.0, f"{url} still accepts a revoked key"
            time.sleep(0.02)
        refused.append(time.monotonic() - revoked)

    print(
        f"\nshared state: circuit seen by the others after {[f'{s * 1000:.0f} ms' for s in seen]};"
        f" rpm 10 / 30 requests: {rpm_codes.count(200)} admitted;"
        f" max_requests 6 / 20: {capped_codes.count(200)};"
        f" budget 0.5 sats / 20: {budget_codes.count(200)} admitted, spend {spent['spend_sats']};"
        f" revocation refused after {[f'{s * 1000:.0f} ms' for s in refused]}"
    )
    assert 1 <= rpm_codes.count(200) <= 10 and set(rpm_codes) <= {200, 429}
    assert 1 <= capped_codes.count(200) <= 6 and set(capped_codes) <= {200, 429}
    assert set(budget_codes) <= {200, 402} and budget_codes.count(402) > 0
    assert 0 < spent["spend_sats"] <= 0.5  # max_tokens set: estimates cover the actual cost
