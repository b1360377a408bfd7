"""The composed plan: resolve -> policy -> rank, from settings, and the package's purity."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import arbstr.routing
import arbstr.schemas
from arbstr.config import Settings, parse_settings
from arbstr.errors import ModelNotAllowed, ModelNotFound, NoProviderMatchesPolicy
from arbstr.routing import RoutePlan, Router, plan

CONFIG = """
[[providers]]
name = "a"
url = "http://a"
models = ["gpt-4o", "gpt-4o-mini"]
input_rate = 1
output_rate = 50
[[providers]]
name = "b"
url = "http://b"
input_rate = 20
output_rate = 10
[[providers]]
name = "c"
url = "http://c"
models = ["gpt-4o"]
input_rate = 30
output_rate = 30
base_fee = 5
[[chains]]
name = "free"
entries = [{ provider = "c", model = "small" }, { provider = "a", model = "gpt-4o-mini" }]
[[chains]]
name = "cheap-chain"
strategy = "cheapest"
entries = [{ provider = "c", model = "x" }, { provider = "a", model = "y" }]
[[policies.rules]]
name = "cheap-out"
max_sats_per_1k_output = 20
keywords = ["summarise"]
[[policies.rules]]
name = "only-4o"
allowed_models = ["gpt-4o", "free"]
[[policies.rules]]
name = "fast"
strategy = "lowest_latency"
keywords = ["quick"]
"""


@pytest.fixture(scope="module")
def settings() -> Settings:
    return parse_settings(CONFIG, env={})


@pytest.fixture(scope="module")
def router(settings: Settings) -> Router:
    return Router(settings)


def route(
    router: Router,
    model: str,
    text: str = "hi",
    header: str | None = None,
    chars: int = 4,
    max_tokens: int | None = None,
) -> RoutePlan:
    return router.plan(
        model, policy_header=header, last_user_text=text, prompt_chars=chars, max_tokens=max_tokens
    )


def providers(p: RoutePlan) -> list[str]:
    return [c.provider.name for c in p.candidates]


def test_cheapest_for_this_request(router: Router) -> None:
    long_prompt = route(router, "gpt-4o", chars=40_000, max_tokens=1)
    assert providers(long_prompt) == ["a", "b", "c"]
    assert (long_prompt.in_est, long_prompt.out_est, long_prompt.strategy) == (
        10_000,
        1,
        "cheapest",
    )
    assert (long_prompt.policy, long_prompt.chain) == (None, None)
    long_answer = route(router, "gpt-4o", chars=4, max_tokens=4000)
    assert providers(long_answer) == ["b", "c", "a"]  # 40.02, 125.03, 200.001
    assert long_answer.expected_cost(long_answer.candidates[0]) == pytest.approx(
        (1 * 20 + 4000 * 10) / 1000
    )


def test_wildcard_provider_serves_unlisted_models(router: Router) -> None:
    p = route(router, "llama-3")
    assert providers(p) == ["b"]
    assert p.candidates[0].upstream_model == "llama-3"


def test_chains_default_to_ordered_and_keep_their_strategy(router: Router) -> None:
    p = route(router, "free", chars=40_000)
    assert [(c.provider.name, c.upstream_model, c.chain) for c in p.candidates] == [
        ("c", "small", "free"),
        ("a", "gpt-4o-mini", "free"),
    ]
    assert (p.strategy, p.chain) == ("ordered", "free")
    p = route(router, "cheap-chain", chars=40_000, max_tokens=1)
    assert (providers(p), p.strategy) == (["a", "c"], "cheapest")


def test_keyword_policy_filters(router: Router) -> None:
    p = route(router, "gpt-4o", text="Please SUMMARISE this")
    assert providers(p) == ["b"]
    assert p.policy == "cheap-out"


def test_header_policy_and_fallback(router: Router) -> None:
    with pytest.raises(ModelNotAllowed):
        route(router, "gpt-4o-mini", header="only-4o", text="summarise")
    p = route(router, "free", header="only-4o")  # allowed_models checks the chain name
    assert p.policy == "only-4o" and p.chain == "free"
    p = route(router, "gpt-4o", header="no-such-rule", text="summarise")
    assert p.policy == "cheap-out"


def test_rule_strategy_applies_outside_chains(router: Router) -> None:
    p = router.plan(
        "gpt-4o",
        policy_header=None,
        last_user_text="quick one",
        prompt_chars=4,
        max_tokens=None,
        latency={"c": 10.0, "b": 20.0},
    )
    assert (p.policy, p.strategy, providers(p)) == ("fast", "lowest_latency", ["c", "b", "a"])
    p = router.plan(
        "free",
        policy_header="fast",
        last_user_text="",
        prompt_chars=4,
        max_tokens=None,
        latency={"a": 1.0},
    )
    assert (p.strategy, providers(p)) == ("ordered", ["c", "a"])
    assert router.needs_latency


def test_errors_and_their_precedence(settings: Settings) -> None:
    listed_only = [p for p in settings.providers if p.models]  # no wildcard provider
    rules = settings.config.policies.rules
    with pytest.raises(ModelNotFound):  # resolve fails before any policy is looked at
        plan("no-such-model", providers=listed_only, rules=rules, policy_header="only-4o")
    with pytest.raises(ModelNotAllowed):
        plan("gpt-4o-mini", providers=listed_only, rules=rules, policy_header="only-4o")
    with pytest.raises(NoProviderMatchesPolicy):  # a and c both charge > 20 per 1k output
        plan("gpt-4o", providers=listed_only, rules=rules, last_user_text="summarise")


def test_embeddings_plan_on_input_tokens_only(router: Router) -> None:
    p = route(router, "gpt-4o", text="", chars=4000, max_tokens=0)
    assert (p.in_est, p.out_est) == (1000, 0)
    assert providers(p) == ["a", "b", "c"]  # 1, 20, 30 + fee 5: output rates play no part


def test_models_and_needs_latency(router: Router) -> None:
    assert router.models() == [
        ("gpt-4o", "a"),
        ("gpt-4o-mini", "a"),
        ("free", "arbstr-chain"),
        ("cheap-chain", "arbstr-chain"),
    ]
    plain = Router(parse_settings('[[providers]]\nname = "a"\nurl = "http://a"\n', env={}))
    assert not plain.needs_latency
    latency = Router(parse_settings('[policies]\ndefault_strategy = "lowest_latency"\n', env={}))
    assert latency.needs_latency


def test_plan_function_is_the_same_as_the_router(settings: Settings, router: Router) -> None:
    cfg = settings.config
    for model, text, header in [
        ("gpt-4o", "summarise", None),
        ("free", "", "only-4o"),
        ("x", "quick", None),
    ]:
        by_function = plan(
            model,
            providers=settings.providers,
            chains=cfg.chains,
            rules=cfg.policies.rules,
            default_strategy=cfg.policies.default_strategy,
            policy_header=header,
            last_user_text=text,
            prompt_chars=100,
            max_tokens=50,
        )
        assert by_function == route(router, model, text, header, 100, 50)


@given(
    st.sampled_from(["gpt-4o", "gpt-4o-mini", "free", "cheap-chain", "other"]),
    st.integers(0, 10**6),
    st.one_of(st.none(), st.integers(0, 10**5)),
)
def test_every_plan_is_non_empty_and_drawn_from_the_resolution(
    model: str, chars: int, max_tokens: int | None
) -> None:
    router = Router(parse_settings(CONFIG, env={}))
    p = route(router, model, text="", chars=chars, max_tokens=max_tokens)
    assert p.candidates
    assert set(p.candidates) == set(router.index.resolve(model).candidates)


# ---- the package stays pure and honest about its API ---------------------------------------

ALLOWED_IMPORTS = {"__future__", "collections", "math", "typing", "msgspec", "arbstr"}


def _modules() -> list[str]:
    names = ["arbstr.routing", "arbstr.schemas"]
    for pkg in (arbstr.routing, arbstr.schemas):
        names += [f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    return names


@pytest.mark.parametrize("name", _modules())
def test_no_io_imports_and_a_true_all(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        assert roots <= ALLOWED_IMPORTS, f"{name} imports {roots - ALLOWED_IMPORTS}"
        if "arbstr" in roots and isinstance(node, ast.ImportFrom):
            assert node.module in {"arbstr.config", "arbstr.errors"} or node.module.startswith(
                ("arbstr.routing", "arbstr.schemas")
            )
    exported = module.__all__
    # isort-style order (constants, classes, functions), as ruff RUF022 keeps it
    order = sorted(exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert order == list(exported), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr}"
