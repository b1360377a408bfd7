"""A closed-loop load generator for any OpenAI-compatible endpoint (used by `arbstr bench`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import msgspec

__all__ = ["LoadResult", "percentile", "run_load"]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


class LoadResult(msgspec.Struct, kw_only=True):
    """Figures of one load run; latencies in milliseconds."""

    url: str
    requests: int
    concurrency: int
    stream: bool
    duration_s: float
    rps: float
    ok: int
    errors: int
    statuses: dict[str, int]
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    overhead_p50_ms: float | None = None
    overhead_p99_ms: float | None = None


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    ok: int = 0


def _body(model: str, stream: bool, max_tokens: int) -> bytes:
    return msgspec.json.encode(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Benchmark request: say something short."}],
            "max_tokens": max_tokens,
            "stream": stream,
        }
    )


async def run_load(
    url: str,
    *,
    requests: int = 1000,
    concurrency: int = 16,
    stream: bool = False,
    model: str = "gpt-4o-mini",
    max_tokens: int = 16,
    api_key: str | None = None,
    duration_s: float | None = None,
) -> LoadResult:
    """Send `requests` chat completions (or until `duration_s`) with `concurrency` workers."""
    endpoint = url.rstrip("/") + "/chat/completions"
    body = _body(model, stream, max_tokens)
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    tally = _Tally()
    remaining = requests
    stop_at = time.monotonic() + duration_s if duration_s else None
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while True:
            if stop_at is not None:
                if time.monotonic() >= stop_at:
                    return
            elif remaining <= 0:
                return
            remaining -= 1
            t0 = time.perf_counter()
            try:
                async with session.post(endpoint, data=body, headers=headers) as resp:
                    first = None
                    async for _ in resp.content.iter_any():
                        if first is None:
                            first = time.perf_counter()
                    elapsed = time.perf_counter() - t0
                    key = str(resp.status)
                    if resp.status == 200:
                        tally.ok += 1
                        tally.latencies.append(elapsed * 1000)
                        if stream and first is not None:
                            tally.ttfb.append((first - t0) * 1000)
                        over = resp.headers.get("x-arbstr-overhead-ms")
                        if over is not None:
                            tally.overhead.append(float(over))
            except (aiohttp.ClientError, TimeoutError) as exc:
                key = type(exc).__name__
            tally.statuses[key] = tally.statuses.get(key, 0) + 1

    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    duration = time.perf_counter() - start
    lat = sorted(tally.latencies)
    ttfb = sorted(tally.ttfb)
    over = sorted(tally.overhead)
    total = sum(tally.statuses.values())
    return LoadResult(
        url=url,
        requests=total,
        concurrency=concurrency,
        stream=stream,
        duration_s=round(duration, 3),
        rps=round(total / duration, 1) if duration > 0 else 0.0,
        ok=tally.ok,
        errors=total - tally.ok,
        statuses=tally.statuses,
        p50_ms=percentile(lat, 50),
        p90_ms=percentile(lat, 90),
        p99_ms=percentile(lat, 99),
        ttfb_p50_ms=percentile(ttfb, 50),
        ttfb_p99_ms=percentile(ttfb, 99),
        overhead_p50_ms=percentile(over, 50),
        overhead_p99_ms=percentile(over, 99),
    )
