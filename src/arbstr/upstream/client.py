"""The one pooled upstream HTTP client, and the translation of its errors into our own kinds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import httpx

from arbstr.upstream.http1 import Http1Transport

__all__ = [
    "ErrorKind",
    "ResponseTooLarge",
    "TransportName",
    "UnaskedEncoding",
    "Upstream",
    "body_headers",
    "error_kind",
    "rate_limit_headers",
]

ErrorKind = Literal["connect", "timeout", "read"]
TransportName = Literal["http1", "aiohttp"]


class Upstream:
    """One keep-alive pool per process, on our HTTP/1.1 transport, driven with httpx's types.

    The hot path builds an `httpx.Request` with a pre-parsed URL and hands it straight to the
    transport: `AsyncClient.send` would add URL merging, cookie extraction, auth and redirect
    handling that a proxy never needs, and measured as half of the gateway's CPU per request
    (docs/adr/0004-upstream-transport.md). `client` is there for everything else.
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_connections: int = 512,
        transport: TransportName = "http1",
        max_headers: int = 256,
        max_head_bytes: int = 64 << 10,
    ) -> None:
        self.transport = _transport(transport, max_connections, (max_headers, max_head_bytes))
        self.connect_timeout_s = connect_timeout_s
        self.client = httpx.AsyncClient(
            transport=self.transport,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            trust_env=False,
            follow_redirects=False,
        )
        self._urls: dict[str, httpx.URL] = {}

    def url(self, text: str) -> httpx.URL:
        """A parsed URL, cached: parsing one costs more than the rest of building a request."""
        url = self._urls.get(text)
        if url is None:
            url = self._urls[text] = httpx.URL(text)
        return url

    async def post(
        self,
        url: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        timeout_s: float,
        verify: bool = True,
    ) -> httpx.Response:
        """Send a POST and return once the status and headers are in; the body is unread.
        `verify=False` (a provider's `verify = false`): its TLS certificate is not checked."""
        parsed = self.url(url)
        limits = {
            "connect": min(self.connect_timeout_s, timeout_s),
            "read": timeout_s,
            "pool": timeout_s,
        }
        extensions: dict[str, object] = {"timeout": limits}
        if not verify:
            extensions["verify"] = False  # read by Http1Transport (the aiohttp one ignores it)
        # `stream=` skips httpx's header preparation (a fifth of building a request); so we set
        # Host and Content-Length ourselves, and `read()` makes the body plain bytes again
        request = httpx.Request(
            "POST",
            parsed,
            headers=[
                (b"host", parsed.netloc),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
            stream=httpx.ByteStream(body),
            extensions=extensions,
        )
        request.read()
        response = await self.transport.handle_async_request(request)
        for name, value in response.headers.raw:
            if name.lower() == b"content-encoding" and value.lower() != b"identity":
                # we ask for identity: a compressed answer cannot be read for usage (its cost
                # would be unknown), nor have error events added to it; the attempt fails
                await response.aclose()
                raise UnaskedEncoding(f"upstream answered in {value[:32]!r}; identity was asked")
        return response

    @staticmethod
    async def read(response: httpx.Response, limit: int = 32 << 20) -> bytes:
        """The whole body (uncompressed: we ask for identity), connection released after; more
        than `limit` bytes is `ResponseTooLarge` (nothing more is read or kept)."""
        size = 0
        parts: list[bytes] = []
        try:
            async for part in _raw(response):
                size += len(part)
                if size > limit:
                    raise ResponseTooLarge(f"upstream answer is larger than {limit} bytes")
                parts.append(part)
        finally:
            await response.aclose()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @staticmethod
    def chunks(response: httpx.Response) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk, untouched."""
        return _raw(response)

    async def aclose(self) -> None:
        await self.client.aclose()


class UnaskedEncoding(httpx.RemoteProtocolError):
    """A `content-encoding` other than the identity we ask for: the attempt fails."""


class ResponseTooLarge(httpx.RemoteProtocolError):
    """A whole upstream answer passed `max_response_bytes`: the attempt fails (and falls back)."""


def _transport(
    name: TransportName, max_connections: int, header_limits: tuple[int, int]
) -> httpx.AsyncBaseTransport:
    """Our own HTTP/1.1 transport (ADR 0009), or the `httpx-aiohttp` one it replaced, kept as
    an operator's escape hatch (`[server] upstream_transport = "aiohttp"`)."""
    if name == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        return AiohttpTransport(limits=limits, trust_env=False)
    max_headers, max_head_bytes = header_limits
    return Http1Transport(
        max_connections=max_connections,
        keepalive_expiry=30.0,
        max_headers=max_headers,
        max_head_bytes=max_head_bytes,
    )


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    async for part in stream:
        if part:
            yield part


def body_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The header that describes the body we pass on: its type (it is always identity-encoded:
    `post` refuses any other encoding)."""
    for key, value in response.headers.raw:
        if key.lower() == b"content-type":
            return [(b"content-type", value)]
    return [(b"content-type", b"application/json")]


def rate_limit_headers(response: httpx.Response) -> dict[str, str] | None:
    """The `x-ratelimit-*` and `retry-after` headers, lower-cased; None when there are none."""
    found: dict[str, str] | None = None
    for key, value in response.headers.raw:
        low = key.lower()
        if low.startswith(b"x-ratelimit") or low == b"retry-after":
            if found is None:
                found = {}
            found[low.decode("latin-1")] = value.decode("latin-1")
    return found


def error_kind(exc: BaseException) -> ErrorKind:
    """Translate a transport error once, at the boundary, into our three kinds."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        # the aiohttp transport reports a refused or reset connection as ConnectTimeout (from
        # aiohttp's ClientConnectionError); look at the cause to tell the two apart.
        cause = exc.__cause__
        if isinstance(exc, httpx.ConnectTimeout) and cause is not None:
            if isinstance(cause, TimeoutError) or "timeout" in type(cause).__name__.lower():
                return "timeout"
            return "connect"
        return "timeout"
    if isinstance(exc, httpx.ConnectError | ConnectionError | OSError):
        return "connect"
    return "read"
