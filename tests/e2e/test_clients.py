"""The client matrix: what real SDK users see through the gateway (simulated providers behind).

Each test asserts what the client's user gets (content, tool calls, usage, headers, the error
class), not only that nothing raised.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from arbstr.sim import SimProfile
from arbstr.sim.responses import TOOL_ARGUMENTS

from .conftest import SimSpec, Stack, StackFactory

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello to the client matrix"}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "Search the documentation",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


def two(stack: StackFactory) -> Stack:
    return stack(
        [
            SimSpec(
                "cheap",
                SimProfile(chunks=6),
                input_rate=2,
                output_rate=4,
                base_fee=0.5,
                models=["gpt-4o-mini"],
            ),
            SimSpec("dear", input_rate=10, output_rate=30, models=["gpt-4o-mini"]),
        ]
    )


def sync_client(s: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0)


def async_client(s: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0)


def direct(s: Stack, **body: Any) -> Any:
    """What the cheapest upstream itself answers to the same body."""
    payload = {"model": "gpt-4o-mini", "messages": MESSAGES, **body}
    return httpx.post(f"{s.sims.urls[0]}/chat/completions", json=payload, timeout=10).json()


def reassemble(chunks: list[Any]) -> dict[int, dict[str, Any]]:
    """Per choice index: the content and tool calls an SDK user rebuilds from stream deltas."""
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            slot = out.setdefault(choice.index, {"content": "", "tools": {}, "finish": None})
            slot["content"] += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                tool = slot["tools"].setdefault(call.index, {"name": "", "arguments": ""})
                if call.function and call.function.name:
                    tool["name"] += call.function.name
                if call.function and call.function.arguments:
                    tool["arguments"] += call.function.arguments
            slot["finish"] = choice.finish_reason or slot["finish"]
    return out


# ---- openai Python SDK, sync -----------------------------------------------------------------
def test_sync_non_streaming_and_raw_headers(stack: StackFactory) -> None:
    s = two(stack)
    raw = sync_client(s).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == direct(s)["choices"][0]["message"]["content"]
    assert raw.headers["x-arbstr-provider"] == "cheap"
    assert raw.headers["x-arbstr-attempts"] == "1"
    usage = answer.usage
    assert usage is not None
    cost = (usage.prompt_tokens * 2 + usage.completion_tokens * 4) / 1000 + 0.5
    assert float(raw.headers["x-arbstr-cost-sats"]) == pytest.approx(cost, abs=1e-6)
    assert raw.headers["x-arbstr-request-id"] == s.last_record().id
    assert float(raw.headers["x-arbstr-overhead-ms"]) >= 0


@pytest.mark.parametrize("include_usage", [False, True])
def test_sync_streaming_yields_only_real_chunks(stack: StackFactory, include_usage: bool) -> None:
    s = two(stack)
    options = {"include_usage": True} if include_usage else None
    raw = sync_client(s).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=options
    )
    assert raw.headers["x-arbstr-streaming"] == "true"
    assert float(raw.headers["x-arbstr-overhead-ms"]) >= 0
    chunks = list(raw.parse())
    # the ordinary user loop: every chunk is a well-formed ChatCompletionChunk
    assert all(c.id and c.model and c.object == "chat.completion.chunk" for c in chunks)
    expected = "".join(
        "".join(d["choices"][0]["delta"].get("content") or "" for d in [e])
        for e in _direct_events(s, include_usage)
        if e["choices"]
    )
    assert reassemble(chunks)[0]["content"] == expected
    if include_usage:
        *body, last = chunks
        assert last.choices == [] and last.usage is not None  # usage: the last chunk yielded
        assert all(c.choices and c.usage is None for c in body)
        assert last.usage.completion_tokens == s.last_record().output_tokens
    else:
        assert all(c.choices and c.usage is None for c in chunks)


def _direct_events(s: Stack, include_usage: bool) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    text = httpx.post(f"{s.sims.urls[0]}/chat/completions", json=body, timeout=10).text
    lines = [x[6:] for x in text.split("\n") if x.startswith("data: ")]
    return [json.loads(x) for x in lines if x != "[DONE]"]


def test_sync_tools_json_and_streamed(stack: StackFactory) -> None:
    s = two(stack)
    client = sync_client(s)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "search_docs"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == json.loads(TOOL_ARGUMENTS)  # type: ignore[union-attr]
    # the upstream received the tools untouched
    assert s.sim("cheap").stats()["last_body"]["tools"] == TOOLS
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, stream=True
    )
    rebuilt = reassemble(list(stream))[0]
    assert rebuilt["finish"] == "tool_calls"
    assert rebuilt["tools"][0]["name"] == "search_docs"
    assert json.loads(rebuilt["tools"][0]["arguments"]) == json.loads(TOOL_ARGUMENTS)


def test_sync_response_format_json_and_n2(stack: StackFactory) -> None:
    s = two(stack)
    client = sync_client(s)
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert json.loads(answer.choices[0].message.content or "")["answer"].startswith("Simulated")
    both = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=2)
    assert [c.index for c in both.choices] == [0, 1]
    assert both.choices[0].message.content != both.choices[1].message.content
    streamed = reassemble(
        list(
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=2, stream=True)
        )
    )
    assert {i: v["content"] for i, v in streamed.items()} == {
        c.index: c.message.content for c in both.choices
    }


def test_sync_errors_map_to_sdk_classes(stack: StackFactory) -> None:
    s = stack(
        [
            SimSpec("limited", SimProfile(rate_limited=True, retry_after="7"), models=["rl"]),
            SimSpec("broken", SimProfile(failure_rate=1.0, failure_status=500), models=["bad"]),
            SimSpec("hung", SimProfile(hang=True), models=["slow"]),
        ],
        head="""
[server]
request_timeout_s = 1
[database]
url = "memory://"
[reliability]
backoff_s = [0.0]
max_retries = 0
circuit_failure_threshold = 1
""",
    )
    client = sync_client(s)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert bad.value.status_code == 400 and bad.value.code == "model_not_found"
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="rl", messages=MESSAGES)
    assert limited.value.code == "all_providers_rate_limited"
    assert int(limited.value.response.headers["retry-after"]) >= 6
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="bad", messages=MESSAGES)
    assert failed.value.status_code == 502 and failed.value.code == "all_providers_failed"
    with pytest.raises(openai.InternalServerError) as opened:  # the circuit is open now
        client.chat.completions.create(model="bad", messages=MESSAGES)
    assert opened.value.status_code == 503 and opened.value.code == "all_circuits_open"
    with pytest.raises(openai.APIStatusError) as late:
        client.chat.completions.create(model="slow", messages=MESSAGES)
    assert late.value.status_code == 504 and late.value.code == "upstream_timeout"
    for exc in (bad, limited, failed, opened, late):
        assert exc.value.response.headers["x-arbstr-request-id"]


# ---- openai Python SDK, async ----------------------------------------------------------------
async def test_async_json_stream_tools(stack: StackFactory) -> None:
    s = two(stack)
    client = async_client(s)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert raw.headers["x-arbstr-provider"] == "cheap"
    answer = raw.parse()
    assert answer.choices[0].message.content == direct(s)["choices"][0]["message"]["content"]
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert all(c.id and c.model for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert reassemble(chunks)[0]["content"].startswith("tok0 ")
    tools = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, stream=True
    )
    rebuilt = reassemble([c async for c in tools])[0]
    assert rebuilt["tools"][0]["name"] == "search_docs"
    both = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=2)
    assert len(both.choices) == 2
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    await client.close()
