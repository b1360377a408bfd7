"""Cost: estimates for ranking, the actual cost of a finished request, savings, the header."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbstr.routing.cost import (
    TokenCounts,
    actual_cost,
    actual_embedding_cost,
    estimate_tokens,
    expected_cost,
    format_sats,
    price,
    provider_reported_cost,
    savings,
)
from arbstr.schemas.usage import CompletionDetails, PromptDetails, Usage

from .factories import cand, prov, rates


def usage(
    prompt: int | None,
    completion: int | None,
    cached: int | None = None,
    reasoning: int | None = None,
) -> Usage:
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        prompt_tokens_details=None if cached is None else PromptDetails(cached_tokens=cached),
        completion_tokens_details=None
        if reasoning is None
        else CompletionDetails(reasoning_tokens=reasoning),
    )


# ---- the seed system's examples ------------------------------------------------------------


def test_seed_examples() -> None:
    assert actual_cost(prov(inp=10, out=30, fee=1), usage(100, 200)) == 8.0
    assert actual_cost(prov(inp=5, out=15, fee=0), usage(10, 5)) == 0.125


def test_cached_tokens_are_priced_at_the_cached_rate() -> None:
    p = prov(inp=10, out=30, cached=2)
    assert actual_cost(p, usage(1000, 100, cached=400)) == pytest.approx(
        (600 * 10 + 400 * 2 + 100 * 30) / 1000
    )
    # no cached rate configured -> the input rate (config fills cached_input_rate = input_rate)
    assert actual_cost(prov(inp=10, out=30), usage(1000, 0, cached=400)) == pytest.approx(10.0)


def test_reasoning_tokens_are_not_counted_twice() -> None:
    p = prov(inp=10, out=30)
    assert actual_cost(p, usage(100, 200, reasoning=150)) == actual_cost(p, usage(100, 200)) == 7.0


def test_unknown_usage_is_none_never_zero() -> None:
    p = prov()
    assert actual_cost(p, None) is None
    assert actual_cost(p, Usage()) is None
    assert actual_cost(p, usage(5, None)) is None
    assert actual_cost(p, usage(None, 5)) is None
    assert actual_cost(p, usage(-1, 5)) is None  # garbage is unknown, not a refund
    assert actual_embedding_cost(p, None) is None
    assert actual_embedding_cost(p, Usage()) is None


def test_zero_tokens_cost_the_base_fee() -> None:
    assert actual_cost(prov(fee=1.5), usage(0, 0)) == 1.5


def test_cached_count_above_prompt_is_capped() -> None:
    p = prov(inp=10, out=0, cached=1)
    assert actual_cost(p, usage(100, 0, cached=500)) == pytest.approx(0.1)
    assert actual_cost(p, usage(100, 0, cached=-3)) == pytest.approx(1.0)


def test_embeddings_price_input_tokens_only() -> None:
    p = prov(inp=4, out=1000, cached=0, fee=1)
    assert actual_embedding_cost(p, Usage(prompt_tokens=500)) == 3.0
    assert actual_embedding_cost(p, usage(500, 99, cached=500)) == 3.0


def test_provider_reported_cost() -> None:
    assert provider_reported_cost(Usage(cost=0.5, total_cost=9.0)) == 0.5
    assert provider_reported_cost(Usage(total_cost=9.0)) == 9.0
    assert provider_reported_cost(Usage(cost=0.0, total_cost=9.0)) == 0.0
    assert provider_reported_cost(Usage()) is None
    assert provider_reported_cost(None) is None


def test_token_counts() -> None:
    counts = TokenCounts.from_usage(usage(100, 20, cached=30, reasoning=5))
    assert counts == TokenCounts(input=100, cached=30, output=20, reasoning=5)
    assert counts.split_input() == (70, 30)
    assert TokenCounts.from_usage(None) == TokenCounts()
    assert TokenCounts.from_usage(usage(10, 2)).split_input() == (10, 0)
    assert TokenCounts.from_usage(usage(None, 2)).split_input() is None


# ---- estimates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chars", "max_tokens", "expected"),
    [
        (0, None, (0, 256)),
        (1, None, (1, 256)),
        (4, 10, (1, 10)),
        (5, 10, (2, 10)),
        (9, None, (3, 256)),
        (40_000, 1, (10_000, 1)),
        (8, 0, (2, 0)),  # embeddings plan with max_tokens=0: output is not estimated
        (-5, -1, (0, 0)),
    ],
)
def test_estimate_tokens(chars: int, max_tokens: int | None, expected: tuple[int, int]) -> None:
    assert estimate_tokens(chars, max_tokens) == expected


@given(st.integers(1, 10**9))
def test_estimate_is_chars_over_four_rounded_up(chars: int) -> None:
    in_est, _ = estimate_tokens(chars, None)
    assert in_est >= 1
    assert 4 * (in_est - 1) < chars <= 4 * in_est


def test_expected_cost() -> None:
    p = prov(inp=10, out=30, fee=1, cached=0)  # the cached rate never enters an estimate
    assert expected_cost(p, 100, 200) == 8.0
    assert expected_cost(p, 0, 0) == 1.0


# ---- properties of the formula ---------------------------------------------------------------

counts = st.integers(0, 10**6)


@given(rates, rates, rates, rates, counts, counts, counts)
def test_cost_equals_the_formula(
    inp: float, out: float, cr: float, fee: float, u: int, c: int, o: int
) -> None:
    p = prov(inp=inp, out=out, cached=cr, fee=fee)
    expected = (u * inp + c * cr + o * out) / 1000 + fee
    # recorded and shown with 6 decimal places (SATS_PLACES)
    assert actual_cost(p, usage(u + c, o, cached=c)) == pytest.approx(expected, rel=1e-12, abs=5e-7)
    assert price(p, u, c, o) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@given(rates, rates, rates, rates, counts, counts, counts, st.integers(1, 10**5))
def test_cost_is_monotone_in_each_count(
    inp: float, out: float, cr: float, fee: float, u: int, c: int, o: int, more: int
) -> None:
    p = prov(inp=inp, out=out, cached=cr, fee=fee)
    base = actual_cost(p, usage(u + c, o, cached=c))
    assert base is not None
    for bigger in (
        usage(u + more + c, o, cached=c),
        usage(u + c + more, o, cached=c + more),
        usage(u + c, o + more, cached=c),
    ):
        cost = actual_cost(p, bigger)
        assert cost is not None and cost >= base


@given(rates, rates, rates, rates, counts, counts, counts, st.floats(0.001, 100))
def test_cost_is_monotone_in_each_rate(
    inp: float, out: float, cr: float, fee: float, u: int, c: int, o: int, d: float
) -> None:
    use = usage(u + c, o, cached=c)
    base = actual_cost(prov(inp=inp, out=out, cached=cr, fee=fee), use)
    assert base is not None
    for dearer in (
        prov(inp=inp + d, out=out, cached=cr, fee=fee),
        prov(inp=inp, out=out + d, cached=cr, fee=fee),
        prov(inp=inp, out=out, cached=cr + d, fee=fee),
        prov(inp=inp, out=out, cached=cr, fee=fee + d),
    ):
        cost = actual_cost(dearer, use)
        assert cost is not None and cost >= base


# ---- savings ---------------------------------------------------------------------------------


def test_savings_is_the_dearest_candidate_for_the_same_usage_minus_paid() -> None:
    cheap, dear = cand("cheap", inp=1, out=2), cand("dear", inp=10, out=30, fee=1)
    use = usage(100, 200)
    paid = actual_cost(cheap.provider, use)
    assert paid == pytest.approx(0.5)
    assert savings(paid, [cheap, dear], use) == pytest.approx(8.0 - 0.5)
    assert savings(paid, [cheap], use) == 0.0
    assert savings(8.0, [cheap, dear], use) == 0.0  # paid the most: nothing saved, never negative


def test_savings_for_embeddings_and_unknown_usage() -> None:
    cheap, dear = cand("cheap", inp=1, out=1000), cand("dear", inp=3, out=0)
    assert savings(0.1, [cheap, dear], Usage(prompt_tokens=100), chat=False) == pytest.approx(0.2)
    assert savings(0.1, [cheap, dear], None) is None
    assert savings(0.1, [cheap, dear], Usage(prompt_tokens=100)) is None  # chat needs output
    assert savings(0.1, [], usage(1, 1)) is None


# ---- the x-arbstr-cost-sats header -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (8.0, "8"),
        (0.125, "0.125"),
        (1.000001, "1.000001"),
        (1.0000012, "1.000001"),
        (0.0, "0"),
        (-0.0, "0"),
        (0.0000001, "0"),
        (12345678.5, "12345678.5"),
        (100.0, "100"),
        (0.1 + 0.2, "0.3"),
    ],
)
def test_format_sats(value: float, text: str) -> None:
    assert format_sats(value) == text


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_format_sats_round_trips_within_a_millionth(value: float) -> None:
    text = format_sats(value)
    assert abs(float(text) - value) <= 1e-6
    assert text == "0" or not text.endswith(("0", ".")) or "." not in text
    decimals = text.partition(".")[2]
    assert len(decimals) <= 6
    assert "e" not in text.lower()
    assert Decimal(text) >= 0
