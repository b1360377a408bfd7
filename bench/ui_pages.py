"""How long each dashboard page takes to render with N requests in the log (SQLite).

    python -m bench.ui_pages --rows 1000000

Loads N synthetic rows spread over 30 days (the `load_request_log` pool, a tenth of them keyed)
through the recorder, then renders every `/ui` page in-process (Litestar's test client, the
app's own lifespan) and reports the median of 5 renders per page, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
from litestar.testing import AsyncTestClient

from arbstr.app import create_app
from arbstr.config import parse_settings
from arbstr.recording.writer import Recorder
from arbstr.stores.requestlog import SqliteRequestLog
from bench.load_request_log import pool

PAGES = [
    "/ui?range=last_1h",
    "/ui?range=last_24h",
    "/ui?range=last_7d",
    "/ui?range=last_30d",
    "/ui/requests",
    "/ui/requests?range=last_30d&sort=cost_sats",
    "/ui/requests?range=last_30d&provider=alpha&success=false",
    "/ui/providers",
    "/ui/keys",
    "/ui/audit",
    "/ui/playground",
]


async def load(path: Path, rows: int) -> None:
    store = SqliteRequestLog(str(path))
    await store.migrate()
    now, span = time.time(), 30 * 86400
    base = pool()
    recorder = Recorder(store, spill_path=path.with_suffix(".spill"), max_queue=rows + 1,
                        batch_size=2000)  # fmt: skip
    await recorder.start()
    for i in range(rows):
        fields: dict[str, object] = {"key_id": None, "project_id": None, "charged_sats": None}
        if i % 10 == 0:
            fields = {"key_id": f"key{i % 50:09d}", "project_id": f"proj{i % 5:08d}",
                      "charged_sats": 1.0}  # fmt: skip
        rec = msgspec.structs.replace(
            base[i % len(base)],
            id=f"{i:08d}-{uuid.uuid4().hex[:8]}",
            timestamp=now - span + span * i / rows,
            **fields,
        )
        recorder.submit(rec)
        if i % 20000 == 0:
            await asyncio.sleep(0)
    await recorder.drain_and_close(timeout_s=3600)
    await store.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", help="render against this loaded database instead of a new one")
    args = ap.parse_args()
    started = time.perf_counter()
    if args.db:
        path = Path(args.db)
    else:
        path = Path(tempfile.mkdtemp(prefix="arbstr-ui-")) / "arbstr.db"
        await load(path, args.rows)
    loaded = time.perf_counter() - started
    text = f'[database]\nurl = "sqlite:///{path}"\n[[providers]]\nname = "alpha"\nurl = "http://127.0.0.1:9/v1"\n'
    app = create_app(parse_settings(text, source="bench", env={}))
    timings: dict[str, float] = {}
    async with AsyncTestClient(app) as client:
        for page in PAGES:
            samples = []
            for _ in range(5):
                t0 = time.perf_counter()
                r = await client.get(page)
                samples.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, (page, r.status_code)
            timings[page] = round(statistics.median(samples), 1)
    print(json.dumps({"rows": args.rows, "load_s": round(loaded, 1), "page_ms": timings}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
