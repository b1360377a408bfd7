"""A gateway with virtual keys on: the admin API over HTTP, the openai SDK with a key, and a
key store that counts the statements it is asked to run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from arbstr.stores.keys.memory import MemoryKeyStore

from .conftest import DEFAULT_HEAD, SimSpec, Stack, StackFactory

ADMIN = "admin-token-for-tests-0123456789"
AUTH_HEAD = DEFAULT_HEAD + f'[auth]\nenabled = true\nadmin_token = "{ADMIN}"\nfailure_burst = 50\n'
PROMPT = "x" * 40  # 10 input tokens
# input 10, output 30 sats/1k, 1 sat a request: 10 in + 10 out = 1.4 sats, the estimate too
PRICED = SimSpec(
    "alpha", input_rate=10, output_rate=30, base_fee=1, models=["gpt-4o-mini", "gpt-4o"]
)


class CountingStore(MemoryKeyStore):
    """The memory store, counting every call a request could make of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if not name.startswith("_") and callable(value) and name not in ("calls",):
            calls = super().__getattribute__("calls")
            calls[name] = calls.get(name, 0) + 1
        return value

    def total(self, *names: str) -> int:
        return sum(self.calls.get(n, 0) for n in names) if names else sum(self.calls.values())


@dataclass
class Keyed:
    stack: Stack
    store: CountingStore

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def service(self) -> Any:
        return self.stack.app.state.key_service

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN}", **kw.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def project(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("name", f"team-{len(self.store.projects)}")
        r = self.admin("POST", "/admin/projects", json=fields)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def key(self, project_id: str | None = None, **fields: Any) -> dict[str, Any]:
        if project_id is None:
            project_id = self.project()["id"]
        fields.setdefault("name", "test key")
        r = self.admin("POST", "/admin/keys", json={"project_id": project_id, **fields})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=10)

    def chat(self, key: str | None, model: str = "gpt-4o-mini", **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key is not None else {}
        body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 10}
        return httpx.post(
            self.url + "/v1/chat/completions", json={**body, **kw}, headers=headers, timeout=10
        )


def keyed_fixture(
    stack: StackFactory, head: str = AUTH_HEAD, specs: list[SimSpec] | None = None
) -> Keyed:
    store = CountingStore()
    s = stack(specs or [PRICED], head=head, key_store=store)
    return Keyed(s, store)


@pytest.fixture
def keyed(stack: StackFactory) -> Keyed:
    return keyed_fixture(stack)
