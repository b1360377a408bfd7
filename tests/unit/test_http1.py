"""The HTTP/1.1 upstream transport against raw loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trustme

from arbstr.upstream.client import error_kind
from arbstr.upstream.http1 import Http1Transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


@asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    state = Server()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            await handler(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()


async def keep_alive(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
    while (req := await read_request(r)) is not None:
        s.requests.append(req)
        w.write(OK)
        await w.drain()


def post(port: int, body: bytes = b"{}", scheme: str = "http", read: float = 5.0) -> httpx.Request:
    return httpx.Request(
        "POST",
        f"{scheme}://127.0.0.1:{port}/v1/chat/completions",
        content=body,
        extensions={"timeout": {"connect": 5.0, "read": read, "pool": 5.0}},
    )


async def body_of(response: httpx.Response) -> bytes:
    assert isinstance(response.stream, httpx.AsyncByteStream)
    return b"".join([part async for part in response.stream])


async def test_keep_alive_reuses_one_connection() -> None:
    transport = Http1Transport()
    async with serve(keep_alive) as srv:
        for _ in range(5):
            response = await transport.handle_async_request(post(srv.port, b'{"a":1}'))
            assert response.status_code == 200
            assert await body_of(response) == b"{}"
        assert srv.connections == 1
        assert len(srv.requests) == 5
        head = srv.requests[0].lower()
        assert head.startswith(b"post /v1/chat/completions http/1.1\r\n")
        assert b"host: 127.0.0.1:" in head
        assert b"content-length: 7\r\n" in head
        assert srv.requests[0].endswith(b'{"a":1}')
    await transport.aclose()
    assert transport.open_connections == 0


async def test_chunked_and_split_bodies_arrive_whole() -> None:
    async def chunked(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(b"lo\r\n6\r\n world\r\n0\r\n\r\n")
        await w.drain()
        await read_request(r)

    transport = Http1Transport()
    async with serve(chunked) as srv:
        response = await transport.handle_async_request(post(srv.port))
        assert await body_of(response) == b"hello world"
        assert transport.open_connections == 1  # kept for the next request
    await transport.aclose()


async def test_body_delimited_by_close() -> None:
    async def until_close(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        await w.drain()

    transport = Http1Transport()
    async with serve(until_close) as srv:
        response = await transport.handle_async_request(post(srv.port))
        assert await body_of(response) == b"all of it"
    assert transport.open_connections == 0


async def test_connection_close_is_honoured() -> None:
    async def closing(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}")
        await w.drain()

    transport = Http1Transport()
    async with serve(closing) as srv:
        for _ in range(2):
            response = await transport.handle_async_request(post(srv.port))
            assert await body_of(response) == b"{}"
        assert srv.connections == 2
    assert transport.open_connections == 0


async def test_a_stale_kept_alive_connection_is_replaced_transparently() -> None:
    async def one_per_connection(
        r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server
    ) -> None:
        req = await read_request(r)
        assert req is not None
        s.requests.append(req)
        w.write(OK)  # claims keep-alive, then hangs up while the client holds the connection
        await w.drain()

    transport = Http1Transport()
    async with serve(one_per_connection) as srv:
        assert await body_of(await transport.handle_async_request(post(srv.port))) == b"{}"
        await asyncio.sleep(0.05)  # the server's close reaches the idle connection
        assert await body_of(await transport.handle_async_request(post(srv.port))) == b"{}"
        assert len(srv.requests) == 2  # each request reached the server exactly once
    await transport.aclose()


async def test_a_fresh_connection_closed_without_answer_is_not_retried() -> None:
    async def hang_up(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        s.requests.append(await read_request(r) or b"")

    transport = Http1Transport()
    async with serve(hang_up) as srv:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await transport.handle_async_request(post(srv.port))
        assert len(srv.requests) == 1
    assert error_kind(info.value) == "read"
    assert transport.open_connections == 0


async def test_read_timeout() -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r)
        await asyncio.sleep(5)

    transport = Http1Transport()
    async with serve(silent) as srv:
        with pytest.raises(httpx.ReadTimeout) as info:
            await transport.handle_async_request(post(srv.port, read=0.1))
    assert error_kind(info.value) == "timeout"
    assert transport.open_connections == 0


async def test_idle_body_times_out_and_mid_body_close_is_an_error() -> None:
    async def stall(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await w.drain()
        await asyncio.sleep(0.3)

    transport = Http1Transport()
    async with serve(stall) as srv:
        response = await transport.handle_async_request(post(srv.port, read=0.1))
        with pytest.raises(httpx.ReadTimeout):
            await body_of(response)
        response = await transport.handle_async_request(post(srv.port, read=2.0))
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await body_of(response)
    assert error_kind(info.value) == "read"
    assert transport.open_connections == 0


async def test_connection_refused() -> None:
    async with serve(keep_alive) as srv:
        port = srv.port
    transport = Http1Transport()
    with pytest.raises(httpx.ConnectError) as info:
        await transport.handle_async_request(post(port))
    assert error_kind(info.value) == "connect"
    assert transport.open_connections == 0


async def test_malformed_response() -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r)
        w.write(b"NOT HTTP AT ALL\r\n\r\n")
        await w.drain()
        await asyncio.sleep(0.2)

    transport = Http1Transport()
    async with serve(garbage) as srv:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await transport.handle_async_request(post(srv.port))
    assert transport.open_connections == 0


async def test_interim_100_continue_is_skipped() -> None:
    async def interim(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        await w.drain()
        await read_request(r)

    transport = Http1Transport()
    async with serve(interim) as srv:
        response = await transport.handle_async_request(post(srv.port))
        assert response.status_code == 200
        assert await body_of(response) == b"{}"
    await transport.aclose()


async def test_pool_limit_waits_then_times_out() -> None:
    release = asyncio.Event()

    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await read_request(r) is not None:
            await release.wait()
            w.write(OK)
            await w.drain()

    transport = Http1Transport(max_connections=1)
    async with serve(slow) as srv:
        first = asyncio.create_task(transport.handle_async_request(post(srv.port)))
        await asyncio.sleep(0.05)
        request = post(srv.port)
        request.extensions["timeout"]["pool"] = 0.1
        with pytest.raises(httpx.PoolTimeout):
            await transport.handle_async_request(request)
        second = asyncio.create_task(transport.handle_async_request(post(srv.port)))
        await asyncio.sleep(0.05)
        release.set()
        assert await body_of(await first) == b"{}"
        assert await body_of(await second) == b"{}"
        assert srv.connections == 1
    await transport.aclose()


async def test_large_body_with_flow_control_and_early_close() -> None:
    big = bytes(range(256)) * 20_000  # 5 MB: reading pauses and resumes

    async def large(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await read_request(r) is not None:
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big)
            await w.drain()

    transport = Http1Transport()
    async with serve(large) as srv:
        response = await transport.handle_async_request(post(srv.port, big))
        received = bytearray()
        assert isinstance(response.stream, httpx.AsyncByteStream)
        async for part in response.stream:
            received += part
            await asyncio.sleep(0)  # a slow consumer
        assert bytes(received) == big
        response = await transport.handle_async_request(post(srv.port))
        async for _ in response.stream:  # type: ignore[union-attr]
            break
        await response.aclose()  # abandoned mid-body: the connection cannot be reused
        assert transport.open_connections == 0
        assert srv.connections == 1
    await transport.aclose()


async def test_tls_and_the_httpx_client() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    transport = Http1Transport(ssl_context=client_ctx)
    async with serve(keep_alive, tls=server_ctx) as srv:
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(2):
                response = await client.post(f"https://127.0.0.1:{srv.port}/v1/x", json={})
                assert response.status_code == 200
                assert response.json() == {}
        assert srv.connections == 1
    untrusted = Http1Transport()
    async with serve(keep_alive, tls=server_ctx) as srv:
        with pytest.raises(httpx.ConnectError) as info:
            await untrusted.handle_async_request(post(srv.port, scheme="https"))
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


async def test_a_header_value_with_cr_or_lf_is_never_written() -> None:
    """A CR/LF in a header would split the request and desynchronise the kept-alive
    connection: the transport refuses to send it, before any byte leaves."""
    seen: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        seen.append(await r.read(65536))
        w.close()

    async with serve(handler) as server:
        transport = Http1Transport()
        for value in (b"Bearer sk\r\nX-Evil: 1", b"Bearer sk\nx", b"sk\r"):
            request = post(server.port)
            request.headers["authorization"] = value.decode("latin-1")
            with pytest.raises(httpx.LocalProtocolError, match="CR or LF"):
                await transport.handle_async_request(request)
        await transport.aclose()
    assert seen == []
