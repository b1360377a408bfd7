"""The TOML configuration: msgspec Structs, loading, validation with path-qualified errors."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from arbstr.provider_config import Provider, ProviderConfig, RateLimits, build_providers
from arbstr.secrets import (
    ApiKey,
    SecretError,
    clean_key,
    expand_env,
    permission_warning,
)

__all__ = [
    "AuthConfig",
    "ChainConfig",
    "ChainEntry",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "LimitsConfig",
    "LoggingConfig",
    "PoliciesConfig",
    "PolicyRule",
    "Provider",
    "ProviderConfig",
    "RateLimits",
    "ReliabilityConfig",
    "ServerConfig",
    "Settings",
    "StateConfig",
    "config_path",
    "load_settings",
    "parse_settings",
]

Strategy = Literal["cheapest", "ordered", "lowest_latency"]


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Shared base: unknown keys are errors, so typos never pass silently."""


class ServerConfig(_Base):
    listen: str = "127.0.0.1:8080"
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_body_bytes: int = 10_485_760
    workers: int = 1
    shutdown_grace_s: float = 10.0
    drain_delay_s: float = 0.0  # SIGTERM: /health/ready 503 this long before the listener closes
    ready_timeout_s: float = 2.0  # a store slower than this to answer a readiness check: not ready
    loop_block_warn_s: float = 1.0  # the event loop held this long: logged with its stack (0 off)
    normalize_reasoning: bool = False  # empty `content`: the answer's reasoning_content instead
    gc_gen0_threshold: int = 10_000  # 0 = CPython's default collector settings (ADR 0007)
    upstream_transport: Literal["http1", "aiohttp"] = "http1"  # ADR 0009


class DatabaseConfig(_Base):
    url: str | None = None
    path: str | None = None  # the original arbstr shape
    migrate_on_start: bool = True
    log_bodies: bool = False
    spill_path: str | None = None  # default: <sqlite file>.spill.jsonl, else ./arbstr-spill.jsonl

    @property
    def effective_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite:///{self.path or './arbstr.db'}"


class LimitsConfig(_Base):
    """Every byte count, item count and wait a client or an upstream controls (README, Limits)."""

    # upstream answers
    max_response_bytes: int = 32 << 20  # a whole (non-streamed) answer; per provider too
    max_response_headers: int = 256  # header lines of one upstream response
    max_response_header_bytes: int = 64 << 10  # status line and headers of one response
    max_sse_event_bytes: int = 4 << 20  # one pending stream event (its lines included)
    # clients (enforced by the HTTP server: see the README for which host enforces what)
    max_request_headers: int = 100
    max_request_header_bytes: int = 64 << 10  # larger -> 431
    header_timeout_s: float = 10.0  # a request's headers must arrive within this (slowloris)
    body_timeout_s: float = 30.0  # the whole request body must arrive within this -> 408
    keepalive_timeout_s: float = 5.0  # an idle kept-alive client connection is closed after this
    max_connections: int = 0  # concurrent client connections; 0 = from the descriptor limit
    max_streams_per_client: int = 256  # open streams per virtual key (else address); 0 = none


class StateConfig(_Base):
    backend: Literal["memory", "database"] = "memory"
    sync_interval_s: float = 0.25  # publish + poll period: another replica sees a change < 1 s


class ReliabilityConfig(_Base):
    max_retries: int = 2
    backoff_s: list[float] = msgspec.field(default_factory=lambda: [1.0, 2.0])
    circuit_failure_threshold: int = 3
    circuit_open_s: float = 30.0
    cooldown_default_s: float = 60.0
    cooldown_402_s: float = 300.0
    stream_idle_timeout_s: float = 30.0
    max_stream_s: float = 600.0  # a stream's whole duration after its first byte
    # streams that fail mid-way this many times in a row cool the provider down for
    # midstream_cooldown_s * 2^n (n: escalations so far), at most midstream_cooldown_max_s
    midstream_failure_threshold: int = 3
    midstream_cooldown_s: float = 120.0
    midstream_cooldown_max_s: float = 1800.0
    # one attempt's share of the deadline, so a hung provider leaves time for a fallback;
    # None = half of request_timeout_s. A provider's own timeout_s wins.
    attempt_timeout_s: float | None = None


class ChainEntry(_Base):
    provider: str
    model: str


class ChainConfig(_Base):
    name: str
    entries: list[ChainEntry]
    strategy: Strategy = "ordered"


class PolicyRule(_Base):
    name: str
    allowed_models: list[str] = msgspec.field(default_factory=list)
    max_sats_per_1k_output: float | None = None
    keywords: list[str] = msgspec.field(default_factory=list)
    strategy: str | None = None  # accepted for old configs ("lowest_cost" = cheapest)


class PoliciesConfig(_Base):
    default_strategy: Strategy = "cheapest"
    rules: list[PolicyRule] = msgspec.field(default_factory=list)


class AuthConfig(_Base):
    enabled: bool = False
    admin_token: str | None = None
    failure_burst: int = 20  # auth failures from one address before it gets 429s
    failure_window_s: float = 60.0  # ... within this long; also the audit row's span
    refresh_interval_s: float = 0.25  # how often each process polls the key-store version


class QueueConfig(_Base):
    """Queue when exhausted (pipeline/queue.py): wait for a cooldown instead of a 429."""

    enabled: bool = False
    max_size: int = 100  # waiting requests per model or chain -> 503 queue_full
    max_wait_s: float = 30.0  # -> 503 queue_timeout


class CacheConfig(_Base):
    """The exact response cache (pipeline/cached.py): opt-in per request with Cache-Control."""

    enabled: bool = False
    backend: Literal["memory", "redis", "database"] = "memory"
    ttl_s: float = 3600.0  # the longest an entry lives, whatever max-age asks
    default_max_age_s: float = 0.0  # for requests without Cache-Control: 0 = not cached
    max_entries: int = 10_000  # memory backend
    max_bytes: int = 64 << 20  # memory backend: LRU by bytes
    max_entry_bytes: int = 1 << 20  # a larger answer is not cached
    redis_url: str = "redis://127.0.0.1:6379/0"


class ExportConfig(_Base):
    """Request events to OpenTelemetry (OTLP/HTTP) and/or a JSONL file (export.py)."""

    otlp_endpoint: str | None = None  # e.g. http://127.0.0.1:4318 (/v1/traces is added)
    jsonl_path: str | None = None
    queue_size: int = 4096  # records waiting for export; past it, dropped and counted
    service_name: str = "arbstr"


class LoggingConfig(_Base):
    level: Literal["debug", "info", "warning", "error"] = "info"
    log_requests: bool = True


class Config(_Base):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    state: StateConfig = msgspec.field(default_factory=StateConfig)
    reliability: ReliabilityConfig = msgspec.field(default_factory=ReliabilityConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    providers: list[ProviderConfig] = msgspec.field(default_factory=list)
    chains: list[ChainConfig] = msgspec.field(default_factory=list)
    policies: PoliciesConfig = msgspec.field(default_factory=PoliciesConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    cache: CacheConfig = msgspec.field(default_factory=CacheConfig)
    export: ExportConfig = msgspec.field(default_factory=ExportConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Validated configuration plus what was derived from it."""

    config: Config
    providers: tuple[Provider, ...]
    source: str  # the file the settings came from, or a label
    warnings: tuple[str, ...] = ()
    admin_token: ApiKey | None = None

    def provider(self, name: str) -> Provider | None:
        for p in self.providers:
            if p.name == name:
                return p
        return None


class ConfigError(ValueError):
    """`<file>: <key path>: <reason>`; never contains a secret."""

    def __init__(self, source: str, path: str, reason: str) -> None:
        self.source, self.path, self.reason = source, path, reason
        super().__init__(f"{source}: {path}: {reason}" if path else f"{source}: {reason}")


def config_path(explicit: str | Path | None = None) -> Path:
    """`-c PATH`, else `$ARBSTR_CONFIG`, else `./arbstr.toml`."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("ARBSTR_CONFIG")
    return Path(env) if env else Path("arbstr.toml")


def load_settings(
    path: str | Path | None = None, env: dict[str, str] | None = None, *, need_keys: bool = True
) -> Settings:
    """Read and validate a config file; raises `ConfigError`.

    `need_keys=False` (read-only commands: they need the database, not the providers): a key
    that cannot be resolved is a warning and the provider is keyless, not an error.
    """
    p = config_path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(p), "", "file not found (run `arbstr init` to write one)") from None
    except OSError as e:
        raise ConfigError(str(p), "", f"cannot read: {e.strerror}") from None
    settings = parse_settings(data, source=str(p), env=env, need_keys=need_keys)
    warn = permission_warning(p)
    if warn:
        settings = msgspec.structs.replace(settings, warnings=(*settings.warnings, warn))
    return settings


_MSGSPEC_PATH = re.compile(r" - at `\$\.?(.*)`$")


def parse_settings(
    data: bytes | str,
    source: str = "<config>",
    env: dict[str, str] | None = None,
    *,
    need_keys: bool = True,
) -> Settings:
    """Decode and validate TOML text into `Settings` (`need_keys`: see `load_settings`)."""
    text = data.decode() if isinstance(data, bytes) else data
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "", f"invalid TOML: {e}") from None
    try:
        config = msgspec.convert(raw, type=Config, strict=False)
    except msgspec.ValidationError as e:
        msg = str(e)
        m = _MSGSPEC_PATH.search(msg)
        path = m.group(1) if m else ""
        reason = msg[: m.start()] if m else msg
        unknown = re.fullmatch(r"Object contains unknown field `(.+)`", reason)
        if unknown:
            path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
            reason = "unknown key"
        raise ConfigError(source, path, reason.replace("`", "")) from None
    return _validate(config, source, env, need_keys)


def _validate(
    config: Config, source: str, env: dict[str, str] | None, need_keys: bool = True
) -> Settings:
    def fail(path: str, reason: str) -> ConfigError:
        return ConfigError(source, path, reason)

    server = config.server
    if not re.fullmatch(r"\[?[^\s\]]*\]?:\d{1,5}", server.listen):
        raise fail("server.listen", "must be HOST:PORT")
    for key in ("request_timeout_s", "connect_timeout_s"):
        if getattr(server, key) <= 0:
            raise fail(f"server.{key}", "must be > 0")
    if server.max_body_bytes <= 0:
        raise fail("server.max_body_bytes", "must be > 0")
    if server.workers < 1:
        raise fail("server.workers", "must be >= 1")
    if server.loop_block_warn_s < 0:
        raise fail("server.loop_block_warn_s", "must be >= 0 (0 turns the watchdog off)")
    for name in LimitsConfig.__struct_fields__:
        value = getattr(config.limits, name)
        if value < 0 or (value == 0 and name not in ("max_connections", "max_streams_per_client")):
            raise fail(f"limits.{name}", "must be > 0")
    rel = config.reliability
    for key in ("max_stream_s", "stream_idle_timeout_s"):
        if getattr(rel, key) <= 0:
            raise fail(f"reliability.{key}", "must be > 0")
    if rel.attempt_timeout_s is not None and rel.attempt_timeout_s <= 0:
        raise fail("reliability.attempt_timeout_s", "must be > 0")
    if rel.max_retries < 0:
        raise fail("reliability.max_retries", "must be >= 0")
    if rel.circuit_failure_threshold < 1:
        raise fail("reliability.circuit_failure_threshold", "must be >= 1")
    if config.export.queue_size < 1:
        raise fail("export.queue_size", "must be >= 1")
    if config.export.otlp_endpoint and not config.export.otlp_endpoint.startswith(
        ("http://", "https://")
    ):
        raise fail("export.otlp_endpoint", "must be an http(s) URL (OTLP/HTTP)")
    cache = config.cache
    if cache.ttl_s <= 0 or cache.default_max_age_s < 0:
        raise fail("cache.ttl_s", "ttl_s must be > 0 and default_max_age_s >= 0")
    if min(cache.max_entries, cache.max_bytes, cache.max_entry_bytes) < 1:
        raise fail("cache.max_bytes", "max_entries, max_bytes and max_entry_bytes must be >= 1")
    if config.queue.max_size < 1:
        raise fail("queue.max_size", "must be >= 1")
    if config.queue.max_wait_s <= 0:
        raise fail("queue.max_wait_s", "must be > 0")
    if rel.midstream_failure_threshold < 1:
        raise fail("reliability.midstream_failure_threshold", "must be >= 1")
    if not 0 < rel.midstream_cooldown_s <= rel.midstream_cooldown_max_s:
        raise fail(
            "reliability.midstream_cooldown_s", "must be > 0 and <= midstream_cooldown_max_s"
        )
    if any(b < 0 for b in rel.backoff_s):
        raise fail("reliability.backoff_s", "must not be negative")
    if config.database.url and "${" in config.database.url:  # a password from the environment
        try:
            url = expand_env(config.database.url, "", env, owner="the database url")
        except SecretError as e:
            raise fail("database.url", str(e)) from None
        database = msgspec.structs.replace(config.database, url=url)
        config = msgspec.structs.replace(config, database=database)

    db_url = config.database.effective_url
    if not db_url.startswith(("sqlite://", "postgresql://", "postgres://", "memory://")):
        raise fail("database.url", "must be sqlite:///PATH, postgresql://... or memory://")

    providers, warnings = build_providers(
        config.providers, env, need_keys, fail, config.limits.max_response_bytes
    )
    if not providers:
        warnings.append("no providers configured: every chat request will fail")

    chain_names: set[str] = set()
    for i, chain in enumerate(config.chains):
        where = f"chains[{i}]"
        if chain.name in chain_names:
            raise fail(f"{where}.name", f"duplicate chain name '{chain.name}'")
        chain_names.add(chain.name)
        if not chain.entries:
            raise fail(f"{where}.entries", "must list at least one entry")
        for j, entry in enumerate(chain.entries):
            if entry.provider not in {p.name for p in providers}:
                raise fail(f"{where}.entries[{j}].provider", f"unknown provider '{entry.provider}'")

    rule_names: set[str] = set()
    for i, rule in enumerate(config.policies.rules):
        where = f"policies.rules[{i}]"
        if rule.name in rule_names:
            raise fail(f"{where}.name", f"duplicate policy name '{rule.name}'")
        rule_names.add(rule.name)
        if rule.max_sats_per_1k_output is not None and rule.max_sats_per_1k_output < 0:
            raise fail(f"{where}.max_sats_per_1k_output", "must not be negative")

    admin: ApiKey | None = None
    if config.auth.admin_token:
        try:
            value = expand_env(config.auth.admin_token, "", env, owner="the admin token")
            admin = ApiKey(clean_key(value, "the admin token")) if value.strip() else None
        except SecretError as e:
            raise fail("auth.admin_token", str(e)) from None
    if config.auth.enabled and admin is None:
        raise fail(
            "auth.admin_token",
            'auth.enabled = true needs an admin token (e.g. admin_token = "${ARBSTR_ADMIN_TOKEN}")',
        )
    if admin is not None and admin.reveal().startswith("sk-arb-"):
        raise fail("auth.admin_token", "must not look like a virtual key (sk-arb-...)")
    if admin is not None and len(admin.reveal()) < 16:
        raise fail("auth.admin_token", "must be at least 16 characters")
    if config.auth.failure_burst < 1:
        raise fail("auth.failure_burst", "must be at least 1")
    if not 0.05 <= config.auth.refresh_interval_s <= 1.0:
        raise fail("auth.refresh_interval_s", "must be between 0.05 and 1.0 s")
    if config.database.log_bodies:
        raise fail("database.log_bodies", "storing prompt and completion bodies is not available")
    if not config.logging.log_requests:
        raise fail("logging.log_requests", "the request log cannot be turned off")

    return Settings(
        config=config,
        providers=tuple(providers),
        source=source,
        warnings=tuple(warnings),
        admin_token=admin,
    )
