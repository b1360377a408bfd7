"""`arbstr bench`: load a running gateway (or any OpenAI-compatible URL) and print the figures."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from arbstr.cli.config_cmds import out
from arbstr.loadgen import run_load

__all__ = ["bench"]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def bench(
    url: Annotated[
        str, typer.Option("--url", "-u", help="Base URL ending in /v1")
    ] = "http://127.0.0.1:8080/v1",
    requests: Annotated[int, typer.Option("--requests", "-n", help="Requests to send")] = 1000,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Parallel clients")] = 16,
    stream: Annotated[bool, typer.Option("--stream", help="Streaming requests")] = False,
    model: Annotated[str, typer.Option("--model", "-m")] = "gpt-4o-mini",
    duration: Annotated[
        float | None, typer.Option("--duration", help="Seconds (instead of -n)")
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="ARBSTR_BENCH_KEY")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Closed-loop load: RPS, p50/p90/p99, errors, gateway overhead from x-arbstr-overhead-ms."""
    result = asyncio.run(
        run_load(
            url,
            requests=requests,
            concurrency=concurrency,
            stream=stream,
            model=model,
            api_key=api_key,
            duration_s=duration,
        )
    )
    if as_json:
        typer.echo(msgspec.json.encode(result).decode())
        return
    table = Table(title=f"arbstr bench: {url} ({'stream' if stream else 'json'}, c={concurrency})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("requests", str(result.requests)),
        ("duration s", f"{result.duration_s:.2f}"),
        ("requests/s", f"{result.rps:.1f}"),
        ("ok / errors", f"{result.ok} / {result.errors}"),
        ("latency p50 ms", _fmt(result.p50_ms)),
        ("latency p90 ms", _fmt(result.p90_ms)),
        ("latency p99 ms", _fmt(result.p99_ms)),
        ("overhead p50 ms", _fmt(result.overhead_p50_ms)),
        ("overhead p99 ms", _fmt(result.overhead_p99_ms)),
    ]
    if stream:
        rows += [
            ("first byte p50 ms", _fmt(result.ttfb_p50_ms)),
            ("first byte p99 ms", _fmt(result.ttfb_p99_ms)),
        ]
    rows += [(f"status {k}", str(v)) for k, v in sorted(result.statuses.items())]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    if result.errors:
        raise typer.Exit(1)
