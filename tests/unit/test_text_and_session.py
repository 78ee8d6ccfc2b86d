"""The shared pieces for the next vendors: ``key=value`` replies, session logins, one request at
a time. The device side is a stateful fake served over loopback HTTP by the simulators' server."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from bridge.config import DeviceConfig
from bridge.errors import AuthError, DeviceProtocolError
from bridge.http import DeviceHttp
from bridge.metrics import Metrics
from bridge.normalize.text import TextReply, parse_lines
from bridge.simulators.server import Request, Response, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("text", "markers", "expected"),
    [
        ("", frozenset(), TextReply([], [])),
        ("Successful\r\n", frozenset(), TextReply([], ["Successful"])),
        ("a=1\r\nb=x=y\r\n\r\n", frozenset(), TextReply([{"a": "1", "b": "x=y"}], [])),
        (" a = 1 \n", frozenset(), TextReply([{"a": "1"}], [])),
        (
            "channel=1\nmd=0\nchannel=2\nmd=1\n",
            frozenset({"channel"}),
            TextReply([{"channel": "1", "md": "0"}, {"channel": "2", "md": "1"}], []),
        ),
        # no marker named: a repeated key still starts a new group
        ("md=0\nrec=1\nmd=1\n", frozenset(), TextReply([{"md": "0", "rec": "1"}, {"md": "1"}], [])),
        ("x=1\nNo Privilege\n", frozenset(), TextReply([{"x": "1"}], ["No Privilege"])),
        ("empty=\n", frozenset(), TextReply([{"empty": ""}], [])),
    ],
)
def test_parse_lines(text: str, markers: frozenset[str], expected: TextReply) -> None:
    assert parse_lines(text, markers) == expected


def test_merged_takes_the_later_group() -> None:
    assert parse_lines("a=1\nb=2\na=3\n").merged() == {"a": "3", "b": "2"}


class Config(DeviceConfig):
    driver: str = "test"


@asynccontextmanager
async def served(
    handle: Callable[[Request], Awaitable[Response]], **options: Any
) -> AsyncIterator[DeviceHttp]:
    """A ``DeviceHttp`` (``options``: ``serial``, ``session``) talking to ``handle`` on loopback."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, handle)
        config = Config(id="enc", url=f"http://127.0.0.1:{port}")
        async with DeviceHttp(config, metrics=Metrics(), **options) as http:
            yield http
        tg.cancel_scope.cancel()


def reply(value: Any) -> Response:
    return Response(200, json.dumps(value).encode())


class SidDevice:
    """A device with a session: ``/login`` gives a sid, other paths need it, ``expire`` drops it."""

    def __init__(self, password: str = "secret") -> None:
        self.password = password
        self.sid = 0
        self.logins = 0
        self.calls: list[str] = []
        self.busy = 0
        self.overlapped = False

    def expire(self) -> None:
        self.sid += 1000  # every sid handed out so far is invalid now

    async def handle(self, request: Request) -> Response:
        self.busy += 1
        self.overlapped |= self.busy > 1
        try:
            await anyio.lowlevel.checkpoint()  # a turn for any other request meanwhile
            self.calls.append(request.path)
            if request.path == "/login":
                if request.query.get("password") != self.password:
                    return reply({"result": -2})
                self.logins += 1
                self.sid += 1
                return reply({"result": 0, "sid": self.sid})
            if request.headers.get("cookie") != f"sid={self.sid}":
                return reply({"result": -17})
            return Response(200, b"a=1\r\n", content_type="text/plain")
        finally:
            self.busy -= 1


class SidSession:
    def __init__(self, password: str) -> None:
        self.password = password

    async def login(self, http: DeviceHttp) -> Mapping[str, str]:
        reply = http.decode_json(
            await http.send("GET", "/login", params={"password": self.password}), "login"
        )
        if reply.get("result") != 0:
            raise AuthError("login: refused", device=http.device)
        return {"cookie": f"sid={reply['sid']}"}

    def expired(self, body: bytes) -> bool:
        return b'"result":-17' in body.replace(b" ", b"")


def session_device(
    device: SidDevice, password: str = "secret", *, serial: bool = True
) -> AbstractAsyncContextManager[DeviceHttp]:
    return served(device.handle, serial=serial, session=SidSession(password))


async def test_logs_in_once_then_keeps_the_session() -> None:
    device = SidDevice()
    async with session_device(device) as http:
        assert await http.get_text("/status") == "a=1\r\n"
        assert await http.get_text("/status") == "a=1\r\n"
    assert device.logins == 1
    assert device.calls == ["/login", "/status", "/status"]


async def test_an_expired_session_logs_in_again_and_repeats_once() -> None:
    device = SidDevice()
    async with session_device(device) as http:
        await http.get_text("/status")
        device.expire()
        assert await http.get_text("/status") == "a=1\r\n"
    assert device.logins == 2
    assert device.calls == ["/login", "/status", "/status", "/login", "/status"]


async def test_refused_credentials_are_an_auth_error() -> None:
    async with session_device(SidDevice(), password="wrong") as http:
        with pytest.raises(AuthError, match="login: refused"):
            await http.get_text("/status")


async def test_serial_means_one_request_at_a_time() -> None:
    device = SidDevice()
    async with session_device(device) as http, anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(http.get_text, "/status")
    assert not device.overlapped
    assert device.calls.count("/status") == 10


async def test_without_serial_requests_overlap() -> None:
    # The baseline of the test above: the fake can see overlap when the client allows it.
    device = SidDevice()
    async with session_device(device, serial=False) as http:
        await http.get_text("/status")
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(http.get_text, "/status")
    assert device.overlapped


def text(body: bytes) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return Response(200, body, content_type="text/plain")

    return handle


async def test_text_with_control_characters_is_malformed() -> None:
    async with served(text(b"a=1\x00\r\n")) as http:
        with pytest.raises(DeviceProtocolError, match="control characters"):
            await http.get_text("/goform/config")


async def test_latin1_text_is_read() -> None:
    async with served(text("name=Caf\u00e9\r\n".encode("latin-1"))) as http:
        assert parse_lines(await http.get_text("/x")).merged() == {"name": "Caf\u00e9"}


async def test_query_values_reach_the_device_as_text() -> None:
    seen: list[dict[str, str]] = []

    async def handle(request: Request) -> Response:
        seen.append(request.query)
        return reply({})

    params = {"on": True, "off": False, "none": None, "n": 3, "text": "a b&c=d/\u00e9"}
    async with served(handle) as http:
        assert await http.get_json("/x", params=params) == {}
    assert seen == [{"on": "true", "off": "false", "none": "", "n": "3", "text": "a b&c=d/\u00e9"}]
