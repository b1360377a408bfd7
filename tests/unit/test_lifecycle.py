"""The drain hook, per-process spill slots, readiness that times out, `${VAR}` in the
database URL."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import FrameType

import pytest

from arbstr.config import ConfigError, parse_settings
from arbstr.gateway import _within
from arbstr.lifecycle import Drain
from arbstr.recording.spill import claim_spill_slot


async def test_sigterm_drains_first_and_calls_the_hosts_handler_after_the_delay() -> None:
    calls: list[int] = []

    def host(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, host)
    drain = Drain()
    try:
        drain.arm(asyncio.get_running_loop(), 0.2)
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert drain.draining and calls == []  # draining, still serving
        await asyncio.sleep(0.3)
        assert calls == [signal.SIGTERM]  # the host's shutdown, after the delay
        signal.raise_signal(signal.SIGTERM)  # a second one goes straight through
        assert calls == [signal.SIGTERM, signal.SIGTERM]
        drain.disarm()
        assert signal.getsignal(signal.SIGTERM) is host
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_default_handlers_are_left_alone() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        drain = Drain()
        drain.arm(asyncio.get_running_loop(), 1.0)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        drain.disarm()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_each_process_claims_its_own_spill_slot(tmp_path: Path) -> None:
    base = tmp_path / "arbstr-spill.jsonl"
    first, second = claim_spill_slot(base), claim_spill_slot(base)
    assert first.path == base and second.path == tmp_path / "arbstr-spill.jsonl.1"
    first.release()
    assert claim_spill_slot(base).path == base  # a successor takes the freed slot (and its file)
    second.release()


def test_a_spill_directory_without_room_for_a_lock_gets_the_base_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "spill.jsonl"
    assert claim_spill_slot(missing).path == missing  # the recorder reports it unwritable


async def test_a_readiness_check_that_hangs_is_a_failed_check() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    async def raises() -> bool:
        raise OSError("connection refused")

    assert await _within(hangs(), 0.05) is False
    assert await _within(raises(), 1) is False


def test_the_database_url_takes_its_password_from_the_environment() -> None:
    text = '[database]\nurl = "postgresql://arbstr:${PGPASS}@db/arbstr"\n'
    settings = parse_settings(text, source="c.toml", env={"PGPASS": "s3cret"})
    assert settings.config.database.effective_url == "postgresql://arbstr:s3cret@db/arbstr"
    with pytest.raises(ConfigError, match=r"database.url: .*PGPASS is not set"):
        parse_settings(text, source="c.toml", env={})
