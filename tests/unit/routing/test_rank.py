"""Ranking: cheapest is a stable sort by expected cost; ordered; lowest latency; the EWMA."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbstr.routing.cost import expected_cost
from arbstr.routing.rank import Ewma, rank
from arbstr.routing.resolve import Candidate

from .factories import cand, prov, rates

# Few distinct rates so that equal costs (the ties) actually occur.
tie_prone = st.one_of(st.sampled_from([0.0, 1.0, 2.5, 10.0]), rates)


@given(
    st.lists(st.tuples(tie_prone, tie_prone, tie_prone), min_size=0, max_size=12),
    st.integers(0, 100_000),
    st.integers(0, 10_000),
)
def test_cheapest_is_a_stable_sort_by_expected_cost(
    rows: list[tuple[float, float, float]], in_est: int, out_est: int
) -> None:
    cands = [Candidate(prov(f"p{n}", inp, out, fee), "m") for n, (inp, out, fee) in enumerate(rows)]
    ranked = rank(cands, "cheapest", in_est, out_est)
    assert sorted(ranked, key=cands.index) == cands  # a permutation of the input
    keyed = [expected_cost(c.provider, in_est, out_est) for c in ranked]
    assert keyed == sorted(keyed)  # non-decreasing
    for a, b in zip(ranked, ranked[1:], strict=False):
        if expected_cost(a.provider, in_est, out_est) == expected_cost(b.provider, in_est, out_est):
            assert cands.index(a) < cands.index(b)  # ties keep config order


def test_cheapest_depends_on_this_requests_shape() -> None:
    cheap_in = cand("cheap-in", inp=1, out=50)
    cheap_out = cand("cheap-out", inp=20, out=10)
    long_prompt = rank([cheap_out, cheap_in], "cheapest", 10_000, 1)
    assert [c.provider.name for c in long_prompt] == ["cheap-in", "cheap-out"]
    long_answer = rank([cheap_in, cheap_out], "cheapest", 1, 4096)
    assert [c.provider.name for c in long_answer] == ["cheap-out", "cheap-in"]


def test_base_fee_counts() -> None:
    fee, rate = cand("fee", inp=0, out=0, fee=2), cand("rate", inp=1, out=1)
    assert rank([fee, rate], "cheapest", 100, 100)[0] is rate
    assert rank([fee, rate], "cheapest", 10_000, 10_000)[0] is fee


@given(
    st.lists(st.integers(0, 5), max_size=8),
    st.sampled_from(["ordered", "cheapest", "lowest_latency"]),
)
def test_ordered_keeps_config_order_and_every_strategy_permutes(
    fees: list[int], strategy: str
) -> None:
    cands = [cand(f"p{i}", fee=f) for i, f in enumerate(fees)]
    ranked = rank(cands, strategy, 10, 10, {"p0": 5.0})  # type: ignore[arg-type]
    assert sorted(ranked, key=cands.index) == cands
    if strategy == "ordered":
        assert list(ranked) == cands


def test_lowest_latency_orders_known_then_unknown() -> None:
    a, b, c, d = (cand(n) for n in "abcd")
    assert rank([a, b, c, d], "lowest_latency", 1, 1, {"c": 5.0, "b": 9.0}) == (c, b, a, d)
    assert rank([a, b, c], "lowest_latency", 1, 1, {"a": 3.0, "b": 3.0, "c": 1.0}) == (c, a, b)
    assert rank([a, b], "lowest_latency", 1, 1, None) == (a, b)
    assert rank([a, b], "lowest_latency", 1, 1, {}) == (a, b)


@given(st.lists(st.one_of(st.none(), st.sampled_from([1.0, 2.0]), st.floats(0, 1e5)), max_size=10))
def test_lowest_latency_is_a_stable_sort_with_unknown_last(latencies: list[float | None]) -> None:
    cands = [cand(f"p{i}") for i in range(len(latencies))]
    known = {f"p{i}": v for i, v in enumerate(latencies) if v is not None}
    ranked = rank(cands, "lowest_latency", 0, 0, known)
    keys = [(c.provider.name not in known, known.get(c.provider.name, 0.0)) for c in ranked]
    assert keys == sorted(keys)
    for x, y in zip(ranked, ranked[1:], strict=False):
        if known.get(x.provider.name) == known.get(y.provider.name):
            assert cands.index(x) < cands.index(y)


def test_rank_returns_a_tuple_and_handles_small_inputs() -> None:
    a = cand("a")
    assert rank([], "cheapest", 1, 1) == ()
    assert rank([a], "lowest_latency", 1, 1) == (a,)
    assert isinstance(rank([a, cand("b")], "ordered", 1, 1), tuple)


def test_unknown_strategy_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        rank([cand("a"), cand("b")], "fastest", 1, 1)  # type: ignore[arg-type]


def test_ewma() -> None:
    e = Ewma()
    assert e.value is None
    assert e.update(100) == 100
    assert e.update(0) == pytest.approx(80)
    assert e.update(80) == pytest.approx(80)
    assert e.value == pytest.approx(80)
    assert Ewma(alpha=1.0).update(5) == 5
    with pytest.raises(ValueError, match="alpha"):
        Ewma(alpha=0)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50))
def test_ewma_stays_within_the_observed_range(samples: list[float]) -> None:
    e = Ewma()
    for s in samples:
        value = e.update(s)
    assert min(samples) - 1e-6 <= value <= max(samples) + 1e-6
