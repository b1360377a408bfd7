"""Resolve a requested model into candidates: a chain's entries, or every provider serving it."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from arbstr.config import ChainConfig, Provider
from arbstr.errors import ModelNotFound

__all__ = ["Candidate", "Resolution", "Resolver", "list_models", "resolve"]


class Candidate(msgspec.Struct, frozen=True):
    """One way to serve a request: a provider and the model name it is sent."""

    provider: Provider
    upstream_model: str
    chain: str | None = None


class Resolution(msgspec.Struct, frozen=True):
    candidates: tuple[Candidate, ...]
    chain: ChainConfig | None = None


def resolve(model: str, providers: Sequence[Provider], chains: Sequence[ChainConfig]) -> Resolution:
    """Candidates for `model` in config order; raises `ModelNotFound` when there are none."""
    for chain in chains:
        if chain.name == model:
            by_name = {p.name: p for p in providers}
            return Resolution(
                tuple(Candidate(by_name[e.provider], e.model, chain.name) for e in chain.entries),
                chain,
            )
    found = tuple(Candidate(p, model) for p in providers if p.serves(model))
    if not found:
        raise ModelNotFound(f"no provider serves model '{model}'", param="model")
    return Resolution(found)


class Resolver:
    """`resolve` with a per-model cache: built once, a dict lookup per request."""

    def __init__(self, providers: Sequence[Provider], chains: Sequence[ChainConfig]) -> None:
        self.providers = tuple(providers)
        self.chains = tuple(chains)
        self._cache: dict[str, Resolution] = {}

    def __call__(self, model: str) -> Resolution:
        hit = self._cache.get(model)
        if hit is None:
            hit = resolve(model, self.providers, self.chains)
            if len(self._cache) < 4096:  # bounded: model names come from clients
                self._cache[model] = hit
        return hit


def list_models(
    providers: Sequence[Provider], chains: Sequence[ChainConfig]
) -> list[tuple[str, str]]:
    """(model id, owner) for `/v1/models`: provider models then chain names, deduplicated."""
    seen: dict[str, str] = {}
    for p in providers:
        for m in p.models:
            seen.setdefault(m, p.name)
    for c in chains:
        seen.setdefault(c.name, "arbstr-chain")
    return list(seen.items())
