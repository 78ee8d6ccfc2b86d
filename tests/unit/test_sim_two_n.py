"""The 2N IP intercom simulator behaves as the HTTP API manual says, seen through plain httpx."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest

from bridge.simulators.generic import JPEG
from bridge.simulators.two_n import TwoNSimulator
from tests.kit import client_of

pytestmark = pytest.mark.anyio

Json = dict[str, Any]


class Clock:
    """Wall time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def running(sim: TwoNSimulator, **client: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return client_of(sim, **client)


async def call(http: httpx.AsyncClient, path: str, **params: Any) -> Json:
    reply = await http.get(path, params=params)
    assert reply.status_code == 200, reply.text
    body: Json = reply.json()
    return body


async def ok(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    body = await call(http, path, **params)
    assert body["success"] is True, body
    return body.get("result")


async def error(http: httpx.AsyncClient, path: str, **params: Any) -> tuple[int, str | None]:
    body = await call(http, path, **params)
    assert body["success"] is False, body
    return body["error"]["code"], body["error"].get("param")


async def subscribe(http: httpx.AsyncClient, **params: Any) -> int:
    channel: int = (await ok(http, "/api/log/subscribe", **params))["id"]
    return channel


async def pull(http: httpx.AsyncClient, channel: int, timeout: float = 0) -> list[Json]:
    events: list[Json] = (await ok(http, "/api/log/pull", id=channel, timeout=timeout))["events"]
    return events


def names(events: list[Json]) -> list[str]:
    return [e["event"] for e in events]


async def parked(sim: TwoNSimulator) -> None:
    """Until a long poll waits on the device (no fixed sleep)."""
    with anyio.fail_after(2):
        await sim.wait_parked()


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_digest_algorithms_are_accepted(algorithm: Any) -> None:
    sim = TwoNSimulator(username="admin", password="pw", digest_algorithm=algorithm)
    challenges: list[str] = []

    async def seen(response: httpx.Response) -> None:
        challenges.append(response.headers.get("www-authenticate", ""))

    hooks = {"response": [seen]}
    async with running(sim, auth=httpx.DigestAuth("admin", "pw"), event_hooks=hooks) as http:
        assert (await ok(http, "/api/system/info"))["serialNumber"] == sim.serial
        assert (await ok(http, "/api/system/status"))["upTime"] >= 0
    assert f"algorithm={algorithm}" in challenges[0]
    assert 'qop="auth"' in challenges[0]
    assert challenges[1:] == ["", ""]  # the nonce is reused without a new challenge


@pytest.mark.parametrize("auth", ["basic", "digest"])
async def test_wrong_password_is_401_with_error_9(auth: Any) -> None:
    sim = TwoNSimulator(username="admin", password="pw", auth=auth)
    credentials = httpx.BasicAuth if auth == "basic" else httpx.DigestAuth
    async with running(sim, auth=credentials("admin", "wrong")) as http:
        reply = await http.get("/api/system/info")
    assert reply.status_code == 401
    assert reply.json() == {
        "success": False,
        "error": {"code": 9, "description": "authorisation required"},
    }
    assert reply.headers["www-authenticate"].lower().startswith(auth)
    assert sim.log == []  # refused requests never reach the API


async def test_basic_auth_and_basic_against_digest() -> None:
    basic = TwoNSimulator(username="admin", password="pw", auth="basic")
    async with running(basic, auth=httpx.BasicAuth("admin", "pw")) as http:
        assert (await ok(http, "/api/log/caps"))["events"]
    digest = TwoNSimulator(username="admin", password="pw")
    assert digest.auth == "digest"  # the device default once there are credentials
    async with running(digest, auth=httpx.BasicAuth("admin", "pw")) as http:
        reply = await http.get("/api/system/info")
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == 8  # invalid authentication method
    assert reply.headers["www-authenticate"].startswith("Digest ")


async def test_stale_nonce_is_renewed_transparently() -> None:
    clock = Clock()
    sim = TwoNSimulator(username="admin", password="pw", nonce_lifetime=300, clock=clock)
    seen: list[tuple[int, str]] = []

    async def record(response: httpx.Response) -> None:
        seen.append((response.status_code, response.headers.get("www-authenticate", "")))

    hooks = {"response": [record]}
    async with running(sim, auth=httpx.DigestAuth("admin", "pw"), event_hooks=hooks) as http:
        await ok(http, "/api/system/info")
        clock.advance(301)
        await ok(http, "/api/system/info")
    assert [status for status, _ in seen] == [401, 200, 401, 200]
    assert "stale=false" in seen[0][1]
    assert "stale=true" in seen[2][1]


async def test_auth_per_service_prefix() -> None:
    sim = TwoNSimulator(username="admin", password="pw", service_auth={"/api/log/": "none"})
    async with running(sim) as http:
        assert "DeviceState" in (await ok(http, "/api/log/caps"))["events"]
        assert (await http.get("/api/system/info")).status_code == 401
    with pytest.raises(ValueError, match="username"):
        TwoNSimulator(auth="digest")


# -- envelope and parameters -------------------------------------------------------------------


async def test_envelope_and_error_codes() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        reply = await http.get("/api/switch/ctrl", params={"switch": 1, "action": "on"})
        assert reply.json() == {"success": True}
        assert reply.headers["server"] == f"HIP{sim.sw_version}"
        reply = await http.get("/api/switch/ctrl", params={"switch": 1, "action": "fly"})
        assert reply.status_code == 200
        assert reply.json() == {
            "success": False,
            "error": {"code": 12, "param": "action", "description": "invalid parameter value"},
        }
        assert await error(http, "/api/switch/ctrl", action="on") == (11, "switch")
        assert await error(http, "/api/switch/ctrl", switch=9, action="on") == (12, "switch")
        assert await error(http, "/api/no/such") == (2, None)
        put = await http.put("/api/system/info")
        assert put.json()["error"] == {"code": 3, "description": "invalid request method"}


async def test_post_form_body_and_last_occurrence_wins() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        reply = await http.post("/api/switch/ctrl?switch=1&action=off", data={"action": "on"})
        assert reply.json() == {"success": True}
        assert sim.switches[1].active
        await http.get("/api/switch/ctrl?switch=1&action=on&action=off")
        assert not sim.switches[1].active
    assert sim.log[0] == ("POST", "/api/switch/ctrl", {"switch": "1", "action": "on"})


async def test_response_parameter_replaces_the_json_and_is_logged() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        reply = await http.get(
            "/api/switch/ctrl", params={"switch": 1, "action": "on", "response": "TEST"}
        )
        assert (reply.headers["content-type"], reply.text) == ("text/plain", "TEST")
        reply = await http.get(
            "/api/io/ctrl", params={"port": "relay1", "action": "on", "response": ""}
        )
        assert (reply.headers["content-type"], reply.text) == ("text/plain", "")
    assert [params.get("response") for _, _, params in sim.log] == ["TEST", ""]


# -- events ------------------------------------------------------------------------------------


async def test_event_envelope_and_startup_first() -> None:
    clock = Clock()
    sim = TwoNSimulator(clock=clock, tz_shift=60)
    clock.advance(8)
    sim.press("%2")
    async with running(sim) as http:
        events = await pull(http, await subscribe(http, include="all"))
    assert events[0] == {
        "id": 1,
        "tzShift": 60,
        "utcTime": 1_700_000_000,
        "upTime": 0,
        "event": "DeviceState",
        "params": {"state": "startup"},
    }
    assert events[1] == {
        "id": 2,
        "tzShift": 60,
        "utcTime": 1_700_000_008,
        "upTime": 8,
        "event": "KeyPressed",
        "params": {"key": "%2"},
    }
    assert names(events) == ["DeviceState", "KeyPressed", "KeyReleased"]


async def test_pull_answers_at_once_when_queued_and_waits_otherwise() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        channel = await subscribe(http)
        assert await pull(http, channel) == []  # include=new: nothing from history
        sim.motion()
        with anyio.fail_after(1):  # queued: the 30 s timeout is not waited for
            assert names(await pull(http, channel, timeout=30)) == ["MotionDetected"]
        got: list[Json] = []

        async def long_poll() -> None:
            got.extend(await pull(http, channel, timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_poll)
            await parked(sim)
            assert got == []
            await http.post("/_sim/event", json={"event": "NewFancyEvent", "params": {"x": 1}})
        assert [(e["event"], e["params"]) for e in got] == [("NewFancyEvent", {"x": 1})]
        with anyio.fail_after(2):
            assert await pull(http, channel, timeout=0.05) == []  # the timeout elapses


async def test_pull_returns_batches_of_128() -> None:
    sim = TwoNSimulator()
    for n in range(300):
        sim.emit("InputChanged", {"port": "input1", "state": n % 2 == 0})
    async with running(sim) as http:
        channel = await subscribe(http, include="all")
        sizes = [len(await pull(http, channel)) for _ in range(4)]
    assert sizes == [128, 128, 45, 0]


async def test_include_replays_history() -> None:
    clock = Clock()
    sim = TwoNSimulator(clock=clock)
    sim.motion()
    clock.advance(100)
    sim.tamper()
    async with running(sim) as http:
        recent = await pull(http, await subscribe(http, include="-10"))
        assert names(recent) == ["TamperSwitchActivated"]
        everything = await pull(http, await subscribe(http, include="-100"))
        assert names(everything) == ["DeviceState", "MotionDetected", "TamperSwitchActivated"]
        assert await error(http, "/api/log/subscribe", include="10") == (12, "include")


async def test_hidden_events_need_the_filter() -> None:
    sim = TwoNSimulator()
    sim.emit("CapabilitiesChanged")
    sim.press()
    async with running(sim) as http:
        default = await pull(http, await subscribe(http, include="all"))
        assert "CapabilitiesChanged" not in names(default)
        named = await pull(
            http, await subscribe(http, include="all", filter="CapabilitiesChanged,KeyPressed")
        )
        assert names(named) == ["CapabilitiesChanged", "KeyPressed"]
    old = TwoNSimulator(firmware="2.15")
    old.emit("CapabilitiesChanged")
    async with running(old) as http:  # 2.15: no filter means every event
        assert "CapabilitiesChanged" in names(
            await pull(http, await subscribe(http, include="all"))
        )


async def test_channel_expires_without_pulls_and_each_pull_extends_it() -> None:
    clock = Clock()
    sim = TwoNSimulator(clock=clock)
    async with running(sim) as http:
        channel = await subscribe(http, duration=10)
        for _ in range(3):
            clock.advance(9)
            assert await pull(http, channel) == []
        clock.advance(10)
        assert await error(http, "/api/log/pull", id=channel) == (12, "id")
        default = await subscribe(http)  # 90 s
        clock.advance(90)
        assert await error(http, "/api/log/pull", id=default) == (12, "id")
        assert await error(http, "/api/log/subscribe", duration=3601) == (12, "duration")
        assert await error(http, "/api/log/pull", id="x") == (12, "id")
        assert await error(http, "/api/log/pull") == (11, "id")


async def test_no_expiry_while_a_pull_is_in_progress() -> None:
    clock = Clock()
    sim = TwoNSimulator(clock=clock)
    async with running(sim) as http:
        channel = await subscribe(http, duration=10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pull, http, channel, 30)
            await parked(sim)
            clock.advance(60)
            sim.door(opened=True)  # wakes the parked pull
        clock.advance(9)
        assert await pull(http, channel) == []  # extended from the end of the last pull


async def test_unsubscribe_closes_the_channel() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        channel = await subscribe(http)
        assert await ok(http, "/api/log/unsubscribe", id=channel) is None
        assert await error(http, "/api/log/pull", id=channel) == (12, "id")
        assert await error(http, "/api/log/unsubscribe", id=channel) == (12, "id")


async def test_expire_control_closes_channels_and_wakes_parked_pulls() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        channel = await subscribe(http)
        got: list[list[Json]] = []
        async with anyio.create_task_group() as tg:

            async def long_poll() -> None:
                got.append(await pull(http, channel, timeout=30))

            tg.start_soon(long_poll)
            await parked(sim)
            assert (await http.post("/_sim/expire")).json()["events"] == []
        assert got == [[]]
        assert await error(http, "/api/log/pull", id=channel) == (12, "id")


async def test_reboot_restarts_ids_history_uptime_and_drops_channels() -> None:
    clock = Clock()
    sim = TwoNSimulator(clock=clock)
    sim.press()
    clock.advance(500)
    async with running(sim) as http:
        channel = await subscribe(http, include="all")
        assert [e["id"] for e in await pull(http, channel)] == [1, 2, 3]
        assert (await ok(http, "/api/system/status"))["upTime"] == 500
        async with anyio.create_task_group() as tg:

            async def dropped() -> None:
                with pytest.raises(httpx.RemoteProtocolError):  # the connection dies
                    await pull(http, channel, timeout=30)

            tg.start_soon(dropped)
            await parked(sim)
            rebooted = (await http.post("/_sim/reboot")).json()
        assert rebooted == {"boot": 2, "events": [sim.history[0]]}
        assert await error(http, "/api/log/pull", id=channel) == (12, "id")
        events = await pull(http, await subscribe(http, include="all"))
        assert [(e["id"], e["event"], e["upTime"]) for e in events] == [(1, "DeviceState", 0)]
        clock.advance(5)
        assert (await ok(http, "/api/system/status")) == {"systemTime": 1_700_000_505, "upTime": 5}


async def test_restart_endpoint_answers_then_reboots() -> None:
    clock = Clock()
    sim = TwoNSimulator(clock=clock, restart_downtime=30)
    async with running(sim) as http:
        channel = await subscribe(http)
        assert await ok(http, "/api/system/restart") is None
        assert sim.boot == 2
        with pytest.raises(httpx.TransportError):  # still restarting
            await http.get("/api/system/info")
        clock.advance(31)
        assert await error(http, "/api/log/pull", id=channel) == (12, "id")
        assert names(await pull(http, await subscribe(http, include="all"))) == ["DeviceState"]


async def test_history_ring_sizes_per_generation() -> None:
    assert TwoNSimulator().history.maxlen == 10_000
    old = TwoNSimulator(firmware="2.15")
    for _ in range(600):
        old.motion()
    assert len(old.history) == 500
    assert old.history[0]["id"] == 102
    async with running(old) as http:
        channel = await subscribe(http, include="all")
        assert [len(await pull(http, channel)) for _ in range(5)] == [128, 128, 128, 116, 0]


# -- switches, I/O, calls, camera, audio -------------------------------------------------------


async def test_trigger_emits_both_switch_events_from_the_api() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        channel = await subscribe(http, filter="SwitchStateChanged")
        await ok(http, "/api/switch/ctrl", switch=1, action="trigger")
        events = await pull(http, channel)
        assert [e["params"] for e in events] == [
            {"switch": 1, "state": True, "originator": "api"},
            {"switch": 1, "state": False, "originator": "api"},
        ]
        status = (await ok(http, "/api/switch/status", switch=1))["switches"]
        assert status == [{"switch": 1, "active": False, "locked": False, "held": False}]


async def test_monostable_switch_turns_off_after_its_duration() -> None:
    sim = TwoNSimulator(switch_on_duration=0.05)
    async with running(sim) as http:
        channel = await subscribe(http, filter="SwitchStateChanged")
        caps = (await ok(http, "/api/switch/caps", switch=1))["switches"]
        assert caps == [
            {
                "switch": 1,
                "enabled": True,
                "mode": "monostable",
                "switchOnDuration": 0.05,
                "type": "normal",
            }
        ]
        await ok(http, "/api/switch/ctrl", switch=1, action="trigger")
        assert [e["params"]["state"] for e in await pull(http, channel)] == [True]
        with anyio.fail_after(2):
            assert [e["params"]["state"] for e in await pull(http, channel, timeout=5)] == [False]


async def test_lock_and_hold() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        await ok(http, "/api/switch/ctrl", switch=1, action="on")
        await ok(http, "/api/switch/ctrl", switch=1, action="lock")  # deactivates
        assert not sim.switches[1].active
        body = await call(http, "/api/switch/ctrl", switch=1, action="on")
        assert body["error"] == {"code": 14, "description": "action failed"}
        assert await error(http, "/api/switch/ctrl", switch=1, action="trigger") == (14, None)
        await ok(http, "/api/switch/ctrl", switch=1, action="hold")  # lock beats hold
        assert not sim.switches[1].active
        await ok(http, "/api/switch/ctrl", switch=1, action="off")  # already off
        await ok(http, "/api/switch/ctrl", switch=1, action="unlock")
        assert sim.switches[1].active
        assert await error(http, "/api/switch/ctrl", switch=1, action="off") == (14, None)
        await ok(http, "/api/switch/ctrl", switch=1, action="release")
        assert not sim.switches[1].active
        await ok(http, "/api/switch/ctrl", switch=2, action="hold", timeout=600)
        status = (await ok(http, "/api/switch/status", switch=2))["switches"][0]
        assert status == {
            "switch": 2,
            "active": True,
            "locked": False,
            "held": True,
            "holdTimeout": 600,
        }
        assert await error(http, "/api/switch/ctrl", switch=2, action="hold", timeout=0) == (
            12,
            "timeout",
        )


async def test_disabled_and_bistable_switches() -> None:
    sim = TwoNSimulator()
    sim.switches[2].enabled = False
    sim.switches[3].mode = "bistable"
    async with running(sim) as http:
        caps = (await ok(http, "/api/switch/caps"))["switches"]
        assert caps[1] == {"switch": 2, "enabled": False}
        assert "switchOnDuration" not in caps[2]
        for action in ("on", "off", "lock", "release"):
            assert await error(http, "/api/switch/ctrl", switch=2, action=action) == (14, None)
        await ok(http, "/api/switch/ctrl", switch=3, action="trigger")
        assert sim.switches[3].active
        await ok(http, "/api/switch/ctrl", switch=3, action="trigger")
        assert not sim.switches[3].active


async def test_io_ports() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        channel = await subscribe(http)
        caps = (await ok(http, "/api/io/caps"))["ports"]
        assert {"port": "relay1", "type": "output"} in caps
        await ok(http, "/api/io/ctrl", port="relay1", action="on")
        status = (await ok(http, "/api/io/status", port="relay1"))["ports"]
        assert status == [{"port": "relay1", "state": 1}]
        assert await error(http, "/api/io/ctrl", port="input1", action="on") == (12, "port")
        assert await error(http, "/api/io/status", port="nope") == (12, "port")
        await http.post("/_sim/input", json={"port": "input2", "state": True})
        events = [(e["event"], e["params"]) for e in await pull(http, channel)]
        assert events == [
            ("OutputChanged", {"port": "relay1", "state": True}),
            ("InputChanged", {"port": "input2", "state": True}),
        ]


async def test_calls() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        channel = await subscribe(http, filter="CallStateChanged")
        session = (await ok(http, "/api/call/dial", number="sip:1234@pbx"))["session"]
        assert (await ok(http, "/api/call/status"))["sessions"] == [
            {"session": session, "direction": "outgoing", "state": "ringing"}
        ]
        await ok(http, "/api/call/hangup", session=session)
        states = [
            (e["params"]["direction"], e["params"]["state"]) for e in await pull(http, channel)
        ]
        assert states == [
            ("outgoing", "connecting"),
            ("outgoing", "ringing"),
            ("outgoing", "terminated"),
        ]
        assert (await ok(http, "/api/call/status"))["sessions"] == []
        incoming = (await http.post("/_sim/incoming", json={"peer": "sip:9@pbx"})).json()
        ringing = incoming["events"][0]["params"]
        assert await error(http, "/api/call/answer", session=999) == (12, "session")
        await ok(http, "/api/call/answer", session=ringing["session"])
        assert sim.calls[ringing["session"]].state == "connected"
        assert await error(http, "/api/call/dial") == (11, "number")
        assert await error(http, "/api/call/dial", number="1", users="u") == (17, "users")
        accounts = (await ok(http, "/api/phone/status"))["accounts"]
        assert [a["registered"] for a in accounts] == [True, False]


async def test_camera_snapshot() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        caps = await ok(http, "/api/camera/caps")
        assert {"width": 640, "height": 480} in caps["jpegResolution"]
        reply = await http.get(
            "/api/camera/snapshot", params={"width": 640, "height": 480, "time": -5}
        )
        assert (reply.headers["content-type"], reply.content) == ("image/jpeg", JPEG)
        assert await error(http, "/api/camera/snapshot", width=641, height=480) == (12, "width")
        assert await error(http, "/api/camera/snapshot", width=640, height=481) == (12, "height")
        assert await error(http, "/api/camera/snapshot", width=640, height=480, time=-31) == (
            12,
            "time",
        )
        assert await error(http, "/api/camera/snapshot", height=480) == (11, "width")


async def test_audio_test_reports_by_event() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        channel = await subscribe(http)
        await ok(http, "/api/audio/test")
        assert [e["params"] for e in await pull(http, channel)] == [{"result": "passed"}]


# -- firmware generations, control API, faults -------------------------------------------------


async def test_generation_2_15() -> None:
    unlicensed = TwoNSimulator(firmware="2.15", licensed=False)
    async with running(unlicensed) as http:
        assert await error(http, "/api/switch/ctrl", switch=1, action="on") == (5, None)
        body = await call(http, "/api/audio/test")
        assert body["error"] == {"code": 5, "description": "function is licensed"}
        assert (await ok(http, "/api/system/info"))["variant"] == "2N Helios IP Vario"
        assert len((await ok(http, "/api/log/caps"))["events"]) == 17
        assert (await http.get("/api/camera/snapshot?width=640&height=480")).content == JPEG
    licensed = TwoNSimulator(firmware="2.15")
    async with running(licensed) as http:
        channel = await subscribe(http)
        assert await error(http, "/api/switch/ctrl", switch=1, action="lock") == (12, "action")
        await ok(http, "/api/switch/ctrl", switch=1, action="on")
        assert (await ok(http, "/api/switch/status"))["switches"][0] == {
            "switch": 1,
            "active": True,
        }
        assert [e["params"] for e in await pull(http, channel)] == [{"switch": 1, "state": True}]


async def test_control_api_device_behaviour() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:

        async def control(action: str, **body: Any) -> list[tuple[str, Json]]:
            reply = await http.post(f"/_sim/{action}", json=body)
            return [(e["event"], e["params"]) for e in reply.json()["events"]]

        pressed = await control("press", key="%1", call=True)
        assert [n for n, _ in pressed] == [
            "KeyPressed",
            "KeyReleased",
            "CallStateChanged",
            "CallStateChanged",
        ]
        assert [p.get("state") for _, p in pressed[2:]] == ["connecting", "ringing"]
        card = await control("card", uid="04A1B2C3", reader="ext1")
        assert [n for n, _ in card] == [
            "CardEntered",
            "UserAuthenticated",
            "SwitchStateChanged",
            "SwitchStateChanged",
        ]
        assert card[0][1]["uid"] == "04A1B2C3"
        assert card[2][1]["originator"] == "ap"
        rejected = await control("card", valid=False)
        assert rejected[1] == ("UserRejected", rejected[1][1])
        assert rejected[1][1]["reason"] == "invalidCredential"
        assert (await control("code", code="5864", valid=False))[0][1]["code"] == "5864"
        assert await control("door", opened=False) == [("DoorStateChanged", {"state": "closed"})]
        assert await control("motion", active=False) == [("MotionDetected", {"state": "out"})]
        assert await control("tamper") == [("TamperSwitchActivated", {"state": "in"})]
        assert await control("event", name="Whatever", params={"a": 1}) == [("Whatever", {"a": 1})]
        assert (await http.post("/_sim/teleport")).status_code == 404


async def test_vendor_error_fault_is_a_2n_envelope() -> None:
    sim = TwoNSimulator()
    async with running(sim) as http:
        await http.post("/_sim/fault", json={"mode": "vendor_error", "count": 1})
        assert await error(http, "/api/system/info") == (14, None)
        assert (await ok(http, "/api/system/info"))["swVersion"] == sim.sw_version
