"""Process-level tuning applied once the app has started (see docs/adr/0007)."""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


def tune_gc(gen0_threshold: int) -> None:
    """Freeze what startup built and run the young-generation collector less often.

    Every request allocates a few hundred container objects; with CPython's default threshold
    (700) that is a collection every couple of requests, and each full collection walks the
    whole framework. Frozen startup objects are never scanned again; a larger young threshold
    lets most request garbage die by reference count before a collection runs. `0` leaves the
    interpreter's defaults alone.
    """
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
