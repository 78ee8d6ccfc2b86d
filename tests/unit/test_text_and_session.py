"""The shared pieces for the next vendors: ``key=value`` replies, session logins, one request at
a time. The device side is a stateful fake at the HTTP seam (httpx's MockTransport)."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import anyio.lowlevel
import httpx
import pytest

from bridge.errors import AuthError, DeviceProtocolError
from bridge.http import DeviceHttp
from bridge.metrics import Metrics
from bridge.normalize.text import TextReply, parse_lines

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

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.busy += 1
        self.overlapped |= self.busy > 1
        try:
            await anyio.lowlevel.checkpoint()  # a turn for any other request meanwhile
            self.calls.append(request.url.path)
            if request.url.path == "/login":
                if request.url.params.get("password") != self.password:
                    return httpx.Response(200, json={"result": -2})
                self.logins += 1
                self.sid += 1
                return httpx.Response(200, json={"result": 0, "sid": self.sid})
            if request.headers.get("cookie") != f"sid={self.sid}":
                return httpx.Response(200, json={"result": -17})
            return httpx.Response(200, text="a=1\r\n")
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


def http_for(device: SidDevice, password: str = "secret", *, serial: bool = True) -> DeviceHttp:
    client = httpx.AsyncClient(
        base_url="http://device", transport=httpx.MockTransport(device.handle)
    )
    return DeviceHttp(
        client,
        device="enc",
        driver="test",
        metrics=Metrics(),
        serial=serial,
        session=SidSession(password),
    )


async def test_logs_in_once_then_keeps_the_session() -> None:
    device = SidDevice()
    http = http_for(device)
    assert await http.get_text("/status") == "a=1\r\n"
    assert await http.get_text("/status") == "a=1\r\n"
    assert device.logins == 1
    assert device.calls == ["/login", "/status", "/status"]


async def test_an_expired_session_logs_in_again_and_repeats_once() -> None:
    device = SidDevice()
    http = http_for(device)
    await http.get_text("/status")
    device.expire()
    assert await http.get_text("/status") == "a=1\r\n"
    assert device.logins == 2
    assert device.calls == ["/login", "/status", "/status", "/login", "/status"]


async def test_refused_credentials_are_an_auth_error() -> None:
    http = http_for(SidDevice(), password="wrong")
    with pytest.raises(AuthError, match="login: refused"):
        await http.get_text("/status")


async def test_serial_means_one_request_at_a_time() -> None:
    device = SidDevice()
    http = http_for(device)
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(http.get_text, "/status")
    assert not device.overlapped
    assert device.calls.count("/status") == 10


async def test_without_serial_requests_overlap() -> None:
    # The baseline of the test above: the fake can see overlap when the client allows it.
    device = SidDevice()
    http = http_for(device, serial=False)
    await http.get_text("/status")
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(http.get_text, "/status")
    assert device.overlapped


async def test_text_with_control_characters_is_malformed() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"a=1\x00\r\n")

    client = httpx.AsyncClient(base_url="http://device", transport=httpx.MockTransport(handle))
    http = DeviceHttp(client, device="cam", driver="test", metrics=Metrics())
    with pytest.raises(DeviceProtocolError, match="control characters"):
        await http.get_text("/goform/config")


async def test_latin1_text_is_read() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content="name=Caf\u00e9\r\n".encode("latin-1"))

    client = httpx.AsyncClient(base_url="http://device", transport=httpx.MockTransport(handle))
    http = DeviceHttp(client, device="cam", driver="test", metrics=Metrics())
    assert parse_lines(await http.get_text("/x")).merged() == {"name": "Caf\u00e9"}
