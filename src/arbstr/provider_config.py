"""The `[[providers]]` tables: their config Structs, and the checked `Provider` each becomes
(the preset applied, the URL normalised, rates and the key resolved)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import msgspec

from arbstr.presets import preset_for
from arbstr.secrets import ApiKey, ResolvedKey, SecretError, resolve_api_key

__all__ = ["Provider", "ProviderConfig", "RateLimits", "build_providers"]

Fail = Callable[[str, str], Exception]


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Unknown keys are errors, so typos never pass silently."""


class RateLimits(_Base):
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None


class ProviderConfig(_Base):
    name: str
    url: str | None = None  # default: the preset's (`type`)
    type: str = "generic"  # presets.py: openai, openrouter, groq, cerebras, google, ...
    headers: dict[str, str] = msgspec.field(default_factory=dict)  # sent on every request
    api_key: str | None = None
    models: list[str] = msgspec.field(default_factory=list)
    input_rate: float = 0.0
    output_rate: float = 0.0
    cached_input_rate: float | None = None
    base_fee: float = 0.0
    timeout_s: float | None = None
    rate_limits: RateLimits | None = None
    max_response_bytes: int | None = None  # default: [limits] max_response_bytes
    verify: bool = True  # check the upstream's TLS certificate (false: `check` warns)


class Provider(msgspec.Struct, frozen=True, kw_only=True):
    """A provider ready for routing: URL normalised, rates resolved, key resolved."""

    name: str
    url: str
    models: tuple[str, ...]
    input_rate: float
    output_rate: float
    cached_input_rate: float
    base_fee: float
    timeout_s: float | None
    rate_limits: RateLimits | None
    api_key: ApiKey | None
    key_source: str
    max_response_bytes: int = 32 << 20
    type: str = "generic"
    quirks: tuple[str, ...] = ()  # upstream/quirks.py, from the preset
    headers: tuple[tuple[str, str], ...] = ()  # the preset's, then the config's
    dialect: str | None = None  # the rate-limit header family it sends (None: any)
    verify: bool = True  # TLS certificate checked

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models


_RESERVED_HEADERS = {"authorization", "host", "content-length", "transfer-encoding", "connection"}


def _provider_headers(
    preset: tuple[tuple[str, str], ...],
    configured: dict[str, str],
    fail: Fail,
    where: str,
) -> tuple[tuple[str, str], ...]:
    """The preset's headers overridden by the config's, names lower-cased; no header arbstr
    sets itself, and no CR, LF or NUL anywhere (they would split the request)."""
    merged = dict(preset)
    for name, value in configured.items():
        low = name.strip().lower()
        if not low or any(c in name + value for c in "\r\n\0") or ":" in low:
            raise fail(f"{where}.headers.{name}", "must be a header name and value on one line")
        if low in _RESERVED_HEADERS:
            raise fail(f"{where}.headers.{name}", "is set by arbstr (use api_key for the key)")
        merged[low] = value
    return tuple(merged.items())


def _check_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def build_providers(
    configs: Sequence[ProviderConfig],
    env: Mapping[str, str] | None,
    need_keys: bool,
    fail: Fail,
    default_max_response_bytes: int,
) -> tuple[list[Provider], list[str]]:
    """Each provider checked and resolved; the warnings (keys that could not be resolved)."""
    providers: list[Provider] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for i, pc in enumerate(configs):
        where = f"providers[{i}]"
        if not pc.name.strip():
            raise fail(f"{where}.name", "must not be empty")
        if pc.name in seen:
            raise fail(f"{where}.name", f"duplicate provider name '{pc.name}'")
        seen.add(pc.name)
        try:
            preset = preset_for(pc.type)
        except KeyError as e:
            raise fail(f"{where}.type", str(e.args[0])) from None
        base_url = pc.url or preset.url
        if base_url is None:
            raise fail(f"{where}.url", "is required (or set type = one of the presets)")
        if not _check_url(base_url):
            raise fail(f"{where}.url", "must be an http(s) URL")
        headers = _provider_headers(preset.headers, pc.headers, fail, where)
        for key in ("input_rate", "output_rate", "base_fee", "cached_input_rate"):
            value = getattr(pc, key)
            if value is not None and value < 0:
                raise fail(f"{where}.{key}", "must not be negative")
        if pc.timeout_s is not None and pc.timeout_s <= 0:
            raise fail(f"{where}.timeout_s", "must be > 0")
        if pc.max_response_bytes is not None and pc.max_response_bytes <= 0:
            raise fail(f"{where}.max_response_bytes", "must be > 0")
        try:
            resolved = resolve_api_key(pc.name, pc.api_key, env)
        except SecretError as e:
            if need_keys:
                raise fail(f"{where}.api_key", str(e)) from None
            resolved = ResolvedKey(None, "unresolved", f"{where}.api_key: {e}")
        if resolved.warning:
            warnings.append(resolved.warning)
        if not pc.verify and base_url.startswith("https:"):
            warnings.append(
                f"{where}.verify = false: the TLS certificate of {pc.name} is not checked; "
                "anyone on the path can read its API key and its answers"
            )
        providers.append(
            Provider(
                name=pc.name,
                url=base_url.rstrip("/"),
                type=preset.type,
                quirks=preset.quirks,
                headers=headers,
                dialect=preset.dialect,
                models=tuple(pc.models),
                input_rate=float(pc.input_rate),
                output_rate=float(pc.output_rate),
                cached_input_rate=float(
                    pc.input_rate if pc.cached_input_rate is None else pc.cached_input_rate
                ),
                base_fee=float(pc.base_fee),
                timeout_s=pc.timeout_s,
                rate_limits=pc.rate_limits,
                api_key=resolved.key,
                key_source=resolved.source,
                max_response_bytes=pc.max_response_bytes or default_max_response_bytes,
                verify=pc.verify,
            )
        )
    return providers, warnings
