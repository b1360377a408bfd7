"""Builders shared by the routing tests: providers, candidates and hypothesis strategies."""

from __future__ import annotations

from hypothesis import strategies as st

from arbstr.config import Provider
from arbstr.routing.resolve import Candidate

__all__ = ["cand", "prov", "rates"]

# Rates as operators write them: non-negative, sub-sat precision allowed.
rates = st.floats(min_value=0, max_value=1000, allow_nan=False, allow_infinity=False)


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
        url=f"http://{name}.example/v1",
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


def cand(
    name: str = "p", model: str = "m", *, inp: float = 10, out: float = 30, fee: float = 0
) -> Candidate:
    return Candidate(prov(name, inp, out, fee), model)
