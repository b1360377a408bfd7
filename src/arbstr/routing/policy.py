"""Policies: pick a rule by header or keyword, then filter candidates by it."""

from __future__ import annotations

from collections.abc import Sequence

from arbstr.config import PolicyRule, Strategy
from arbstr.errors import ModelNotAllowed, NoProviderMatchesPolicy
from arbstr.routing.resolve import Candidate, clip_name

__all__ = ["PolicySet", "apply_policy", "rule_strategy", "select_policy"]

# Strategy names a rule may carry; `lowest_cost` is the original arbstr spelling of `cheapest`.
_STRATEGIES: dict[str, Strategy] = {
    "cheapest": "cheapest",
    "lowest_cost": "cheapest",
    "ordered": "ordered",
    "lowest_latency": "lowest_latency",
}


class PolicySet:
    """The configured rules, keywords case-folded once; `select` runs per request."""

    __slots__ = ("_by_name", "_folded_names", "_keywords", "rules")

    def __init__(self, rules: Sequence[PolicyRule]) -> None:
        self.rules = tuple(rules)
        self._by_name: dict[str, PolicyRule] = {}
        self._folded_names: dict[str, PolicyRule] = {}
        for rule in self.rules:
            self._by_name.setdefault(rule.name, rule)
            self._folded_names.setdefault(rule.name.casefold(), rule)
        self._keywords = tuple(
            (rule, tuple(k.casefold() for k in rule.keywords if k)) for rule in self.rules
        )
        self._keywords = tuple((rule, kws) for rule, kws in self._keywords if kws)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def select(self, header: str | None, last_user_text: str) -> PolicyRule | None:
        """The rule named by the header, else the first rule with a keyword in the text.

        The header is matched exactly, then case-insensitively; a header naming no rule falls
        back to keywords, matched case-insensitively as substrings of the last user message.
        """
        if header:
            name = header.strip()
            rule = self._by_name.get(name) or self._folded_names.get(name.casefold())
            if rule is not None:
                return rule
        if not last_user_text or not self._keywords:
            return None
        text = last_user_text.casefold()
        for rule, keywords in self._keywords:
            if any(k in text for k in keywords):
                return rule
        return None


def select_policy(
    rules: Sequence[PolicyRule], header: str | None, last_user_text: str
) -> PolicyRule | None:
    """The rule named by the header, else the first rule (config order) with a keyword match."""
    return PolicySet(rules).select(header, last_user_text) if rules else None


def apply_policy(
    rule: PolicyRule, model: str, candidates: Sequence[Candidate]
) -> tuple[Candidate, ...]:
    """Enforce `allowed_models` and `max_sats_per_1k_output`; raise when nothing is left.

    `model` is the requested name (the chain name for a chain); `allowed_models = []` means no
    restriction; the price cap keeps providers with `output_rate <= max`.
    """
    if rule.allowed_models and model not in rule.allowed_models:
        raise ModelNotAllowed(
            f"model '{clip_name(model)}' is not allowed by policy '{rule.name}' "
            f"(allowed: {', '.join(rule.allowed_models)})",
            param="model",
        )
    limit = rule.max_sats_per_1k_output
    if limit is None:
        return tuple(candidates)
    kept = tuple(c for c in candidates if c.provider.output_rate <= limit)
    if not kept:
        raise NoProviderMatchesPolicy(
            f"no provider for model '{clip_name(model)}' matches policy '{rule.name}' "
            f"(max {limit:g} sats per 1k output tokens)"
        )
    return kept


def rule_strategy(rule: PolicyRule) -> Strategy | None:
    """The ranking strategy a rule asks for, if it names a known one (`lowest_cost` = cheapest)."""
    if rule.strategy is None:
        return None
    return _STRATEGIES.get(rule.strategy.strip().lower())
