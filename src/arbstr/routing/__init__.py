"""Routing, pure: resolve a model, apply a policy, rank candidates. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from arbstr.config import ChainConfig, PolicyRule, Provider, Settings
from arbstr.routing.cost import estimate_tokens, expected_cost
from arbstr.routing.policy import PolicySet, apply_policy, rule_strategy
from arbstr.routing.rank import Strategy, rank
from arbstr.routing.resolve import Candidate, ModelIndex, Resolution, list_models

__all__ = ["RoutePlan", "Router", "plan"]


class RoutePlan(msgspec.Struct, frozen=True):
    """The ranked candidates for one request and how they were chosen."""

    candidates: tuple[Candidate, ...]
    strategy: Strategy
    in_est: int
    out_est: int
    policy: str | None = None
    chain: str | None = None

    def expected_cost(self, candidate: Candidate) -> float:
        """Expected cost of this request at `candidate`, in sats."""
        return expected_cost(candidate.provider, self.in_est, self.out_est)


def _compose(
    resolution: Resolution,
    policies: PolicySet,
    default_strategy: Strategy,
    model: str,
    policy_header: str | None,
    last_user_text: str,
    prompt_chars: int,
    max_tokens: int | None,
    latency: Mapping[str, float] | None,
) -> RoutePlan:
    candidates = resolution.candidates
    rule = policies.select(policy_header, last_user_text) if policies else None
    if rule is not None:
        candidates = apply_policy(rule, model, candidates)
    chain = resolution.chain
    strategy = _strategy(chain, rule, default_strategy)
    in_est, out_est = estimate_tokens(prompt_chars, max_tokens)
    return RoutePlan(
        candidates=rank(candidates, strategy, in_est, out_est, latency),
        strategy=strategy,
        in_est=in_est,
        out_est=out_est,
        policy=rule.name if rule is not None else None,
        chain=chain.name if chain is not None else None,
    )


def _strategy(chain: ChainConfig | None, rule: PolicyRule | None, default: Strategy) -> Strategy:
    # A chain is an explicit waterfall: its own strategy (default `ordered`) always applies.
    if chain is not None:
        return chain.strategy
    by_rule = rule_strategy(rule) if rule is not None else None
    return by_rule or default


def plan(
    model: str,
    *,
    providers: Sequence[Provider],
    chains: Sequence[ChainConfig] = (),
    rules: Sequence[PolicyRule] = (),
    default_strategy: Strategy = "cheapest",
    policy_header: str | None = None,
    last_user_text: str = "",
    prompt_chars: int = 0,
    max_tokens: int | None = None,
    latency: Mapping[str, float] | None = None,
) -> RoutePlan:
    """resolve -> policy -> rank for one request, from plain config (`Router.plan` precomputes).

    Raises `ModelNotFound`, `ModelNotAllowed` or `NoProviderMatchesPolicy` (all 400).
    """
    return _compose(
        ModelIndex(providers, chains).resolve(model),
        PolicySet(rules),
        default_strategy,
        model,
        policy_header,
        last_user_text,
        prompt_chars,
        max_tokens,
        latency,
    )


class Router:
    """Built once from settings (model index, case-folded keywords); `plan` runs per request."""

    def __init__(self, settings: Settings) -> None:
        cfg = settings.config
        self.index = ModelIndex(settings.providers, cfg.chains)
        self.policies = PolicySet(cfg.policies.rules)
        self.default_strategy: Strategy = cfg.policies.default_strategy
        self._models = list_models(settings.providers, cfg.chains)
        strategies: set[Strategy | None] = {self.default_strategy}
        strategies.update(c.strategy for c in cfg.chains)
        strategies.update(rule_strategy(r) for r in cfg.policies.rules)
        # Callers build the latency map only when some request may rank by it.
        self.needs_latency = "lowest_latency" in strategies

    def models(self) -> list[tuple[str, str]]:
        """`(id, owned_by)` pairs for `/v1/models`, computed once."""
        return self._models

    def plan(
        self,
        model: str,
        *,
        policy_header: str | None,
        last_user_text: str,
        prompt_chars: int,
        max_tokens: int | None,
        latency: Mapping[str, float] | None = None,
    ) -> RoutePlan:
        """resolve -> policy -> rank; raises the 400-class errors of DESIGN §3."""
        return _compose(
            self.index.resolve(model),
            self.policies,
            self.default_strategy,
            model,
            policy_header,
            last_user_text,
            prompt_chars,
            max_tokens,
            latency,
        )
