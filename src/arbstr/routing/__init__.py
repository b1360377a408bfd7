"""Routing, pure: resolve a model, apply a policy, rank candidates. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from arbstr.config import Settings
from arbstr.routing.cost import estimate_tokens, expected_cost
from arbstr.routing.policy import apply_policy, select_policy
from arbstr.routing.rank import Strategy, rank
from arbstr.routing.resolve import Candidate, Resolver, list_models

__all__ = ["RoutePlan", "Router"]


class RoutePlan(msgspec.Struct, frozen=True):
    """The ranked candidates for one request and how they were chosen."""

    candidates: tuple[Candidate, ...]
    strategy: Strategy
    in_est: int
    out_est: int
    policy: str | None = None
    chain: str | None = None

    def expected_cost(self, candidate: Candidate) -> float:
        return expected_cost(candidate.provider, self.in_est, self.out_est)


class Router:
    """Built once from settings; `plan` is called per request."""

    def __init__(self, settings: Settings) -> None:
        cfg = settings.config
        self.resolver = Resolver(settings.providers, cfg.chains)
        self.rules = tuple(cfg.policies.rules)
        self.default_strategy: Strategy = cfg.policies.default_strategy
        self._models = list_models(settings.providers, cfg.chains)
        self.needs_latency = self.default_strategy == "lowest_latency" or any(
            c.strategy == "lowest_latency" for c in cfg.chains
        )

    def models(self) -> list[tuple[str, str]]:
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
        resolution = self.resolver(model)
        candidates = resolution.candidates
        rule = select_policy(self.rules, policy_header, last_user_text) if self.rules else None
        if rule is not None:
            candidates = apply_policy(rule, model, candidates)
        in_est, out_est = estimate_tokens(prompt_chars, max_tokens)
        chain = resolution.chain
        strategy: Strategy = chain.strategy if chain is not None else self.default_strategy
        ranked = rank(candidates, strategy, in_est, out_est, latency)
        return RoutePlan(
            candidates=ranked,
            strategy=strategy,
            in_est=in_est,
            out_est=out_est,
            policy=rule.name if rule is not None else None,
            chain=chain.name if chain is not None else None,
        )
