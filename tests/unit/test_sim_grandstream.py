"""The Grandstream GXV simulator behaves as the HTTP API manual says, seen through plain httpx."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest

from bridge.normalize.grandstream import GoformError, parse_get, parse_set
from bridge.simulators.grandstream import GrandstreamSimulator, _fill
from tests.kit import client_of

pytestmark = pytest.mark.anyio
AUTH = httpx.BasicAuth("admin", "admin")


def running(
    sim: GrandstreamSimulator, **client: Any
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    client.setdefault("auth", AUTH)
    return client_of(sim, **client)


async def goform(http: httpx.AsyncClient, module: str, **params: Any) -> str:
    reply = await http.get(f"/goform/{module}", params=params)
    assert reply.status_code == 200, reply.text
    return reply.text


async def test_replies_are_http_1_0_key_value_lines() -> None:
    sim = GrandstreamSimulator()
    async with running(sim) as http:
        reply = await http.get("/goform/systeminfo", params={"cmd": "get"})
        assert reply.http_version == "HTTP/1.0"
        assert "content-length" not in reply.headers
        values = parse_get(reply.text, "systeminfo").merged()
        assert values["productmode"] == "GXV3610_HD"
        assert values["mac"] == sim.mac
        assert values["ircutstatu"] == "1"
        assert sim.hits["systeminfo?get"] == 1


async def test_basic_auth_on_every_request() -> None:
    sim = GrandstreamSimulator()
    async with running(sim, auth=None) as http:
        reply = await http.get("/goform/device", params={"cmd": "get"})
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"].startswith("Basic")
        wrong = await http.get("/snapshot/view0.jpg", auth=httpx.BasicAuth("admin", "x"))
        assert wrong.status_code == 401


async def test_the_encoder_groups_by_channel() -> None:
    sim = GrandstreamSimulator(model="GXV3504")
    sim.set_input(3, active=True)
    sim.set_motion(2, active=True)
    async with running(sim) as http:
        device = parse_get(await goform(http, "device", cmd="get"), "device")
        channels = [g for g in device.groups if "channel" in g]
        assert [g["channel"] for g in channels] == ["0", "1", "2", "3"]
        assert channels[2]["alarmin.status"] == "1"
        motion = parse_get(await goform(http, "motiondetect", cmd="get_md_statu"), "md")
        assert [g["md.alarm.statu"] for g in motion.groups] == ["0", "0", "1", "0"]


async def test_result_words_come_with_http_200() -> None:
    sim = GrandstreamSimulator(model="GXV3504")
    async with running(sim) as http:
        ok = await goform(http, "ptz", cmd="set", ptzcontrol="4", ptzparam="31")
        assert parse_set(ok, "ptz") is False
        assert sim.channels[0].ptz == (4, 31)
        with pytest.raises(GoformError) as missing:
            parse_set(await goform(http, "ptz", cmd="set", ptzcontrol="4"), "ptz")
        assert (missing.value.kind, missing.value.param) == ("missing", "ptzparam")
        with pytest.raises(GoformError) as invalid:
            parse_set(await goform(http, "device", cmd="set", nonsense="1"), "device")
        assert (invalid.value.kind, invalid.value.param) == ("invalid", "nonsense")
        assert (await http.get("/goform/nosuch", params={"cmd": "get"})).status_code == 404


async def test_the_camera_has_no_ptz_and_snapshots_are_jpegs() -> None:
    sim = GrandstreamSimulator()
    async with running(sim) as http:
        assert (await http.get("/goform/ptz", params={"cmd": "get"})).status_code == 404
        snapshot = await http.get("/snapshot/view0.jpg")
        assert snapshot.headers["content-type"] == "image/jpeg"
        assert snapshot.content[:2] == b"\xff\xd8"
        assert snapshot.content[-2:] == b"\xff\xd9"
        assert (await http.get("/snapshot/view1.jpg")).status_code == 404
        assert (await http.get("/snapshot/view4.jpg")).status_code == 200  # 2nd stream


async def test_busy_answers_503_then_recovers() -> None:
    sim = GrandstreamSimulator()
    sim.busy(2)
    async with running(sim) as http:
        for _ in range(2):
            reply = await http.get("/goform/device", params={"cmd": "get"})
            assert reply.status_code == 503
        assert (await http.get("/goform/device", params={"cmd": "get"})).status_code == 200
        assert sim.hits["device?get"] == 3


async def test_outputs_stop_and_recording_rules() -> None:
    sim = GrandstreamSimulator()
    sim.set_output(1, active=True)
    async with running(sim) as http:
        stopped = await goform(http, "alarmio", cmd="set", **{"alarmout.stop": "yes"})
        assert parse_set(stopped, "alarmio") is False  # Successful, no reboot needed
        assert sim.channels[0].output_active is False
        await goform(http, "sdrecord", cmd="set", channel="0", record_start="1")
        assert sim.channels[0].record == 1
        sim.set_recording(0, "alarm")
        refused = await goform(http, "sdrecord", cmd="set", channel="0", record_start="0")
        assert refused.strip() == "record_start Invalid"


async def test_reboot_resets_uptime_and_motion() -> None:
    sim = GrandstreamSimulator()
    sim.advance(100)
    sim.set_motion(0, active=True)
    async with running(sim) as http:
        assert sim.uptime >= 100
        await goform(http, "maintenance", cmd="set", restart="yes")
        assert sim.boot == 2
        assert sim.uptime < 100
        assert sim.channels[0].motion is False


async def test_motion_and_alarm_push_to_the_alarm_server() -> None:
    sim = GrandstreamSimulator(model="GXV3504")
    async with running(sim) as http:
        await goform(
            http,
            "event_server",
            cmd="set",
            server_name="bridge",
            server_url=f"{sim.url}/nowhere?alarm_type=%d&channel=%d",
            **{"server.user.password": "pw-secret"},
        )
        assert "pw-secret" not in await goform(http, "event_server", cmd="get")
        await goform(http, "motiondetect", cmd="set", **{"md.upload_to_alarm_server": "1"})
        sim.set_motion(2, active=True)
        sim.set_motion(2, active=False)  # no "end" request
        with anyio.fail_after(5):
            await sim.wait_until(lambda: len(sim.pushes) == 1)
        url, _ = sim.pushes[0]
        assert url.endswith("/nowhere?alarm_type=2&channel=2")
        sim.configure_push(f"{sim.url}/x?t=%d&c=%d")
        sim.set_input(4, active=True)
        with anyio.fail_after(5):
            await sim.wait_until(lambda: len(sim.pushes) == 2)
        assert sim.pushes[1][0].endswith("/x?t=1&c=3")


def test_placeholders() -> None:
    assert _fill("a?t=%d&c=%d&p=100%%", 2, 3) == "a?t=2&c=3&p=100%"
