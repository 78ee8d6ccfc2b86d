"""The bridge's own HTTP server: ``/metrics``, ``/healthz``, ``/readyz`` and the push receivers
``/push/<device>/<token>`` (spec §6, §8). With push receivers in use it faces the devices' LAN;
an app can serve a part of the routes (:data:`MONITORING`, :data:`PUSH_ONLY`), so that the push
receivers get a listener of their own there and the rest stays on a private address.

Hypercorn's HTTP/1.1 engine (h11) runs a small ASGI app on the running event loop. From
hypercorn come the header deadline (a connection counts as idle until a request head is
complete, and an idle connection is closed ``keep_alive_timeout`` after its start or after the
previous response: bytes trickling in do not reset it, so a slowloris client is cut off), the
idle keep-alive deadline, a cap on what h11 buffers of an incomplete head, and keep-alive itself.
Hypercorn has no connection cap (pgjones/hypercorn#81), so the accept loop is ours: at
``max_connections`` it stops accepting and new connections wait in the kernel's listen backlog
until one closes. The app enforces the head and body caps and the deadlines of the body and of
the response.

Secrets: a push path carries the device's token. Nothing here logs a path; hypercorn's access
log, which would, stays off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import SocketAttribute
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from anyio.abc import TaskGroup, TaskStatus
    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGISendCallable,
        HTTPScope,
        Scope,
    )

log = structlog.get_logger("bridge.httpd")

MAX_BODY = 64 * 1024  # a push carries a few parameters; nothing else takes a body
MAX_HEADER = 16 * 1024  # request line and headers together
DRAIN_BODY = 1024 * 1024  # how much of a refused body is read before answering 413
H2_MAX_STREAMS = 8  # hypercorn also speaks h2c (prior knowledge or Upgrade): few streams each
ACCEPT_RETRY = 1.0  # seconds, after accept() failed for want of descriptors or memory
PUSH_PREFIX = "/push/"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may take. ``timeout`` is the deadline of each phase of a request: its head
    (counted from the connection's start or the previous response; also the idle keep-alive
    time), its body, and sending the response."""

    timeout: float = 5.0
    max_connections: int = 100
    max_body: int = MAX_BODY
    max_header: int = MAX_HEADER
    grace: float = 2.0  # how long a stop waits for the requests in progress


# -- the app -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # as sent, still percent-encoded; on /push/ it holds the token: never log it
    query: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # what a log line says instead of the path
    methods: frozenset[str]
    handler: Callable[[Request], Reply]


#: Route names, for the part of them an app serves.
MONITORING = frozenset({"metrics", "healthz", "readyz"})
PUSH_ONLY = frozenset({"push"})
EVERY_ROUTE = MONITORING | PUSH_ONLY

READ = frozenset({"GET", "HEAD"})
PUSH = frozenset({"GET", "POST"})
NO_CONTENT = Reply(204)
# One answer for every path that is not served and every refused push: an unknown device, a
# wrong token, a device of another shard and a device without push_token look the same.
NOT_FOUND = Reply(404, b'{"error":"not found"}')
TIMED_OUT = Reply(408, b'{"error":"request timeout"}', headers=(("connection", "close"),))
TOO_LARGE = Reply(413, b'{"error":"request body too large"}', headers=(("connection", "close"),))
HEAD_TOO_LARGE = Reply(
    431, b'{"error":"request header fields too large"}', headers=(("connection", "close"),)
)
INTERNAL = Reply(500, b'{"error":"internal"}')
METRICS_TYPE = "text/plain; version=0.0.4"


def _json(value: Any) -> bytes:  # noqa: ANN401 - any JSON
    return json.dumps(value, separators=(",", ":")).encode()


class HttpApp:
    """The ASGI app of the bridge's HTTP server. The bridge hands it the data (``Bridge.run``):
    the metrics exposition, the health view, readiness (the broker link) and ``push``, which
    answers whether a ``/push/<device>/<token>`` was accepted.

    ``serves`` names the routes it answers (default: all); any other path, a route left out
    included, gets the one 404 of an unknown path."""

    def __init__(  # noqa: PLR0913 - keyword-only: what the bridge hands the app
        self,
        *,
        metrics: Callable[[], bytes],
        health: Callable[[], Mapping[str, Any]],
        ready: Callable[[], bool],
        push: Callable[[str, str], bool],
        limits: Limits = Limits(),
        serves: frozenset[str] = EVERY_ROUTE,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._ready = ready
        self._push = push
        self.limits = limits
        routes = {
            "/metrics": Route("metrics", READ, self._get_metrics),
            "/healthz": Route("healthz", READ, self._get_health),
            "/readyz": Route("readyz", READ, self._get_ready),
        }
        self.routes: dict[str, Route] = {p: r for p, r in routes.items() if r.name in serves}
        push_route = Route("push", PUSH, self._receive_push)
        self.push_route = push_route if push_route.name in serves else None

    def route(self, path: str) -> Route | None:
        if (route := self.routes.get(path)) is not None:
            return route
        return self.push_route if path.startswith(PUSH_PREFIX) else None

    # -- handlers ------------------------------------------------------------------------------

    def _get_metrics(self, _: Request) -> Reply:
        return Reply(200, self._metrics(), content_type=METRICS_TYPE)

    def _get_health(self, _: Request) -> Reply:
        health = self._health()
        return Reply(200 if health["healthy"] else 503, _json(health))

    def _get_ready(self, _: Request) -> Reply:
        ready = self._ready()
        return Reply(200 if ready else 503, _json({"ready": ready}))

    def _receive_push(self, request: Request) -> Reply:
        device, sep, token = request.path.removeprefix(PUSH_PREFIX).partition("/")
        if not device or not sep or not token or "/" in token:
            return NOT_FOUND
        accepted = self._push(device, token)
        # The query string may be all a device says about the trigger; debug only.
        log.debug("push_received", device=device, accepted=accepted, query=request.query)
        return NO_CONTENT if accepted else NOT_FOUND

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": None})  # 403
        if scope["type"] != "http":
            return
        try:
            await self._http(scope, receive, send)
        except Exception as exc:
            # Not the server's traceback: its frames hold the path, which may hold a token.
            log.error("http_request_failed", error=type(exc).__name__)  # noqa: TRY400

    async def _http(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        timeout = self.limits.timeout
        body = _Body(self.limits.max_body, _content_length(scope["headers"]))
        async with anyio.create_task_group() as tg:
            tg.start_soon(body.read, receive)
            with anyio.move_on_after(timeout):
                await body.ready.wait()
            if body.gone:
                tg.cancel_scope.cancel()
                return
            reply = self._answer(scope, body)
            with anyio.move_on_after(timeout):
                await send(
                    {
                        "type": "http.response.start",
                        "status": reply.status,
                        "headers": _headers(reply),
                    }
                )
                await send({"type": "http.response.body", "body": reply.body, "more_body": False})
            # With the response sent the server closes the request, and ``receive`` ends with a
            # disconnect; a body left unread is drained meanwhile, or the server would wait on it.
            with anyio.move_on_after(timeout):
                await body.finished.wait()
            tg.cancel_scope.cancel()

    def _answer(self, scope: HTTPScope, body: _Body) -> Reply:
        # h11 caps what it buffers of an incomplete head; a head that arrived in one read is
        # complete however large, so its size is checked here.
        head = len(scope["raw_path"]) + len(scope["query_string"])
        if head + sum(len(k) + len(v) for k, v in scope["headers"]) > self.limits.max_header:
            return HEAD_TOO_LARGE
        if body.too_large:
            return TOO_LARGE
        if not body.complete:
            return TIMED_OUT
        path = scope["raw_path"].decode("latin-1")
        route = self.route(path)
        if route is None:
            return NOT_FOUND
        method = scope["method"]
        if method not in route.methods:
            allow = ", ".join(sorted(route.methods))
            return Reply(405, b'{"error":"method not allowed"}', headers=(("allow", allow),))
        request = Request(method, path, scope["query_string"].decode("latin-1"), body.data)
        try:
            return route.handler(request)
        except Exception as exc:
            # The route's name, never the path. No traceback for a push: its frames hold the
            # token, and a console renderer may print local variables.
            if route is self.push_route:
                log.error("http_handler_failed", route=route.name, error=type(exc).__name__)  # noqa: TRY400
            else:
                log.exception("http_handler_failed", route=route.name, error=type(exc).__name__)
            return INTERNAL


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 18 else None
    return None


def _headers(reply: Reply) -> list[tuple[bytes, bytes]]:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    if reply.status == 204:
        return headers
    return [
        (b"content-type", reply.content_type.encode("latin-1")),
        (b"content-length", str(len(reply.body)).encode("ascii")),
        *headers,
    ]


class _Body:
    """A request body, kept up to ``cap`` bytes. A larger one is still read, unkept, up to
    ``DRAIN_BODY`` bytes before the app answers, so that a client still sending it gets the 413
    rather than a connection reset; beyond that the answer goes out at once."""

    def __init__(self, cap: int, declared: int | None) -> None:
        self.cap = cap
        self._chunks = bytearray()
        self.received = 0
        self.too_large = declared is not None and declared > cap
        self.complete = False  # every byte arrived, kept or not
        self.gone = False  # the client left before the app could answer
        self.ready = anyio.Event()  # complete, far too large or gone: the app can answer
        self.finished = anyio.Event()  # nothing more will arrive
        if declared is not None and declared > DRAIN_BODY:
            self.ready.set()

    @property
    def data(self) -> bytes:
        return bytes(self._chunks)

    async def read(self, receive: ASGIReceiveCallable) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    self.gone = not self.ready.is_set()
                    return
                self.received += len(message["body"])
                if not self.too_large:
                    self._chunks += message["body"]
                    if len(self._chunks) > self.cap:
                        self.too_large = True
                        self._chunks.clear()
                if self.received > DRAIN_BODY:
                    self.ready.set()
                if not message["more_body"]:
                    self.complete = True
                    return
        finally:
            self.ready.set()
            self.finished.set()


# -- the server --------------------------------------------------------------------------------


async def serve(
    app: ASGIFramework,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: Limits = Limits(),
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status.started`` receives the bound port.

    Binding raises ``OSError`` (port in use, address not available). Cancelled, it stops
    accepting, closes idle connections at once, gives requests in progress ``limits.grace``
    seconds and then closes the rest.
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound = listener.extra(SocketAttribute.local_port)
    server = _Server(app, limits)
    async with anyio.create_task_group() as connections:
        try:
            async with anyio.create_task_group() as accepting:
                for each in listener.listeners:
                    raw = each.extra(SocketAttribute.raw_socket)
                    accepting.start_soon(server.accept, raw, connections)
                task_status.started(bound)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
                await server.stop()


class _Connection(TCPServer):
    """Hypercorn's connection, ended as soon as the peer has closed its side. Hypercorn's own
    waits out the idle timer first, holding the socket and a slot of the cap that long. With a
    request in progress the response still goes out; the connection closes after it."""

    async def _read_data(self) -> None:
        await super()._read_data()
        await self.idle_task.stop()


@dataclass(eq=False)
class _Server:
    """Hypercorn's asyncio connection engine behind our accept loop."""

    app: ASGIFramework
    limits: Limits
    config: Config = field(init=False)
    context: WorkerContext = field(init=False)
    active: int = 0  # connections being served
    scopes: set[anyio.CancelScope] = field(default_factory=set)
    drained: anyio.Event | None = None

    def __post_init__(self) -> None:
        config = Config()
        config.keep_alive_timeout = self.limits.timeout
        config.h11_max_incomplete_size = self.limits.max_header
        config.h2_max_header_list_size = self.limits.max_header
        config.h2_max_concurrent_streams = H2_MAX_STREAMS
        config.include_server_header = False
        config.accesslog = None  # it would log every path, push tokens included
        config.errorlog = logging.getLogger("bridge.httpd")  # through structlog, not stderr
        self.config = config
        self.context = WorkerContext(None)
        self.wrapped = ASGIWrapper(self.app)
        self.slots = anyio.Semaphore(self.limits.max_connections)

    async def accept(self, sock: socket.socket, connections: TaskGroup) -> None:
        failing = False
        while True:
            await anyio.wait_readable(sock)
            # At the cap, wait here: new connections queue in the kernel's listen backlog.
            await self.slots.acquire()
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                self.slots.release()
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM
                self.slots.release()
                if not failing:
                    log.warning("http_accept_failed", error=exc.strerror)
                failing = True
                await anyio.sleep(ACCEPT_RETRY)
                continue
            failing = False
            self.active += 1
            connections.start_soon(self._serve_connection, conn)

    async def _serve_connection(self, conn: socket.socket) -> None:
        # Shielded: a stop ends connections after the grace period (``stop``), not at once.
        scope = anyio.CancelScope(shield=True)
        self.scopes.add(scope)
        try:
            with scope:
                try:
                    # Hypercorn writes a response head and body separately: without this a
                    # keep-alive client waits ~40 ms on a delayed ACK per request. (asyncio sets
                    # it only for sockets whose proto says TCP; accepted ones say 0.)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    reader, writer = await asyncio.open_connection(sock=conn)
                except BaseException:
                    conn.close()
                    raise
                loop = asyncio.get_running_loop()
                await _Connection(self.wrapped, loop, self.config, self.context, {}, reader, writer)
        except OSError:
            pass  # the peer left before the connection was set up
        except Exception as exc:  # a server bug: this connection only
            # No traceback: hypercorn's frames hold the request target, which may hold a token.
            log.error("http_connection_failed", error=type(exc).__name__)  # noqa: TRY400
        finally:
            self.scopes.discard(scope)
            self.active -= 1
            self.slots.release()
            if self.active == 0 and self.drained is not None:
                self.drained.set()

    async def stop(self) -> None:
        """Idle and half-read connections close at once (hypercorn's idle timers end on
        ``terminated``); a connection answers the request in progress, then closes."""
        await self.context.terminated.set()
        if self.active:
            self.drained = anyio.Event()
            with anyio.move_on_after(self.limits.grace):
                await self.drained.wait()
        for scope in self.scopes:
            scope.cancel()
