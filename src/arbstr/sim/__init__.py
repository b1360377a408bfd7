"""A simulated OpenAI-compatible provider (labelled a simulator everywhere): demo, tests, bench."""

from __future__ import annotations

from arbstr.sim.cluster import SimCluster, run_in_thread
from arbstr.sim.profile import BUILTIN_PROFILES, SimProfile, builtin_profile
from arbstr.sim.server import SimServer

__all__ = [
    "BUILTIN_PROFILES",
    "SimCluster",
    "SimProfile",
    "SimServer",
    "builtin_profile",
    "run_in_thread",
]
