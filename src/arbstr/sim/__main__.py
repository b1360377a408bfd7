"""`python -m arbstr.sim --port N --profile NAME [--latency-ms X ...]`: one sim, foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from arbstr.sim.profile import BUILTIN_PROFILES, FIELD_HELP, SimProfile
from arbstr.sim.server import SimServer

__all__ = ["main", "parse_profile"]

_DEFAULTS = SimProfile()


def _value(raw: str, default: object) -> object:
    """A flag's text as a profile value; msgspec's lax conversion handles numbers."""
    if raw.lower() in ("none", "null"):
        return None
    if raw[:1] in ("[", "{"):
        return msgspec.json.decode(raw)
    if isinstance(default, list):
        return [x.strip() for x in raw.split(",") if x.strip()]
    if isinstance(default, dict):
        return dict(pair.split("=", 1) for pair in raw.split(",") if "=" in pair)
    return raw


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m arbstr.sim",
        description="arbstr-sim: a SIMULATED OpenAI-compatible provider for demos, tests and "
        "benchmarks. Every profile field is a flag; lists take a,b,c and headers k=v,k2=v2.",
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=9001, help="port to bind; 0 picks a free port")
    ap.add_argument(
        "--profile",
        default="healthy",
        choices=sorted(BUILTIN_PROFILES),
        help="built-in behaviour the other flags adjust (default healthy)",
    )
    ap.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run on uvloop when it is installed",
    )
    for field in msgspec.structs.fields(SimProfile):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(_DEFAULTS, field.name)
        text = f"{FIELD_HELP[field.name]} (default: {default!r})"
        if isinstance(default, bool):
            ap.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, help=text)
        else:
            ap.add_argument(flag, dest=field.name, metavar=field.name.upper(), help=text)
    return ap


def parse_profile(args: argparse.Namespace) -> SimProfile:
    """The named built-in profile with the flags given applied (and validated)."""
    fields: dict[str, Any] = msgspec.to_builtins(BUILTIN_PROFILES[args.profile])
    for field in msgspec.structs.fields(SimProfile):
        raw = getattr(args, field.name)
        if isinstance(raw, bool):
            fields[field.name] = raw
        elif raw is not None:
            fields[field.name] = _value(raw, getattr(_DEFAULTS, field.name))
    return msgspec.convert(fields, SimProfile, strict=False)


async def _serve(host: str, port: int, profile: SimProfile) -> None:
    server = SimServer(profile)
    bound = await server.start(host, port)
    print(f"arbstr-sim (simulated provider) listening on http://{host}:{bound}/v1", flush=True)
    print(f"profile {profile.name}: {msgspec.json.encode(profile).decode()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        profile = parse_profile(args)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        ap.error(f"invalid profile: {exc}")
    runner: Any = asyncio.run
    if args.uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    runner(_serve(args.host, args.port, profile))


if __name__ == "__main__":
    main(sys.argv[1:])
