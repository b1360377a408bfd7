"""Config file edits: comments kept, a provider a chain uses refused, an invalid result never
written."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbstr.config import ConfigError
from arbstr.config_edit import ConfigEditError, delete_table, put_table, write_checked

TEXT = """# my gateway
[server]
listen = "127.0.0.1:8080"  # loopback only

[[providers]]
name = "a"  # the cheap one
url = "http://127.0.0.1:9001/v1"
input_rate = 1

[[providers]]
name = "b"
url = "http://127.0.0.1:9002/v1"

[[chains]]
name = "c"
entries = [{ provider = "b", model = "m" }]
"""


def test_put_replaces_or_adds_a_table_and_keeps_comments() -> None:
    text, created = put_table(TEXT, "providers", "a", {"url": "http://h/v1", "input_rate": 2})
    assert not created
    assert "# my gateway" in text and "# loopback only" in text
    assert 'url = "http://h/v1"' in text and "input_rate = 2" in text
    text, created = put_table(text, "providers", "z", {"type": "groq", "models": ["x"]})
    assert created and 'name = "z"' in text and 'type = "groq"' in text


def test_delete_refuses_a_provider_a_chain_uses() -> None:
    with pytest.raises(ConfigEditError) as info:
        delete_table(TEXT, "providers", "b")
    assert info.value.status == 409 and "chain(s) c" in info.value.message
    with pytest.raises(ConfigEditError) as missing:
        delete_table(TEXT, "providers", "nope")
    assert missing.value.status == 404
    assert 'name = "a"' not in delete_table(TEXT, "providers", "a")


def test_an_invalid_result_is_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "arbstr.toml"
    path.write_text(TEXT)
    path.chmod(0o600)
    bad, _ = put_table(TEXT, "providers", "a", {"url": "ftp://nope"})
    with pytest.raises(ConfigError, match=r"providers\[0\].url: must be an http\(s\) URL"):
        write_checked(path, bad, env={})
    assert path.read_text() == TEXT
    good, _ = put_table(TEXT, "providers", "a", {"url": "http://h/v1"})
    settings = write_checked(path, good, env={})
    assert path.read_text() == good and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in settings.providers] == ["a", "b"]
    assert not list(tmp_path.glob(".arbstr.toml.*"))  # no temp file left


def test_a_chain_naming_a_removed_provider_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "arbstr.toml"
    path.write_text(TEXT)
    text = TEXT.replace('[[providers]]\nname = "b"\nurl = "http://127.0.0.1:9002/v1"\n', "")
    with pytest.raises(
        ConfigError, match=r"chains\[0\].entries\[0\].provider: unknown provider 'b'"
    ):
        write_checked(path, text, env={})
    assert path.read_text() == TEXT
