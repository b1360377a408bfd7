"""Faults around a running gateway: its event loop held by a slow callback, a provider whose name
does not resolve, its PostgreSQL crashed and restarted mid-load, its SQLite file system turned
read-only. Every answered request is recorded exactly once after recovery; nothing crashes."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from arbstr.recording.writer import Recorder
from arbstr.stores.requestlog import SqliteRequestLog
from tests.cluster.harness import Load, wait_for_rows
from tests.e2e.conftest import SimSpec, StackFactory
from tests.hostile.test_recorder_faults import rec, small_disk, until  # noqa: F401 (fixture)
from tests.hostile.test_upstream import CHAT, HEAD
from tests.own_pg import OwnPostgres

pytestmark = pytest.mark.hostile


def slow_callback() -> None:
    time.sleep(2.0)  # what a blocking call by mistake does to every request at once


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_blocked_event_loop_is_detected_logged_and_counted(stack: StackFactory) -> None:
    s = stack([SimSpec("a", models=["m"])], head=HEAD)
    assert s.gateway is not None
    loop = s.gateway.server.servers[0]._loop
    answers: list[httpx.Response] = []

    def during() -> None:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            answers.extend(c.post("/v1/chat/completions", json=CHAT) for _ in range(3))

    # the app's logging config owns the root handlers (Litestar's queue handler): listen here
    caught = Messages()
    logger = logging.getLogger("arbstr.watchdog")
    logger.addHandler(caught)
    try:
        loop.call_soon_threadsafe(slow_callback)
        time.sleep(0.1)
        client = threading.Thread(target=during)
        client.start()
        client.join(30)
        time.sleep(0.3)
    finally:
        logger.removeHandler(caught)
    blocked = [m for m in caught.messages if "event loop blocked" in m]
    assert len(blocked) == 1, caught.messages
    assert "slow_callback" in blocked[0] and "time.sleep(2.0)" in blocked[0]
    assert any("free again after" in m for m in caught.messages)
    assert [a.status_code for a in answers] == [200, 200, 200]
    metrics = httpx.get(s.url + "/metrics").text
    assert "arbstr_loop_blocked 1.0" in metrics
    longest = next(ln for ln in metrics.splitlines() if ln.startswith("arbstr_loop_longest"))
    assert 1.5 < float(longest.split()[1]) < 3.0
    assert len(s.sink.records) == 3


def test_a_provider_name_that_does_not_resolve_is_a_connect_failure(
    stack: StackFactory,
) -> None:
    dead = SimSpec("nowhere", url="http://no-such-host.invalid/v1", input_rate=1, models=["m"])
    s = stack([dead, SimSpec("steady", input_rate=50, models=["m"])], head=HEAD)
    with s.client() as c:
        answer = c.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200 and answer.headers["x-arbstr-provider"] == "steady"
    assert s.last_record().attempts[0].error == "connection error"
    alone = stack([dead], head=HEAD)
    with alone.client() as c:
        failed = c.post("/v1/chat/completions", json=CHAT)
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "all_providers_failed"
    assert alone.last_record().status == 502 and "invalid" not in failed.text


@pytest.mark.postgres
def test_postgres_crashed_and_restarted_mid_load_loses_no_row(stack: StackFactory) -> None:
    root = Path(tempfile.mkdtemp(prefix="arbstr-pg-"))  # the postgres user must reach it
    pg = OwnPostgres(root)
    pg.start()
    try:
        head = f'[database]\nurl = "{pg.url}"\n[reliability]\nbackoff_s = [0.0]\n'
        s = stack([SimSpec("a", models=["m"])], head=head)
        with Load(s.url, threads=4) as load:
            time.sleep(2)
            crashed = time.monotonic()
            pg.stop("immediate")  # a crash: no shutdown checkpoint, recovery on start
            time.sleep(5)
            during = [o for o in load.outcomes if o.at > crashed]
            pg.start()
            time.sleep(3)
        answered = {o.request_id for o in load.answered if o.request_id}
        ids = wait_for_rows(pg.url, None, answered, 30)
        dupes = [i for i, n in Counter(ids).items() if n > 1]
        print(
            f"\npostgres crash (5 s): {len(load.outcomes)} requests, {len(during)} during it,"
            f" {len(load.failed)} failed; rows {len(ids)} for {len(answered)} answered,"
            f" missing {len(answered - set(ids))}, duplicated {len(dupes)}"
        )
        assert len(during) > 50 and not load.failed, Counter(o.failure for o in load.failed)
        assert answered <= set(ids) and not dupes
    finally:
        pg.close()
        shutil.rmtree(root, ignore_errors=True)


def remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True, capture_output=True)


async def test_a_read_only_sqlite_file_system_spills_and_recovers(
    small_disk: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """The file system under the database goes read-only (remounted: Linux refuses that while a
    file is open for writing, so the gateway's store is reopened on it, as after a restart):
    writes fail, records spill to another file system and readiness fails; once it is writable
    again every record is written, none twice."""
    path = str(small_disk / "arbstr.db")
    first = SqliteRequestLog(path)
    await first.migrate()
    await first.append([rec(i) for i in range(100)])
    await first.aclose()
    remount(small_disk, "ro")
    store = SqliteRequestLog(path)
    spill = tmp_path / "spill.jsonl"
    r = Recorder(store, spill_path=spill, max_queue=200, batch_size=50, backoff_s=(0.01, 0.05))
    try:
        await r.start()
        for i in range(100, 1100):
            r.submit(rec(i))
            if i % 50 == 0:
                await asyncio.sleep(0)
        await until(lambda: not r.ready)
        await until(lambda: r.spilled > 0)
    finally:
        remount(small_disk, "rw")
    await until(lambda: r.ready and not r.queue and not spill.exists(), 30)
    await r.drain_and_close()
    assert await store.count() == 1100
    assert r.figures()["dropped"] == 0
    await store.aclose()
