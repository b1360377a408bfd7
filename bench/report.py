"""Render a benchmark summary as the markdown table in docs/benchmarks.md."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

START = "<!-- results:start -->"
END = "<!-- results:end -->"


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


MIN_HEADROOM = 3.0  # the upstream must be this many times faster than the gateway


def headroom(summary: dict[str, Any]) -> float | None:
    """The smallest direct/arbstr throughput ratio over all rows (None without rows)."""
    ratios = [
        row["direct"]["rps"] / row["arbstr"]["rps"]
        for row in summary["results"]
        if row["direct"].get("rps") and row["arbstr"].get("rps")
    ]
    return min(ratios) if ratios else None


def _ttfb(row: dict[str, Any]) -> str:
    """First-byte overhead, with the load the (slower, Python) first-byte client put on."""
    value = row.get("ttfb_overhead_p50_ms")
    rps = row["arbstr"].get("ttfb_rps")
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" (at {rps:,.0f}/s)" if rps else "")


def table(summary: dict[str, Any]) -> str:
    cpu = subprocess.run(
        ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    lines = [
        f"Machine: {cpu or platform.processor()}, {platform.python_implementation()} "
        f"{platform.python_version()}; server {summary['server']} x{summary['workers']} "
        f"worker(s), upstream transport {summary.get('transport', 'http1')}, "
        f"pinned={summary['pinned']}, load client {summary['client']}.",
        f"Gateway RSS idle: {_f(summary['idle_rss_mb'], 1)} MB.",
        "",
        "| mode | conc | direct rps | arbstr rps | direct p50 ms | arbstr p50 ms | overhead p50 ms "
        "| overhead p99 ms | first-byte overhead p50 ms | gateway CPU ms/req | RSS MB | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["results"]:
        d, a = row["direct"], row["arbstr"]
        lines.append(
            f"| {row['mode']} | {row['concurrency']} | {_f(d['rps'], 0)} | {_f(a['rps'], 0)} "
            f"| {_f(d['p50_ms'])} | {_f(a['p50_ms'])} | {_f(row['overhead_p50_ms'])} "
            f"| {_f(row['overhead_p99_ms'])} | {_ttfb(row)} "
            f"| {_f(a.get('cpu_ms_per_req'), 3)} | {_f(a.get('rss_mb'), 1)} "
            f"| {d['errors'] + a['errors']} |"
        )
    ratio = headroom(summary)
    if ratio is not None:
        verdict = "fine" if ratio >= MIN_HEADROOM else "TOO LOW: this table measures the upstream"
        lines += [
            "",
            f"Upstream headroom: the direct upstream served at least {ratio:.1f}x the gateway's "
            f"rate in every row (needs >= {MIN_HEADROOM:g}x: {verdict}).",
        ]
    soak = summary.get("soak")
    if soak:
        growth = (soak["rss_after_mb"] / soak["rss_before_mb"] - 1) * 100
        lines += [
            "",
            f"Soak: {soak['seconds']:.0f} s at c=16: RSS {soak['rss_before_mb']:.1f} -> "
            f"{soak['rss_after_mb']:.1f} MB ({growth:+.1f}%), "
            f"{_f(soak.get('rps'), 0)} req/s, {soak.get('errors', 0)} errors.",
        ]
    rec = summary.get("recorded")
    if rec:
        lines += [
            "",
            f"Request log: {rec['answered']:,} requests answered through the gateway (counted by "
            f"the clients), {rec.get('rows_written', 0):,.0f} rows written to SQLite, "
            f"{rec.get('queue_depth', 0):.0f} still queued, {rec.get('spilled', 0):.0f} spilled, "
            f"{rec.get('dropped', 0):.0f} dropped.",
        ]
    return "\n".join(lines)


def write_markdown(summary: dict[str, Any], path: Path) -> None:
    """Replace the block between the results markers (or append one)."""
    block = f"{START}\n{table(summary)}\n{END}"
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text + ("\n" if text else "") + block + "\n"
    path.write_text(text)
