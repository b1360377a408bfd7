"""Hostile tests reuse the end-to-end fixtures: simulated providers, raw upstreams, the gateway."""

from tests.e2e.conftest import raw, stack  # noqa: F401 (fixtures, used by name)
