"""Policies: selection by header then keyword, and the filters a rule applies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbstr.config import PolicyRule
from arbstr.errors import ModelNotAllowed, NoProviderMatchesPolicy
from arbstr.routing.policy import PolicySet, apply_policy, rule_strategy, select_policy

from .factories import cand

CODE = PolicyRule(name="code", keywords=["Debug", "function"], max_sats_per_1k_output=20)
STRICT = PolicyRule(name="strict", allowed_models=["gpt-4o", "free"])
ALSO_CODE = PolicyRule(name="also-code", keywords=["debug"])
RULES = [CODE, STRICT, ALSO_CODE]


def test_header_naming_a_rule_wins_over_keywords() -> None:
    assert select_policy(RULES, "strict", "please debug") is STRICT
    assert select_policy(RULES, "also-code", "please debug") is ALSO_CODE


def test_header_is_trimmed_and_matched_case_insensitively() -> None:
    assert select_policy(RULES, "  strict ", "") is STRICT
    assert select_policy(RULES, "STRICT", "") is STRICT
    exact = PolicyRule(name="Strict")
    assert select_policy([STRICT, exact], "Strict", "") is exact  # exact name before folded


def test_header_naming_no_rule_falls_back_to_keywords() -> None:
    assert select_policy(RULES, "nope", "please DEBUG this") is CODE
    assert select_policy(RULES, "nope", "hello") is None
    assert select_policy(RULES, "", "write a function") is CODE


def test_first_rule_in_config_order_with_a_keyword_wins() -> None:
    assert select_policy(RULES, None, "debug it") is CODE
    assert select_policy([ALSO_CODE, CODE], None, "debug it") is ALSO_CODE


def test_keywords_match_case_insensitively_as_substrings() -> None:
    assert select_policy(RULES, None, "DEBUGGING session") is CODE
    assert select_policy(RULES, None, "dysfunctional") is CODE
    assert select_policy(RULES, None, "de bug") is None
    assert (
        select_policy([PolicyRule(name="s", keywords=["STRASSE"])], None, "die straße") is not None
    )


def test_no_text_no_rules_and_empty_keywords_select_nothing() -> None:
    assert select_policy(RULES, None, "") is None
    assert select_policy([], "code", "debug") is None
    assert select_policy([PolicyRule(name="blank", keywords=[""])], None, "anything") is None
    assert not PolicySet([])
    assert PolicySet(RULES)


@given(st.text(max_size=40), st.sampled_from(["debug", "function"]), st.text(max_size=40))
def test_a_keyword_anywhere_in_the_text_selects_the_rule(pre: str, word: str, post: str) -> None:
    text = pre + word.upper() + post
    assert select_policy([CODE], None, text) is CODE


def test_allowed_models() -> None:
    cands = (cand("a", out=10), cand("b", out=30))
    assert apply_policy(STRICT, "gpt-4o", cands) == cands
    with pytest.raises(ModelNotAllowed) as info:
        apply_policy(STRICT, "gpt-4o-mini", cands)
    err = info.value
    assert (err.status, err.code, err.param) == (400, "model_not_allowed", "model")
    assert "gpt-4o-mini" in err.message and "strict" in err.message


def test_allowed_models_checks_the_requested_chain_name() -> None:
    chain_cands = (cand("a", "llama-small"), cand("b", "llama-big"))
    assert apply_policy(STRICT, "free", chain_cands) == chain_cands
    with pytest.raises(ModelNotAllowed):
        apply_policy(PolicyRule(name="r", allowed_models=["llama-small"]), "free", chain_cands)


def test_empty_allowed_models_means_no_restriction() -> None:
    cands = (cand("a"),)
    assert apply_policy(PolicyRule(name="open", allowed_models=[]), "anything", cands) == cands


def test_price_cap_keeps_output_rate_at_most_the_max() -> None:
    cands = [cand("cheap", out=10), cand("edge", out=20), cand("dear", out=30), cand("free", out=0)]
    kept = apply_policy(CODE, "m", cands)
    assert [c.provider.name for c in kept] == ["cheap", "edge", "free"]
    assert isinstance(kept, tuple)


def test_nothing_left_is_no_provider_matches_policy() -> None:
    with pytest.raises(NoProviderMatchesPolicy) as info:
        apply_policy(PolicyRule(name="z", max_sats_per_1k_output=1), "m", [cand("a", out=2)])
    err = info.value
    assert (err.status, err.code) == (400, "no_provider_matches_policy")
    assert "'z'" in err.message and "'m'" in err.message


def test_model_check_comes_before_the_price_cap() -> None:
    both = PolicyRule(name="b", allowed_models=["x"], max_sats_per_1k_output=0)
    with pytest.raises(ModelNotAllowed):
        apply_policy(both, "m", [cand("a", out=5)])


@pytest.mark.parametrize(
    ("value", "strategy"),
    [
        (None, None),
        ("lowest_cost", "cheapest"),
        ("cheapest", "cheapest"),
        ("Ordered", "ordered"),
        ("lowest_latency", "lowest_latency"),
        ("random", None),
    ],
)
def test_rule_strategy(value: str | None, strategy: str | None) -> None:
    assert rule_strategy(PolicyRule(name="r", strategy=value)) == strategy
