"""Secrets: redaction, ${VAR} expansion, the convention variable, masking, permissions."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import msgspec
import pytest

from arbstr.secrets import (
    REDACTED,
    ApiKey,
    SecretError,
    convention_var,
    enc_hook,
    expand_env,
    permission_warning,
    resolve_api_key,
)

SECRET = "sk-live-0123456789abcdef"


def test_every_textual_form_is_redacted() -> None:
    key = ApiKey(SECRET)
    for text in (repr(key), str(key), f"{key}", f"{key!r}", "%s" % key, format(key, ">40")):
        assert SECRET not in text
        assert REDACTED in text
    assert key.reveal() == SECRET


def test_msgspec_encoding_is_redacted() -> None:
    encoded = msgspec.json.encode({"k": ApiKey(SECRET)}, enc_hook=enc_hook)
    assert json.loads(encoded) == {"k": REDACTED}


def test_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(ApiKey(SECRET))


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (SECRET, "sk-liv...***"),
        ("short", REDACTED),
        ("123456789", REDACTED),
        ("1234567890", "123456...***"),
    ],
)
def test_masked(value: str, masked: str) -> None:
    assert ApiKey(value).masked() == masked


def test_expand_several_and_bare_dollar_stays() -> None:
    env = {"A": "one", "B": "two"}
    assert expand_env("${A}://${B}/$A", "p", env) == "one://two/$A"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("${NOPE}", "NOPE is not set"), ("x${A", "unclosed"), ("${}", "empty variable")],
)
def test_expand_errors_name_the_provider(value: str, fragment: str) -> None:
    with pytest.raises(SecretError) as info:
        expand_env(value, "alpha", {"A": "1"})
    assert "alpha" in str(info.value)
    assert fragment in str(info.value)


def test_expand_error_never_contains_other_values() -> None:
    with pytest.raises(SecretError) as info:
        expand_env("${A}${MISSING}", "alpha", {"A": SECRET})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("name", "var"),
    [
        ("alpha", "ARBSTR_ALPHA_API_KEY"),
        ("my-provider", "ARBSTR_MY_PROVIDER_API_KEY"),
        ("my provider", "ARBSTR_MY_PROVIDER_API_KEY"),
    ],
)
def test_convention_var(name: str, var: str) -> None:
    assert convention_var(name) == var


def test_resolve_sources() -> None:
    env = {"ARBSTR_ALPHA_API_KEY": SECRET, "K": SECRET}
    conv = resolve_api_key("alpha", None, env)
    assert conv.key == ApiKey(SECRET)
    assert conv.source == "convention (ARBSTR_ALPHA_API_KEY)"
    expanded = resolve_api_key("alpha", "${K}", env)
    assert expanded.source == "env-expanded"
    assert expanded.warning is None
    literal = resolve_api_key("alpha", SECRET, env)
    assert literal.source == "config-literal"
    assert literal.warning is not None
    assert "ARBSTR_ALPHA_API_KEY" in literal.warning
    assert SECRET not in literal.warning
    none = resolve_api_key("beta", None, env)
    assert none.key is None
    assert none.source == "none"


def test_permission_warning(tmp_path: Path) -> None:
    path = tmp_path / "arbstr.toml"
    path.write_text("")
    path.chmod(0o600)
    assert permission_warning(path) is None
    path.chmod(0o400)
    assert permission_warning(path) is None
    path.chmod(0o644)
    warning = permission_warning(path)
    assert warning is not None
    assert "chmod 600" in warning


def test_secrets_are_compared_in_constant_time() -> None:
    """No `==`/`!=` on a token, secret, digest, signature or password anywhere in the package:
    those go through `hmac.compare_digest` (a comparison that stops at the first differing
    byte tells an attacker, by its timing, how much of a guess was right)."""
    import ast
    import re
    from pathlib import Path

    import arbstr

    secret = re.compile(r"(^|_)(token|secret|digest|signature|password)$")
    allowed = {("live.py", "admin_token")}  # a reload telling whether the setting changed

    def name(node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr
        return ""

    found = []
    for path in Path(arbstr.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                for side in (node.left, *node.comparators):
                    ident = name(side)
                    if secret.search(ident) and (path.name, ident) not in allowed:
                        found.append(f"{path.name}:{node.lineno} {ident}")
    assert not found, found
