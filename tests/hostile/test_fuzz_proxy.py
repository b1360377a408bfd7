"""Hypothesis-made bodies and headers against the proxy routes: never a 500, every error in the
OpenAI envelope, every request recorded exactly once. ARBSTR_FUZZ_EXAMPLES sets the count
(150 per route in CI; more on demand)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import SimSpec, Stack, StackFactory

pytestmark = pytest.mark.hostile

EXAMPLES = int(os.environ.get("ARBSTR_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HEAD = """
[database]
url = "memory://"
[reliability]
backoff_s = [0.0]
[cache]
enabled = true
"""

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
models = st.one_of(st.sampled_from(["m", "m", "nope", ""]), json_values)
messages = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]) | json_values},
            optional={"content": st.text(max_size=40) | json_values, "name": json_values},
        ),
        max_size=4,
    ),
    json_values,
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": models,
        "messages": messages,
        "stream": st.booleans() | json_values,
        "max_tokens": st.integers(min_value=-5, max_value=2**40) | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_values}),
        "n": json_values,
        "tools": json_values,
        "temperature": json_values,
    },
)
embed_bodies = st.fixed_dictionaries(
    {}, optional={"model": models, "input": st.text(max_size=40) | json_values}
)
# what a client's HTTP library lets through: printable ASCII, no surrounding whitespace
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    str.strip
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "cache-control": st.sampled_from(["max-age=60", "no-cache", "no-store", "max-age=-1"])
        | header_values,
        "x-arbstr-policy": header_values,
        "authorization": header_values,
        "content-type": st.sampled_from(["application/json", "text/plain"]) | header_values,
        "x-arbstr-max-cost": header_values,
        "accept": header_values,
    },
)
raw_bodies = st.binary(max_size=200)


def check(s: Stack, client: httpx.Client, path: str, body: bytes, head: dict[str, str]) -> None:
    before = len(s.sink.records)
    answer = client.post(path, content=body, headers=head)
    assert answer.status_code != 500 and answer.status_code < 600, answer.text[:300]
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert {"message", "type", "code"} <= set(error), error
    elif "stream" not in answer.headers.get("content-type", ""):
        answer.json()
    deadline = time.monotonic() + 5
    while len(s.sink.records) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.002)
    assert len(s.sink.records) == before + 1  # recorded, and once
    assert s.sink.records[-1].status == answer.status_code


def fuzz_stack(stack: StackFactory) -> Stack:
    return stack([SimSpec("a", models=["m"])], head=HEAD)


def test_fuzzed_chat_bodies_and_headers(stack: StackFactory) -> None:
    s = fuzz_stack(stack)
    with s.client() as client:

        @FUZZ
        @given(chat_bodies, headers)
        def run(body: dict[str, Any], head: dict[str, str]) -> None:
            check(s, client, "/v1/chat/completions", json.dumps(body).encode(), head)

        run()


def test_fuzzed_embeddings_bodies(stack: StackFactory) -> None:
    s = fuzz_stack(stack)
    with s.client() as client:

        @FUZZ
        @given(embed_bodies, headers)
        def run(body: dict[str, Any], head: dict[str, str]) -> None:
            check(s, client, "/v1/embeddings", json.dumps(body).encode(), head)

        run()


def test_fuzzed_raw_bytes(stack: StackFactory) -> None:
    s = fuzz_stack(stack)
    with s.client() as client:

        @FUZZ
        @given(raw_bodies, st.sampled_from(["/v1/chat/completions", "/v1/embeddings"]))
        def run(body: bytes, path: str) -> None:
            check(s, client, path, body, {"content-type": "application/json"})

        run()
