"""The bridge's HTTP server (bridge.httpd) over real loopback sockets: routes, push receivers,
limits (deadlines, caps) and a graceful stop."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import h11
import httpx
import pytest
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from bridge.app import Bridge, http_listeners
from bridge.errors import StartupError
from bridge.httpd import EVERY_ROUTE, MONITORING, PUSH_ONLY, HttpApp, Limits, serve
from bridge.logs import configure as configure_logs
from bridge.settings import build_settings
from bridge.shard import shard_of
from tests.integration.harness import running

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-Push-Token_0123456789abcdef"
WRONG = "s3cret-Push-Token_0123456789abcdeX"
DEADLINE = 10  # seconds; generous: it only bounds a hang
DEFAULTS = Limits()


@dataclass
class Backend:
    """What the bridge hands the app, with one push_token-carrying device."""

    healthy: bool = True
    ready: bool = True
    broken: bool = False
    pushes: list[str] = field(default_factory=list)

    def push(self, device: str, token: str) -> bool:
        if self.broken:
            raise RuntimeError("push handler bug")
        if device == "front-door" and token == TOKEN:
            self.pushes.append(device)
            return True
        return False

    def app(self, limits: Limits = DEFAULTS) -> HttpApp:
        return HttpApp(
            metrics=lambda: b"# metrics\nbridge_up 1.0\n",
            health=lambda: {"healthy": self.healthy, "mqtt_connected": self.ready},
            ready=lambda: self.ready,
            push=self.push,
            limits=limits,
        )


@asynccontextmanager
async def serving(app: ASGIFramework, limits: Limits = DEFAULTS) -> AsyncIterator[int]:
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(partial(serve, app, "127.0.0.1", 0, limits=limits))
        yield port
        tg.cancel_scope.cancel()


@asynccontextmanager
async def client(port: int) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE) as http:
        yield http


class Raw:
    """One client connection, read with h11: what a device (or an attacker) really sends."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> Raw:
        return cls(await anyio.connect_tcp("127.0.0.1", port))

    async def request(self, method: str, target: str, body: bytes = b"") -> None:
        headers = [("host", "bridge"), ("content-length", str(len(body)))]
        data = self.conn.send(h11.Request(method=method, target=target, headers=headers))
        data += self.conn.send(h11.Data(data=body)) or b""
        await self.stream.send(data + self.conn.send(h11.EndOfMessage()))

    async def response(self) -> tuple[int, bytes]:
        status, body = 0, b""
        with anyio.fail_after(DEADLINE):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self._receive())
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                        self.conn.start_next_cycle()
                    return status, body
                elif isinstance(event, h11.ConnectionClosed):
                    raise AssertionError("closed without a response")

    async def _receive(self) -> bytes:
        try:
            return await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return b""

    async def closed_by_server(self) -> bool:
        """Wait (with a generous deadline) until the server closes; True if it did."""
        with anyio.fail_after(DEADLINE):
            while True:
                try:
                    await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return True

    async def aclose(self) -> None:
        await self.stream.aclose()


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k, v) for k, v in response.headers.items() if k != "date"]
    return response.status_code, response.content, headers


# -- routes --------------------------------------------------------------------------------------


async def test_metrics_health_and_readiness() -> None:
    backend = Backend()
    async with serving(backend.app()) as port, client(port) as http:
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"] == "text/plain; version=0.0.4"
        assert metrics.text == "# metrics\nbridge_up 1.0\n"
        assert "server" not in metrics.headers
        assert (await http.get("/healthz")).json() == {"healthy": True, "mqtt_connected": True}
        assert (await http.get("/readyz")).json() == {"ready": True}
        head = await http.head("/healthz")
        assert (head.status_code, head.content) == (200, b"")

        backend.healthy = backend.ready = False
        assert (await http.get("/healthz")).status_code == 503
        not_ready = await http.get("/readyz")
        assert (not_ready.status_code, not_ready.json()) == (503, {"ready": False})

        assert (await http.get("/nothing")).status_code == 404
        refused = await http.post("/metrics")
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")


async def test_keep_alive_serves_two_requests_on_one_connection() -> None:
    async with serving(Backend().app()) as port:
        raw = await Raw.connect(port)
        await raw.request("GET", "/readyz")
        assert await raw.response() == (200, b'{"ready":true}')
        await raw.request("GET", "/healthz")
        status, _ = await raw.response()
        assert status == 200
        await raw.aclose()


# -- push receivers ------------------------------------------------------------------------------


async def test_push_with_the_right_token_answers_204() -> None:
    backend = Backend()
    async with serving(backend.app()) as port, client(port) as http:
        got = await http.get(f"/push/front-door/{TOKEN}", params={"input": "1", "state": "on"})
        assert (got.status_code, got.content) == (204, b"")
        posted = await http.post(f"/push/front-door/{TOKEN}?alarm=1", content=b"alarm=in1")
        assert posted.status_code == 204
    assert backend.pushes == ["front-door", "front-door"]


async def test_refused_pushes_all_look_like_an_unknown_path() -> None:
    backend = Backend()
    async with serving(backend.app()) as port, client(port) as http:
        unknown_path = comparable(await http.get("/nothing"))
        assert unknown_path[0] == 404
        for target in (
            f"/push/front-door/{WRONG}",  # wrong token
            f"/push/back-door/{TOKEN}",  # unknown device, or another shard's
            "/push/front-door",
            "/push/front-door/",
            f"/push/front-door/{TOKEN}/more",
            "/push/",
        ):
            assert comparable(await http.get(target)) == unknown_path, target
            assert comparable(await http.post(target, content=b"x=1")) == unknown_path, target
        # Any other method: 405 before the token is looked at, whatever it is.
        for token in (TOKEN, WRONG):
            refused = await http.put(f"/push/front-door/{token}")
            assert (refused.status_code, refused.headers["allow"]) == (405, "GET, POST")
    assert backend.pushes == []


@pytest.fixture
def rendered_logs() -> Iterator[io.StringIO]:
    """The real log pipeline (bridge.logs, JSON, debug) into a buffer; restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    configure_logs(format_="json", level="debug", stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_the_token_and_the_path_never_reach_the_log(rendered_logs: io.StringIO) -> None:
    backend = Backend()
    async with serving(backend.app()) as port, client(port) as http:
        assert (await http.get(f"/push/front-door/{TOKEN}?input=3")).status_code == 204
        assert (await http.get(f"/push/front-door/{WRONG}?input=4")).status_code == 404
        backend.broken = True
        assert (await http.post(f"/push/front-door/{TOKEN}?input=5")).status_code == 500
    # What the test's own HTTP client (httpx) logs is not the bridge's: left out.
    lines = [
        entry
        for entry in map(json.loads, rendered_logs.getvalue().splitlines())
        if entry.get("logger", "").partition(".")[0] not in {"httpx", "httpcore"}
    ]
    assert len(lines) < len(rendered_logs.getvalue().splitlines())  # the client did log
    text = "\n".join(json.dumps(entry) for entry in lines)
    assert TOKEN not in text
    assert WRONG not in text
    assert "/push/" not in text
    pushes = [
        (e["device"], e["accepted"], e["query"]) for e in lines if e["event"] == "push_received"
    ]
    assert pushes == [("front-door", True, "input=3"), ("front-door", False, "input=4")]
    assert all(e["level"] == "debug" for e in lines if e["event"] == "push_received")
    [failed] = [e for e in lines if e["event"] == "http_handler_failed"]
    assert (failed["route"], failed["error"], failed["level"]) == ("push", "RuntimeError", "error")


async def test_a_failing_handler_is_logged_by_route_name() -> None:
    def broken() -> bytes:
        raise RuntimeError("exposition bug")

    app = HttpApp(metrics=broken, health=dict, ready=bool, push=lambda _d, _t: False)
    with structlog.testing.capture_logs() as captured:
        async with serving(app) as port, client(port) as http:
            failed = await http.get("/metrics?x=1")
            assert (failed.status_code, failed.json()) == (500, {"error": "internal"})
            assert (await http.get("/readyz")).status_code == 503  # still serving
    [entry] = [e for e in captured if e["event"] == "http_handler_failed"]
    assert entry["route"] == "metrics"
    assert "path" not in entry


def polled_bridge(tmp_path: Path, *, shard: dict[str, int] | None = None) -> Bridge:
    """A bridge, built and not run, with two Onetouch devices (a polled driver): front-door
    has a push_token, gate has none."""
    device = {"driver": "onetouch", "url": "http://192.0.2.10"}
    config = {
        "state_dir": str(tmp_path),
        "shard": shard or {},
        "devices": [
            {**device, "id": "front-door", "push_token": TOKEN},
            {**device, "id": "gate"},
        ],
    }
    return Bridge(build_settings(config, {}))


def close(bridge: Bridge) -> None:
    bridge.link.inbound.close()
    bridge.link._inbound_send.close()


async def test_a_push_wakes_the_bridge_device_poller(tmp_path: Path) -> None:
    bridge = polled_bridge(tmp_path)
    wakeup = bridge.contexts["front-door"].wakeup
    try:
        async with serving(bridge.http_app()) as port, client(port) as http:
            for target in (f"/push/front-door/{WRONG}", "/push/gate/" + TOKEN):
                assert (await http.get(target)).status_code == 404
            assert not wakeup.is_set()
            assert not bridge.contexts["gate"].wakeup.is_set()
            assert (await http.post(f"/push/front-door/{TOKEN}?in=1")).status_code == 204
            assert wakeup.is_set()
            metrics = (await http.get("/metrics")).text
            assert 'bridge_device_pushes_total{device="front-door"} 1.0' in metrics
    finally:
        close(bridge)


async def test_a_push_for_another_shards_device_answers_404(tmp_path: Path) -> None:
    other = 1 - shard_of("front-door", 2)  # the shard that does not own front-door
    bridge = polled_bridge(tmp_path, shard={"index": other, "count": 2})
    try:
        assert "front-door" not in bridge.workers
        async with serving(bridge.http_app()) as port, client(port) as http:
            assert (await http.get(f"/push/front-door/{TOKEN}")).status_code == 404
    finally:
        close(bridge)


# -- limits --------------------------------------------------------------------------------------


async def test_an_oversized_body_is_refused_with_413() -> None:
    backend = Backend()
    limits = Limits(max_connections=1)  # a connection that did not close would block the next
    async with serving(backend.app(limits), limits) as port, client(port) as http:
        big = b"x" * (4 * limits.max_body)
        declared = await http.post(f"/push/front-door/{TOKEN}", content=big)
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it comes
            for _ in range(16):
                yield b"y" * 16384

        chunked = await http.post(f"/push/front-door/{TOKEN}", content=chunks())
        assert chunked.status_code == 413
        assert (await http.get(f"/push/front-door/{TOKEN}")).status_code == 204
    assert backend.pushes == ["front-door"]


async def test_an_oversized_header_is_refused() -> None:
    async with serving(Backend().app()) as port, client(port) as http:
        huge = await http.get("/healthz", headers={"x-filler": "z" * (2 * Limits().max_header)})
        assert huge.status_code == 431
        assert (await http.get("/healthz")).status_code == 200


async def test_a_stalled_request_line_is_cut_off_by_the_read_deadline() -> None:
    limits = Limits(timeout=0.5)
    async with serving(Backend().app(limits), limits) as port:
        raw = await Raw.connect(port)
        await raw.stream.send(b"GET /heal")  # half a request line, then nothing
        assert await raw.closed_by_server()
        await raw.aclose()


async def test_a_request_line_trickling_in_does_not_extend_the_deadline() -> None:
    limits = Limits(timeout=0.5)
    async with serving(Backend().app(limits), limits) as port:
        raw = await Raw.connect(port)

        async def trickle() -> None:  # one byte at the client's own pace, until cut off
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                for byte in itertools.cycle(b"GET /healthz?padding"):
                    await raw.stream.send(bytes([byte]))
                    await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(trickle)
            assert await raw.closed_by_server()
            tg.cancel_scope.cancel()
        await raw.aclose()


async def test_a_stalled_body_gets_408_and_the_connection_closes() -> None:
    limits = Limits(timeout=0.5)
    async with serving(Backend().app(limits), limits) as port:
        raw = await Raw.connect(port)
        await raw.stream.send(
            b"POST /push/front-door/" + TOKEN.encode() + b" HTTP/1.1\r\nhost: b\r\n"
            b"content-length: 100\r\n\r\nab"
        )
        assert await raw.response() == (408, b'{"error":"request timeout"}')
        assert await raw.closed_by_server()
        await raw.aclose()


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    limits = Limits(timeout=0.5)
    async with serving(Backend().app(limits), limits) as port:
        raw = await Raw.connect(port)
        await raw.request("GET", "/readyz")
        assert (await raw.response())[0] == 200
        assert await raw.closed_by_server()
        await raw.aclose()


async def test_connections_beyond_the_cap_wait_until_one_closes() -> None:
    """At the cap the server stops accepting: the next connection waits in the listen backlog
    (its TCP handshake completes; its request is not read), and is served once one closes."""
    limits = Limits(max_connections=2, timeout=6 * DEADLINE)  # a lingering slot would show
    async with serving(Backend().app(limits), limits) as port:
        first, second = await Raw.connect(port), await Raw.connect(port)
        for raw in (first, second):  # both accepted and served, both kept open
            await raw.request("GET", "/readyz")
            assert (await raw.response())[0] == 200
        third = await Raw.connect(port)
        await third.request("GET", "/healthz")
        # A round trip on a served connection: the server has run since the third asked.
        await first.request("GET", "/readyz")
        assert (await first.response())[0] == 200
        with anyio.move_on_after(0):  # nothing has arrived for the third
            early = await third.stream.receive()
            pytest.fail(f"answered while at the cap: {early!r}")
        await second.aclose()  # a slot frees: the third is accepted and answered
        assert (await third.response())[0] == 200
        for raw in (first, third):
            await raw.aclose()


# -- start and stop ------------------------------------------------------------------------------


async def test_a_port_in_use_raises_oserror() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            await serve(Backend().app(), "127.0.0.1", port)


async def test_a_stop_finishes_the_request_in_progress_and_closes_idle_connections() -> None:
    entered, release = anyio.Event(), anyio.Event()
    inner = Backend().app()

    async def slow(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http" and scope["path"] == "/slow":
            entered.set()
            await release.wait()
        await inner(scope, receive, send)

    stopped = anyio.Event()
    server = anyio.CancelScope()

    async def run(*, task_status: TaskStatus[int]) -> None:
        with server:
            await serve(slow, "127.0.0.1", 0, task_status=task_status)
        stopped.set()

    async with anyio.create_task_group() as tg:
        port = await tg.start(run)
        idle, busy = await Raw.connect(port), await Raw.connect(port)
        await idle.request("GET", "/readyz")
        assert (await idle.response())[0] == 200
        await busy.request("GET", "/slow")
        with anyio.fail_after(DEADLINE):
            await entered.wait()
        server.cancel()
        assert await idle.closed_by_server()  # at once, not after the keep-alive time
        release.set()
        assert (await busy.response())[0] == 404  # the request in progress is answered
        assert await busy.closed_by_server()
        with anyio.fail_after(DEADLINE):
            await stopped.wait()
        with pytest.raises(OSError):  # nothing listens any more
            await anyio.connect_tcp("127.0.0.1", port)
        for raw in (idle, busy):
            await raw.aclose()


def test_defaults_are_the_documented_ones() -> None:
    http = build_settings({}, {}).http
    assert (http.timeout, http.max_connections) == (Limits().timeout, Limits().max_connections)
    assert (Limits().max_body, Limits().max_header) == (64 * 1024, 16 * 1024)


# -- a listener for the push receivers alone -----------------------------------------------------


async def test_an_app_serves_only_its_routes_and_404s_the_rest_alike() -> None:
    backend = Backend()
    for serves, served, refused in (
        (PUSH_ONLY, [f"/push/front-door/{TOKEN}"], ["/metrics", "/healthz", "/readyz"]),
        (MONITORING, ["/metrics", "/healthz", "/readyz"], [f"/push/front-door/{TOKEN}"]),
    ):
        app = HttpApp(
            metrics=lambda: b"# metrics\n",
            health=lambda: {"healthy": True},
            ready=lambda: True,
            push=backend.push,
            serves=serves,
        )
        async with serving(app) as port, client(port) as http:
            unknown = comparable(await http.get("/nothing"))
            for path in served:
                assert (await http.get(path)).status_code in {200, 204}, path
            for path in refused:
                assert comparable(await http.get(path)) == unknown, path
                assert comparable(await http.post(path)) == unknown, path
    assert backend.pushes == ["front-door"]


@pytest.mark.parametrize(
    ("http", "listeners"),
    [
        ({}, [("listen", "127.0.0.1:9880", EVERY_ROUTE)]),
        (
            {"listen": "127.0.0.1:9880", "push_listen": "192.0.2.5:9881"},
            [
                ("listen", "127.0.0.1:9880", MONITORING),
                ("push_listen", "192.0.2.5:9881", PUSH_ONLY),
            ],
        ),
    ],
)
def test_http_listeners(http: dict[str, str], listeners: list[object]) -> None:
    assert http_listeners(build_settings({"http": http}, {}).http) == listeners


async def test_push_listen_takes_the_push_receivers_off_listen(tmp_path: Path) -> None:
    device = {"id": "front-door", "driver": "onetouch", "url": "http://127.0.0.1:1"}
    config = {
        "mqtt": {"url": "mqtt://127.0.0.1:1"},  # nobody there: the bridge serves regardless
        "http": {"listen": "127.0.0.1:0", "push_listen": "127.0.0.1:0"},
        "state_dir": str(tmp_path),
        "devices": [{**device, "push_token": TOKEN}],
    }
    async with running(config) as bridge:
        assert bridge.http_port is not None
        assert bridge.push_port is not None
        assert bridge.push_port != bridge.http_port
        push = f"/push/front-door/{TOKEN}"
        async with client(bridge.http_port) as main, client(bridge.push_port) as lan:
            assert (await main.get("/metrics")).status_code == 200
            assert (await main.get("/readyz")).status_code == 503  # no broker
            assert (await main.get(push)).status_code == 404
            assert (await lan.get(push)).status_code == 204
            for path in ("/metrics", "/healthz", "/readyz"):
                assert (await lan.get(path)).status_code == 404, path
            metrics = (await main.get("/metrics")).text
    assert 'bridge_device_pushes_total{device="front-door"} 1.0' in metrics


async def test_a_busy_push_listen_port_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as busy:
        port = busy.extra(SocketAttribute.local_port)
        http = {"listen": "127.0.0.1:0", "push_listen": f"127.0.0.1:{port}"}
        config = {"http": http, "mqtt": {"url": "mqtt://127.0.0.1:1"}, "state_dir": str(tmp_path)}
        bridge = Bridge(build_settings(config, {}))
        try:
            with pytest.raises(ExceptionGroup) as caught:
                await bridge.run()
        finally:
            close(bridge)  # its link never ran
    [error] = caught.value.exceptions
    assert isinstance(error, StartupError)
    assert str(error) == f"http.push_listen 127.0.0.1:{port}: Address already in use"
