"""Hostile tests reuse the end-to-end fixtures: simulated providers, raw upstreams, the gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import stack  # noqa: F401 (a fixture, used by name)
from tests.e2e.raw import RawUpstream


@pytest.fixture
def raw() -> Iterator[list[RawUpstream]]:
    """Raw upstreams a test starts; all closed at teardown."""
    made: list[RawUpstream] = []
    yield made
    for upstream in made:
        upstream.close()
