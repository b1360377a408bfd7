"""Broken storage under the recorder: a full disk, a removed database, an unwritable spill."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from arbstr.recording.record import RequestRecord
from arbstr.recording.writer import Recorder
from arbstr.stores.requestlog import SqliteRequestLog

pytestmark = pytest.mark.hostile


def rec(i: int) -> RequestRecord:
    return RequestRecord(
        id=f"r{i:06d}", timestamp=1_700_000_000.0 + i, model="m", provider="p",
        success=True, status=200, latency_ms=1.0, cost_sats=0.5,
        error_message="x" * 200,  # rows big enough to fill a small disk quickly
    )  # fmt: skip


async def until(cond: object, limit_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not cond():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of the test's own (needs root, as CI runs; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_disk_full_spills_elsewhere_reports_unready_and_loses_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    store = SqliteRequestLog(str(small_disk / "arbstr.db"))
    await store.migrate()
    # leave the database almost no room
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(small_disk).free - 64 * 1024))
    spill = tmp_path / "other-fs" / "spill.jsonl"  # the spill file on another file system
    spill.parent.mkdir()
    r = Recorder(store, spill_path=spill, max_queue=200, batch_size=100, backoff_s=(0.01, 0.05))
    await r.start()
    for i in range(2000):
        r.submit(rec(i))
        if i % 100 == 0:
            await asyncio.sleep(0)
    await until(lambda: not r.healthy)
    assert not r.ready  # readiness says so while the disk is full
    await until(lambda: r.spilled > 0)
    filler.unlink()  # space again
    await until(lambda: r.ready and not r.queue and not spill.exists(), 20)
    await r.drain_and_close()
    assert await store.count() == 2000
    assert r.figures()["dropped"] == 0
    await store.aclose()


async def test_a_removed_database_is_reopened_not_written_into_the_void(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    store = SqliteRequestLog(str(folder / "arbstr.db"))
    await store.migrate()
    r = Recorder(store, spill_path=tmp_path / "spill.jsonl", batch_size=50, linger_s=0.005)
    await r.start()
    for i in range(100):
        r.submit(rec(i))
    await until(lambda: r.figures()["rows_written"] == 100)
    shutil.rmtree(folder)  # the operator (or a cleanup job) removes the directory mid-load
    for i in range(100, 250):
        r.submit(rec(i))
    await until(lambda: r.figures()["rows_written"] == 250)
    await r.drain_and_close()
    assert (folder / "arbstr.db").exists()
    assert await store.count() == 150  # everything after the removal is in the new file
    await store.aclose()


async def test_an_unwritable_spill_is_counted_once_and_fails_readiness(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Down:
        async def append(self, records: object) -> None:
            raise ConnectionError("database unavailable")

    spill = tmp_path / "no-such-dir" / "spill.jsonl"  # cannot be created: the parent is missing
    r = Recorder(Down(), spill_path=spill, max_queue=10, batch_size=5, backoff_s=(0.01, 0.02))  # type: ignore[arg-type]
    await r.start()
    for i in range(100):
        r.submit(rec(i))
    await until(lambda: r.figures()["dropped"] >= 90)
    assert not r.ready
    spill_errors = [m for m in caplog.messages if "cannot spill" in m]
    assert len(spill_errors) == 1  # once a burst, not once a record
    r._task.cancel()  # type: ignore[union-attr]
    os.makedirs(spill.parent)
