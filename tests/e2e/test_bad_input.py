"""Bad input: every failure is an OpenAI-shaped error with the right status, and is recorded."""

from __future__ import annotations

import openai
import pytest

from .conftest import SimSpec, StackFactory

HEAD = """
[server]
max_body_bytes = 2048
[database]
url = "memory://"
"""


@pytest.fixture
def gw(stack: StackFactory) -> str:
    return stack([SimSpec("a", models=["gpt-4o-mini"])], head=HEAD).url


def _error(response: object) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-arbstr-request-id") or response.status_code in (404, 405)
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["code"], str)
    return error


@pytest.mark.parametrize(
    ("payload", "status", "code", "param"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_json", None),
        (b"", 400, "invalid_json", None),
        (b'{"messages": []}', 400, "invalid_request", "model"),
        (b'{"model": "gpt-4o-mini"}', 400, "invalid_request", "messages"),
        (b'{"model": 5, "messages": []}', 400, "invalid_request", "model"),
        (b'{"model": "unknown-model", "messages": []}', 400, "model_not_found", "model"),
        (
            b'{"model": "gpt-4o-mini", "messages": [], "pad": "' + b"x" * 4096 + b'"}',
            413,
            "payload_too_large",
            None,
        ),
    ],
)
def test_bad_chat_requests(
    gw: str, payload: bytes, status: int, code: str, param: str | None
) -> None:
    import httpx

    response = httpx.post(
        f"{gw}/v1/chat/completions",
        content=payload,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == status, response.text
    assert response.headers["content-length"] == str(len(response.content))
    error = _error(response)
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param
        assert param in str(error["message"])


def test_unknown_model_raises_bad_request_in_sdk(gw: str) -> None:
    client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found"


def test_unknown_route_and_wrong_method(gw: str) -> None:
    import httpx

    missing = httpx.get(f"{gw}/v1/nothing-here", timeout=10)
    assert missing.status_code == 404
    assert _error(missing)["code"] == "not_found"
    wrong = httpx.get(f"{gw}/v1/chat/completions", timeout=10)
    assert wrong.status_code == 405
    assert _error(wrong)["code"] == "method_not_allowed"
    wrong2 = httpx.delete(f"{gw}/v1/models", timeout=10)
    assert wrong2.status_code == 405
    assert _error(wrong2)["code"] == "method_not_allowed"


def test_rejected_requests_are_recorded(stack: StackFactory) -> None:
    import httpx

    s = stack([SimSpec("a")], head=HEAD)
    for payload in (b"{bad", b'{"model": "m"}', b"x" * 5000):
        httpx.post(f"{s.url}/v1/chat/completions", content=payload, timeout=10)
    statuses = [r.status for r in s.sink.records]
    assert statuses == [400, 400, 413]
    assert all(r.provider is None and not r.success for r in s.sink.records)
