"""The recorder: a bounded queue, one batching writer, spill to a file, replay; nothing lost."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from pathlib import Path

import msgspec

from arbstr.records import RequestRecord
from arbstr.stores.requestlog import RequestLog

__all__ = ["Recorder"]

log = logging.getLogger("arbstr.recorder")
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(RequestRecord)


class Recorder:
    """`submit` never blocks and never awaits: the request path hands over a record and goes.

    One writer task takes up to `batch_size` records (or what arrived within `linger_s`) and
    appends them in one transaction. While the store fails, records stay queued and the writer
    backs off; when the queue is full, records are appended to `spill_path` (JSON lines) and
    replayed once the store answers again. `drain_and_close` writes everything still held.
    """

    def __init__(
        self,
        store: RequestLog,
        *,
        spill_path: str | Path,
        max_queue: int = 50_000,
        batch_size: int = 1000,
        linger_s: float = 0.02,
        backoff_s: tuple[float, float] = (0.05, 5.0),
    ) -> None:
        self.store = store
        self.spill_path = Path(spill_path)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.backoff_min, self.backoff_max = backoff_s
        self.queue: collections.deque[RequestRecord] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.rows_written = 0
        self.spilled = 0
        self.replayed = 0
        self.write_errors = 0
        self.dropped = 0
        self.healthy = True

    # ---- the request path ---------------------------------------------------------------
    def submit(self, record: RequestRecord) -> None:
        if len(self.queue) >= self.max_queue:
            self._spill([record])
            return
        self.queue.append(record)
        if len(self.queue) >= self.batch_size or not self._wake.is_set():
            self._wake.set()

    def figures(self) -> dict[str, float]:
        return {
            "queue_depth": len(self.queue),
            "rows_written": self.rows_written,
            "spilled": self.spilled,
            "replayed": self.replayed,
            "write_errors": self.write_errors,
            "dropped": self.dropped,
        }

    # ---- spill file ---------------------------------------------------------------------
    def _spill(self, records: list[RequestRecord]) -> None:
        try:
            with self.spill_path.open("ab") as f:
                f.write(b"".join(_enc.encode(r) + b"\n" for r in records))
                f.flush()
            self.spilled += len(records)
        except OSError as exc:  # the last resort failed too: count it, say it loudly
            self.dropped += len(records)
            log.error("cannot spill %d records to %s: %s", len(records), self.spill_path, exc)

    def _spill_pending(self) -> bool:
        try:
            return self.spill_path.stat().st_size > 0
        except OSError:
            return False

    async def _replay(self) -> None:
        """Append the spill file's records, then remove it (rename first: new spills go on)."""
        taking = self.spill_path.with_suffix(self.spill_path.suffix + ".replaying")
        if not taking.exists():
            os.replace(self.spill_path, taking)
        records: list[RequestRecord] = []
        for line in taking.read_bytes().splitlines():
            if line.strip():
                try:
                    records.append(_dec.decode(line))
                except msgspec.DecodeError:
                    self.dropped += 1  # a torn last line from a crash; nothing else is lost
        for i in range(0, len(records), self.batch_size):
            await self.store.append(records[i : i + self.batch_size])
        self.replayed += len(records)
        taking.unlink()

    # ---- the writer ---------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="arbstr-recorder")

    async def _run(self) -> None:
        delay = self.backoff_min
        while True:
            spilled = self._spill_pending() or self._replay_file().exists()
            if not self.queue and not spilled:
                self._wake.clear()
                if self._closing:
                    return
                await self._wake.wait()
            if len(self.queue) < self.batch_size and self.linger_s and not self._closing:
                await asyncio.sleep(self.linger_s)
            batch = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
            try:
                if batch:
                    await self.store.append(batch)
                    self.rows_written += len(batch)
                if spilled:
                    await self._replay()
                self.healthy = True
                delay = self.backoff_min
            except asyncio.CancelledError:
                self.queue.extendleft(reversed(batch))
                raise
            except Exception as exc:
                self.queue.extendleft(reversed(batch))
                self.write_errors += 1
                self.healthy = False
                log.warning(
                    "request log write failed (%s); retrying in %.2fs", type(exc).__name__, delay
                )
                if self._closing:
                    return
                await asyncio.sleep(delay)
                delay = min(self.backoff_max, delay * 2)

    def _replay_file(self) -> Path:
        return self.spill_path.with_suffix(self.spill_path.suffix + ".replaying")

    async def drain_and_close(self, timeout_s: float = 30.0) -> None:
        """Write everything held; what the store cannot take in time goes to the spill file."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            deadline = time.monotonic() + timeout_s
            while not self._task.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                self._wake.set()
            if not self._task.done():
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.queue:  # the store is down: keep them for the next start
            self._spill(list(self.queue))
            self.queue.clear()
