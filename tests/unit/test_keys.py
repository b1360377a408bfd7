"""Virtual keys below the HTTP layer: key format, periods, globs, meters (local and leased),
the auth-failure throttle, provider-key encryption."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbstr.keys.crypto import Cipher, CipherError
from arbstr.keys.meters import Meters
from arbstr.keys.model import (
    hash_key,
    model_allowed,
    new_id,
    new_key,
    parse_key,
    period_end,
    period_start,
)
from arbstr.keys.throttle import AuthThrottle
from arbstr.stores.keys.memory import MemoryKeyStore


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_key_format_round_trips_and_rejects_lookalikes() -> None:
    key_id = new_id()
    key = new_key(key_id)
    assert key.startswith(f"sk-arb-{key_id}-") and len(key) >= 7 + 12 + 1 + 32
    assert parse_key(key) == key_id
    assert hash_key(key) != hash_key(key + "x") and len(hash_key(key)) == 64
    for bad in ("", "sk-arb-", key[:-20], key.replace("sk-arb-", "sk-arx-"), key + " ",
                f"sk-arb-{key_id.upper()}-" + "a" * 40, f"sk-arb-{key_id}-" + "a" * 200):  # fmt: skip
        assert parse_key(bad) is None, bad


def test_calendar_periods_in_utc() -> None:
    now = ts("2026-12-31T23:59:59")  # a Thursday
    assert period_start("daily", now) == ts("2026-12-31T00:00:00")
    assert period_end("daily", now) == ts("2027-01-01T00:00:00")
    assert period_start("weekly", now) == ts("2026-12-28T00:00:00")  # Monday
    assert period_end("weekly", now) == ts("2027-01-04T00:00:00")
    assert period_start("monthly", now) == ts("2026-12-01T00:00:00")
    assert period_end("monthly", now) == ts("2027-01-01T00:00:00")
    assert period_start("total", now) == 0 and period_end("total", now) is None


@given(st.floats(min_value=0, max_value=4e9), st.sampled_from(["daily", "weekly", "monthly"]))
def test_a_period_contains_its_instant(now: float, period: str) -> None:
    start, end = period_start(period, now), period_end(period, now)
    assert end is not None and start <= now < end
    assert start % 3600 == 0  # an hour boundary: the per-key rollup answers it exactly


def test_model_globs() -> None:
    assert model_allowed([], "anything")
    assert model_allowed(["gpt-4.1-*"], "gpt-4.1-mini")
    assert not model_allowed(["gpt-4.1-*"], "gpt-4.1")
    assert not model_allowed(["gpt-4o"], "gpt-4o-mini")


def test_local_meters_are_exact_and_settle() -> None:
    meters = Meters(None, {("key:k:sats", 0.0): 3.0})
    m = meters.meter("key:k:sats", 0.0, 10.0, False)
    assert meters.try_take(m, 5.0) is True
    assert meters.try_take(m, 2.5) is False  # 3 + 5 + 2.5 > 10
    meters.give(m, 1.0)  # cost 4 of the 5 reserved
    assert meters.try_take(m, 2.0) is True
    assert m.used == 9.0


async def test_leased_meters_never_pass_the_limit_and_give_back_what_is_unused() -> None:
    store = MemoryKeyStore()
    replicas = [Meters(store, {}), Meters(store, {})]
    taken = 0

    async def take(meters: Meters) -> None:
        nonlocal taken
        m = meters.meter("key:k:requests", 0.0, 40, True)
        ok = meters.try_take(m, 1)
        if ok is None:
            ok = await meters.take(m, 1)
        taken += bool(ok)

    await asyncio.gather(*(take(replicas[i % 2]) for i in range(100)))
    assert taken <= 40
    assert store.counters[("key:k:requests", 0.0)] <= 40
    for meters in replicas:  # idle slices go back; then everything left can be taken
        await meters.flush(idle_s=0)
    assert store.counters[("key:k:requests", 0.0)] == taken
    await asyncio.gather(*(take(replicas[i % 2]) for i in range(100)))
    assert taken == 40


async def test_leased_meters_charge_what_passed_the_estimate() -> None:
    store = MemoryKeyStore()
    meters = Meters(store, {})
    m = meters.meter("key:k:sats", 0.0, 10.0, False)
    assert await meters.take(m, 4.0)
    meters.give(m, 4.0 - 4.5)  # the request cost 4.5: half a sat past its estimate
    await meters.flush(idle_s=0)
    assert store.counters[("key:k:sats", 0.0)] == pytest.approx(4.5)
    assert meters.statements >= 2


def test_throttle_counts_a_burst_into_one_audit_row() -> None:
    t = AuthThrottle(burst=3, window_s=60)
    for _ in range(3):
        assert t.blocked("10.0.0.1") is None
        t.failed("10.0.0.1", "invalid_api_key", "req-1")
    assert t.blocked("10.0.0.1") is not None
    assert t.blocked("10.0.0.2") is None
    assert t.take_events() == []  # the burst is still open
    events = t.take_events(everything=True)
    assert len(events) == 1
    e = events[0]
    assert (e.count, e.client_ip, e.outcome) == (4, "10.0.0.1", "denied")
    assert e.changes["invalid_api_key"] == [0, 3] and e.changes["throttled"] == [0, 1]


def test_provider_keys_encrypt_bound_to_their_row() -> None:
    cipher = Cipher(b"\x01" * 32)
    sealed = cipher.encrypt("sk-upstream", "p1", "alpha")
    assert "sk-upstream" not in sealed
    assert cipher.decrypt(sealed, "p1", "alpha") == "sk-upstream"
    with pytest.raises(CipherError):
        cipher.decrypt(sealed, "p2", "alpha")  # moved to another project: refused
    with pytest.raises(CipherError):
        Cipher(b"\x02" * 32).decrypt(sealed, "p1", "alpha")
    env = {"ARBSTR_ENCRYPTION_KEY": base64.b64encode(b"\x01" * 32).decode()}
    assert Cipher.from_env(env) is not None
    assert Cipher.from_env({}) is None
    with pytest.raises(CipherError, match="32 bytes"):
        Cipher.from_env({"ARBSTR_ENCRYPTION_KEY": "short"})
