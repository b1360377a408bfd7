"""Resolve a requested model into candidates: a chain's entries, or every provider serving it."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from arbstr.config import ChainConfig, Provider
from arbstr.errors import ModelNotFound

__all__ = [
    "CHAIN_OWNER",
    "Candidate",
    "ModelIndex",
    "Resolution",
    "clip_name",
    "list_models",
    "resolve",
]

CHAIN_OWNER = "arbstr-chain"  # `owned_by` of chain names in `/v1/models`
_MAX_NAME_IN_MESSAGE = 200  # model names come from clients: never echo megabytes back


class Candidate(msgspec.Struct, frozen=True, gc=False):
    """One way to serve a request: a provider and the model name it is sent."""

    provider: Provider
    upstream_model: str
    chain: str | None = None


class Resolution(msgspec.Struct, frozen=True, gc=False):
    """The candidates for one model, in config order, and the chain they came from if any."""

    candidates: tuple[Candidate, ...]
    chain: ChainConfig | None = None


def clip_name(model: str) -> str:
    """A client-sent model name shortened for an error message."""
    if len(model) <= _MAX_NAME_IN_MESSAGE:
        return model
    return model[:_MAX_NAME_IN_MESSAGE] + "..."


def _not_found(model: str) -> ModelNotFound:
    return ModelNotFound(
        f"the model '{clip_name(model)}' does not exist: no provider or chain serves it",
        param="model",
    )


def _chain_resolution(chain: ChainConfig, by_name: dict[str, Provider]) -> Resolution:
    # Entries naming an unknown provider are rejected by config validation; skip them here so a
    # hand-built chain cannot turn into a KeyError on the request path.
    return Resolution(
        tuple(
            Candidate(by_name[e.provider], e.model, chain.name)
            for e in chain.entries
            if e.provider in by_name
        ),
        chain,
    )


def resolve(model: str, providers: Sequence[Provider], chains: Sequence[ChainConfig]) -> Resolution:
    """Candidates for `model` in config order; raises `ModelNotFound` when there are none.

    A chain named `model` wins and gives its entries in order (entry model sent upstream);
    otherwise every provider whose `models` is empty or lists `model`, sent `model` unchanged.
    """
    for chain in chains:
        if chain.name == model:
            found = _chain_resolution(chain, {p.name: p for p in providers})
            if not found.candidates:
                raise _not_found(model)
            return found
    direct = tuple(Candidate(p, model) for p in providers if p.serves(model))
    if not direct:
        raise _not_found(model)
    return Resolution(direct)


class ModelIndex:
    """`resolve` precomputed once from the config: one dict lookup per request.

    Every chain name and every model a provider lists maps to its finished `Resolution`
    (wildcard providers merged in config order). Any other model is served by the wildcard
    providers alone, built per request so client-chosen names cannot grow a cache.
    """

    __slots__ = ("_index", "_wildcards")

    def __init__(self, providers: Sequence[Provider], chains: Sequence[ChainConfig]) -> None:
        self._wildcards = tuple(p for p in providers if not p.models)
        listed = dict.fromkeys(m for p in providers for m in p.models)
        self._index: dict[str, Resolution] = {
            m: resolve(m, providers, ()) for m in listed
        }  # every listed model has at least its own provider, so resolve cannot raise here
        by_name = {p.name: p for p in providers}
        for chain in reversed(chains):  # the first chain of a (duplicate) name wins
            self._index[chain.name] = _chain_resolution(chain, by_name)

    def resolve(self, model: str) -> Resolution:
        """Candidates for `model`; raises `ModelNotFound` when nothing serves it."""
        hit = self._index.get(model)
        if hit is not None:
            if not hit.candidates:  # a chain whose providers are all unknown, as in `resolve`
                raise _not_found(model)
            return hit
        if not self._wildcards:
            raise _not_found(model)
        return Resolution(tuple(Candidate(p, model) for p in self._wildcards))

    __call__ = resolve


def list_models(
    providers: Sequence[Provider], chains: Sequence[ChainConfig]
) -> list[tuple[str, str]]:
    """`(id, owned_by)` for `/v1/models`: provider models, then chain names, deduplicated.

    Order is stable (config order, first occurrence wins); `owned_by` is the first provider
    listing the model, or `arbstr-chain` for a chain name not also listed by a provider.
    """
    seen: dict[str, str] = {}
    for p in providers:
        for m in p.models:
            seen.setdefault(m, p.name)
    for c in chains:
        seen.setdefault(c.name, CHAIN_OWNER)
    return list(seen.items())
