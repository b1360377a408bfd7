"""Scale check of the request log: load N synthetic rows through the recorder, time the queries.

    python -m bench.load_request_log --backend sqlite --rows 1000000
    python -m bench.load_request_log --backend postgres --rows 1000000

Rows are generated with a polyfactory factory (a pool of distinct records, re-stamped with fresh ids
and timestamps spread over 30 days), submitted to the `Recorder` as the gateway would, and the
recorder's throughput is the rows written per second until it has drained. Then `/v1/stats`
(30 days, plain and grouped), the hourly timeseries and `/v1/requests` page 1 are timed as store
calls (median of 5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
from polyfactory.factories.msgspec_factory import MsgspecFactory

from arbstr.recording.record import AttemptRow, RequestRecord
from arbstr.recording.writer import Recorder
from arbstr.stores.requestlog import PostgresRequestLog, RequestLog, SqliteRequestLog
from arbstr.stores.requestlog.base import ListQuery, StatsQuery

PG = "postgresql://postgres@127.0.0.1:5432/test"


class RecordFactory(MsgspecFactory[RequestRecord]):
    __random_seed__ = 1


def pool(n: int = 2000) -> list[RequestRecord]:
    rnd = random.Random(1)
    out = []
    for _ in range(n):
        ok = rnd.random() > 0.05
        out.append(
            RecordFactory.build(
                model=rnd.choice(["gpt-4o", "gpt-4o-mini", "llama-3.1-8b", "free"]),
                provider=rnd.choice(["alpha", "beta", "gamma", "delta"]),
                success=ok,
                status=200 if ok else 502,
                streaming=rnd.random() > 0.6,
                input_tokens=rnd.randint(10, 4000),
                output_tokens=rnd.randint(1, 1000),
                cost_sats=rnd.uniform(0.01, 50),
                savings_sats=rnd.uniform(0, 5),
                latency_ms=rnd.lognormvariate(6, 0.8),
                error_message=None if ok else "failed",
                attempts=[AttemptRow(provider="alpha", upstream_model="m", status=200)],
            )
        )
    return out


async def run(backend: str, rows: int) -> dict[str, object]:
    schema = None
    tmp = Path(tempfile.mkdtemp(prefix="arbstr-scale-"))
    store: RequestLog
    if backend == "sqlite":
        store = SqliteRequestLog(str(tmp / "scale.db"))
    else:
        schema = f"arbstr_scale_{uuid.uuid4().hex[:8]}"
        store = PostgresRequestLog(PG, schema)
    await store.migrate()
    now = time.time()
    span = 30 * 86400
    base = pool()
    recorder = Recorder(store, spill_path=tmp / "spill.jsonl", max_queue=rows + 1, batch_size=2000)
    await recorder.start()
    started = time.perf_counter()
    for i in range(rows):
        rec = msgspec.structs.replace(
            base[i % len(base)],
            id=f"{i:08d}-{uuid.uuid4().hex[:8]}",
            timestamp=now - span + span * i / rows,
        )
        recorder.submit(rec)
        if i % 20000 == 0:
            await asyncio.sleep(0)  # let the writer run, as a serving loop would
    submitted = time.perf_counter() - started
    await recorder.drain_and_close(timeout_s=3600)
    total = time.perf_counter() - started
    count = await store.count()

    async def timed(coro_fn: object) -> float:
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            await coro_fn()  # type: ignore[operator]
            samples.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(samples), 2)

    q30 = StatsQuery(since=now - span, until=now + 1)
    result = {
        "backend": backend,
        "rows": count,
        "submit_s": round(submitted, 2),
        "rows_per_s": round(count / total),
        "spilled": recorder.spilled,
        "stats_30d_ms": await timed(lambda: store.stats(q30)),
        "stats_30d_by_model_ms": await timed(lambda: store.stats(q30, "model")),
        "stats_30d_model_filter_ms": await timed(
            lambda: store.stats(StatsQuery(since=now - span, until=now + 1, model="gpt-4o"))
        ),
        "timeseries_30d_hour_ms": await timed(lambda: store.timeseries(q30, "hour")),
        "requests_page1_ms": await timed(
            lambda: store.list(ListQuery(since=now - span, until=now + 1))
        ),
        "requests_page1_by_cost_ms": await timed(
            lambda: store.list(ListQuery(since=now - span, until=now + 1, sort="cost_sats"))
        ),
        "requests_failed_page1_ms": await timed(
            lambda: store.list(ListQuery(since=now - span, until=now + 1, success=False))
        ),
    }
    if schema:
        await store.fetch(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[attr-defined]
    await store.aclose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.backend, args.rows))), flush=True)


if __name__ == "__main__":
    main()
