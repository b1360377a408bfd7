"""Soak: `arbstr serve` (SQLite request log) under a closed-loop mix for a long time, sampled.

    python -m bench.soak [--minutes 30] [--concurrency 64] [--out soak.json] [--svg soak.svg]

Three simulated providers in their own processes: `cheap` fails 5% of requests with a 500,
`limited` answers 10% with a 429 (retry-after 1 s, so it cools down), `steady` never fails and
costs more. The load (this process, httpx) keeps `concurrency` requests in flight: 45% JSON,
35% streams read to the end, 10% streams dropped after the first chunk (a client that goes
away), 10% requests for a model only the failing provider serves (failures the client sees).

Every 10 s it samples the gateway process: RSS, open descriptors, event loop tasks and the
recorder's queue (from /metrics). At the end the gateway is stopped with SIGTERM and every
request id the load saw (answers, errors, dropped streams) is looked up in the SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from arbstr.cluster import free_port, wait_ready

PROMPT = [{"role": "user", "content": "soak"}]


def sim(name: str, port: int, *flags: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "arbstr.sim", "--port", str(port), "--name", name,
           "--models", "m,only-cheap", "--latency-ms", "40", *flags]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def config(tmp: Path, ports: dict[str, int], listen: str) -> Path:
    rates = {"cheap": 1, "limited": 2, "steady": 5}
    lines = [f'[server]\nlisten = "{listen}"\n[database]\nurl = "sqlite:///{tmp}/soak.db"']
    for name, port in ports.items():
        models = '["m", "only-cheap"]' if name == "cheap" else '["m"]'
        lines += ["[[providers]]", f'name = "{name}"', f'url = "http://127.0.0.1:{port}/v1"',
                  f"input_rate = {rates[name]}", f"output_rate = {rates[name] * 3}",
                  f"models = {models}"]  # fmt: skip
    path = tmp / "arbstr.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


class Load:
    def __init__(self, url: str, concurrency: int) -> None:
        self.url, self.concurrency = url, concurrency
        self.ids: set[str] = set()
        self.outcomes: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency + 8)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:
            await asyncio.gather(*(self._worker(client, i) for i in range(self.concurrency)))

    async def _worker(self, client: httpx.AsyncClient, worker: int) -> None:
        n = worker
        while not self.stop.is_set():
            n += 1
            kind = ("json",) * 9 + ("stream",) * 7 + ("dropped",) * 2 + ("failing",) * 2
            try:
                await self._one(client, kind[n % 20])
            except httpx.HTTPError as exc:
                self.outcomes[f"client error {type(exc).__name__}"] += 1

    async def _one(self, client: httpx.AsyncClient, kind: str) -> None:
        model = "only-cheap" if kind == "failing" else "m"
        body = {"model": model, "messages": PROMPT, "stream": kind in ("stream", "dropped")}
        async with client.stream("POST", "/v1/chat/completions", json=body) as answer:
            rid = answer.headers.get("x-arbstr-request-id")
            if rid:
                self.ids.add(rid)
            if kind == "dropped":
                async for _ in answer.aiter_raw():
                    break  # and leave: the gateway sees the client go
            else:
                await answer.aread()
        self.outcomes[f"{kind} {answer.status_code}"] += 1


def process_figures(pid: int) -> dict[str, float]:
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return {"rss_mb": rss, "fds": float(len(os.listdir(f"/proc/{pid}/fd")))}


def scrape(text: str) -> dict[str, float]:
    want = {"arbstr_loop_tasks": "tasks", "arbstr_recorder_queue_depth": "recorder_queue",
            "arbstr_recorder_dropped": "dropped", "arbstr_loop_blocked": "loop_blocked"}  # fmt: skip
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in want:
            found[want[name]] = float(value)
    return found


async def sample(url: str, pid: int, load: Load, started: float) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as c:
        metrics = scrape((await c.get(url + "/metrics")).text)
    done = sum(load.outcomes.values())
    return {"t_s": round(time.monotonic() - started), "requests": done,
            **process_figures(pid), **metrics}  # fmt: skip


async def soak(url: str, pid: int, minutes: float, concurrency: int) -> dict[str, Any]:
    load = Load(url, concurrency)
    runner = asyncio.create_task(load.run())
    started = time.monotonic()
    samples = [await sample(url, pid, load, started)]
    print(json.dumps(samples[-1]), flush=True)
    while time.monotonic() - started < minutes * 60:
        await asyncio.sleep(min(10.0, max(0.1, minutes * 60 - (time.monotonic() - started))))
        samples.append(await sample(url, pid, load, started))
        print(json.dumps(samples[-1]), flush=True)
    load.stop.set()
    await runner
    return {"samples": samples, "outcomes": dict(load.outcomes), "ids": sorted(load.ids)}


def svg(samples: list[dict[str, float]], keys: list[str]) -> str:
    """Small multiples: one line chart per figure, time on the x axis, each from zero."""
    w, h, pad = 260, 120, 28
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * len(keys)}" height="{h + 20}"'
             ' font-family="sans-serif" font-size="11">']  # fmt: skip
    end = max(s["t_s"] for s in samples) or 1
    for i, key in enumerate(keys):
        top = max(s.get(key, 0) for s in samples) * 1.2 or 1
        x0 = i * w + pad
        pts = " ".join(
            f"{x0 + (s['t_s'] / end) * (w - pad - 10):.1f},{h - (s.get(key, 0) / top) * (h - 20):.1f}"
            for s in samples
        )
        parts += [
            f'<text x="{x0}" y="12">{key} (max {top / 1.2:g})</text>',
            f'<line x1="{x0}" y1="{h}" x2="{x0 + w - pad - 10}" y2="{h}" stroke="#999"/>',
            f'<line x1="{x0}" y1="20" x2="{x0}" y2="{h}" stroke="#999"/>',
            f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{pts}"/>',
            f'<text x="{x0}" y="{h + 14}">0</text>',
            f'<text x="{x0 + w - pad - 40}" y="{h + 14}">{end / 60:.0f} min</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--out", default="soak.json")
    ap.add_argument("--svg", default=None)
    args = ap.parse_args()
    ports = {"cheap": free_port(), "limited": free_port(), "steady": free_port()}
    sims = [
        sim("cheap", ports["cheap"], "--failure-rate", "0.05", "--failure-status", "500"),
        sim(
            "limited",
            ports["limited"],
            "--failure-rate",
            "0.1",
            "--failure-status",
            "429",
            "--retry-after",
            "1",
        ),
        sim("steady", ports["steady"]),
    ]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        listen = f"127.0.0.1:{free_port()}"
        path = config(tmp, ports, listen)
        log_file = (tmp / "gateway.log").open("w")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "arbstr", "serve", "--config", str(path)],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
        url = f"http://{listen}"
        try:
            wait_ready(url, gateway, "the gateway", 30)
            result = asyncio.run(soak(url, gateway.pid, args.minutes, args.concurrency))
        finally:
            gateway.send_signal(signal.SIGTERM)
            code = gateway.wait(60)
            log_file.close()
            for p in sims:
                p.terminate()
                p.wait(10)
        with sqlite3.connect(tmp / "soak.db") as db:
            rows = {r[0] for r in db.execute("SELECT id FROM requests")}
        ids = set(result.pop("ids"))
        log_lines = (tmp / "gateway.log").read_text().splitlines()
    result["summary"] = {
        "exit_code": code, "requests_seen": len(ids), "rows": len(rows),
        "missing": len(ids - rows), "log_lines": len(log_lines),
        "log_sample": sorted({line[:160] for line in log_lines})[:12],
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"]), json.dumps(result["outcomes"]), flush=True)
    if args.svg:
        keys = ["rss_mb", "fds", "tasks", "recorder_queue"]
        Path(args.svg).write_text(svg(result["samples"], keys))


if __name__ == "__main__":
    main()
