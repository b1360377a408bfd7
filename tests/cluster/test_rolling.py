"""Three replicas behind HAProxy on one PostgreSQL schema, load through the front: a rolling
restart loses nothing; a replica killed outright costs at most what was in flight on it."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from arbstr.cluster import LocalCluster, free_port
from arbstr.sim import SimProfile, run_in_thread
from tests.cluster.harness import Load, cluster_config, require_haproxy, wait_for_rows
from tests.e2e.test_shared_state import schema
from tests.pg import PG_BASE

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.slow]
__all__ = ["schema"]


@pytest.fixture
def cluster(tmp_path: Path, schema: str) -> Iterator[LocalCluster]:
    require_haproxy()
    profile = SimProfile(latency_ms=15, chunks=4, tokens_per_s=400)
    with run_in_thread([profile, profile]) as sims:
        url = f"{PG_BASE}?schema={schema}"
        config = cluster_config(tmp_path / "arbstr.toml", url, sims.urls)
        nodes = LocalCluster(config, tmp_path, front=f"127.0.0.1:{free_port()}")
        with nodes:
            yield nodes


def test_rolling_restart_under_load_fails_no_request_and_logs_each_once(
    cluster: LocalCluster, schema: str
) -> None:
    started = time.monotonic()
    restarts: list[float] = []
    with Load(cluster.url) as load:
        time.sleep(3)
        for node in cluster.nodes:
            t0 = time.monotonic()
            assert cluster.stop_replica(node, signal.SIGTERM) == 0  # drained, exit 0
            cluster.start_replica(node)  # and ready again
            time.sleep(1.5)  # the balancer's rise (2 checks of 500 ms) before the next one goes
            restarts.append(time.monotonic() - t0)
        while time.monotonic() - started < 30:
            time.sleep(0.5)
    answered = load.answered
    ids = {o.request_id for o in answered if o.request_id}
    logged = wait_for_rows(PG_BASE, schema, ids)
    per_replica = Counter(o.replica for o in answered)
    print(
        f"\nrolling restart: {len(load.outcomes)} requests in {time.monotonic() - started:.0f} s,"
        f" {len(load.failed)} failed, {len(logged)} rows; per replica {dict(per_replica)};"
        f" restart took {', '.join(f'{r:.1f}' for r in restarts)} s"
    )
    assert not load.failed, [o.failure for o in load.failed][:5]
    assert len(answered) > 200
    assert set(logged) == ids and len(logged) == len(ids)  # exactly one row each
    assert all(node.starts == 2 for node in cluster.nodes)


def test_a_killed_replica_costs_at_most_its_in_flight_requests(
    cluster: LocalCluster, schema: str
) -> None:
    victim = cluster.nodes[1]
    with Load(cluster.url) as load:
        time.sleep(3)
        killed = time.monotonic()
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        time.sleep(5)
    failed = load.failed
    after = [o for o in load.outcomes if o.at > killed]
    last_failure = max((o.at - killed for o in failed), default=0.0)
    # answered by it after it died (a margin: one it finished just as the signal went is fine)
    to_victim = [
        o.at - killed for o in after if o.replica == victim.name and o.failure is None
        and o.at - killed > 0.2
    ]  # fmt: skip
    others = {o.request_id for o in load.answered if o.replica != victim.name}
    logged = set(wait_for_rows(PG_BASE, schema, {i for i in others if i}))
    print(
        f"\nreplica killed: {len(load.outcomes)} requests, {len(failed)} failed"
        f" ({Counter(o.failure for o in failed)}), last failure {last_failure * 1000:.0f} ms"
        f" after the kill; {len(others)} answered by the others, all in the log:"
        f" {others <= logged}"
    )
    assert len(failed) <= load.threads  # at most one in flight per client, on the victim
    assert all(o.failure and (o.failure.startswith(("502", "503", "connection"))) for o in failed)
    assert last_failure < 1.0 + 1.0  # the check interval x fall (1 s), and a margin
    assert not to_victim  # nothing answered by it after it died
    assert others <= logged
