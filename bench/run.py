"""Benchmark driver: the simulated upstream directly vs arbstr in front of it.

Starts the simulated provider and the gateway as separate processes (the gateway pinned alone on
one core when `--pin` is given, the upstream and the load generator on the other), then runs a
closed-loop load with wrk (or the built-in asyncio client when wrk is absent) at several
concurrencies, streaming and not, for a bounded time, repeating rounds and reporting medians.

    python -m bench.run --pin --rounds 3 --duration 10 --markdown docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from arbstr.loadgen import run_load

HZ = os.sysconf("SC_CLK_TCK")
BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Benchmark request: say something short."}],
    "max_tokens": 16,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def spawn(
    cmd: list[str], cpus: str | None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    if cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )


def tree(pid: int) -> list[int]:
    """pid and all its descendants (granian and uvicorn workers are children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / HZ


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%s
wrk.body = [[%s]]
"""
ADMIN = "bench-admin-token-not-secret-0123"
KEY: dict[str, str] = {}  # --auth: the virtual key the load sends
CACHE: dict[str, str] = {}  # --cache: "miss" (every body differs) or "hit" (one body)
# --cache miss: each request's message carries a counter, so no two bodies are the same
MISS_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.gsub(wrk.body, "COUNTER", tostring(counter)))
end
"""


def parse_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, conc: int, duration: float, stream: bool, cpus: str | None) -> dict[str, Any]:
    body = dict(BODY, stream=stream)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        auth = f'wrk.headers["Authorization"] = "Bearer {KEY["key"]}"' if KEY else ""
        if CACHE:
            auth += '\nwrk.headers["Cache-Control"] = "max-age=600"'
            body["messages"] = [{"role": "user", "content": "bench COUNTER"}]
        f.write(LUA % (auth, json.dumps(body)) + (MISS_LUA if CACHE.get("mode") == "miss" else ""))
        script = f.name
    cmd = [
        "wrk",
        "-t1",
        f"-c{conc}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        script,
        url.rstrip("/") + "/chat/completions",
    ]
    if cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"\s+(50|90|99)%\s+(\S+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = int(non2xx.group(1)) if non2xx else 0
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return {
        "rps": rps,
        "requests": total,
        "errors": errors,
        "p50_ms": parse_ms(lat.get("50", "")),
        "p90_ms": parse_ms(lat.get("90", "")),
        "p99_ms": parse_ms(lat.get("99", "")),
    }


def pyload(url: str, conc: int, duration: float, stream: bool) -> dict[str, Any]:
    r = asyncio.run(
        run_load(
            url,
            concurrency=conc,
            duration_s=duration,
            stream=stream,
            requests=0,
            api_key=KEY["key"] if KEY and url.startswith(KEY["gateway"]) else None,
        )
    )
    return {
        "rps": r.rps,
        "requests": r.requests,
        "errors": r.errors,
        "p50_ms": r.p50_ms,
        "p90_ms": r.p90_ms,
        "p99_ms": r.p99_ms,
        "ttfb_p50_ms": r.ttfb_p50_ms,
        "ttfb_p99_ms": r.ttfb_p99_ms,
    }


def measure(
    url: str, conc: int, duration: float, stream: bool, args: argparse.Namespace, gw_pid: int | None
) -> dict[str, Any]:
    cpu0 = cpu_seconds(gw_pid) if gw_pid else 0.0
    if args.client == "wrk":
        result = wrk(url, conc, duration, stream, args.client_cpus)
    else:
        result = pyload(url, conc, duration, stream)
    if gw_pid:  # CPU over the counted requests only (not the first-byte pass below)
        args.sent += result["requests"]
        used = cpu_seconds(gw_pid) - cpu0
        result["cpu_ms_per_req"] = used * 1000 / max(1, result["requests"])
        result["rss_mb"] = rss_mb(gw_pid)
    if stream and args.client == "wrk":  # first-byte latency needs our own client
        ttfb = pyload(url, min(conc, 16), min(duration, 3), True)
        result["ttfb_p50_ms"], result["ttfb_p99_ms"] = ttfb["ttfb_p50_ms"], ttfb["ttfb_p99_ms"]
        result["ttfb_rps"] = ttfb["rps"]  # the load during that pass (the client is slower)
        if gw_pid:
            args.sent += ttfb["requests"]
    return result


def config(upstream: str, db: str, transport: str, auth: bool = False, extra: str = "") -> str:
    keys = f'[auth]\nenabled = true\nadmin_token = "{ADMIN}"\n' if auth else ""
    return f"""{keys}{extra}
[server]
upstream_transport = "{transport}"
[database]
url = "sqlite:///{db}"
[[providers]]
name = "sim"
url = "{upstream}"
api_key = "bench-key-not-secret"
input_rate = 1.0
output_rate = 2.0
"""


def make_key(gateway: str, limits: bool = True) -> dict[str, str]:
    """A project and a key with a budget and an rpm, both far from what the run can reach."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            gateway.removesuffix("/v1") + path,
            data=json.dumps(body).encode(),
            headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return dict(json.loads(r.read()))

    far: dict[str, Any] = {"budget_sats": 1e12, "rpm": 10**9} if limits else {}
    project = post("/admin/projects", {"name": "bench", **far})
    key = post("/admin/keys", {"project_id": project["id"], "name": "bench", **far})
    return {"key": key["key"]}


def recorder_figures(gateway: str) -> dict[str, float]:
    """The recorder's own counters from /metrics: rows written, spilled, dropped, queued."""
    req = urllib.request.Request(
        gateway.removesuffix("/v1") + "/metrics", headers={"authorization": f"Bearer {ADMIN}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r"^arbstr_recorder_(\w+) ([\d.e+]+)$", text, re.M)
    return {k: float(v) for k, v in found}


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = rounds[0].keys()
    out: dict[str, Any] = {}
    for k in keys:
        values = [r[k] for r in rounds if isinstance(r.get(k), int | float) and r[k] == r[k]]
        out[k] = statistics.median(values) if values else None
    out["errors"] = sum(r.get("errors") or 0 for r in rounds)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--upstream", help="use this upstream base URL instead of starting the simulator"
    )
    ap.add_argument("--server", default="uvicorn", choices=["granian", "uvicorn"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--transport", default="http1", choices=["http1", "aiohttp"])
    ap.add_argument("--pin", action="store_true", help="gateway on CPU 0, upstream+client on CPU 1")
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="json,stream")
    ap.add_argument(
        "--client", default="wrk" if shutil.which("wrk") else "python", choices=["wrk", "python"]
    )
    ap.add_argument("--json", dest="json_out", help="write raw results here")
    ap.add_argument("--markdown", help="write the results table here")
    ap.add_argument(
        "--auth",
        nargs="?",
        const="limits",
        choices=["limits", "bare"],
        help="virtual keys on: the load sends a key with a budget and an rpm, both far away "
        "(`bare`: a key and project without limits)",
    )
    ap.add_argument(
        "--cache",
        choices=["miss", "hit"],
        help="response cache on (memory): every request a miss (distinct bodies) or a hit",
    )
    ap.add_argument(
        "--sim-latency-ms", type=float, default=0.0, help="the simulated provider's latency"
    )
    ap.add_argument("--otlp", help="export spans to this OTLP/HTTP endpoint (a dead one too)")
    ap.add_argument(
        "--soak", type=float, default=0.0, help="seconds of full load to watch RSS growth"
    )
    args = ap.parse_args()
    args.sent = 0  # requests answered through the gateway, counted by the clients
    gw_cpus = ("0" if args.workers == 1 else "0,1") if args.pin else None
    args.client_cpus = "1" if args.pin else None
    if args.pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})  # our own asyncio client must not share the gateway's core
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="arbstr-bench-"))
    try:
        upstream = args.upstream
        if upstream is None:
            sim_port = free_port()
            procs.append(
                spawn(
                    [
                        sys.executable,
                        "-m",
                        "arbstr.sim",
                        "--port",
                        str(sim_port),
                        "--profile",
                        "healthy",
                        "--latency-ms",
                        str(args.sim_latency_ms),
                    ],
                    args.client_cpus,
                )
            )
            wait_port(sim_port)
            upstream = f"http://127.0.0.1:{sim_port}/v1"
        cfg = tmp / "arbstr.toml"
        extra = ""
        if args.cache:
            CACHE["mode"] = args.cache
            extra += "[cache]\nenabled = true\nmax_entries = 100000\n"
        if args.otlp:
            extra += f'[export]\notlp_endpoint = "{args.otlp}"\n'
        cfg.write_text(
            config(upstream, str(tmp / "bench.db"), args.transport, bool(args.auth), extra)
        )
        cfg.chmod(0o600)
        gw_port = free_port()
        gw = spawn(
            [
                sys.executable,
                "-m",
                "arbstr",
                "serve",
                "-c",
                str(cfg),
                "--listen",
                f"127.0.0.1:{gw_port}",
                "--server",
                args.server,
                "--workers",
                str(args.workers),
            ],
            gw_cpus,
        )
        procs.append(gw)
        wait_port(gw_port)
        gateway = f"http://127.0.0.1:{gw_port}/v1"
        if args.auth:
            KEY.update(make_key(gateway, args.auth == "limits"), gateway=gateway)
        time.sleep(1.0)
        idle_rss = rss_mb(gw.pid)
        results: list[dict[str, Any]] = []
        for mode in args.modes.split(","):
            stream = mode == "stream"
            for conc in (int(c) for c in args.concurrency.split(",")):
                measure(gateway, conc, 1.0, stream, args, gw.pid)  # warm-up
                direct = median_of(
                    [
                        measure(upstream, conc, args.duration, stream, args, None)
                        for _ in range(args.rounds)
                    ]
                )
                via = median_of(
                    [
                        measure(gateway, conc, args.duration, stream, args, gw.pid)
                        for _ in range(args.rounds)
                    ]
                )
                row = {
                    "mode": mode,
                    "concurrency": conc,
                    "direct": direct,
                    "arbstr": via,
                    "overhead_p50_ms": (via["p50_ms"] or 0) - (direct["p50_ms"] or 0),
                    "overhead_p99_ms": (via["p99_ms"] or 0) - (direct["p99_ms"] or 0),
                }
                if (
                    stream
                    and via.get("ttfb_p50_ms") is not None
                    and direct.get("ttfb_p50_ms") is not None
                ):
                    row["ttfb_overhead_p50_ms"] = via["ttfb_p50_ms"] - direct["ttfb_p50_ms"]
                results.append(row)
                print(json.dumps(row), flush=True)
        soak = None
        if args.soak:
            before = rss_mb(gw.pid)
            load = measure(gateway, 16, args.soak, False, args, gw.pid)
            soak = {
                "seconds": args.soak,
                "rss_before_mb": before,
                "rss_after_mb": rss_mb(gw.pid),
                "rps": load.get("rps"),
                "errors": load.get("errors") or 0,
            }
        time.sleep(1.0)  # the recorder lingers 20 ms per batch; let it drain
        summary = {
            "auth": args.auth or "off",
            "cache": args.cache or "off",
            "otlp": args.otlp or "off",
            "server": args.server,
            "transport": args.transport,
            "workers": args.workers,
            "pinned": args.pin,
            "client": args.client,
            "idle_rss_mb": idle_rss,
            "soak": soak,
            "recorded": {"answered": args.sent, **recorder_figures(gateway)},
            "results": results,
        }
        from bench.report import MIN_HEADROOM, headroom

        ratio = headroom(summary)
        if ratio is not None and ratio < MIN_HEADROOM:
            print(
                f"warning: the upstream is only {ratio:.1f}x faster than the gateway; "
                "the figures measure the upstream as much as arbstr",
                file=sys.stderr,
            )
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(summary, indent=2))
        if args.markdown:
            from bench.report import write_markdown

            write_markdown(summary, Path(args.markdown))
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
