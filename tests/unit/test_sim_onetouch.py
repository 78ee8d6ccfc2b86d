"""The Onetouch intercom simulator behaves as the HTTP API manual says, seen through plain httpx."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest

from bridge.simulators.base import Simulator, json_response
from bridge.simulators.onetouch import OnetouchSimulator
from bridge.simulators.server import Request, Response
from tests.kit import client_of

pytestmark = pytest.mark.anyio

Json = dict[str, Any]
DIGEST = httpx.DigestAuth("admin", "httpapi")


class Clock:
    """Wall time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def running(sim: Simulator, **client: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    client.setdefault("auth", DIGEST)
    return client_of(sim, **client)


async def get(http: httpx.AsyncClient, path: str, **params: Any) -> Json:
    reply = await http.get(path, params=params)
    assert reply.status_code == 200, reply.text
    body: Json = reply.json()
    return body


async def post(http: httpx.AsyncClient, target: str, action: str, data: Json | None = None) -> Json:
    envelope: Json = {"target": target, "action": action}
    if data is not None:
        envelope["data"] = data
    reply = await http.post("/api/", json=envelope)
    assert reply.status_code == 200, reply.text
    body: Json = reply.json()
    return body


async def ok(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    body = await get(http, path, **params)
    assert body["retcode"] == 0, body
    assert body["message"] == "OK"
    return body.get("data")


async def until(sim: OnetouchSimulator, predicate: Callable[[], bool]) -> None:
    """Wait for a state of the simulator, with a deadline (never a fixed sleep)."""
    with anyio.fail_after(5):
        await sim.wait_until(predicate)


UNSUPPORTED = {"retcode": -1, "action": "unknow", "message": "unsupport action"}


# -- request styles and envelope ---------------------------------------------------------------


async def test_get_and_post_styles_give_the_same_replies() -> None:
    sim = OnetouchSimulator()
    async with running(sim) as http:
        by_get = await get(http, "/api/system/info")
        by_post = await post(http, "system", "info")
        assert by_get == by_post
        assert by_get["action"] == "info"
        info = by_get["data"]
        assert info["Status"] == {
            "Model": "OT-IP-LP-C9",
            "MAC": "0C:11:05:08:93:C6",
            "FirmwareVersion": "29.31.1.617",
            "HardwareVersion": "29.3.0",
        }
        assert info["Lan"]["PortType"] == "0"
        assert info["Account1"] == {"UserName": "130", "SipServer": "192.168.1.115", "Status": "2"}
        every = [v for section in info.values() for v in section.values()]
        assert all(isinstance(v, str) for v in every)  # system/info: all strings

        # POST to the function's own path, with the envelope or with data alone
        reply = await http.post("/api/relay/trig", json={"data": {"num": 2, "mode": 1, "level": 1}})
        assert reply.json() == {"retcode": 0, "action": "trig", "message": "OK"}
        reply = await http.post("/api/relay/trig", json={"num": 3, "mode": 1, "level": 1})
        assert reply.json()["retcode"] == 0
        status = await ok(http, "/api/relay/status")
        assert status == {"RelayA": 0, "RelayB": 1, "RelayC": 1}  # ints
        # the manual's request examples carry trailing commas: accepted
        reply = await http.post("/api/", content=b'{"target": "sip", "action": "status",}')
        assert reply.json()["data"]["Account2"] == {"UserName": "", "SipServer": "", "Status": "0"}
        assert (await get(http, "/api/system/status"))["data"].keys() == {"SystemTime", "UpTime"}
        firmware = await ok(http, "/api/firmware/status")
        assert firmware["MAC"] == sim.mac
    assert sim.hits["system/info"] == 2
    assert sim.hits["relay/trig"] == 2
    assert sim.log[2] == ("POST", "relay/trig", {"num": 2, "mode": 1, "level": 1})


async def test_unknown_and_post_only_functions_answer_unsupport_with_200() -> None:
    sim = OnetouchSimulator()
    async with running(sim) as http:
        assert await get(http, "/api/nosuch/info") == UNSUPPORTED
        assert await get(http, "/api/system/fly") == UNSUPPORTED
        assert await post(http, "system", "fly") == UNSUPPORTED
        assert await get(http, "/api/input/set", **{"Config.DoorSetting.INPUT.EnableA": "0"}) == (
            UNSUPPORTED
        )  # POST only
        assert await get(http, "/api/system") == UNSUPPORTED
        reply = await http.post("/api/", content=b"{not json")
        assert reply.json() == {"retcode": -1, "action": "unknow", "message": "invalid json"}
        assert (await http.put("/api/system/info")).json() == UNSUPPORTED
        assert (await http.get("/index.html")).status_code == 404
    assert sim.config["Config.DoorSetting.INPUT.EnableA"] == "1"


async def test_trailing_commas_and_wrong_actions_as_in_the_manual() -> None:
    sim = OnetouchSimulator(auth="none")
    async with running(sim) as http:
        reboot = await http.get("/api/system/reboot")
        assert reboot.text == '{"retcode":0,"action":"status","message":"OK",}'
        with pytest.raises(json.JSONDecodeError):
            reboot.json()
        config = (await http.get("/api/config/get")).text
        assert config.endswith(",},}")
        data = json.loads(re.sub(r",\s*([}\]])", r"\1", config))["data"]
        assert data["Config.Account1.ANONYMOUS_CALL.PrivacyHeaderValue"] == "id"
        assert list(data) == sorted(data)
        level = {"Config.Settings.LOGLEVEL.Level": "7"}
        assert await post(http, "log", "set", level) == {
            "retcode": 0,
            "action": "get",  # sic
            "message": "OK",
            "data": level,
        }
        assert (await get(http, "/api/callog/clear", type="Missed"))["action"] == "upgrade"
    strict = OnetouchSimulator(auth="none", quirks=False)
    async with running(strict) as http:
        assert (await http.get("/api/system/reboot")).json()["action"] == "status"
        assert (await http.get("/api/config/get")).json()["retcode"] == 0


@pytest.mark.parametrize("spelling", ["callog", "calllog"])
async def test_call_log_path_spelling(spelling: Any) -> None:
    other = "calllog" if spelling == "callog" else "callog"
    sim = OnetouchSimulator(calllog_path=spelling)
    async with running(sim) as http:
        assert (await ok(http, f"/api/{spelling}/get")) == {"num": 0, "item": []}
        assert await get(http, f"/api/{other}/get") == UNSUPPORTED
        assert (await post(http, spelling, "get"))["retcode"] == 0
        assert await post(http, other, "get") == UNSUPPORTED


# -- authentication ----------------------------------------------------------------------------


async def test_digest_challenge_and_qop_auth() -> None:
    sim = OnetouchSimulator()
    seen: list[tuple[int, str]] = []

    async def record(response: httpx.Response) -> None:
        seen.append((response.status_code, response.headers.get("www-authenticate", "")))

    async with running(sim, event_hooks={"response": [record]}) as http:
        assert (await ok(http, "/api/system/status"))["UpTime"] >= 0
        assert (await post(http, "call", "status"))["data"] == {"Status": "READY"}
    assert [status for status, _ in seen] == [401, 200, 200]  # the nonce is reused
    challenge = seen[0][1]
    assert challenge.startswith('Digest realm="HTTPAPI", qop="auth,auth-int", nonce="')
    assert "opaque=" in challenge
    assert "stale" not in challenge


async def test_wrong_password_missing_credentials_and_basic() -> None:
    sim = OnetouchSimulator()
    async with running(sim, auth=httpx.DigestAuth("admin", "wrong")) as http:
        reply = await http.get("/api/system/info")
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"].startswith("Digest ")
        assert reply.json()["retcode"] == -1
    async with running(sim, auth=None) as http:
        assert (await http.get("/api/system/info")).status_code == 401
    async with running(sim, auth=httpx.BasicAuth("admin", "httpapi")) as http:
        assert (await http.get("/api/system/info")).status_code == 401  # Digest only
    assert sim.hits == {}  # refused requests never reach the API

    basic = OnetouchSimulator(auth="basic", username="u", password="p")
    async with running(basic, auth=httpx.BasicAuth("u", "p")) as http:
        assert (await ok(http, "/api/call/status")) == {"Status": "READY"}
    async with running(basic, auth=httpx.BasicAuth("u", "x")) as http:
        reply = await http.get("/api/call/status")
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == 'Basic realm="HTTPAPI"'
    async with running(OnetouchSimulator(auth="none"), auth=None) as http:
        assert (await ok(http, "/api/call/status")) == {"Status": "READY"}


async def test_expired_nonces_are_stale_and_renewed_transparently() -> None:
    sim = OnetouchSimulator()
    seen: list[tuple[int, str]] = []

    async def record(response: httpx.Response) -> None:
        if response.request.url.path.startswith("/api/"):
            seen.append((response.status_code, response.headers.get("www-authenticate", "")))

    async with running(sim, event_hooks={"response": [record]}) as http:
        await ok(http, "/api/system/info")
        expired = (await http.post("/_sim/expire_nonces")).json()
        assert expired["result"] == 1
        await ok(http, "/api/system/info")
        sim.advance(301)  # beyond nonce_lifetime
        await ok(http, "/api/system/info")
    assert [status for status, _ in seen] == [401, 200, 401, 200, 401, 200]
    assert seen[2][1].endswith("stale=true")
    assert seen[4][1].endswith("stale=true")


async def test_auth_int_is_verified() -> None:
    """qop=auth-int hashes the body: computed by hand, as httpx only does qop=auth."""

    def md5(text: str | bytes) -> str:
        data = text.encode() if isinstance(text, str) else text
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    sim = OnetouchSimulator()
    async with running(sim, auth=None) as http:
        challenge = (await http.post("/api/")).headers["www-authenticate"]
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        body = b'{"target": "call", "action": "status"}'

        def header(password: str) -> str:
            ha1 = md5(f"admin:HTTPAPI:{password}")
            ha2 = md5(f"POST:/api/:{md5(body)}")
            response = md5(f"{ha1}:{fields['nonce']}:00000001:c0ffee:auth-int:{ha2}")
            return (
                f'Digest username="admin", realm="HTTPAPI", nonce="{fields["nonce"]}", '
                f'uri="/api/", qop=auth-int, nc=00000001, cnonce="c0ffee", '
                f'response="{response}", opaque="{fields["opaque"]}"'
            )

        good = await http.post("/api/", content=body, headers={"Authorization": header("httpapi")})
        assert good.json()["data"] == {"Status": "READY"}
        bad = await http.post("/api/", content=body, headers={"Authorization": header("nope")})
        assert bad.status_code == 401


async def test_api_disabled_answers_403_whatever_the_credentials() -> None:
    sim = OnetouchSimulator(api_enabled=False)
    async with running(sim) as http:
        reply = await http.get("/api/system/info")
        assert reply.status_code == 403
        assert "HTTP API disabled" in reply.text
        assert (await http.post("/_sim/api", json={"enabled": True})).json()["state"]["api_enabled"]
        await ok(http, "/api/system/info")
        await http.post("/_sim/api", json={"enabled": False})
        assert (await http.get("/api/system/info")).status_code == 403


# -- relays ------------------------------------------------------------------------------------


async def test_relay_trig_validates_every_parameter() -> None:
    sim = OnetouchSimulator()
    async with running(sim) as http:
        for params, name in (
            ({"mode": 2, "num": 1}, "mode"),
            ({"num": 4}, "num"),
            ({"num": 0}, "num"),
            ({"num": "A"}, "num"),
            ({"num": 1, "level": 2}, "level"),
            ({"num": 1, "delay": 65536}, "delay"),
            ({"num": 1, "delay": -1}, "delay"),
        ):
            body = await get(http, "/api/relay/trig", **params)
            assert body == {"retcode": -1, "action": "trig", "message": f"invalid param: {name}"}
        missing = await post(http, "relay", "trig", {"mode": 0})
        assert missing["message"] == "missing param: num"
        assert (await post(http, "relay", "trig", {"num": True}))["message"] == "invalid param: num"
    assert [r.trigs for r in sim.relays.values()] == [0, 0, 0]


async def test_auto_close_after_delay_or_hold_delay_on_the_simulator_clock() -> None:
    sim = OnetouchSimulator(clock=Clock())
    async with running(sim) as http:
        await ok(http, "/api/relay/trig", mode=0, num=1, level=0, delay=10)
        assert (await ok(http, "/api/relay/status"))["RelayA"] == 1
        await http.post("/_sim/clock", json={"advance": 9})
        assert (await ok(http, "/api/relay/status"))["RelayA"] == 1
        await http.post("/_sim/clock", json={"advance": 1})
        assert (await ok(http, "/api/relay/status"))["RelayA"] == 0
        # delay 0: HoldDelayX (5 s by default, 3 s after relay/set)
        hold = {"Config.DoorSetting.RELAY.HoldDelayB": "3"}
        assert (await post(http, "relay", "set", hold))["retcode"] == 0
        assert (await ok(http, "/api/relay/get"))["Config.DoorSetting.RELAY.HoldDelayB"] == "3"
        await ok(http, "/api/relay/trig", mode=0, num=2, level=0, delay=0)
        sim.advance(2)
        assert sim.relays[2].state == 1
        sim.advance(1)
        assert sim.relays[2].state == 0
        # a new trig restarts the pulse; exactly one HTTP call per trig
        await ok(http, "/api/relay/trig", mode=0, num=3, delay=5)
        sim.advance(4)
        await ok(http, "/api/relay/trig", mode=0, num=3, delay=5)
        sim.advance(4)
        assert sim.relays[3].state == 1
        sim.advance(1)
        assert sim.relays[3].state == 0
    assert [(r.trigs, r.activations) for r in sim.relays.values()] == [(1, 1), (1, 1), (2, 1)]


async def test_auto_close_follows_real_time_while_serving() -> None:
    sim = OnetouchSimulator()
    sim.config["Config.DoorSetting.RELAY.HoldDelayA"] = "1"
    async with running(sim) as http:
        await ok(http, "/api/relay/trig", mode=0, num=1, level=0, delay=0)
        assert sim.relays[1].state == 1
        await until(sim, lambda: sim.relays[1].state == 0)


async def test_manual_mode_holds_the_level() -> None:
    sim = OnetouchSimulator()
    async with running(sim) as http:
        await ok(http, "/api/relay/trig", mode=1, num=1, level=1, delay=5)
        sim.advance(3600)
        assert (await ok(http, "/api/relay/status"))["RelayA"] == 1
        await ok(http, "/api/relay/trig", mode=1, num=1, level=0, delay=5)
        assert (await ok(http, "/api/relay/status"))["RelayA"] == 0
    assert sim.relays[1].trigs == 2


async def test_relay_and_sip_config_carry_secrets_and_set_validates() -> None:
    sim = OnetouchSimulator(relay_password="door-pw", sip_password="sip-pw")
    async with running(sim) as http:
        relay = await ok(http, "/api/relay/get")
        assert relay["Config.DoorSetting.RELAY.Password"] == "door-pw"
        assert [relay[f"Config.DoorSetting.RELAY.Name{x}"] for x in "ABC"] == [
            "RelayA",
            "RelayB",
            "RelayC",
        ]
        assert relay["Config.DoorSetting.RELAY.HoldDelayC"] == "5"
        assert relay["Config.DoorSetting.DTMF.MultiCode3"] == "013"
        sip = await ok(http, "/api/sip/get")
        assert sip["Config.Account1.GENERAL.Pwd"] == "sip-pw"
        assert sip["Config.Account2.SIP.ListenPortMin"] == "5063"
        bad = await post(http, "relay", "set", {"Config.DoorSetting.RELAY.HoldDelayA": "61"})
        assert bad == {
            "retcode": -1,
            "action": "set",
            "message": "invalid param: Config.DoorSetting.RELAY.HoldDelayA",
        }
        wrong_module = await post(http, "relay", "set", {"Config.DoorSetting.INPUT.EnableA": "0"})
        assert wrong_module["retcode"] == -1
        new = {"Config.Account2.GENERAL.UserName": "131", "Config.Account2.SIP.Server": "10.0.0.1"}
        assert (await post(http, "sip", "set", new))["retcode"] == 0
        status = await ok(http, "/api/sip/status")
        assert status["Account2"] == {"UserName": "131", "SipServer": "10.0.0.1", "Status": "0"}


# -- inputs and the Action URL -----------------------------------------------------------------


async def test_input_status_is_the_raw_level_per_option() -> None:
    sim = OnetouchSimulator(auth="none")
    async with running(sim, auth=None) as http:
        assert await ok(http, "/api/input/status") == {"InputA": 1, "InputB": 1, "InputC": 1}
        await http.post("/_sim/input", json={"port": 1, "active": True})  # Low Trig: level 0
        set_b = {"Config.DoorSetting.INPUT.OptionB": "1", "Config.DoorSetting.INPUT.EnableB": "0"}
        assert (await post(http, "input", "set", set_b))["retcode"] == 0
        assert (await ok(http, "/api/input/get"))["Config.DoorSetting.INPUT.OptionB"] == "1"
        # the level stays (GPIO), its meaning flips: B (level 1, High Trig) reads active now
        assert sim.input_active(2)
        state = (await http.post("/_sim/input", json={"port": 2, "active": False})).json()
        assert state["state"]["inputs"]["B"] == {"level": 0, "active": False}
        await http.post("/_sim/input", json={"port": "C", "level": 0})
        assert await ok(http, "/api/input/status") == {"InputA": 0, "InputB": 0, "InputC": 0}
        bad = await post(http, "input", "set", {"Config.DoorSetting.INPUT.OptionA": "2"})
        assert bad["message"] == "invalid param: Config.DoorSetting.INPUT.OptionA"
        assert (await http.post("/_sim/input", json={"port": 4})).status_code == 400
    # an enabled input opens its relay (RelayIdX), a disabled one (B) does not
    assert [r.activations for r in sim.relays.values()] == [1, 0, 1]


async def test_action_url_get_is_delivered_on_the_active_edge() -> None:
    class Receiver(Simulator):
        def __init__(self) -> None:
            super().__init__()
            self.got: list[str] = []
            self.arrived = anyio.Event()

        async def route(self, request: Request) -> Response:
            self.got.append(request.target)
            self.arrived.set()
            return json_response({})

    receiver = Receiver()
    sim = OnetouchSimulator()
    async with anyio.create_task_group() as tg:
        await tg.start(receiver.serve)
        async with running(sim) as http:
            push = {
                "Config.DoorSetting.INPUT.HttpEnableA": "1",
                "Config.DoorSetting.INPUT.ActionUrlA": f"{receiver.url}/push/door?input=A",
                "Config.DoorSetting.INPUT.RelayIdA": "0",
            }
            assert (await post(http, "input", "set", push))["retcode"] == 0
            sim.set_input(1, False)  # already idle: no edge
            sim.set_input(1, True)
            with anyio.fail_after(5):
                await receiver.arrived.wait()
            await until(sim, lambda: len(sim.pushes) == 1)
            sim.set_input(1, False)  # release: nothing sent
            sim.set_input(2, True)  # HttpEnableB is 0
            # a target that refuses: counted, ignored
            sim.config["Config.DoorSetting.INPUT.HttpEnableC"] = "1"
            sim.config["Config.DoorSetting.INPUT.ActionUrlC"] = "http://127.0.0.1:1/x"
            sim.set_input(3, True)
            await until(sim, lambda: len(sim.pushes) == 2)
        tg.cancel_scope.cancel()
    assert receiver.got == ["/push/door?input=A"]
    assert sim.pushes[0] == (f"{receiver.url}/push/door?input=A", 200)
    assert sim.push_failures == 1
    assert [r.activations for r in sim.relays.values()] == [0, 1, 1]


async def test_input_delay_then_relay() -> None:
    sim = OnetouchSimulator(clock=Clock())
    sim.config["Config.DoorSetting.INPUT.DelayA"] = "4"
    sim.set_input(1, True)
    assert sim.relays[1].state == 0
    sim.advance(4)
    assert sim.relays[1].state == 1
    sim.advance(5)
    assert sim.relays[1].state == 0


# -- door log ----------------------------------------------------------------------------------


async def test_card_code_face_records_with_increasing_string_ids() -> None:
    clock = Clock()
    sim = OnetouchSimulator(clock=clock, tz_offset=3600)
    async with running(sim) as http:
        card = (
            await http.post("/_sim/card", json={"uid": "00B4161D", "valid": True, "name": "Ann"})
        ).json()
        assert card["result"]["ID"] == "1"
        assert card["state"]["relays"]["A"]["state"] == 1  # a valid card opens its door
        sim.advance(5)  # and it closes after HoldDelayA
        assert sim.relays[1].state == 0
        await http.post("/_sim/card", json={"uid": "DEADBEEF", "valid": False})
        await http.post("/_sim/code", json={"code": "1234", "valid": True, "name": "Bob"})
        await http.post("/_sim/code", json={"code": "0000", "valid": True, "public": True})
        await http.post("/_sim/face", json={"name": "Eve", "valid": False, "door": 2})
        await http.post("/_sim/access", json={"type": "Unknow", "valid": False})
        log = await ok(http, "/api/doorlog/get")
        assert log["num"] == 6
        assert log["item"][0] == {
            "ID": "1",
            "Type": "Card",
            "Name": "Ann",
            "Status": "Success",
            "Code": "00B4161D",
            "Date": "2023-11-14",
            "Time": "23:13:20",  # device local time (UTC+1)
        }
        rows = [(i["ID"], i["Type"], i["Status"], i["Code"]) for i in log["item"]]
        assert rows == [
            ("1", "Card", "Success", "00B4161D"),
            ("2", "Card", "Failed", "DEADBEEF"),
            ("3", "Password", "Success", "1234"),
            ("4", "Public", "Success", "0000"),
            ("5", "Face", "Failed", ""),
            ("6", "Unknow", "Failed", ""),
        ]
        sim.advance(5)
        assert sim.relays[1].state == 0
        assert sim.relays[1].activations == 2  # card, then code (public code while open)
        assert sim.relays[2].activations == 0
        assert sim.relays[1].trigs == 0  # no HTTP call opened it
        sim.doorlog_format = "numbers"
        items = (await ok(http, "/api/doorlog/get"))["item"]
        assert [(i["Type"], i["Status"]) for i in items] == [
            ("1", "0"),
            ("1", "1"),
            ("2", "0"),
            ("3", "0"),
            ("4", "1"),
            ("0", "1"),
        ]


async def test_door_log_del_clear_bound_and_ids_never_reused() -> None:
    sim = OnetouchSimulator(log_size=3)
    for n in range(5):
        sim.swipe(f"C{n}", door=0)
    async with running(sim) as http:
        assert [i["ID"] for i in (await ok(http, "/api/doorlog/get"))["item"]] == ["3", "4", "5"]
        assert (await post(http, "doorlog", "del", {"ID": "4"}))["retcode"] == 0
        assert (await post(http, "doorlog", "del", {"ID": "4"}))["message"] == "invalid param: ID"
        assert await get(http, "/api/doorlog/del", ID="3") == UNSUPPORTED  # POST only
        assert (await ok(http, "/api/doorlog/clear")) is None
        assert await ok(http, "/api/doorlog/get") == {"num": 0, "item": []}
        sim.face("Zed")
        assert [i["ID"] for i in (await ok(http, "/api/doorlog/get"))["item"]] == ["6"]


async def test_reboot_keeps_records_and_restarts_uptime() -> None:
    sim = OnetouchSimulator(clock=Clock())
    sim.swipe("00B4161D")
    sim.incoming_call("101")
    sim.end_call()
    sim.incoming_call("102")  # ringing when the device reboots
    sim.trig(2, mode=1, level=1)
    sim.set_input(3, True)
    sim.advance(1000)
    async with running(sim) as http:
        assert (await ok(http, "/api/system/status"))["UpTime"] == 1000
        reply = await http.post("/_sim/reboot", json={"downtime": 30})
        assert reply.json()["state"]["boot"] == 2
        with pytest.raises(httpx.TransportError):  # unreachable while rebooting
            await http.get("/api/system/status")
        sim.advance(30)
        status = await ok(http, "/api/system/status")
        assert status["UpTime"] == 0
        assert await ok(http, "/api/relay/status") == {"RelayA": 0, "RelayB": 0, "RelayC": 0}
        assert await ok(http, "/api/input/status") == {"InputA": 1, "InputB": 1, "InputC": 1}
        assert await ok(http, "/api/call/status") == {"Status": "READY"}
        assert [i["ID"] for i in (await ok(http, "/api/doorlog/get"))["item"]] == ["1"]
        assert [i["ID"] for i in (await ok(http, "/api/callog/get"))["item"]] == ["1"]
        sim.swipe("00B4161E")
        assert [i["ID"] for i in (await ok(http, "/api/doorlog/get"))["item"]] == ["1", "2"]
        sim.advance(7)
        assert (await ok(http, "/api/system/status"))["UpTime"] == 7


async def test_reboot_endpoint_answers_then_reboots_immediately_back() -> None:
    sim = OnetouchSimulator(clock=Clock())
    sim.advance(50)
    async with running(sim) as http:
        assert (await http.get("/api/system/reboot")).status_code == 200
        assert sim.boot == 2
        assert (await ok(http, "/api/system/status"))["UpTime"] == 0  # new digest nonce too


# -- calls and SIP -----------------------------------------------------------------------------


async def test_calls_and_the_call_log() -> None:
    clock = Clock()
    sim = OnetouchSimulator(clock=clock)
    async with running(sim) as http:
        assert (await ok(http, "/api/call/dial", Phone="192.168.1.58", DisplayName="Test3")) is None
        assert await ok(http, "/api/call/status") == {"Status": "CALLING"}
        busy = await post(http, "call", "dial", {"Phone": "1"})
        assert busy == {"retcode": -1, "action": "dial", "message": "line busy"}
        await http.post("/_sim/answer")
        assert await ok(http, "/api/call/status") == {"Status": "TALKING"}
        assert (await post(http, "call", "hangup"))["retcode"] == 0
        assert await ok(http, "/api/call/status") == {"Status": "READY"}
        assert (await post(http, "call", "dial", {}))["message"] == "missing param: Phone"

        await http.post("/_sim/incoming", json={"number": "201", "name": "Lobby"})
        assert await ok(http, "/api/call/status") == {"Status": "RINGING"}
        missed = (await http.post("/_sim/incoming", json={"number": "202"})).json()
        assert missed["result"]["Type"] == "Missed"  # the line was busy
        ended = (await http.post("/_sim/end")).json()
        assert ended["result"]["Type"] == "Missed"  # never answered
        sim.incoming_call("203")
        sim.answer_call()
        assert sim.end_call()
        sim.incoming_call("204")
        sim.end_call(forwarded=True)
        sim.outgoing_call("205")
        sim.end_call()

        log = await ok(http, "/api/callog/get")
        assert log["item"][0] == {
            "Date": "2023-11-14",
            "ID": "1",
            "LocalIdentity": "130@192.168.1.115",
            "Name": "Test3",
            "Num": "192.168.1.58",
            "Time": "22:13:20",
            "Type": "Dialed",
        }
        rows = [(i["ID"], i["Num"], i["Type"]) for i in log["item"]]
        assert rows == [
            ("1", "192.168.1.58", "Dialed"),
            ("2", "202", "Missed"),
            ("3", "201", "Missed"),
            ("4", "203", "Received"),
            ("5", "204", "Forwarded"),
            ("6", "205", "Dialed"),
        ]
        missed_only = await ok(http, "/api/callog/get", Type="3")
        assert [i["ID"] for i in missed_only["item"]] == ["2", "3"]
        assert (await post(http, "callog", "clear", {"Type": "Missed"}))["action"] == "upgrade"
        assert [i["ID"] for i in (await ok(http, "/api/callog/get"))["item"]] == [
            "1",
            "4",
            "5",
            "6",
        ]
        assert (await post(http, "callog", "del", {"ID": "5"}))["retcode"] == 0
        assert (await get(http, "/api/callog/clear"))["retcode"] == 0
        assert (await ok(http, "/api/callog/get"))["num"] == 0
        assert (await get(http, "/api/callog/get", Type="Sideways"))["retcode"] == -1


async def test_sip_registration_changes() -> None:
    sim = OnetouchSimulator()
    async with running(sim) as http:
        await http.post("/_sim/sip", json={"account": 1, "status": 3})
        assert (await ok(http, "/api/sip/status"))["Account1"]["Status"] == "3"
        assert (await ok(http, "/api/system/info"))["Account1"]["Status"] == "3"
        await http.post("/_sim/sip", json={"account": 2, "status": -1})
        assert (await ok(http, "/api/sip/status"))["Account2"]["Status"] == "-1"
        assert (await http.post("/_sim/sip", json={"account": 3, "status": 2})).status_code == 400


# -- clock, control API, faults ----------------------------------------------------------------


async def test_system_status_follows_the_controlled_clock() -> None:
    clock = Clock()
    sim = OnetouchSimulator(clock=clock)
    async with running(sim) as http:
        assert await ok(http, "/api/system/status") == {"SystemTime": 1_700_000_000, "UpTime": 0}
        clock.now += 10
        await http.post("/_sim/clock", json={"advance": 5})
        assert await ok(http, "/api/system/status") == {"SystemTime": 1_700_000_015, "UpTime": 15}
        await http.post("/_sim/clock", json={"set": 1_800_000_000})
        assert await ok(http, "/api/system/status") == {"SystemTime": 1_800_000_000, "UpTime": 15}
        state = (await http.post("/_sim/state")).json()["state"]
        assert state["hits"]["system/status"] == 3
        assert (await http.post("/_sim/teleport")).status_code == 404


async def test_faults() -> None:
    sim = OnetouchSimulator(auth="none")
    async with running(sim, auth=None) as http:
        await http.post("/_sim/fault", json={"mode": "vendor_error"})
        assert await get(http, "/api/relay/status") == UNSUPPORTED
        await http.post("/_sim/fault", json={"mode": "http500"})
        assert (await http.get("/api/relay/status")).status_code == 500
        await http.post("/_sim/fault", json={"mode": "garbage"})
        with pytest.raises(ValueError):  # not JSON, not even text
            (await http.get("/api/relay/status")).json()
        await http.post("/_sim/fault", json={"mode": "drop"})
        with pytest.raises(httpx.TransportError):
            await http.get("/api/relay/status")
        await http.post("/_sim/fault", json={"mode": "truncated"})
        with pytest.raises(httpx.TransportError):
            await http.get("/api/relay/status")
        await http.post("/_sim/fault", json={"mode": "unauthorized"})
        assert (await http.get("/api/relay/status")).status_code == 401
        await http.post("/_sim/fault", json={"delay": 0.01, "path_prefix": "/api/call/"})
        assert await ok(http, "/api/relay/status") == {"RelayA": 0, "RelayB": 0, "RelayC": 0}
        assert sim.fault.count == 1  # the slow fault waits for its path
        assert await ok(http, "/api/call/status") == {"Status": "READY"}
        assert sim.fault.count == 0
        await http.post("/_sim/fault", json={"mode": "huge", "path_prefix": "/api/doorlog/"})
        async with http.stream("GET", "/api/doorlog/get") as stream:
            first = await anext(stream.aiter_bytes())
            assert first.startswith(b"[0,")
        await http.post("/_sim/clear")
        assert (await ok(http, "/api/doorlog/get"))["num"] == 0
