"""Instructions per request: the gateway process under callgrind, counted over a fixed number of
sequential requests after a warm-up. Unlike CPU time, this barely moves with the machine's load,
so two versions compare to within about 1% where wall-clock figures drift by 10% or more.

    python -m bench.instructions [--requests 500] [--src /path/to/other/checkout/src]
        [--server-line 'loop_block_warn_s = 0']

`--src` runs another checkout's `arbstr` (a `git worktree` of an older commit) with this
checkout's driver. Needs valgrind (Debian's `valgrind` package). The figure includes what the
process does meanwhile (timers, the recorder's writes); run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from arbstr.cluster import free_port, wait_ready

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Benchmark request: say something short."}],
    "max_tokens": 16,
}


def total_ir(pid: int, out: str) -> int:
    """Dump callgrind's counters now; the newest dump's total (events since the last zeroing)."""
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=False)
    time.sleep(1)
    dumps = sorted(glob.glob(f"{out}.{pid}.*"), key=os.path.getmtime)
    for line in Path(dumps[-1]).read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind dump")


def measure(src: str | None, requests: int, server_line: str) -> dict[str, float]:
    sim_port, port = free_port(), free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "arbstr.sim", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "arbstr.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{port}"\n{server_line}\n'
            f'[database]\nurl = "sqlite:///{tmp}/ir.db"\n'
            f'[[providers]]\nname = "sim"\nurl = "http://127.0.0.1:{sim_port}/v1"\n'
            'models = ["gpt-4o-mini"]\n'
        )
        config.chmod(0o600)
        env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
        out = f"{tmp}/callgrind"
        gw = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
             sys.executable, "-m", "arbstr", "serve", "-c", str(config)],
            env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, gw, "the gateway under valgrind", 300)
        figures: dict[str, float] = {}
        try:
            with httpx.Client(base_url=url, timeout=120) as c:
                for mode in ("json", "stream"):
                    body = {**BODY, "stream": mode == "stream"}
                    for _ in range(30):
                        c.post("/v1/chat/completions", json=body).read()
                    time.sleep(2)
                    subprocess.run(["callgrind_control", "-z", str(gw.pid)], capture_output=True)
                    time.sleep(1)
                    for _ in range(requests):
                        c.post("/v1/chat/completions", json=body).read()
                    time.sleep(2)  # the recorder writes the rows
                    figures[mode] = round(total_ir(gw.pid, out) / requests)
        finally:
            gw.terminate()
            gw.wait(120)
            sim.terminate()
            sim.wait(10)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--src", help="another checkout's src directory")
    ap.add_argument("--server-line", default="", help="one more line for [server]")
    args = ap.parse_args()
    figures = measure(args.src, args.requests, args.server_line)
    print(json.dumps({"src": args.src or "this checkout", "instructions_per_request": figures}))


if __name__ == "__main__":
    main()
