"""Policies: pick a rule by header or keyword, then filter candidates by it."""

from __future__ import annotations

from collections.abc import Sequence

from arbstr.config import PolicyRule
from arbstr.errors import ModelNotAllowed, NoProviderMatchesPolicy
from arbstr.routing.resolve import Candidate

__all__ = ["apply_policy", "select_policy"]


def select_policy(
    rules: Sequence[PolicyRule], header: str | None, last_user_text: str
) -> PolicyRule | None:
    """The rule named by the header, else the first rule with a keyword in the text."""
    if header:
        for rule in rules:
            if rule.name == header:
                return rule
    if not last_user_text:
        return None
    text = last_user_text.lower()
    for rule in rules:
        if any(k.lower() in text for k in rule.keywords if k):
            return rule
    return None


def apply_policy(
    rule: PolicyRule, model: str, candidates: tuple[Candidate, ...]
) -> tuple[Candidate, ...]:
    """Enforce `allowed_models` and `max_sats_per_1k_output`; raise when nothing is left."""
    if rule.allowed_models and model not in rule.allowed_models:
        raise ModelNotAllowed(
            f"model '{model}' is not allowed by policy '{rule.name}'", param="model"
        )
    limit = rule.max_sats_per_1k_output
    if limit is None:
        return candidates
    kept = tuple(c for c in candidates if c.provider.output_rate <= limit)
    if not kept:
        raise NoProviderMatchesPolicy(
            f"no provider for model '{model}' matches policy '{rule.name}' "
            f"(max {limit:g} sats per 1k output tokens)"
        )
    return kept
