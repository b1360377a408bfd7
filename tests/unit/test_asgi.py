"""The raw ASGI plumbing of the proxy routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from arbstr.api.asgi import send_response
from arbstr.gateway import GatewayResponse


async def test_a_failing_stream_pump_is_logged_with_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"data: {}\n\n"
        raise RuntimeError("bug in the relay")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)  # the client stays
        return {"type": "http.disconnect"}

    response = GatewayResponse(200, [], stream=broken())
    with caplog.at_level(logging.ERROR, logger="arbstr"):
        await asyncio.wait_for(send_response({}, receive, send, response, "req-42"), 5)  # type: ignore[arg-type]
    failures = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert sent[0]["type"] == "http.response.start"
    assert sent[1]["body"] == b"data: {}\n\n"
