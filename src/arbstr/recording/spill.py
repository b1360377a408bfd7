"""One spill file per process: processes that share a spill path (uvicorn workers, replicas
started in one directory) would rename and remove each other's files mid-replay.

Each process claims the first free slot, `<path>`, `<path>.1`, `<path>.2` ..., by holding an
exclusive `flock` on `<slot>.lock` for its lifetime. A process that starts later takes the
first slot nobody holds, so what a stopped process left there is replayed by its successor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["SpillSlot", "claim_spill_slot"]

MAX_SLOTS = 256


class SpillSlot:
    """A claimed spill path; `release` (at shutdown) frees it for the next process."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the flock
            self._fd = None


def claim_spill_slot(base: str | Path) -> SpillSlot:
    """The first slot of `base` no live process holds. A directory where no lock file can be
    made gets `base` itself: the recorder reports an unwritable spill path on its own."""
    base = Path(base)
    for n in range(MAX_SLOTS):
        path = base if n == 0 else base.with_name(f"{base.name}.{n}")
        try:
            fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return SpillSlot(base, None)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return SpillSlot(path, fd)
    return SpillSlot(base, None)  # pragma: no cover (256 live processes on one path)
