"""The scale-out tests' parts: a config for N replicas, closed-loop load through the balancer
with the openai SDK, and the request log's rows."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import openai
import pytest

ADMIN = "cluster-admin-token-0123456789"
PROMPT = [{"role": "user", "content": "hello from the load"}]


def require_haproxy() -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/test installs it with apt-get)")


def cluster_config(path: Path, db_url: str, sims: list[str], *, auth: bool = False) -> Path:
    lines = [
        "[server]",
        "request_timeout_s = 15",
        "[database]",
        f'url = "{db_url}"',
        "[state]",
        'backend = "database"',
        "[reliability]",
        "backoff_s = [0.0]",
        "circuit_open_s = 30",
    ]
    if auth:
        lines += ["[auth]", "enabled = true", 'admin_token = "${ARBSTR_ADMIN_TOKEN}"']
    for i, url in enumerate(sims):
        lines += ["[[providers]]", f'name = "sim{i}"', f'url = "{url}"', 'models = ["m"]',
                  f"input_rate = {1 + i}", f"output_rate = {2 + i}"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


@dataclass
class Outcome:
    at: float  # monotonic time the answer (or failure) came
    request_id: str | None
    replica: str | None
    failure: str | None = None


@dataclass
class Load:
    """`threads` closed-loop clients (the openai SDK, no retries), every third a stream."""

    url: str
    threads: int = 6
    api_key: str = "unused"
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def _run(self, worker: int) -> None:
        client = openai.OpenAI(
            base_url=self.url + "/v1", api_key=self.api_key, max_retries=0, timeout=20
        )
        n = 0
        while not self._stop.is_set():
            n += 1
            outcome = self._one(client, stream=(worker + n) % 3 == 0)
            with self._lock:
                self.outcomes.append(outcome)
        client.close()

    def _one(self, client: openai.OpenAI, *, stream: bool) -> Outcome:
        chat = client.chat.completions.with_raw_response
        try:
            raw = chat.create(model="m", messages=PROMPT, stream=stream)  # type: ignore[call-overload]
            answer = raw.parse()
            if stream:
                chunks = list(answer)
                assert chunks, "an empty stream"
            else:
                assert answer.choices[0].message.content
            rid, replica = raw.headers["x-arbstr-request-id"], raw.headers.get("x-arbstr-replica")
            return Outcome(time.monotonic(), rid, replica)
        except openai.APIStatusError as exc:
            body = exc.response.json()  # the balancer's own errors are OpenAI-shaped too
            assert set(body["error"]) >= {"message", "type", "code"}, body
            replica = exc.response.headers.get("x-arbstr-replica")
            return Outcome(
                time.monotonic(), None, replica, f"{exc.status_code} {body['error']['code']}"
            )
        except openai.APIConnectionError as exc:
            return Outcome(time.monotonic(), None, None, f"connection: {type(exc).__name__}")

    @property
    def answered(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.request_id is not None]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failure is not None]


def request_ids(db_url: str, schema: str | None = None) -> list[str]:
    async def fetch() -> list[str]:
        conn = await asyncpg.connect(db_url.split("?")[0])
        try:
            table = f'"{schema}".requests' if schema else "requests"
            return [r[0] for r in await conn.fetch(f"SELECT id FROM {table}")]  # noqa: S608
        finally:
            await conn.close()

    return asyncio.run(fetch())


def wait_for_rows(
    db_url: str, schema: str | None, want: set[str], timeout_s: float = 20
) -> list[str]:
    """The log's ids once every id of `want` is in it (the recorders write a little later)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ids = request_ids(db_url, schema)
        if want <= set(ids) or time.monotonic() > deadline:
            return ids
        time.sleep(0.25)
