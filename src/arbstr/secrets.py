"""Provider API keys: a redacting wrapper, ${VAR} expansion, the env-var convention, masking."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "REDACTED",
    "ApiKey",
    "ResolvedKey",
    "Scrubber",
    "SecretError",
    "clean_key",
    "convention_var",
    "enc_hook",
    "expand_env",
    "permission_warning",
    "resolve_api_key",
]

REDACTED = "[REDACTED]"


class SecretError(ValueError):
    """A key could not be resolved; the message never contains a secret value."""


class ApiKey:
    """Holds a secret; every textual form of it is `[REDACTED]` except `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: only for the upstream `Authorization` header."""
        return self._value

    def masked(self) -> str:
        """First 6 characters + `...***`; `[REDACTED]` for keys shorter than 10 characters."""
        if len(self._value) < 10:
            return REDACTED
        return f"{self._value[:6]}...***"

    def __repr__(self) -> str:
        return f"ApiKey({REDACTED})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("ApiKey cannot be pickled")


def enc_hook(obj: Any) -> Any:
    """msgspec encode hook: an `ApiKey` always encodes as `[REDACTED]`."""
    if isinstance(obj, ApiKey):
        return REDACTED
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_VAR = re.compile(r"\$\{([^}]*)\}")


def expand_env(
    value: str, provider: str, env: Mapping[str, str] | None = None, *, owner: str | None = None
) -> str:
    """Expand every `${VAR}` in `value`; a bare `$VAR` stays literal.

    Errors name the owner (`provider 'x'` unless `owner` says otherwise) and the variable,
    never the value.
    """
    env = os.environ if env is None else env
    who = owner or f"provider '{provider}'"
    out: list[str] = []
    pos = 0
    while True:
        start = value.find("${", pos)
        if start < 0:
            out.append(value[pos:])
            break
        m = _VAR.match(value, start)
        if m is None:
            raise SecretError(f"{who}: unclosed '${{'")
        name = m.group(1).strip()
        if not name:
            raise SecretError(f"{who}: empty variable reference '${{}}'")
        if name not in env:
            raise SecretError(f"{who}: environment variable {name} is not set")
        out.append(value[pos:start])
        out.append(env[name])
        pos = m.end()
    return "".join(out)


def convention_var(provider: str) -> str:
    """`ARBSTR_<NAME>_API_KEY` with the name upper-cased and `-`/space turned into `_`."""
    return "ARBSTR_" + re.sub(r"[-\s]", "_", provider.upper()) + "_API_KEY"


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """A provider's key, where it came from, and a warning worth showing the operator."""

    key: ApiKey | None
    source: str  # config-literal | env-expanded | convention (VAR) | none
    warning: str | None = None


def clean_key(value: str, owner: str) -> str:
    """A key as it goes into a header: one trailing newline (a key read from a mounted secret
    file) is dropped; a CR or LF anywhere else would split the upstream request, so it is an
    error naming the provider (never the value)."""
    value = value.removesuffix("\n").removesuffix("\r")
    if "\r" in value or "\n" in value:
        raise SecretError(
            f"{owner}: the key contains a line break (CR or LF); a header value cannot hold one"
        )
    return value


def resolve_api_key(
    provider: str, raw: str | None, env: Mapping[str, str] | None = None
) -> ResolvedKey:
    """Resolve a provider's `api_key` setting: literal, `${VAR}`, or the convention variable."""
    env = os.environ if env is None else env
    var = convention_var(provider)
    owner = f"provider '{provider}'"
    if raw is None:
        value = clean_key(env.get(var) or "", owner)
        if value:
            return ResolvedKey(ApiKey(value), f"convention ({var})")
        if var in env:
            return ResolvedKey(None, "none", f"provider '{provider}': {var} is set but empty")
        return ResolvedKey(None, "none")
    if "${" in raw:
        expanded = clean_key(expand_env(raw, provider, env), owner)
        if not expanded:
            warning = f"provider '{provider}': api_key expands to an empty value (no key is sent)"
            return ResolvedKey(None, "env-expanded", warning)
        return ResolvedKey(ApiKey(expanded), "env-expanded")
    raw = clean_key(raw, owner)
    if not raw:
        return ResolvedKey(None, "none")
    warning = (
        f"provider '{provider}': plaintext API key in the config file; "
        f'prefer api_key = "${{{var}}}" or remove api_key and set {var}'
    )
    return ResolvedKey(ApiKey(raw), "config-literal", warning)


class Scrubber:
    """Replaces every configured secret in bytes or text with `[REDACTED]`.

    For the error path only: some upstreams and proxies echo request headers (the provider's
    key) in their 4xx bodies, and those bodies reach the client and the request log's
    `error_message`. A successful answer is never touched (it goes out byte for byte).
    """

    __slots__ = ("_raw", "_text")

    def __init__(self, secrets: Iterable[ApiKey | None]) -> None:
        values = {k.reveal() for k in secrets if k is not None and len(k.reveal()) >= 6}
        # longest first: a key that contains another is replaced whole
        self._text = sorted(values, key=len, reverse=True)
        self._raw = [v.encode() for v in self._text]

    def add(self, secret: ApiKey) -> None:
        """Scrub one more secret (a project's own upstream key, once it is loaded)."""
        value = secret.reveal()
        if len(value) >= 6 and value not in self._text:
            self._text = sorted([*self._text, value], key=len, reverse=True)
            self._raw = [v.encode() for v in self._text]

    def scrub(self, data: bytes) -> bytes:
        for secret in self._raw:
            if secret in data:
                data = data.replace(secret, REDACTED.encode())
        return data

    def scrub_text(self, text: str) -> str:
        for secret in self._text:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def permission_warning(path: Path) -> str | None:
    """A warning when the config file is readable or writable by group or others."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & 0o177:
        return (
            f"config file {path} has permissions {mode:04o}, more open than 0600. "
            f"Consider: chmod 600 {path}"
        )
    return None
