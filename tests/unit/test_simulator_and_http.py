"""The generic simulator's control API and faults, seen through the driver's HTTP layer."""

from __future__ import annotations

import gc

import anyio
import httpx
import pytest

from bridge.config import DeviceConfig
from bridge.errors import AuthError, DeviceProtocolError, DeviceUnreachableError
from bridge.http import DeviceHttp
from bridge.metrics import Metrics
from bridge.simulators.generic import GenericSimulator
from bridge.simulators.two_n import TwoNSimulator

pytestmark = pytest.mark.anyio


class Config(DeviceConfig):
    driver: str = "generic"


async def test_control_api_and_long_poll() -> None:
    sim = GenericSimulator()
    async with anyio.create_task_group() as tg, httpx.AsyncClient() as http:
        await tg.start(sim.serve)
        # A long poll with nothing queued waits; a press over the control API answers it.
        async with anyio.create_task_group() as poll:

            async def long_poll() -> None:
                reply = await http.get(f"{sim.url}/api/events", params={"after": 0, "timeout": 5})
                assert [e["kind"] for e in reply.json()["events"]] == ["button"]

            poll.start_soon(long_poll)
            await anyio.wait_all_tasks_blocked()
            pressed = await http.post(f"{sim.url}/_sim/press", json={"button": 2})
            assert pressed.json()["button"] == 2
        rebooted = (await http.post(f"{sim.url}/_sim/reboot")).json()
        events = (await http.get(f"{sim.url}/api/events", params={"after": 0})).json()
        assert events["boot"] == rebooted["boot"]
        assert [e["kind"] for e in events["events"]] == ["startup"]
        unknown = await http.post(f"{sim.url}/_sim/teleport")
        assert unknown.status_code == 404
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("garbage", DeviceProtocolError),
        ("http500", DeviceProtocolError),
        ("truncated", DeviceUnreachableError),
        ("drop", DeviceUnreachableError),
        ("unauthorized", AuthError),
    ],
)
async def test_faults_become_typed_errors_then_clear(mode: str, error: type[Exception]) -> None:
    sim = GenericSimulator()
    async with anyio.create_task_group() as tg:
        await tg.start(sim.serve)
        config = Config(id="d", url=sim.url, timeout=2)
        device = DeviceHttp(config, metrics=Metrics())
        async with device, httpx.AsyncClient() as control:
            await control.post(f"{sim.url}/_sim/fault", json={"mode": mode, "count": 1})
            before = sim.requests
            with pytest.raises(error) as caught:
                await device.get_json("/api/info")
            # Sent once, whatever became of it: a GET may be a command (2N switch/ctrl), and
            # aiohttp on its own sends a GET again when the connection closes unanswered.
            assert sim.requests == before + 1
            assert caught.value.device == "d"  # type: ignore[attr-defined]
            assert (await device.get_json("/api/info"))["serial"] == "SIM-0001"  # one-shot
        tg.cancel_scope.cancel()


async def test_slow_device_times_out_and_oversized_bodies_are_refused() -> None:
    sim = GenericSimulator()
    async with anyio.create_task_group() as tg:
        await tg.start(sim.serve)
        config = Config(id="d", url=sim.url, timeout=0.2)
        device = DeviceHttp(config, metrics=Metrics())
        async with device:
            sim.set_fault(None, count=1, delay=1.0)
            with pytest.raises(DeviceUnreachableError, match="timed out"):
                await device.get_json("/api/info")
            with pytest.raises(DeviceProtocolError, match="exceeds") as caught:
                await device.request("GET", "/api/snapshot", max_bytes=10)
            assert caught.value.code == "too_large"
        tg.cancel_scope.cancel()


async def test_basic_and_auto_auth() -> None:
    sim = GenericSimulator(username="api", password="pw")
    async with anyio.create_task_group() as tg:
        await tg.start(sim.serve)
        for auth in ("basic", "auto"):
            config = Config(id="d", url=sim.url, username="api", password="pw", auth=auth)
            device = DeviceHttp(config, metrics=Metrics())
            async with device:
                assert (await device.get_json("/api/info"))["boot"] == sim.boot
        tg.cancel_scope.cancel()


async def test_auto_auth_learns_the_scheme_per_service_in_one_round_trip() -> None:
    sim = TwoNSimulator(
        username="api",
        password="pw",
        digest_algorithm="SHA-256",
        service_auth={"/api/log/": "basic"},
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sim.serve)
        config = Config(id="d", url=sim.url, username="api", password="pw", auth="auto")
        device = DeviceHttp(config, metrics=Metrics())
        async with device:
            costs = []
            for path in (
                "/api/system/info",
                "/api/system/status",
                "/api/log/caps",
                "/api/log/caps",
            ):
                before = sim.requests
                assert (await device.get_json(path))["success"] is True
                costs.append(sim.requests - before)
            # challenge + answer on first contact with a service, then credentials at once
            assert costs == [2, 1, 2, 1]
            wrong = Config(id="d", url=sim.url, username="api", password="nope", auth="auto")
            refused = DeviceHttp(wrong, metrics=Metrics())
            async with refused:
                before = sim.requests
                with pytest.raises(AuthError):
                    await refused.get_json("/api/system/info")
                assert sim.requests - before == 2
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "\\ud800"}',  # a lone surrogate: nothing could publish it again
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the recursion limit
        b'{"id": ' + b"9" * 5000 + b"}",  # beyond int's digit limit
        b"\x00\xffnot json",
    ],
)
def test_unusable_json_is_a_typed_error(body: bytes) -> None:
    device = DeviceHttp(Config(id="d", url="http://192.0.2.1"), metrics=Metrics())
    with pytest.raises(DeviceProtocolError) as caught:
        device.decode_json(body, "GET /x")
    assert caught.value.code == "bad_json"


def test_lenient_json_takes_the_trailing_commas_of_vendor_examples() -> None:
    device = DeviceHttp(Config(id="d", url="http://192.0.2.1"), metrics=Metrics())
    body = b'{\n  "success" : true,\n}'
    assert device.decode_json(body, "GET /x", lenient=True) == {"success": True}
    with pytest.raises(DeviceProtocolError):
        device.decode_json(body, "GET /x")


async def test_a_finished_request_leaves_nothing_for_the_cycle_collector() -> None:
    """At 1,000 devices the cycles of finished requests made full collections of 75-90 ms."""
    sim = GenericSimulator()
    async with anyio.create_task_group() as tg:
        await tg.start(sim.serve)
        config = Config(id="d", url=sim.url, timeout=2)
        device = DeviceHttp(config, metrics=Metrics())
        async with device:
            for _ in range(5):  # connections, caches: what the first requests set up
                await device.get_json("/api/info")
            gc.collect()
            gc.disable()
            try:
                for _ in range(50):
                    await device.get_json("/api/info")
                found = gc.collect()
            finally:
                gc.enable()
        tg.cancel_scope.cancel()
    assert found < 50  # one cycle per request would be 50 * ~37 objects
