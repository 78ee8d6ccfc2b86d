"""The simulators' small HTTP server (bridge.simulators.server), over real loopback sockets."""

from __future__ import annotations

import socket

import anyio
import httpx
import pytest

from bridge.simulators.server import DropConnectionError, Request, Response, serve

pytestmark = pytest.mark.anyio


async def handler(request: Request) -> Response:
    if request.path == "/drop":
        raise DropConnectionError
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    body = f"{request.method} {request.path} {sorted(request.query.items())} {request.body!r}"
    return Response(body=body.encode(), content_type="text/plain")


async def test_keep_alive_requests_queries_and_bodies() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, handler, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.get("/a", params={"x": "1"})
            second = await client.post("/b", content=b"payload")
            assert first.text == "GET /a [('x', '1')] b''"
            assert second.text == "POST /b [] b'payload'"
            assert (await client.get("/boom")).status_code == 500
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/drop")
        tg.cancel_scope.cancel()


async def test_garbage_gets_400_and_the_server_survives() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, handler, "127.0.0.1", 0)
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(b"\x00\x01 not http\r\n\r\n")
            reply = await stream.receive()
        assert reply.startswith(b"HTTP/1.1 400")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/ok")).status_code == 200
        tg.cancel_scope.cancel()


async def test_replies_have_tcp_nodelay_and_one_write() -> None:
    """Headers and body leave in one segment: read them with one recv on a raw socket."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, handler, "127.0.0.1", 0)

        def fetch() -> bytes:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n")
                return sock.recv(65536)

        reply = await anyio.to_thread.run_sync(fetch)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"GET /x [] b''"
        tg.cancel_scope.cancel()
