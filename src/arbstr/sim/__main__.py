"""`python -m arbstr.sim --port N --profile NAME`: run one simulated provider in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import msgspec

from arbstr.sim.profile import BUILTIN_PROFILES
from arbstr.sim.server import SimServer


async def _serve(args: argparse.Namespace) -> None:
    overrides = {
        k: v
        for k, v in (
            ("latency_ms", args.latency_ms),
            ("failure_rate", args.failure_rate),
            ("chunks", args.chunks),
            ("tokens_per_s", args.tokens_per_s),
        )
        if v is not None
    }
    profile = msgspec.structs.replace(BUILTIN_PROFILES[args.profile], **overrides)
    server = SimServer(profile)
    port = await server.start(args.host, args.port)
    print(
        f"arbstr-sim (simulated provider, profile {args.profile}) listening on "
        f"http://{args.host}:{port}/v1",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m arbstr.sim", description="A simulated OpenAI-compatible provider."
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    ap.add_argument("--profile", default="healthy", choices=sorted(BUILTIN_PROFILES))
    ap.add_argument("--latency-ms", type=float)
    ap.add_argument("--failure-rate", type=float)
    ap.add_argument("--chunks", type=int)
    ap.add_argument("--tokens-per-s", type=float)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(_serve(args))
    except ImportError:
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
