"""Routing: resolve, policy, rank and cost as pure functions, with property tests."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbstr.config import ChainConfig, ChainEntry, PolicyRule, Provider, parse_settings
from arbstr.errors import ModelNotAllowed, ModelNotFound, NoProviderMatchesPolicy
from arbstr.routing import Router
from arbstr.routing.cost import (
    actual_cost,
    actual_embedding_cost,
    estimate_tokens,
    expected_cost,
    format_sats,
    provider_reported_cost,
    savings,
)
from arbstr.routing.policy import apply_policy, select_policy
from arbstr.routing.rank import Ewma, rank
from arbstr.routing.resolve import Candidate, list_models, resolve
from arbstr.schemas.chat import chat_decoder, last_user_text, prompt_chars
from arbstr.schemas.usage import CompletionDetails, PromptDetails, Usage


def prov(
    name: str = "p",
    inp: float = 10,
    out: float = 30,
    fee: float = 0,
    models: tuple[str, ...] = (),
    cached: float | None = None,
) -> Provider:
    return Provider(
        name=name,
        url="http://x",
        models=models,
        input_rate=inp,
        output_rate=out,
        cached_input_rate=inp if cached is None else cached,
        base_fee=fee,
        timeout_s=None,
        rate_limits=None,
        api_key=None,
        key_source="none",
    )


def test_seed_cost_examples() -> None:
    assert (
        actual_cost(prov(inp=10, out=30, fee=1), Usage(prompt_tokens=100, completion_tokens=200))
        == 8.0
    )
    assert (
        actual_cost(prov(inp=5, out=15, fee=0), Usage(prompt_tokens=10, completion_tokens=5))
        == 0.125
    )


def test_cached_tokens_use_cached_rate_and_reasoning_is_not_added_twice() -> None:
    p = prov(inp=10, out=30, cached=2)
    usage = Usage(
        prompt_tokens=1000,
        completion_tokens=100,
        prompt_tokens_details=PromptDetails(cached_tokens=400),
        completion_tokens_details=CompletionDetails(reasoning_tokens=80),
    )
    assert actual_cost(p, usage) == pytest.approx((600 * 10 + 400 * 2 + 100 * 30) / 1000)


def test_unknown_usage_is_none_never_zero() -> None:
    p = prov()
    assert actual_cost(p, None) is None
    assert actual_cost(p, Usage(prompt_tokens=5)) is None
    assert actual_cost(p, Usage(completion_tokens=5)) is None
    assert actual_embedding_cost(p, Usage()) is None


def test_embeddings_price_input_only() -> None:
    assert actual_embedding_cost(prov(inp=4, out=1000, fee=1), Usage(prompt_tokens=500)) == 3.0


def test_provider_reported_cost() -> None:
    assert provider_reported_cost(Usage(cost=0.5, total_cost=9.0)) == 0.5
    assert provider_reported_cost(Usage(total_cost=9.0)) == 9.0
    assert provider_reported_cost(Usage()) is None


def test_estimate_tokens() -> None:
    assert estimate_tokens(0, None) == (0, 256)
    assert estimate_tokens(1, 10) == (1, 10)
    assert estimate_tokens(9, None) == (3, 256)


@pytest.mark.parametrize(
    ("value", "text"),
    [(8.0, "8"), (0.125, "0.125"), (1.0000012, "1.000001"), (0.0, "0"), (0.0000001, "0")],
)
def test_format_sats(value: float, text: str) -> None:
    assert format_sats(value) == text


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_format_sats_round_trips(value: float) -> None:
    assert abs(float(format_sats(value)) - value) <= 5e-7 + 1e-12 * max(1.0, value)


costs = st.floats(min_value=0, max_value=1000, allow_nan=False)


@given(
    st.lists(st.tuples(costs, costs, costs), min_size=1, max_size=12),
    st.integers(0, 100_000),
    st.integers(0, 10_000),
)
def test_cheapest_is_a_stable_sort_by_expected_cost(
    rates: list[tuple[float, float, float]], i: int, o: int
) -> None:
    cands = [Candidate(prov(f"p{n}", a, b, c), "m") for n, (a, b, c) in enumerate(rates)]
    ranked = rank(cands, "cheapest", i, o)
    assert sorted(c.provider.name for c in ranked) == sorted(c.provider.name for c in cands)
    keyed = [expected_cost(c.provider, i, o) for c in ranked]
    assert keyed == sorted(keyed)
    for a, b in zip(ranked, ranked[1:], strict=False):
        if expected_cost(a.provider, i, o) == expected_cost(b.provider, i, o):
            assert cands.index(a) < cands.index(b)


@given(
    costs, costs, costs, costs, st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)
)
def test_cost_is_the_formula_and_monotone(
    inp: float, out: float, cached: float, fee: float, p: int, c: int, extra: int
) -> None:
    cached_tokens = min(c, p)
    provider = prov(inp=inp, out=out, cached=cached, fee=fee)
    usage = Usage(
        prompt_tokens=p,
        completion_tokens=c,
        prompt_tokens_details=PromptDetails(cached_tokens=cached_tokens),
    )
    cost = actual_cost(provider, usage)
    assert cost == pytest.approx(
        ((p - cached_tokens) * inp + cached_tokens * cached + c * out) / 1000 + fee, abs=5e-7
    )
    more = actual_cost(
        provider,
        Usage(
            prompt_tokens=p,
            completion_tokens=c + extra,
            prompt_tokens_details=PromptDetails(cached_tokens=cached_tokens),
        ),
    )
    assert more is not None and cost is not None
    assert more >= cost - 1e-9
    dearer = actual_cost(prov(inp=inp + 1, out=out + 1, cached=cached + 1, fee=fee), usage)
    assert dearer is not None and dearer >= cost - 1e-9


def test_ordered_and_lowest_latency() -> None:
    a, b, c = (Candidate(prov(n), "m") for n in "abc")
    assert rank([a, b, c], "ordered", 1, 1) == (a, b, c)
    assert rank([a, b, c], "lowest_latency", 1, 1, {"c": 5.0, "b": 9.0}) == (c, b, a)
    e = Ewma()
    assert e.update(100) == 100
    assert e.update(0) == pytest.approx(80)


def test_resolve_providers_and_chains() -> None:
    any_model, only = prov("any"), prov("only", models=("gpt-4o",))
    chain = ChainConfig(
        name="free",
        entries=[
            ChainEntry(provider="only", model="small"),
            ChainEntry(provider="any", model="big"),
        ],
    )
    res = resolve("gpt-4o", [any_model, only], [chain])
    assert [c.provider.name for c in res.candidates] == ["any", "only"]
    res = resolve("free", [any_model, only], [chain])
    assert [(c.provider.name, c.upstream_model, c.chain) for c in res.candidates] == [
        ("only", "small", "free"),
        ("any", "big", "free"),
    ]
    with pytest.raises(ModelNotFound):
        resolve("x", [only], [])
    assert list_models([any_model, only], [chain]) == [("gpt-4o", "only"), ("free", "arbstr-chain")]


def test_policy_selection_and_filters() -> None:
    code = PolicyRule(name="code", keywords=["Debug", "function"], max_sats_per_1k_output=20)
    strict = PolicyRule(name="strict", allowed_models=["gpt-4o"])
    rules = [code, strict]
    assert select_policy(rules, "strict", "please debug") is strict
    assert select_policy(rules, "nope", "please DEBUG this") is code  # unknown header -> keywords
    assert select_policy(rules, None, "hello") is None
    cands = (Candidate(prov("cheap", out=10), "m"), Candidate(prov("dear", out=30), "m"))
    assert [c.provider.name for c in apply_policy(code, "m", cands)] == ["cheap"]
    with pytest.raises(ModelNotAllowed):
        apply_policy(strict, "m", cands)
    with pytest.raises(NoProviderMatchesPolicy):
        apply_policy(PolicyRule(name="z", max_sats_per_1k_output=1), "m", cands)
    assert apply_policy(PolicyRule(name="open", allowed_models=[]), "m", cands) == cands


def test_router_plan() -> None:
    settings = parse_settings("""
[[providers]]
name = "a"
url = "http://a"
input_rate = 1
output_rate = 50
[[providers]]
name = "b"
url = "http://b"
input_rate = 20
output_rate = 10
[[policies.rules]]
name = "cheap-out"
max_sats_per_1k_output = 20
keywords = ["summarise"]
""")
    router = Router(settings)
    plan = router.plan(
        "m", policy_header=None, last_user_text="hi", prompt_chars=40_000, max_tokens=1
    )
    assert [c.provider.name for c in plan.candidates] == ["a", "b"]
    assert (plan.in_est, plan.out_est, plan.policy) == (10_000, 1, None)
    plan = router.plan(
        "m", policy_header=None, last_user_text="Summarise this", prompt_chars=4, max_tokens=None
    )
    assert [c.provider.name for c in plan.candidates] == ["b"]
    assert plan.policy == "cheap-out"
    assert savings(1.0, plan.candidates, Usage(prompt_tokens=1, completion_tokens=1)) == 0.0


def test_view_decoding_keeps_only_what_routing_needs() -> None:
    big = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look at"},
                    {"type": "image_url", "image_url": {"url": "data:" + "A" * 40_000}},
                ],
            },
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "max_completion_tokens": 50,
        "unknown_vendor_field": {"nested": [1, 2, 3]},
    }
    view = chat_decoder.decode(msgspec.json.encode(big))
    assert view.model == "gpt-4o"
    assert view.max_completion_tokens == 50
    assert prompt_chars(view) == len("be brief") + len("look at")
    assert last_user_text(view) == "look at"
