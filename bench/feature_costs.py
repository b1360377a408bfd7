"""What the cache (on a miss) and export (with a dead collector) add to one request, in
microseconds, measured on the functions the request path calls.

    python -m bench.feature_costs

Whole-gateway A/B runs (`bench.run --cache miss`, `--otlp URL`) measure the same thing but on a
noisy 2-core host their spread (10-20% between identical runs) is larger than the effect; these
per-call figures bound it: divide by the gateway's CPU per request (`bench.run`'s
`cpu_ms_per_req`, 0.4-0.6 ms here).
"""

from __future__ import annotations

import json
import time
import timeit

import msgspec

from arbstr.cache import CachedAnswer, MemoryCache, cache_key, parse_cache_control
from arbstr.export import Exporter
from arbstr.recording.record import AttemptRow, RequestRecord

N = 50_000


def per_call_us(fn: object, n: int = N) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]


def main() -> None:
    message = {"role": "user", "content": "bench COUNTER"}
    body = msgspec.json.encode({"model": "gpt-4o-mini", "messages": [message], "max_tokens": 16})
    answer = b'{"id":"x","choices":[{"message":{"content":"' + b"y" * 300 + b'"}}]}'
    cache = MemoryCache(max_entries=100_000)
    counter = iter(range(10**9))

    def miss() -> None:
        control = parse_cache_control("max-age=600")
        unique = body.replace(b"COUNTER", str(next(counter)).encode())  # every body differs
        key = cache_key("project", "chat", "gpt-4o-mini", unique)
        cache._entries.get(key)  # what MemoryCache.get does on a miss (awaited in the gateway)
        entry = CachedAnswer(status=200, content_type="application/json", body=answer)
        entry.stored_at, entry.ttl_s = time.time(), control.max_age or 0.0
        cache.put_now(key, entry)

    exporter = Exporter(otlp_endpoint="http://127.0.0.1:1", jsonl_path=None, queue_size=10**7)
    assert exporter._guard is not None
    exporter._guard.until = time.monotonic() + 3600  # the collector is known to be down
    record = RequestRecord(id="r", timestamp=time.time(), model="m", latency_ms=5.0,
                           attempts=[AttemptRow(provider="p", upstream_model="m", status=200)])  # fmt: skip
    submit = per_call_us(lambda: exporter.submit(record))
    time.sleep(0.5)  # let the thread drop what was queued
    figures = {
        "cache_miss_us": round(per_call_us(miss), 2),
        "cache_key_us": round(per_call_us(lambda: cache_key("p", "chat", "m", body)), 2),
        "export_submit_us": round(submit, 2),
        "export_dead_collector_drops": exporter.figures()["dropped"],
    }
    exporter.close(1.0)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
