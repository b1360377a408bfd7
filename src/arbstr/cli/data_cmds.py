"""`stats`, `requests` and `db migrate|status`: read the request log the server writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich import box
from rich.table import Table

from arbstr.api.stats import parse_list_query, parse_stats_query
from arbstr.cli.config_cmds import ConfigOpt, err, load_or_exit, out, redact_url
from arbstr.errors import BadRequest
from arbstr.stores.requestlog import RequestLog, open_request_log

__all__ = ["db_app", "requests", "stats"]

T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
db_app = typer.Typer(help="Database schema: migrate, status.", no_args_is_help=True)


def _with_log(config: str | None, action: Callable[[RequestLog], Awaitable[T]]) -> T:
    settings = load_or_exit(config, need_keys=False)

    async def run() -> T:
        store = open_request_log(settings.config.database.effective_url)
        try:
            return await action(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except BadRequest as exc:
        err.print(f"Error: {exc.message}", markup=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"Database error: {exc}", markup=False)
        raise typer.Exit(1) from None


def _echo_json(value: Any) -> None:
    typer.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def stats(
    config: ConfigOpt = None,
    range_: Annotated[
        str, typer.Option("--range", help="last_1h|last_24h|last_7d|last_30d")
    ] = "last_7d",
    since: Annotated[str | None, typer.Option(help="ISO 8601 start (overrides --range)")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 end")] = None,
    model: Annotated[str | None, typer.Option()] = None,
    provider: Annotated[str | None, typer.Option()] = None,
    group_by: Annotated[str | None, typer.Option("--group-by", help="model|provider")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Requests, cost, tokens, latency and savings over a time range."""
    params = {
        k: v
        for k, v in {
            "range": range_,
            "since": since,
            "until": until,
            "model": model,
            "provider": provider,
        }.items()
        if v
    }
    if group_by not in (None, "model", "provider"):
        err.print("Error: --group-by must be model or provider", markup=False)
        raise typer.Exit(2)

    async def action(store: RequestLog) -> Any:
        return await store.stats(parse_stats_query(params), group_by)  # type: ignore[arg-type]

    result = _with_log(config, action)
    if as_json:
        _echo_json(result)
        return
    groups = result.models or result.providers or {}
    rows = [("all", result.counts, result.costs, result.performance)]
    rows += [(name, g.counts, g.costs, g.performance) for name, g in groups.items()]
    cells = [
        [
            name,
            str(c.total),
            str(c.success),
            str(c.error),
            str(c.streaming),
            _f(k.total_cost_sats, 3),
            str(k.total_input_tokens),
            str(k.total_output_tokens),
            _f(p.avg_latency_ms),
            _f(p.p50_latency_ms),
            _f(p.p95_latency_ms),
        ]
        for name, c, k, p in rows
    ]
    columns = ["scope", "requests", "ok", "errors", "stream", "cost sats", "in tok", "out tok"]
    columns += ["avg ms", "p50 ms", "p95 ms"]
    out.print(table_of(f"arbstr stats {result.since} .. {result.until}", columns, cells, {0}))
    out.print(
        f"savings: {result.savings_sats:.3f} sats (percentiles: {result.percentiles})", markup=False
    )


def requests(
    config: ConfigOpt = None,
    range_: Annotated[str, typer.Option("--range")] = "last_7d",
    model: Annotated[str | None, typer.Option()] = None,
    provider: Annotated[str | None, typer.Option()] = None,
    success: Annotated[bool | None, typer.Option("--success/--failed", show_default=False)] = None,
    streaming: Annotated[
        bool | None, typer.Option("--streaming/--not-streaming", show_default=False)
    ] = None,
    sort: Annotated[str, typer.Option(help="timestamp|cost_sats|latency_ms")] = "timestamp",
    order: Annotated[str, typer.Option(help="asc|desc")] = "desc",
    page: Annotated[int, typer.Option()] = 1,
    per_page: Annotated[int, typer.Option("--per-page")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Browse recorded requests (filters, sort, pages)."""
    params = {
        "range": range_,
        "sort": sort,
        "order": order,
        "page": str(page),
        "per_page": str(per_page),
    }
    for key, value in (("model", model), ("provider", provider)):
        if value:
            params[key] = value
    for key, flag in (("success", success), ("streaming", streaming)):
        if flag is not None:
            params[key] = "true" if flag else "false"

    async def action(store: RequestLog) -> Any:
        return await store.list(parse_list_query(params))

    result = _with_log(config, action)
    if as_json:
        _echo_json(result)
        return
    cells = [
        [
            r.id,  # whole: ids are time-ordered, so any prefix is the same for every row
            r.timestamp.replace("T", " ").removesuffix("Z"),
            r.model or "-",
            r.provider or "-",
            "yes" if r.success else f"no {r.error.status if r.error else '?'}",
            "yes" if r.streaming else "",
            "-" if r.tokens.input is None else str(r.tokens.input),
            "-" if r.tokens.output is None else str(r.tokens.output),
            _f(r.cost.sats, 6),
            _f(r.timing.latency_ms, 1),
        ]
        for r in result.data
    ]
    title = f"requests page {result.page}/{max(1, result.total_pages)} ({result.total} total, UTC)"
    columns = ["id", "time", "model", "provider", "ok", "stream", "in", "out", "sats", "ms"]
    if out.width < 140:  # narrow: drop what the id and the JSON output still carry
        keep = [i for i, name in enumerate(columns) if name not in ("time", "stream")]
        columns = [columns[i] for i in keep]
        cells = [[row[i] for i in keep] for row in cells]
    out.print(table_of(title, columns, cells, {0, 1, 2}))


def table_of(title: str, columns: list[str], rows: list[list[str]], text: set[int]) -> Table:
    """A table that never cuts a number: numeric columns keep their width and text columns
    (indices in `text`) wrap instead of ending in an ellipsis when the terminal is narrow."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for i, name in enumerate(columns):
        if i in text:
            table.add_column(name, overflow="fold", min_width=min(8, len(name)))
        else:
            width = max([len(name), *(len(row[i]) for row in rows)])
            table.add_column(name, justify="right", no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    return table


@db_app.command("migrate")
def db_migrate(config: ConfigOpt = None) -> None:
    """Apply pending schema migrations (idempotent; the server also migrates on start)."""
    settings = load_or_exit(config, need_keys=False)
    status = _with_log(config, lambda s: s.migrate())
    url = redact_url(settings.config.database.effective_url)
    out.print(
        f"{status.backend} {url}: schema version {status.current} (latest {status.latest})",
        markup=False,
    )

    async def keys() -> None:
        from arbstr.stores.keys import open_key_store

        store = open_key_store(settings.config.database.effective_url)
        try:
            await store.migrate()
        finally:
            await store.aclose()

    asyncio.run(keys())
    out.print("key store: migrated (projects, keys, audit)", markup=False)


@db_app.command("status")
def db_status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Schema version and pending migrations."""
    status = _with_log(config, lambda s: s.status())
    if as_json:
        _echo_json(status)
        return
    pending = ", ".join(status.pending) or "none"
    out.print(
        f"{status.backend}: version {status.current} of {status.latest}; pending: {pending}",
        markup=False,
    )
    if status.pending:
        raise typer.Exit(1)
