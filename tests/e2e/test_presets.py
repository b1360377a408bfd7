"""What a preset's upstream receives over a real socket: exactly the quirk-rewritten body, the
client's bytes for a type without quirks, and the preset's attribution headers."""

from __future__ import annotations

from tests.e2e.conftest import SimSpec, StackFactory


def body(model: str) -> bytes:
    """The client's own spacing and key order: any re-encoding would show."""
    return (
        b'{"model": "%s",  "messages": [{"role": "user", "content": "hi"}],'
        b' "presence_penalty": 0.5, "frequency_penalty": 0.25, "temperature": 0.2}'
    ) % model.encode()


def test_each_upstream_receives_exactly_its_rewritten_body(stack: StackFactory) -> None:
    s = stack(
        [
            SimSpec("cerebras", models=["llama"], extra='type = "cerebras"'),
            SimSpec("plain", models=["plain-m"]),
            SimSpec("router", models=["router-m"], extra='type = "openrouter"'),
        ]
    )
    headers = {"content-type": "application/json"}
    with s.client() as client:
        for model, provider in (
            ("llama", "cerebras"),
            ("plain-m", "plain"),
            ("router-m", "router"),
        ):
            r = client.post("/v1/chat/completions", content=body(model), headers=headers)
            assert r.status_code == 200 and r.headers["x-arbstr-provider"] == provider
    # the penalties gone; every other value still the client's bytes
    assert s.sim("cerebras").last_body == (
        b'{"model":"llama","messages":[{"role": "user", "content": "hi"}],"temperature":0.2}'
    )
    assert s.sim("plain").last_body == body("plain-m")  # no quirks: byte for byte
    assert s.sim("router").last_body == body("router-m")
    sent = s.sim("router").last_headers_raw
    assert sent[b"http-referer"] == b"https://github.com/arbstr/arbstr"
    assert sent[b"x-title"] == b"arbstr"
    assert b"x-title" not in s.sim("plain").last_headers_raw
