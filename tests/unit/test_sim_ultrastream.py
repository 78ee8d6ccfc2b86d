"""The Ultra Stream simulator behaves as the usapi manual says, seen through plain httpx."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest

from bridge.simulators.ultrastream import UltraStreamSimulator
from tests.kit import client_of

pytestmark = pytest.mark.anyio
Json = dict[str, Any]


def running(
    sim: UltraStreamSimulator, **client: Any
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return client_of(sim, **client)


async def call(http: httpx.AsyncClient, method: str, sid: str | None = None, **params: Any) -> Json:
    headers = {"cookie": f"sid={sid}"} if sid else {}
    reply = await http.get("/usapi", params={"method": method, **params}, headers=headers)
    assert reply.status_code == 200, reply.text
    body: Json = reply.json()
    return body


async def login(http: httpx.AsyncClient, password: str = "admin") -> str | None:
    digest = hashlib.md5(password.encode()).hexdigest()  # noqa: S324 - the device's scheme
    reply = await http.get("/usapi", params={"method": "login", "id": "Admin", "pass": digest})
    http.cookies.clear()  # the test sends the cookie itself, as the driver does
    assert reply.status_code == 200
    return reply.cookies.get("sid") if reply.json()["result"] == 0 else None


async def until(sim: UltraStreamSimulator, predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        await sim.wait_until(predicate)


async def test_ping_needs_no_login_and_the_rest_does() -> None:
    sim = UltraStreamSimulator()
    async with running(sim) as http:
        ping = await call(http, "ping")
        assert ping == {"result": 0, "cur-status": 0x10000 | 0x10 | 0x20}
        assert await call(http, "get-status") == {"result": -17}
        assert await login(http, "wrong") is None
        assert (sim.logins, sim.failed_logins) == (1, 1)
        sid = await login(http)
        assert sid is not None
        assert len(sid) == 32
        status = await call(http, "get-status", sid)
        assert status["result"] == 0
        assert status["usb"]["disk-status"] == 1
        assert "beign-time" in status["usb"]  # the manual's spelling
        sim.expire_sessions()
        assert await call(http, "get-status", sid) == {"result": -17}
        sid = await login(http)
        assert (await call(http, "logout", sid))["result"] == 0
        assert await call(http, "get-status", sid) == {"result": -17}


async def test_idle_sessions_expire() -> None:
    sim = UltraStreamSimulator(idle_timeout=0.0)
    async with running(sim) as http:
        sid = await login(http)
        assert await call(http, "get-info", sid) == {"result": -17}


async def test_recording_and_live_state_machines() -> None:
    sim = UltraStreamSimulator()
    async with running(sim) as http:
        sid = await login(http)
        assert (await call(http, "start-rec", sid))["result"] == 0
        assert (await call(http, "start-rec", sid))["result"] == 1  # repeat request
        assert (await call(http, "ping"))["cur-status"] & 0x02
        assert (await call(http, "start-live", sid))["result"] == 0
        assert (await call(http, "enable-server", sid, id=2, **{"is-use": 1}))["result"] == -9
        await until(sim, lambda: sim.live_codes[0] == 22)  # DNS -> connecting -> connected
        status = await call(http, "get-status", sid)
        assert status["live-status"]["result"] == 22
        assert status["cur-status"] & 0x04
        assert (await call(http, "stop-live", sid))["result"] == 0
        assert (await call(http, "stop-live", sid))["result"] == 1
        settings = await call(http, "get-settings", sid)
        assert settings["stream-server"][0]["key"] == "yt-key-5ecret"  # the driver must redact
        sim.set_disk("usb", 0)
        sim.set_disk("sd", 3)
        assert not sim.recording  # no medium left: recording stopped
        assert (await call(http, "start-rec", sid))["result"] == -16


async def test_reboot_faults_and_signal() -> None:
    sim = UltraStreamSimulator(reboot_announce=0.1, reboot_downtime=0.1)
    async with running(sim) as http:
        sid = await login(http)
        sim.set_signal(False)
        assert (await call(http, "get-status", sid))["input-signal"]["cx"] == 0
        sim.unavailable(1)
        assert (await http.get("/usapi", params={"method": "ping"})).status_code == 503
        sim.set_fault("garbage", count=1)
        assert (await http.get("/usapi", params={"method": "ping"})).content.startswith(b"\x00")
        assert (await call(http, "reboot", sid))["result"] == 0
        assert (await call(http, "ping"))["cur-status"] & 0x20000000
        assert (await call(http, "start-rec", sid))["result"] == -9
        await until(sim, lambda: sim.phase == "down")
        with pytest.raises(httpx.TransportError):
            await http.get("/usapi", params={"method": "ping"})
        await until(sim, lambda: sim.phase == "up")
        assert sim.boot == 1
        assert sim.uptime < 60
        assert await call(http, "get-status", sid) == {"result": -17}  # sessions gone
