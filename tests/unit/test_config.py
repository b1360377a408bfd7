"""Config: the whole schema decodes, old arbstr configs load, errors name file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbstr.config import ConfigError, config_path, load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads() -> None:
    settings = load_settings(
        ROOT / "config" / "arbstr.example.toml", env={"OPENAI_API_KEY": "sk-x" * 4}
    )
    assert [p.name for p in settings.providers] == ["alpha", "beta"]
    assert settings.config.chains[0].name == "free"
    assert settings.config.policies.rules[0].keywords == ["code", "function", "debug"]
    alpha = settings.providers[0]
    assert alpha.cached_input_rate == 5.0
    assert alpha.key_source == "env-expanded"
    assert settings.providers[1].key_source == "none"


def test_original_arbstr_shape_loads() -> None:
    text = """
[server]
listen = "127.0.0.1:8080"
[database]
path = "./old.db"
[[providers]]
name = "provider-alpha"
url = "https://alpha.example/v1"
api_key = "${ALPHA_KEY}"
models = ["gpt-4o"]
input_rate = 10
output_rate = 30
base_fee = 1
[policies]
default_strategy = "cheapest"
[[policies.rules]]
name = "code_generation"
allowed_models = ["gpt-4o"]
strategy = "lowest_cost"
max_sats_per_1k_output = 50
keywords = ["code", "function", "fix bug"]
[logging]
level = "info"
log_requests = true
"""
    settings = parse_settings(text, env={"ALPHA_KEY": "sk-abcdefghijkl"})
    assert settings.config.database.effective_url == "sqlite:///./old.db"
    prov = settings.providers[0]
    assert (prov.input_rate, prov.output_rate, prov.base_fee) == (10.0, 30.0, 1.0)
    assert isinstance(prov.input_rate, float)
    assert prov.cached_input_rate == 10.0


def test_defaults() -> None:
    cfg = parse_settings("").config
    assert cfg.server.listen == "127.0.0.1:8080"
    assert cfg.server.max_body_bytes == 10_485_760
    assert cfg.reliability.backoff_s == [1.0, 2.0]
    assert cfg.state.backend == "memory"
    assert cfg.database.effective_url == "sqlite:///./arbstr.db"


PROVIDER = '[[providers]]\nname = "a"\nurl = "http://a.example/v1"\n'


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        (PROVIDER + PROVIDER, "providers[1].name", "duplicate provider name 'a'"),
        ('[[providers]]\nname = "a"\nurl = "ftp://x"\n', "providers[0].url", "http(s) URL"),
        ('[[providers]]\nname = "a"\nurl = "not a url"\n', "providers[0].url", "http(s) URL"),
        (
            PROVIDER + 'api_key = "${UNSET_VAR_X}"\n',
            "providers[0].api_key",
            "UNSET_VAR_X is not set",
        ),
        (PROVIDER + 'api_key = "${UNCLOSED"\n', "providers[0].api_key", "unclosed"),
        (PROVIDER + 'api_key = "${}"\n', "providers[0].api_key", "empty variable"),
        (PROVIDER + "input_rate = -1\n", "providers[0].input_rate", "negative"),
        (PROVIDER + 'input_rate = "cheap"\n', "providers[0].input_rate", "Expected float"),
        ("[server]\nlisten = 8080\n", "server.listen", "Expected str"),
        ('[server]\nlisten = "nohost"\n', "server.listen", "HOST:PORT"),
        ('[server]\nlistn = "x"\n', "server.listn", "unknown key"),
        ('[policies]\ndefault_strategy = "random"\n', "policies.default_strategy", "Invalid"),
        (
            PROVIDER + '[[chains]]\nname = "c"\nentries = [{provider = "zz", model = "m"}]\n',
            "chains[0].entries[0].provider",
            "unknown provider 'zz'",
        ),
        ("[auth]\nenabled = true\n", "auth.admin_token", "needs an admin token"),
        ('[auth]\nenabled = true\nadmin_token = "short"\n', "auth.admin_token", "16 characters"),
        (
            '[auth]\nadmin_token = "sk-arb-abcdefabcdef-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"\n',
            "auth.admin_token",
            "virtual key",
        ),
        ("[auth]\nfailure_burst = 0\n", "auth.failure_burst", "at least 1"),
        ("[database]\nlog_bodies = true\n", "database.log_bodies", "not available"),
        ("[logging]\nlog_requests = false\n", "logging.log_requests", "cannot be turned off"),
        ('[auth]\nadmin_token = "${NOPE}"\n', "auth.admin_token", "the admin token: "),
        (PROVIDER + 'api_key = "sk-one\\r\\nX-Evil: 1"\n', "providers[0].api_key", "line break"),
        ('[database]\nurl = "mysql://x"\n', "database.url", "must be"),
        ("[server]\nloop_block_warn_s = -1\n", "server.loop_block_warn_s", "watchdog off"),
        ("[limits]\nmax_streams_per_client = -1\n", "limits.max_streams_per_client", "> 0"),
        (PROVIDER + 'verify = "no"\n', "providers[0].verify", "Expected bool"),
    ],
)
def test_errors_name_file_and_path(text: str, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, source="conf.toml", env={})
    message = str(info.value)
    assert message.startswith(f"conf.toml: {path}: "), message
    assert fragment in message


def test_invalid_toml() -> None:
    with pytest.raises(ConfigError, match=r"^conf.toml: invalid TOML"):
        parse_settings("[server\n", source="conf.toml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml")


def test_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBSTR_CONFIG", "/env/arbstr.toml")
    assert config_path("/cli.toml") == Path("/cli.toml")
    assert config_path(None) == Path("/env/arbstr.toml")
    monkeypatch.delenv("ARBSTR_CONFIG")
    assert config_path(None) == Path("arbstr.toml")


def test_permission_warning_on_load(tmp_path: Path) -> None:
    path = tmp_path / "arbstr.toml"
    path.write_text(PROVIDER)
    path.chmod(0o644)
    assert any("chmod 600" in w for w in load_settings(path).warnings)
    path.chmod(0o600)
    assert not any("chmod 600" in w for w in load_settings(path).warnings)


def test_admin_token_error_never_calls_it_a_provider() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings('[auth]\nadmin_token = "${NOPE}"\n', source="c.toml", env={})
    assert "provider" not in str(info.value)
    assert "NOPE is not set" in str(info.value)


def test_key_from_a_secret_file_loses_its_trailing_newline() -> None:
    text = PROVIDER + 'api_key = "${KEY}"\n'
    settings = parse_settings(text, env={"KEY": "sk-secret-from-file\n"})
    key = settings.providers[0].api_key
    assert key is not None and key.reveal() == "sk-secret-from-file"
    conv = parse_settings(PROVIDER, env={"ARBSTR_A_API_KEY": "sk-conv\r\n"})
    key = conv.providers[0].api_key
    assert key is not None and key.reveal() == "sk-conv"


def test_a_line_break_inside_a_key_is_refused_naming_the_provider() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(PROVIDER + 'api_key = "${KEY}"\n', env={"KEY": "sk-a\nb"})
    assert "providers[0].api_key" in str(info.value) and "provider 'a'" in str(info.value)
    assert "sk-a" not in str(info.value)


def test_empty_env_key_warns() -> None:
    settings = parse_settings(PROVIDER, env={"ARBSTR_A_API_KEY": ""})
    assert settings.providers[0].api_key is None
    assert any("set but empty" in w for w in settings.warnings)
    expanded = parse_settings(PROVIDER + 'api_key = "${KEY}"\n', env={"KEY": ""})
    assert any("empty value" in w for w in expanded.warnings)


def test_read_only_commands_load_without_keys() -> None:
    text = PROVIDER + 'api_key = "${UNSET_KEY}"\n'
    with pytest.raises(ConfigError):
        parse_settings(text, env={})
    settings = parse_settings(text, env={}, need_keys=False)
    assert settings.providers[0].api_key is None
    assert settings.providers[0].key_source == "unresolved"
    assert any("UNSET_KEY is not set" in w for w in settings.warnings)


def test_zero_turns_the_watchdog_and_the_stream_cap_off() -> None:
    text = "[server]\nloop_block_warn_s = 0\n[limits]\nmax_streams_per_client = 0\n"
    config = parse_settings(text).config
    assert config.server.loop_block_warn_s == 0 and config.limits.max_streams_per_client == 0


def test_verify_false_warns() -> None:
    text = '[[providers]]\nname = "p"\nurl = "https://example.test/v1"\nverify = false\n'
    settings = parse_settings(text, env={})
    assert settings.providers[0].verify is False
    assert any("verify = false" in w and "not checked" in w for w in settings.warnings)
