"""Resolve: chains, listed models, wildcard providers, the precomputed index, /v1/models."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbstr.config import ChainConfig, ChainEntry, Provider
from arbstr.errors import ModelNotFound
from arbstr.routing.resolve import Candidate, ModelIndex, Resolution, list_models, resolve

from .factories import prov

ANY = prov("any")  # empty `models`: serves every model
ONLY = prov("only", models=("gpt-4o",))
MINI = prov("mini", models=("gpt-4o-mini", "gpt-4o"))
FREE = ChainConfig(
    name="free",
    entries=[ChainEntry(provider="only", model="small"), ChainEntry(provider="any", model="big")],
)


def names(res: Resolution) -> list[tuple[str, str, str | None]]:
    return [(c.provider.name, c.upstream_model, c.chain) for c in res.candidates]


@pytest.mark.parametrize("how", ["function", "index"])
def test_providers_serving_a_model_in_config_order(how: str) -> None:
    providers, chains = [ONLY, ANY, MINI], [FREE]
    res = (
        resolve("gpt-4o", providers, chains)
        if how == "function"
        else ModelIndex(providers, chains).resolve("gpt-4o")
    )
    assert names(res) == [
        ("only", "gpt-4o", None),
        ("any", "gpt-4o", None),
        ("mini", "gpt-4o", None),
    ]
    assert res.chain is None


@pytest.mark.parametrize("how", ["function", "index"])
def test_a_chain_gives_its_entries_in_order(how: str) -> None:
    providers, chains = [ANY, ONLY], [FREE]
    res = (
        resolve("free", providers, chains)
        if how == "function"
        else ModelIndex(providers, chains)("free")
    )
    assert names(res) == [("only", "small", "free"), ("any", "big", "free")]
    assert res.chain is FREE


def test_a_chain_shadows_a_provider_model_of_the_same_name() -> None:
    shadow = ChainConfig(name="gpt-4o", entries=[ChainEntry(provider="mini", model="gpt-4o-mini")])
    for res in (
        resolve("gpt-4o", [ONLY, MINI], [shadow]),
        ModelIndex([ONLY, MINI], [shadow]).resolve("gpt-4o"),
    ):
        assert names(res) == [("mini", "gpt-4o-mini", "gpt-4o")]


def test_wildcard_providers_serve_unknown_models_with_the_requested_name() -> None:
    index = ModelIndex([ONLY, ANY], [])
    assert names(index.resolve("llama-3")) == [("any", "llama-3", None)]
    assert names(resolve("llama-3", [ONLY, ANY], [])) == [("any", "llama-3", None)]


@pytest.mark.parametrize("how", ["function", "index"])
def test_unknown_model_is_model_not_found(how: str) -> None:
    def call() -> object:
        if how == "function":
            return resolve("claude-9", [ONLY, MINI], [FREE])
        return ModelIndex([ONLY, MINI], [FREE]).resolve("claude-9")

    with pytest.raises(ModelNotFound) as info:
        call()
    err = info.value
    assert "claude-9" in err.message
    assert (err.status, err.code, err.param) == (400, "model_not_found", "model")


def test_not_found_message_is_clipped_for_huge_names() -> None:
    with pytest.raises(ModelNotFound) as info:
        ModelIndex([ONLY], []).resolve("x" * 100_000)
    assert len(info.value.message) < 400


def test_no_providers_at_all() -> None:
    with pytest.raises(ModelNotFound):
        ModelIndex([], []).resolve("gpt-4o")


def test_chain_entries_naming_unknown_providers_are_skipped() -> None:
    broken = ChainConfig(
        name="c",
        entries=[ChainEntry(provider="ghost", model="x"), ChainEntry(provider="only", model="y")],
    )
    assert names(resolve("c", [ONLY], [broken])) == [("only", "y", "c")]
    assert names(ModelIndex([ONLY], [broken]).resolve("c")) == [("only", "y", "c")]
    empty = ChainConfig(name="c", entries=[ChainEntry(provider="ghost", model="x")])
    with pytest.raises(ModelNotFound):
        resolve("c", [ONLY, ANY], [empty])
    with pytest.raises(ModelNotFound):
        ModelIndex([ONLY, ANY], [empty]).resolve("c")


def test_the_first_of_duplicate_chain_names_wins() -> None:
    second = ChainConfig(name="free", entries=[ChainEntry(provider="mini", model="z")])
    assert names(ModelIndex([ANY, ONLY, MINI], [FREE, second]).resolve("free")) == names(
        resolve("free", [ANY, ONLY, MINI], [FREE, second])
    )


def test_index_precomputes_listed_models_and_chains() -> None:
    index = ModelIndex([ONLY, ANY, MINI], [FREE])
    assert index.resolve("gpt-4o") is index.resolve("gpt-4o")
    assert index.resolve("free") is index.resolve("free")
    # client-chosen names are built per request, never cached
    assert index.resolve("random-1") is not index.resolve("random-1")


def test_candidate_is_frozen_and_hashable() -> None:
    c = Candidate(ONLY, "gpt-4o")
    assert c.chain is None
    assert hash(c) == hash(Candidate(ONLY, "gpt-4o"))
    with pytest.raises(AttributeError):
        c.upstream_model = "other"  # type: ignore[misc]


def test_list_models_is_a_stable_deduplicated_union() -> None:
    chain_also_listed = ChainConfig(
        name="gpt-4o-mini", entries=[ChainEntry(provider="only", model="gpt-4o")]
    )
    assert list_models([ANY, ONLY, MINI], [FREE, chain_also_listed]) == [
        ("gpt-4o", "only"),
        ("gpt-4o-mini", "mini"),
        ("free", "arbstr-chain"),
    ]
    assert list_models([], []) == []


MODELS = ["a", "b", "c", "d"]


@st.composite
def configs(draw: st.DrawFn) -> tuple[list[Provider], list[ChainConfig]]:
    n = draw(st.integers(0, 5))
    providers = [
        prov(
            f"p{i}", models=tuple(draw(st.lists(st.sampled_from(MODELS), max_size=3, unique=True)))
        )
        for i in range(n)
    ]
    chains = []
    if providers:
        for name in draw(st.lists(st.sampled_from(["c1", "c2", "a"]), max_size=3)):
            entries = draw(
                st.lists(
                    st.builds(
                        ChainEntry,
                        provider=st.sampled_from([p.name for p in providers]),
                        model=st.sampled_from(MODELS),
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
            chains.append(ChainConfig(name=name, entries=entries))
    return providers, chains


@given(configs(), st.sampled_from([*MODELS, "c1", "c2", "zzz"]))
def test_index_agrees_with_resolve(
    config: tuple[list[Provider], list[ChainConfig]], model: str
) -> None:
    providers, chains = config
    try:
        expected: Resolution | None = resolve(model, providers, chains)
    except ModelNotFound:
        expected = None
    try:
        got: Resolution | None = ModelIndex(providers, chains).resolve(model)
    except ModelNotFound:
        got = None
    assert got == expected
    if expected is not None and expected.chain is None:
        assert [c.provider for c in expected.candidates] == [
            p for p in providers if p.serves(model)
        ]
