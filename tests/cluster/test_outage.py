"""PostgreSQL (a server this test owns) stops for 10 s under load behind three replicas:
requests keep being answered (keys and budgets from memory), readiness reports the database,
and once it is back every answered request is in the log exactly once (spill and replay)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from arbstr.cluster import LocalCluster, free_port
from arbstr.sim import SimProfile, run_in_thread
from tests.cluster.harness import ADMIN, Load, cluster_config, request_ids, require_haproxy
from tests.own_pg import OwnPostgres

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_a_database_outage_under_load_loses_nothing(tmp_path: Path) -> None:
    require_haproxy()
    root = Path(tempfile.mkdtemp(prefix="arbstr-pg-"))  # the postgres user must reach it
    pg = OwnPostgres(root)
    pg.start()
    try:
        profile = SimProfile(latency_ms=15, chunks=4, tokens_per_s=400)
        with run_in_thread([profile, profile]) as sims:
            config = cluster_config(tmp_path / "arbstr.toml", pg.url, sims.urls, auth=True)
            env = {**os.environ, "ARBSTR_ADMIN_TOKEN": ADMIN}
            nodes = LocalCluster(config, tmp_path, front=f"127.0.0.1:{free_port()}", env=env)
            with nodes:
                run_outage(nodes, pg)
    finally:
        pg.close()
        shutil.rmtree(root, ignore_errors=True)


def run_outage(nodes: LocalCluster, pg: OwnPostgres) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    gw1 = nodes.nodes[0].url
    project = httpx.post(f"{gw1}/admin/projects", json={"name": "p"}, headers=admin).json()
    body = {"project_id": project["id"], "name": "k", "budget_sats": 1e9, "rpm": 100_000}
    key = httpx.post(f"{gw1}/admin/keys", json=body, headers=admin).json()["key"]
    time.sleep(0.5)  # every replica's mirror has it (one poll)
    with Load(nodes.url, api_key=key) as load:
        time.sleep(3)
        # the outage spans a minute boundary: the key's rpm window turns over while the store
        # is down, so its new window must be admitted on credit
        while not 50 <= time.time() % 60 < 55:
            time.sleep(0.2)
        stopped = time.monotonic()
        pg.stop("fast")
        unready: dict[str, dict[str, bool]] = {}
        while time.monotonic() - stopped < 10:
            for node in nodes.nodes:
                r = httpx.get(node.url + "/health/ready", timeout=5)
                if r.status_code == 503:
                    unready.setdefault(node.name, r.json()["checks"])
            time.sleep(0.5)
        during = [o for o in load.outcomes if o.at > stopped]
        pg.start()
        restarted = time.monotonic()
        back: list[float] = []
        for node in nodes.nodes:
            while httpx.get(node.url + "/health/ready", timeout=5).status_code != 200:
                assert time.monotonic() - restarted < 30, f"{node.name} not ready again"
                time.sleep(0.1)
            back.append(time.monotonic() - restarted)
        time.sleep(2)
    answered = {o.request_id for o in load.answered}
    deadline = time.monotonic() + 30
    while not answered <= set(ids := request_ids(pg.url)) and time.monotonic() < deadline:
        time.sleep(0.5)
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    print(
        f"\ndatabase outage (10 s): {len(load.outcomes)} requests, {len(during)} during the"
        f" outage, {len(load.failed)} failed {Counter(o.failure for o in load.failed)};"
        f" unready: {sorted(unready)}; ready again after"
        f" {', '.join(f'{b:.1f}' for b in back)} s; rows {len(ids)} for {len(answered)}"
        f" answered, missing {len(answered - set(ids))}, duplicated {len(dupes)}"
    )
    assert len(during) > 100  # answered from memory while the database was down
    assert not load.failed, Counter(o.failure for o in load.failed)
    assert sorted(unready) == ["gw1", "gw2", "gw3"]
    assert all(not checks["request_log"] for checks in unready.values())
    assert answered <= set(ids) and not dupes
    assert len(ids) == len(answered)
