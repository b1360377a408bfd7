"""The `arbstr` command line (typer)."""

from __future__ import annotations

from typing import Annotated

import typer

from arbstr import __version__
from arbstr.cli.bench import bench
from arbstr.cli.cluster_cmd import cluster
from arbstr.cli.config_cmds import check, init, providers
from arbstr.cli.data_cmds import db_app, requests, stats
from arbstr.cli.demo import demo
from arbstr.cli.keys_cmds import audit, keys_app, projects_app
from arbstr.cli.serve import serve

__all__ = ["app", "main"]

app = typer.Typer(
    name="arbstr",
    help="arbstr: an OpenAI-compatible LLM gateway that routes each request to the cheapest "
    "healthy provider.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"arbstr {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """arbstr: an OpenAI-compatible LLM gateway that routes each request to the cheapest
    healthy provider."""


app.command()(serve)
app.command()(check)
app.command()(providers)
app.command()(init)
app.command()(demo)
app.command()(cluster)
app.command()(bench)
app.command()(stats)
app.command()(requests)
app.command()(audit)
app.add_typer(db_app, name="db")
app.add_typer(projects_app, name="projects")
app.add_typer(keys_app, name="keys")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
