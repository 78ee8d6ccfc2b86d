"""The simulators' HTTP/1.1 server: anyio and h11, with fault-injection hooks.

Test equipment, not the bridge's server (that is :mod:`bridge.httpd`): it has no deadlines and no
connection cap, and a handler may answer with bytes that are not HTTP (``Response.raw``,
``Response.stream``) or drop the connection (``DropConnectionError``). Each response goes out in
a single write with TCP_NODELAY set, so a keep-alive peer never waits on a delayed ACK (spec §9).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import anyio
import h11
import structlog
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterable, Awaitable, Callable

    from anyio.abc import ByteStream, Listener, TaskStatus

log = structlog.get_logger("bridge.simulators.server")
MAX_REQUEST_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    target: str = ""


@dataclass(frozen=True, slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes | None = None  # sent verbatim instead of an HTTP response (fault injection)
    stream: AsyncIterable[bytes] | None = None  # after ``raw``, sent verbatim, then closed


class DropConnectionError(Exception):
    """Raised by a handler to close the connection without answering (fault injection)."""


async def serve(
    handler: Callable[[Request], Awaitable[Response]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started`` receives the bound port.

    With ``ssl_context`` (a server context holding the certificate) it serves HTTPS.
    """
    tcp = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound = tcp.extra(SocketAttribute.local_port)
    listener: Listener[ByteStream] = tcp
    if ssl_context is not None:
        # Like httpcore, skip the closing TLS handshake: peers often just drop the connection.
        listener = TLSListener(tcp, ssl_context, standard_compatible=False)
    async with listener:
        task_status.started(bound)

        async def on_connection(stream: ByteStream) -> None:
            await _connection(stream, handler)

        await listener.serve(on_connection)


async def _connection(
    stream: ByteStream, handler: Callable[[Request], Awaitable[Response]]
) -> None:
    sock = stream.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    async with stream:
        try:
            while True:
                request = await _read_request(stream, conn)
                if request is None:
                    return
                try:
                    response = await handler(request)
                except DropConnectionError:
                    return
                except Exception:
                    log.exception("http_handler_failed", path=request.path)
                    response = Response(500, b'{"error":"internal"}')
                if response.raw is not None:
                    await _send_raw(stream, response)
                    return
                await stream.send(_encode(conn, response))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return
        except h11.RemoteProtocolError:
            if conn.our_state in {h11.IDLE, h11.SEND_RESPONSE}:
                await stream.send(_encode(conn, Response(400, b'{"error":"bad request"}')))
            return


async def _send_raw(stream: ByteStream, response: Response) -> None:
    """Fault injection: bytes that need not be HTTP, and may be endless; then the connection
    is closed."""
    await stream.send(response.raw or b"")
    if response.stream is not None:
        async for chunk in response.stream:
            await stream.send(chunk)


async def _read_request(stream: ByteStream, conn: h11.Connection) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(65536)
            except anyio.EndOfStream:
                data = b""
            conn.receive_data(data)
            if not data and conn.their_state is h11.IDLE:
                return None
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_REQUEST_BODY:
                raise h11.RemoteProtocolError("request body too large")
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            target = head.target.decode("latin-1")
            parts = urlsplit(target)
            return Request(
                method=head.method.decode("ascii"),
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
                body=bytes(body),
                target=target,
            )
        elif isinstance(event, h11.ConnectionClosed | h11.PAUSED):
            return None


def _encode(conn: h11.Connection, response: Response) -> bytes:
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        *response.headers,
    ]
    reason = b"OK" if response.status < 400 else b"Error"
    data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
    data = (data or b"") + (conn.send(h11.Data(data=response.body)) or b"")
    return data + (conn.send(h11.EndOfMessage()) or b"")
