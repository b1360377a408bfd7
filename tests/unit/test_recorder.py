"""The recorder: batching, retry while the store fails, spill when full, replay, drain."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from arbstr.recording.record import RequestRecord
from arbstr.recording.writer import Recorder
from arbstr.stores.requestlog import PostgresRequestLog, SqliteRequestLog
from tests.pg import PG_BASE, drop_schema, new_schema, require_pg


def rec(i: int) -> RequestRecord:
    return RequestRecord(
        id=f"r{i}",
        timestamp=1_700_000_000.0 + i,
        model="m",
        provider="p",
        success=True,
        status=200,
        latency_ms=1.0,
        cost_sats=0.5,
    )


class FlakyLog:
    """A store double for the recorder's own logic: fails while `down`, counts batches."""

    def __init__(self) -> None:
        self.rows: dict[str, RequestRecord] = {}
        self.batches: list[int] = []
        self.down = False

    async def append(self, records: Sequence[RequestRecord]) -> None:
        if self.down:
            raise ConnectionError("database unavailable")
        self.batches.append(len(records))
        for r in records:
            self.rows[r.id] = r


async def wait_for(cond: object, limit_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not cond():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_batches_and_drain(tmp_path: Path) -> None:
    log = FlakyLog()
    r = Recorder(log, spill_path=tmp_path / "spill.jsonl", batch_size=100)  # type: ignore[arg-type]
    await r.start()
    for i in range(1000):
        r.submit(rec(i))
    await r.drain_and_close()
    assert len(log.rows) == 1000
    assert max(log.batches) <= 100
    assert len(log.batches) < 100  # batched, not row by row
    assert r.figures()["rows_written"] == 1000


async def test_store_down_retries_then_spills_and_replays(tmp_path: Path) -> None:
    log = FlakyLog()
    log.down = True
    spill = tmp_path / "spill.jsonl"
    r = Recorder(
        log,
        spill_path=spill,
        max_queue=50,
        batch_size=20,  # type: ignore[arg-type]
        backoff_s=(0.01, 0.05),
    )
    await r.start()
    for i in range(200):
        r.submit(rec(i))
    await wait_for(lambda: r.write_errors >= 2)
    assert r.spilled >= 150  # queue full: the rest went to the file
    assert spill.exists()
    log.down = False
    await wait_for(lambda: len(log.rows) == 200)
    assert r.replayed >= 150
    await r.drain_and_close()
    assert not spill.exists()
    assert r.dropped == 0


async def test_shutdown_while_down_keeps_everything_for_next_start(tmp_path: Path) -> None:
    log = FlakyLog()
    log.down = True
    spill = tmp_path / "spill.jsonl"
    r = Recorder(log, spill_path=spill, backoff_s=(0.01, 0.02))  # type: ignore[arg-type]
    await r.start()
    for i in range(30):
        r.submit(rec(i))
    await r.drain_and_close(timeout_s=0.2)
    assert len(spill.read_bytes().splitlines()) == 30
    log.down = False
    again = Recorder(log, spill_path=spill)  # type: ignore[arg-type]
    await again.start()
    await wait_for(lambda: len(log.rows) == 30)
    await again.drain_and_close()


async def test_sqlite_locked_mid_load_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "arbstr.db"
    store = SqliteRequestLog(str(path))
    await store.migrate()
    r = Recorder(
        store,
        spill_path=tmp_path / "spill.jsonl",
        max_queue=500,
        batch_size=50,
        backoff_s=(0.01, 0.05),
    )
    await r.start()
    for i in range(300):
        r.submit(rec(i))
    await asyncio.sleep(0.05)
    locker = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # nobody else can write now
    for i in range(300, 2000):
        r.submit(rec(i))
        if i % 100 == 0:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # longer than busy_timeout would allow per write? no: 5 s
    locker.execute("ROLLBACK")
    locker.close()
    await r.drain_and_close()
    assert await store.count() == 2000
    assert r.dropped == 0
    await store.aclose()


@pytest.mark.postgres
async def test_postgres_backend_terminated_mid_load_loses_nothing(tmp_path: Path) -> None:
    import asyncpg

    require_pg()
    schema = new_schema()
    store = PostgresRequestLog(PG_BASE, schema)
    await store.migrate()
    r = Recorder(store, spill_path=tmp_path / "spill.jsonl", batch_size=50, backoff_s=(0.01, 0.1))
    await r.start()
    admin = await asyncpg.connect(PG_BASE)
    try:
        for i in range(3000):
            r.submit(rec(i))
            if i % 500 == 250:
                # kill every connection the store holds, mid-load
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                    "AND application_name = '' AND query NOT ILIKE '%pg_stat_activity%'"
                )
                await asyncio.sleep(0.02)
        await r.drain_and_close()
        assert r.write_errors >= 1
        assert await store.count() == 3000
        assert r.dropped == 0
    finally:
        await admin.close()
        await store.aclose()
        await drop_schema(schema)


async def test_duplicate_ids_in_a_batch_never_block_the_queue(tmp_path: Path) -> None:
    """A second record with the same id used to raise an integrity error that the writer
    retried forever; now it is quarantined and everything behind it is written."""
    store = SqliteRequestLog(str(tmp_path / "log.db"))
    await store.migrate()
    r = Recorder(store, spill_path=tmp_path / "spill.jsonl", batch_size=50, linger_s=0.01)
    await r.start()
    for i in range(10):
        r.submit(rec(i))
    r.submit(rec(3))  # the same id again, in the same batch
    for i in range(10, 20):
        r.submit(rec(i))
    await wait_for(lambda: r.figures()["rows_written"] >= 20)
    await r.drain_and_close()
    assert await store.count() == 20
    assert r.figures()["quarantined"] == 1
    kept = r.quarantine_path.read_text().splitlines()
    assert len(kept) == 1 and '"duplicate request id in one batch"' in kept[0]
    assert not r.queue
    await store.aclose()


async def test_a_row_the_store_refuses_is_quarantined_the_rest_written(tmp_path: Path) -> None:
    store = SqliteRequestLog(str(tmp_path / "log.db"))
    await store.migrate()
    r = Recorder(store, spill_path=tmp_path / "spill.jsonl", batch_size=50, linger_s=0.01)
    await r.start()
    bad = rec(5)
    bad.status = 1 << 70  # no SQLite integer holds it: OverflowError for that row only
    for i in range(10):
        r.submit(bad if i == 5 else rec(i))
    await wait_for(lambda: r.figures()["quarantined"] == 1)
    await r.drain_and_close()
    assert await store.count() == 9
    assert r.figures()["write_errors"] == 0
    assert "OverflowError" in r.quarantine_path.read_text()
    await store.aclose()


async def test_an_outage_is_not_mistaken_for_bad_rows(tmp_path: Path) -> None:
    log = FlakyLog()
    log.down = True
    r = Recorder(log, spill_path=tmp_path / "s.jsonl", batch_size=5, backoff_s=(0.01, 0.02))  # type: ignore[arg-type]
    await r.start()
    for i in range(10):
        r.submit(rec(i))
    await wait_for(lambda: r.figures()["write_errors"] >= 2)
    log.down = False
    await r.drain_and_close()
    assert len(log.rows) == 10 and r.figures()["quarantined"] == 0
