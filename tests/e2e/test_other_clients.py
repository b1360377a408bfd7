"""Clients beyond the Python SDK: the official openai Node SDK and langchain-openai."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from arbstr.sim import SimProfile

from .conftest import SimSpec, Stack, StackFactory

pytestmark = pytest.mark.clients

NODE_SDK = "openai@6.49.0"  # the newest major that still runs on Node 20 (7.x needs Node 22)
SCRIPT = Path(__file__).parent / "node" / "client.mjs"


def _cache() -> Path:
    root = os.environ.get("ARBSTR_TEST_CACHE") or Path.home() / ".cache" / "arbstr-tests"
    return Path(root) / "node-openai"


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    """`node_modules` with the openai SDK, installed once into a cache folder (never committed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed on this machine")
    folder = _cache()
    if not (folder / "node_modules" / "openai" / "package.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(folder),
             NODE_SDK],
            check=True,
            timeout=300,
        )  # fmt: skip
    return folder / "node_modules"


def gateway(stack: StackFactory) -> Stack:
    return stack([SimSpec("sim", SimProfile(chunks=7), input_rate=3, output_rate=9)])


def upstream_text(s: Stack, messages: list[Any]) -> tuple[str, str]:
    """The upstream's own answer: JSON content and streamed content."""
    url = f"{s.sims.urls[0]}/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": messages}
    content = httpx.post(url, json=body, timeout=10).json()["choices"][0]["message"]["content"]
    text = httpx.post(url, json={**body, "stream": True}, timeout=10).text
    events = [json.loads(x[6:]) for x in text.split("\n") if x.startswith("data: {")]
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    return content, streamed


def test_node_sdk(stack: StackFactory, node_sdk: Path) -> None:
    s = gateway(stack)
    env = {**os.environ, "BASE_URL": f"{s.url}/v1", "NODE_PATH": str(node_sdk)}
    # ESM resolves packages from the script's folder upwards: run a copy beside node_modules
    script = node_sdk.parent / "client.mjs"
    script.write_text(SCRIPT.read_text())
    run = subprocess.run(
        ["node", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    content, streamed = upstream_text(s, [{"role": "user", "content": "Say hello from Node"}])
    assert seen["content"] == content
    assert seen["streamed"] == streamed
    assert seen["malformed"] == 0  # no chunk without id/model: the trailer never reaches it
    assert seen["usage"]["completion_tokens"] > 0
    assert seen["stream_usage"]["completion_tokens"] == 7


def test_langchain_chat_openai(stack: StackFactory) -> None:
    langchain = pytest.importorskip("langchain_openai")
    s = gateway(stack)
    llm = langchain.ChatOpenAI(
        base_url=f"{s.url}/v1",
        api_key="unused",
        model="gpt-4o-mini",
        max_retries=0,
        stream_usage=True,
    )
    prompt = "Say hello from LangChain"
    content, streamed = upstream_text(s, [{"role": "user", "content": prompt}])
    message = llm.invoke(prompt)
    assert message.content == content
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == s.last_record().output_tokens
    aggregate = None
    for chunk in llm.stream(prompt):
        aggregate = chunk if aggregate is None else aggregate + chunk
    assert aggregate is not None
    assert aggregate.content == streamed
    usage = aggregate.usage_metadata
    assert usage is not None and usage["output_tokens"] == 7
    record = s.last_record(4)
    assert usage["input_tokens"] == record.input_tokens
