"""Live configuration: SIGHUP and `POST /admin/reload` re-read the config file; a valid one
replaces providers, chains, policies and per-request limits without dropping a request or
losing the health state (circuits, cooldowns, latency) of providers that stay. An invalid one
is refused with the message `arbstr check` prints, and the running config stays."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import msgspec

from arbstr.config import Config, Settings, load_settings
from arbstr.gateway import Gateway
from arbstr.telemetry import Metrics
from arbstr.views import Views

__all__ = ["LiveConfig", "Reloaded"]

log = logging.getLogger(__name__)

# read once at startup: a change to these is reported and waits for a restart
_RESTART = ("database", "state", "auth", "queue", "logging")
_RESTART_SERVER = ("listen", "workers", "upstream_transport", "gc_gen0_threshold")


@dataclass
class Reloaded:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)


class LiveConfig:
    """One per process (`app.state.live`)."""

    def __init__(self, gateway: Gateway, views: Views, metrics: Metrics) -> None:
        self.gateway, self.views, self.metrics = gateway, views, metrics
        self.reloads = 0

    @property
    def source(self) -> str:
        return self.gateway.shared.settings.source

    def reload(self, settings: Settings | None = None) -> Reloaded:
        """Apply `settings`, else the config file read again; `ConfigError` if it is invalid
        (nothing changes then)."""
        new = settings if settings is not None else load_settings(self.source)
        old = self.gateway.shared.settings
        merged, needs_restart = _keep_restart_only(old, new)
        before = {p.name: p for p in old.providers}
        after = {p.name: p for p in merged.providers}
        done = Reloaded(
            added=sorted(after.keys() - before.keys()),
            removed=sorted(before.keys() - after.keys()),
            changed=sorted(n for n in after.keys() & before.keys() if after[n] != before[n]),
            chains=sorted(c.name for c in merged.config.chains),
            needs_restart=needs_restart,
        )
        # the swap: plain assignments on one event loop, so no request sees half of it
        self.gateway.shared.replace(merged)
        self.gateway.shared.health.set_providers(merged.providers)
        self.views.refresh()
        self.metrics.providers = self.metrics.providers | after.keys()  # labels for new ones
        self.reloads += 1
        log.info(
            "config reloaded from %s: +%s -%s ~%s%s",
            self.source,
            ",".join(done.added) or "none",
            ",".join(done.removed) or "none",
            ",".join(done.changed) or "none",
            f"; needs a restart: {', '.join(needs_restart)}" if needs_restart else "",
        )
        return done


def _keep_restart_only(old: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """`new` with what only a restart can change kept from `old`; what differed."""
    differs = [s for s in _RESTART if getattr(old.config, s) != getattr(new.config, s)]
    kept: dict[str, object] = {s: getattr(old.config, s) for s in _RESTART}
    server_kept = {k: getattr(old.config.server, k) for k in _RESTART_SERVER}
    differs += [
        f"server.{k}" for k in _RESTART_SERVER if getattr(new.config.server, k) != server_kept[k]
    ]
    if old.admin_token != new.admin_token:
        differs.append("auth.admin_token")
    server = msgspec.structs.replace(new.config.server, **server_kept)
    config: Config = msgspec.structs.replace(new.config, server=server, **kept)
    merged = msgspec.structs.replace(
        new, config=config, admin_token=old.admin_token, source=old.source
    )
    return merged, sorted(differs)
