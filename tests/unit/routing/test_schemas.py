"""Request and usage views: decode only what routing needs, let every other field pass."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from arbstr.schemas.chat import (
    ChatView,
    ContentPartView,
    EmbeddingsView,
    MessageView,
    chat_decoder,
    embeddings_decoder,
    input_chars,
    last_user_text,
    prompt_chars,
)
from arbstr.schemas.usage import ResponseUsageView, Usage, usage_decoder


def _big_body() -> dict[str, Any]:
    """A ~50 KB chat request with the fields routing must skip over untouched."""
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "d" * 300,
            "parameters": {
                "type": "object",
                "properties": {
                    f"arg{i}": {"type": "string", "enum": ["a", "b"]} for i in range(20)
                },
                "required": ["arg0"],
            },
        },
    }
    return {
        "model": "gpt-4o",
        "stream": True,
        "stream_options": {"include_usage": False, "vendor": 1},
        "max_tokens": 77,
        "temperature": 0.2,
        "tools": [tool] * 12,
        "tool_choice": "auto",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "strict": True, "schema": {"type": "object"}},
        },
        "messages": [
            {"role": "system", "content": "be brief", "name": "sys"},
            {"role": "user", "content": "first question"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "tool output"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look at"},
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64," + "A" * 30_000,
                            "detail": "low",
                        },
                    },
                    {"type": "input_audio", "input_audio": {"data": "QUJD", "format": "wav"}},
                    {"type": "text", "text": "this picture"},
                ],
            },
        ],
        "unknown_vendor_field": {"nested": [1, 2, {"deep": None}]},
    }


def test_big_body_decodes_into_the_view() -> None:
    raw = msgspec.json.encode(_big_body())
    assert 45_000 <= len(raw) <= 60_000
    view = chat_decoder.decode(raw)
    assert (view.model, view.stream, view.max_tokens, view.max_completion_tokens) == (
        "gpt-4o",
        True,
        77,
        None,
    )
    assert view.stream_options is not None and view.stream_options.include_usage is False
    assert view.messages is not None and len(view.messages) == 5
    assert view.messages[2].content is None
    user = view.messages[4].content
    assert isinstance(user, list)
    assert [p.type for p in user] == ["text", "image_url", "input_audio", "text"]
    expected = sum(len(s) for s in ("be brief", "first question", "tool output", "look at"))
    assert prompt_chars(view) == expected + len("this picture")
    assert last_user_text(view) == "look at this picture"


def test_big_body_decodes_quickly() -> None:
    raw = msgspec.json.encode(_big_body())
    chat_decoder.decode(raw)
    runs = 200
    start = time.perf_counter()
    for _ in range(runs):
        view = chat_decoder.decode(raw)
        prompt_chars(view)
        last_user_text(view)
    per_request = (time.perf_counter() - start) / runs
    # msgspec does this in tens of microseconds; 2 ms leaves room for a slow, shared CI box.
    assert per_request < 0.002, f"{per_request * 1e6:.0f} us per 50 KB body"


def test_defaults_and_minimal_body() -> None:
    view = chat_decoder.decode(b"{}")
    assert view == ChatView()
    assert (view.model, view.stream, view.messages, view.stream_options) == (
        None,
        False,
        None,
        None,
    )
    assert prompt_chars(view) == 0
    assert last_user_text(view) == ""
    assert chat_decoder.decode(b'{"max_tokens": null, "stream_options": null}') == ChatView()


def test_unknown_fields_pass_at_every_level() -> None:
    body = (
        b'{"model":"m","x":1,"messages":[{"role":"user","content":[{"type":"text","text":"hi",'
        b'"cache_control":{"type":"ephemeral"}}],"name":"bob","extra":[1]}],'
        b'"stream_options":{"include_usage":true,"continuous_usage_stats":true}}'
    )
    view = chat_decoder.decode(body)
    assert view.messages == [MessageView(role="user", content=[ContentPartView("text", "hi")])]
    assert view.stream_options is not None and view.stream_options.include_usage is True


def test_last_user_text_is_the_last_user_message() -> None:
    view = ChatView(
        messages=[
            MessageView("user", "older"),
            MessageView("user", "newest"),
            MessageView("assistant", "reply"),
        ]
    )
    assert last_user_text(view) == "newest"
    assert last_user_text(ChatView(messages=[MessageView("system", "s")])) == ""
    assert last_user_text(ChatView(messages=[MessageView("user", None)])) == ""
    assert (
        prompt_chars(ChatView(messages=[MessageView("user", [ContentPartView("image_url")])])) == 0
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": 5}',
        b'{"stream": "yes"}',
        b'{"max_tokens": "many"}',
        b'{"messages": {"role": "user"}}',
        b'{"messages": [{"role": "user", "content": 7}]}',
    ],
)
def test_wrong_types_are_validation_errors(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        chat_decoder.decode(body)


def test_malformed_json_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        chat_decoder.decode(b'{"model": ')


@pytest.mark.parametrize(
    ("body", "chars"),
    [
        (b'{"model":"e","input":"hello"}', 5),
        (b'{"model":"e","input":["ab","cde"]}', 5),
        (b'{"model":"e","input":[1,2,3]}', 12),
        (b'{"model":"e","input":[[1,2],[3]]}', 12),
        (b'{"model":"e","dimensions":8,"encoding_format":"float"}', 0),
    ],
)
def test_embeddings_view(body: bytes, chars: int) -> None:
    view = embeddings_decoder.decode(body)
    assert view.model == "e"
    assert input_chars(view) == chars


def test_embeddings_view_rejects_objects() -> None:
    with pytest.raises(msgspec.ValidationError):
        embeddings_decoder.decode(b'{"input": {"a": 1}}')
    assert input_chars(EmbeddingsView()) == 0


def test_usage_view_reads_usage_and_skips_choices() -> None:
    body = msgspec.json.encode(
        {
            "id": "x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "y" * 5000}}],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 40, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 5,
                    "accepted_prediction_tokens": 0,
                },
                "cost": 0.0012,
                "cost_details": {"upstream_inference_cost": None},
            },
        }
    )
    usage = usage_decoder.decode(body).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 20, 120)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 40
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert (usage.cost, usage.total_cost) == (0.0012, None)


def test_usage_view_without_usage_and_lax_numbers() -> None:
    assert usage_decoder.decode(b'{"choices": []}') == ResponseUsageView()
    assert usage_decoder.decode(b'{"usage": null}').usage is None
    lax = usage_decoder.decode(b'{"usage": {"prompt_tokens": 12.0, "completion_tokens": "3"}}')
    assert lax.usage == Usage(prompt_tokens=12, completion_tokens=3)


def test_decoders_are_reusable_module_instances() -> None:
    for decoder in (chat_decoder, embeddings_decoder, usage_decoder):
        assert isinstance(decoder, msgspec.json.Decoder)
    assert chat_decoder.type is ChatView
    assert embeddings_decoder.type is EmbeddingsView
    assert usage_decoder.type is ResponseUsageView
