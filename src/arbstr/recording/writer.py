"""The recorder: a bounded queue, one batching writer, spill to a file, replay; nothing lost."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

import msgspec

from arbstr.recording.record import RequestRecord
from arbstr.stores.requestlog import RequestLog

__all__ = ["Recorder"]

log = logging.getLogger(__name__)
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(RequestRecord)


def _is_data_error(exc: BaseException) -> bool:
    """An error about the rows themselves (a constraint, a value the column cannot hold), as
    opposed to the database being away: retrying the same rows would fail the same way."""
    if isinstance(exc, ValueError | TypeError | OverflowError | sqlite3.IntegrityError):
        return True
    # not ProgrammingError: "cannot operate on a closed database" is the store going away
    if isinstance(exc, sqlite3.InterfaceError | sqlite3.DataError):
        return True
    name = type(exc).__module__
    if name.startswith("asyncpg"):
        import asyncpg

        return isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError)
    return False


class _Quarantine(msgspec.Struct):
    """One record the store refused, kept aside with the reason (never replayed)."""

    reason: str
    record: RequestRecord


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
        self.quarantined = 0
        self.healthy = True
        self.spill_ok = True

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
            "quarantined": self.quarantined,
        }

    # ---- spill file ---------------------------------------------------------------------
    def _spill(self, records: list[RequestRecord]) -> None:
        try:
            with self.spill_path.open("ab") as f:
                f.write(b"".join(_enc.encode(r) + b"\n" for r in records))
                f.flush()
            self.spilled += len(records)
            if not self.spill_ok:
                log.warning("spilling to %s works again", self.spill_path)
            self.spill_ok = True
        except OSError as exc:  # the last resort failed too: count it, say it once a burst
            self.dropped += len(records)
            if self.spill_ok:
                log.error(
                    "cannot spill records to %s (%s): they are lost until it works again; "
                    "arbstr_recorder_dropped counts them",
                    self.spill_path,
                    exc.strerror or exc,
                )
            self.spill_ok = False

    @property
    def ready(self) -> bool:
        """Whether the last writes worked (store and spill file): readiness reports a recorder
        that cannot write (a full disk), so a balancer sends traffic elsewhere."""
        return self.spill_ok and self.healthy

    @property
    def quarantine_path(self) -> Path:
        return self.spill_path.with_suffix(self.spill_path.suffix + ".quarantine")

    def _quarantine(self, record: RequestRecord, reason: str) -> None:
        """Keep a record the store refuses out of the way of every record behind it."""
        self.quarantined += 1
        log.error("request log refused record %s (%s); kept in %s", record.id, reason,
                  self.quarantine_path)  # fmt: skip
        try:
            with self.quarantine_path.open("ab") as f:
                f.write(_enc.encode(_Quarantine(reason, record)) + b"\n")
        except OSError as exc:
            self.dropped += 1
            log.error("cannot write the quarantine file %s: %s", self.quarantine_path, exc)

    def _unique(self, batch: list[RequestRecord]) -> list[RequestRecord]:
        """One record per id in a batch (a second one is a bug upstream of us: quarantined)."""
        seen: set[str] = set()
        out: list[RequestRecord] = []
        for record in batch:
            if record.id in seen:
                self._quarantine(record, "duplicate request id in one batch")
            else:
                seen.add(record.id)
                out.append(record)
        return out

    async def _append(self, batch: list[RequestRecord]) -> int:
        """Append a batch of unique ids (`_unique`); when the store refuses the rows
        themselves, write them one by one and quarantine the ones it refuses, so one bad row
        never holds back the rest."""
        if not batch:
            return 0
        try:
            await self.store.append(batch)
            return len(batch)
        except Exception as exc:
            if not _is_data_error(exc):
                raise
        written = 0
        for record in batch:
            try:
                await self.store.append([record])
                written += 1
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                self._quarantine(record, f"{type(exc).__name__}: {str(exc)[:200]}")
        return written

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
            await self._append(self._unique(records[i : i + self.batch_size]))
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
            taken = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
            batch = self._unique(taken)  # what a failure puts back: duplicates only once
            try:
                if batch:
                    self.rows_written += await self._append(batch)
                    batch = []  # written: a failing replay below must not queue it again
                if spilled:
                    await self._replay()
                if not self.healthy:
                    log.warning("request log writes work again (%d failures)", self.write_errors)
                self.healthy = True
                delay = self.backoff_min
            except asyncio.CancelledError:
                self.queue.extendleft(reversed(batch))
                raise
            except Exception as exc:
                self.queue.extendleft(reversed(batch))
                self.write_errors += 1
                if self.healthy:  # once a burst; the count is in arbstr_recorder_write_errors
                    log.warning("request log writes fail (%s); retrying with backoff", exc)
                self.healthy = False
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
