"""Requests/s through HAProxy with 1, 2 and 3 replicas on one PostgreSQL schema.

    python -m bench.cluster [--duration 10] [--concurrency 32] [--replicas 1,2,3]

A simulated provider runs in its own process, the replicas and HAProxy as `arbstr cluster`
starts them, the load is `arbstr bench` (closed loop, JSON answers) in another process. On a
2-core machine the cores cap the total: every process here competes for the same two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.pg import PG_BASE, drop_schema

from arbstr.cluster import LocalCluster, free_port


def run(replicas: int, duration: float, concurrency: int, sim_url: str) -> dict[str, float]:
    schema = f"arbstr_bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "arbstr.toml"
        config.write_text(
            f'[database]\nurl = "{PG_BASE}?schema={schema}"\n[state]\nbackend = "database"\n'
            f'[[providers]]\nname = "sim"\nurl = "{sim_url}"\nmodels = ["gpt-4o-mini"]\n'
        )
        config.chmod(0o600)
        front = f"127.0.0.1:{free_port()}"
        try:
            with LocalCluster(config, Path(tmp), replicas=replicas, front=front):
                time.sleep(1)
                cmd = [sys.executable, "-m", "arbstr", "bench", "--url", f"http://{front}/v1",
                       "--duration", str(duration), "-c", str(concurrency), "--json"]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        finally:
            asyncio.run(drop_schema(schema))
    figures: dict[str, float] = json.loads(out)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--replicas", default="1,2,3")
    args = ap.parse_args()
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "arbstr.sim", "--port", str(port)], stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(1.5)
        for n in (int(x) for x in args.replicas.split(",")):
            figures = run(n, args.duration, args.concurrency, f"http://127.0.0.1:{port}/v1")
            keys = ("rps", "p50_ms", "p99_ms", "errors")
            print(json.dumps({"replicas": n, **{k: figures.get(k) for k in keys}}), flush=True)
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
