"""How long the key mirror takes to load, and what it holds in memory, for N active keys.

    python -m bench.keys_mirror --keys 100000 [--backend sqlite|postgres]

Writes N keys (in bulk, straight into the Piccolo tables), then times what a starting process
does: `changes_since(0)` from the store and `KeyRing.apply`, and measures the process's RSS
before and after (the mirror's cost), plus one authentication per key from memory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from arbstr.keys.model import hash_key, new_id, new_key
from arbstr.keys.runtime import KeyService, _release_freed_memory
from arbstr.stores.keys.sql import SqlKeyStore


class _NoLedger:
    """The request log's spend query, empty: the load is what is measured."""

    async def spend(self, *args: object) -> dict[str, tuple[float, int, float]]:
        return {}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def fill(store: SqlKeyStore, n: int) -> list[str]:
    t = store.t
    now = time.time()
    await t.projects.insert(t.projects(id="bench", name="bench", created_at=now, rev=1,
                                       allowed_models="[]", metadata="{}"))  # fmt: skip
    plaintexts = []
    batch = []
    for i in range(n):
        key_id = new_id()
        plain = new_key(key_id)
        plaintexts.append(plain)
        batch.append(t.keys(id=key_id, project_id="bench", name=f"key {i}", key_hash=hash_key(plain),
                            budget_sats=1000.0, budget_period="daily", rpm=60, created_at=now,
                            rev=2, allowed_models="[]", metadata="{}"))  # fmt: skip
        if len(batch) == 1000:
            await t.keys.insert(*batch)
            batch = []
    if batch:
        await t.keys.insert(*batch)
    return plaintexts


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--trace", action="store_true", help="also count what the mirror holds")
    args = ap.parse_args()
    schema = None
    if args.backend == "postgres":
        schema = f"arbstr_bench_{uuid.uuid4().hex[:8]}"
        base = os.environ.get("ARBSTR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
        url = f"{base}?schema={schema}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='arbstr-keys-')}/keys.db"
    store = SqlKeyStore(url)
    await store.migrate()
    started = time.perf_counter()
    plaintexts = await fill(store, args.keys)
    filled = time.perf_counter() - started
    gc.collect()
    before = rss_mb()
    if args.trace:
        tracemalloc.start()
    started = time.perf_counter()
    service = KeyService(store, _NoLedger(), None, shared_usage=False)  # type: ignore[arg-type]
    await service.start()  # the startup load: projects, then keys in pages
    ring = service.ring
    loaded = time.perf_counter() - started
    peak = rss_mb()
    gc.collect()
    _release_freed_memory()  # what KeyService.start does after its load
    after = rss_mb()
    held = tracemalloc.get_traced_memory()[0] / 2**20 if args.trace else None
    tracemalloc.stop()
    started = time.perf_counter()
    for plain in plaintexts:
        ring.identify(b"Bearer " + plain.encode(), time.time())
    auth_us = (time.perf_counter() - started) / len(plaintexts) * 1e6
    await service.aclose()
    print(json.dumps({
        "backend": args.backend, "keys": len(ring.keys), "fill_s": round(filled, 2),
        "load_s": round(loaded, 3), "mirror_rss_mb": round(after - before, 1),
        "peak_rss_mb": round(peak - before, 1),
        "held_by_mirror_mb": None if held is None else round(held, 1),
        "identify_us": round(auth_us, 2),
    }))  # fmt: skip
    if schema:
        await store._raw(f'DROP SCHEMA "{schema}" CASCADE')
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
