"""Concurrent streams per client: `[limits] max_streams_per_client`.

A client is its virtual key when it has one (behind a balancer every client shares its
address), else its address. A stream holds its slot from admission until its relay ends; a
request that ends before streaming (an error, a cache hit) gives it back at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arbstr.errors import TooManyStreams

if TYPE_CHECKING:
    from arbstr.pipeline.context import RequestContext, Shared

__all__ = ["StreamSlots", "hold_stream_slot", "release_stream_slot"]


class StreamSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def take(self, who: str) -> bool:
        held = self.open.get(who, 0)
        if held >= self.limit:
            return False
        self.open[who] = held + 1
        return True

    def give(self, who: str) -> None:
        held = self.open.get(who, 0) - 1
        if held > 0:
            self.open[who] = held
        else:
            self.open.pop(who, None)


def hold_stream_slot(shared: Shared, ctx: RequestContext) -> None:
    """An admission step: a stream over its client's limit is a 429 `too_many_streams`."""
    slots = shared.stream_slots
    if not ctx.streaming or slots is None:
        return
    who = ctx.record.key_id or ctx.meta.client_ip or "unknown"
    if not slots.take(who):
        raise TooManyStreams(
            f"this client already has {slots.limit} streams open ([limits] max_streams_per_client)"
        )
    ctx.stream_slot = who


def release_stream_slot(shared: Shared, ctx: RequestContext) -> None:
    who, ctx.stream_slot = ctx.stream_slot, None
    if who is not None and shared.stream_slots is not None:
        shared.stream_slots.give(who)
