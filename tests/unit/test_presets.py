"""Provider presets and request quirks: each quirk's body before and after, the preset errors,
the rate-limit dialect a preset pins."""

from __future__ import annotations

import msgspec
import pytest

from arbstr.config import ConfigError, parse_settings
from arbstr.presets import PRESETS
from arbstr.reliability.ratelimit_headers import parse_quota
from arbstr.upstream.body import rewrite_body


def quirked(body: dict[str, object] | bytes, type_: str, model: str = "m") -> dict[str, object]:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    out = rewrite_body(raw, quirks=PRESETS[type_].quirks, upstream_model=model)
    decoded: dict[str, object] = msgspec.json.decode(out)
    return decoded


def test_cerebras_drops_the_penalties_and_nothing_else() -> None:
    before = {"model": "llama", "messages": [], "presence_penalty": 0.5,
              "frequency_penalty": 0.1, "temperature": 0.2}  # fmt: skip
    assert quirked(before, "cerebras") == {"model": "llama", "messages": [], "temperature": 0.2}


def test_google_drops_tools_and_response_format_for_non_gemini_models_only() -> None:
    before = {"model": "gemma-3", "messages": [], "tools": [{"type": "function"}],
              "tool_choice": "auto", "response_format": {"type": "json_object"}}  # fmt: skip
    assert quirked(before, "google", "gemma-3") == {"model": "gemma-3", "messages": []}
    assert quirked(before, "google", "gemini-2.5-flash") == before
    assert quirked(before, "google", "models/gemini-2.0") == before


def test_google_merges_system_messages_into_one_first() -> None:
    before = {"model": "gemini-x", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "be brief"},
        {"role": "assistant", "content": "ok"},
        {"role": "system", "content": [{"type": "text", "text": "be kind"}]},
    ]}  # fmt: skip
    after = quirked(before, "google", "gemini-x")
    assert after["messages"] == [
        {"role": "system", "content": "be brief\n\nbe kind"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "ok"},
    ]


def test_a_body_no_quirk_applies_to_stays_byte_for_byte() -> None:
    body = b'{ "model" : "m",  "messages":[{"role":"system","content":"x"}], "n":1 }'
    for type_ in ("google", "cerebras", "openai", "generic"):
        out = rewrite_body(body, quirks=PRESETS[type_].quirks, upstream_model="gemini-1")
        assert out == body


def test_presets_give_the_url_and_extra_headers() -> None:
    text = '[[providers]]\nname = "or"\ntype = "openrouter"\nheaders = { "X-Title" = "mine" }\n'
    (provider,) = parse_settings(text, source="c.toml", env={}).providers
    assert provider.url == "https://openrouter.ai/api/v1"
    assert dict(provider.headers) == {"http-referer": "https://github.com/arbstr/arbstr",
                                      "x-title": "mine"}  # fmt: skip
    assert provider.dialect == "openrouter"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'type = "opnai"',
            "providers[0].type: unknown provider type 'opnai' (did you mean 'openai'?)",
        ),
        ("", "providers[0].url: is required"),
        ('type = "groq"\nheaders = { "Authorization" = "x" }', "is set by arbstr"),
        ('type = "groq"\nheaders = { "x-a" = "b\\r\\nx-injected: 1" }', "on one line"),
    ],
)
def test_preset_mistakes_are_named(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(f'[[providers]]\nname = "p"\n{table}\n', source="c.toml", env={})
    assert message in str(info.value)


def test_a_dialect_reads_only_its_own_headers() -> None:
    openrouter = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1800000000000"}
    assert parse_quota(openrouter, 0.0) is not None  # any dialect: found
    assert parse_quota(openrouter, 0.0, "openai") is None  # an OpenAI-type provider: not its own
    assert parse_quota(openrouter, 0.0, "openrouter") is not None
