"""`check`, `providers` and `init`: answer from the config alone, never start the server."""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console

from arbstr.config import ConfigError, Settings, load_settings
from arbstr.secrets import convention_var

__all__ = ["check", "init", "providers", "redact_url"]

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Config file (else $ARBSTR_CONFIG, ./arbstr.toml)"),
]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def load_or_exit(config: str | None, *, need_keys: bool = True) -> Settings:
    """The settings, or exit 1 with `Configuration error: ...`.

    Read-only commands pass `need_keys=False`: they read the database, so a provider key that
    cannot be resolved is a warning on stderr, not a failure (`serve` and `check` still fail).
    """
    try:
        settings = load_settings(config, need_keys=need_keys)
    except ConfigError as exc:
        err.print(f"Configuration error: {exc}", markup=False)
        raise typer.Exit(1) from None
    if not need_keys:
        for warning in settings.warnings:
            if "api_key" in warning:
                err.print(f"WARNING: {warning}", markup=False)
    return settings


def redact_url(url: str) -> str:
    """A database URL with any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def check(config: ConfigOpt = None) -> None:
    """Validate the configuration and show how each provider's key is resolved."""
    settings = load_or_exit(config)
    cfg = settings.config
    p = out.print
    p("Configuration is valid!", markup=False)
    p(f"  File: {settings.source}", markup=False)
    p(f"  Listen: {cfg.server.listen}", markup=False)
    p(f"  Database: {redact_url(cfg.database.effective_url)}", markup=False)
    p(
        f"  Providers: {len(settings.providers)}  Chains: {len(cfg.chains)}  "
        f"Policies: {len(cfg.policies.rules)}  Strategy: {cfg.policies.default_strategy}",
        markup=False,
    )
    for warning in settings.warnings:
        err.print(f"WARNING: {warning}", markup=False)
    if settings.providers:
        p("Provider key status:", markup=False)
    for prov in settings.providers:
        # one line per provider: its name and the key source label (never the key)
        line = f"  {prov.name}: {prov.key_source}"
        if prov.api_key is None:
            line += f" (set {convention_var(prov.name)} or api_key)"
        p(line, markup=False)


def providers(
    config: ConfigOpt = None,
    masked: Annotated[
        bool, typer.Option("--masked/--no-masked", help="Mask API keys (default: masked)")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List configured providers, their models, rates and (masked) keys."""
    settings = load_or_exit(config, need_keys=False)
    rows = []
    for prov in settings.providers:
        key = None
        if prov.api_key is not None:
            key = prov.api_key.masked() if masked else prov.api_key.reveal()
        rows.append(
            {
                "name": prov.name,
                "type": prov.type,
                "url": prov.url,
                "models": list(prov.models),
                "input_rate": prov.input_rate,
                "output_rate": prov.output_rate,
                "cached_input_rate": prov.cached_input_rate,
                "base_fee": prov.base_fee,
                "key_source": prov.key_source,
                "api_key": key,
            }
        )
    if as_json:
        typer.echo(json.dumps({"providers": rows}, indent=2))
        return
    if not rows:
        out.print("No providers configured.")
    for prov, row in zip(settings.providers, rows, strict=True):
        kind = "" if prov.type == "generic" else f", type {prov.type}"
        out.print(f"{row['name']} ({row['url']}{kind})", markup=False)
        models = ", ".join(prov.models) or "any"
        out.print(f"  Models: {models}", markup=False)
        out.print(
            f"  Rates: {row['input_rate']:g} sats/1k input, {row['output_rate']:g} sats/1k output"
            f", {row['cached_input_rate']:g} sats/1k cached input",
            markup=False,
        )
        if row["base_fee"]:
            out.print(f"  Base fee: {row['base_fee']:g} sats", markup=False)
        out.print(f"  Key: {row['api_key'] or 'none'} ({row['key_source']})", markup=False)


def example_config() -> str:
    return files("arbstr.cli").joinpath("arbstr.example.toml").read_text()


def init(
    path: Annotated[
        Path, typer.Argument(help="File to write, or a directory to write arbstr.toml into")
    ] = Path("arbstr.toml"),
) -> None:
    """Write an annotated arbstr.toml (refuses to overwrite an existing file)."""
    if path.is_dir() or str(path).endswith(("/", "\\")):
        path = path / "arbstr.toml"
    if path.exists():
        err.print(f"{path} already exists; not overwriting it.", markup=False)
        raise typer.Exit(1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # created private: the file will hold (references to) provider keys
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(example_config())
    except OSError as exc:
        err.print(f"Cannot write {path}: {exc.strerror}", markup=False)
        raise typer.Exit(1) from None
    out.print(f"Wrote {path}. Edit the providers, then run: arbstr check -c {path}", markup=False)
