"""The Onetouch driver end to end: Onetouch simulator, real mosquitto, the bridge.

"Within one poll" is checked by counting the simulator's status reads between the change and
its arrival, never by a wall-clock bound.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.simulators.onetouch import OnetouchSimulator
from tests.helpers import Consumer, Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DEVICE = "gate"
TOKEN = "0123456789abcdef0123456789abcdef"
FAST = {"poll_interval": "100ms", "log_interval": "100ms", "slow_interval": "200ms"}


def config(mosquitto: Mosquitto, sim: OnetouchSimulator, state_dir: Path, **device: Any) -> Any:
    options = {"username": "admin", "password": "httpapi", **FAST, **device}
    return bridge_config(mosquitto.url, {DEVICE: sim}, state_dir, driver="onetouch", **options)


async def online(consumer: Consumer, sim: OnetouchSimulator) -> None:
    await consumer.wait_for(
        lambda seen: any(
            s.topic == f"bridge/{DEVICE}/availability" and s.payload == b"online" for s in seen
        )
    )
    reads = sim.hits["doorlog/get"]
    await wait_until(lambda: sim.hits["doorlog/get"] >= reads + 1)  # the logs' baseline


async def within_one_poll(
    consumer: Consumer, sim: OnetouchSimulator, endpoint: str, arrived: Callable[[], Any]
) -> Any:
    """Wait for ``arrived``; it must come with at most two reads of ``endpoint`` after the
    change (the one under way when it happened, and the next)."""
    reads = sim.hits[endpoint]
    found = await consumer.wait_for(lambda _: arrived())
    assert sim.hits[endpoint] <= reads + 2, f"{endpoint}: {sim.hits[endpoint] - reads} reads"
    return found


def assert_no_duplicates(consumer: Consumer) -> None:
    ids = [e["id"] for e in consumer.events(DEVICE)]
    assert not [i for i, n in Counter(ids).items() if n > 1]


async def test_everything_a_door_station_does_reaches_mqtt(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = OnetouchSimulator()
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer, sim)
            info = (await consumer.first(f"bridge/{DEVICE}/info")).json()
            assert (info["vendor"], info["serial"]) == ("Onetouch", sim.mac)
            assert info["commands"] == ["dial", "hangup", "open_door", "refresh"]

            opened = await consumer.command(DEVICE, "open_door", "o1", door=1)
            assert opened == {
                "id": "o1",
                "command": "open_door",
                "status": "ok",
                "data": {"door": 1},
                "error": None,
            }
            assert sim.hits["relay/trig"] == 1
            await within_one_poll(
                consumer, sim, "relay/status", lambda: consumer.event_data(DEVICE, "switch.changed")
            )
            sim.advance(sim.hold_delay(1))
            await consumer.wait_for(
                lambda _: len(consumer.event_data(DEVICE, "switch.changed")) == 2
            )
            assert consumer.event_data(DEVICE, "switch.changed") == [
                {"switch": 1, "active": True},
                {"switch": 1, "active": False},
            ]

            sim.set_input(2, active=True)
            await within_one_poll(
                consumer, sim, "input/status", lambda: consumer.event_data(DEVICE, "input.changed")
            )
            assert consumer.event_data(DEVICE, "input.changed") == [{"port": 2, "active": True}]

            sim.swipe("00B4161D", name="Alice", valid=True, door=0)
            await within_one_poll(
                consumer, sim, "doorlog/get", lambda: consumer.event_data(DEVICE, "access.granted")
            )
            sim.swipe("DEADBEEF", valid=False, door=0)
            await within_one_poll(
                consumer, sim, "doorlog/get", lambda: consumer.event_data(DEVICE, "access.denied")
            )
            sim.enter_code("4711", name="Bob", valid=True, door=0)
            await within_one_poll(
                consumer,
                sim,
                "doorlog/get",
                lambda: len(consumer.event_data(DEVICE, "access.granted")) == 2,
            )
            assert consumer.event_data(DEVICE, "card.read") == [
                {"uid": "00B4161D", "valid": True},
                {"uid": "DEADBEEF", "valid": False},
            ]
            assert consumer.event_data(DEVICE, "access.granted") == [
                {"method": "card", "user": "Alice"},
                {"method": "code", "user": "Bob"},
            ]

            sim.incoming_call("101", name="Lobby")
            await within_one_poll(
                consumer,
                sim,
                "call/status",
                lambda: consumer.event_data(DEVICE, "call.state_changed"),
            )
            assert consumer.event_data(DEVICE, "call.state_changed")[0]["state"] == "ringing"

            sim.set_registration(1, 3)
            await within_one_poll(
                consumer,
                sim,
                "sip/status",
                lambda: consumer.event_data(DEVICE, "sip.registration_changed"),
            )
            assert consumer.event_data(DEVICE, "sip.registration_changed") == [
                {"account": 1, "state": "failed"}
            ]

            state = await consumer.wait_for(
                lambda _: next(
                    (
                        s.json()
                        for s in reversed(consumer.on(f"bridge/{DEVICE}/state"))
                        if s.json().get("sip", {}).get("1") == "failed"
                    ),
                    None,
                )
            )
            assert state["inputs"]["2"] == {"active": True}
            assert state["call"]["state"] == "ringing"

            denied = await consumer.command(DEVICE, "reboot", "r1")
            assert denied["error"]["code"] == "denied"
            bad = await consumer.command(DEVICE, "open_door", "o2", door=True)
            assert bad["error"]["code"] == "invalid_args"
            assert sim.hits["relay/trig"] == 1  # neither reached the device

        everything = b"".join(s.payload for s in consumer.seen)
        for secret in (b"4711", b"httpapi", b"relay-secret-7", b"sip-secret-130"):
            assert secret not in everything
        assert_no_duplicates(consumer)


async def test_a_push_brings_the_input_change_at_once(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = OnetouchSimulator()
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        # The case is poll_interval 30s; an hour makes sure no scheduled tick (its first
        # one lands at random within the interval) can stand in for the push during the test.
        settings = config(mosquitto, sim, tmp_path, poll_interval="1h", push_token=TOKEN)
        async with running(settings) as bridge:
            await online(consumer, sim)
            # What the installer enters in the web UI (Intercom > Input > Action URL).
            url = f"http://127.0.0.1:{bridge.http_port}/push/{DEVICE}/{TOKEN}?input=A"
            sim.config["Config.DoorSetting.INPUT.HttpEnableA"] = "1"
            sim.config["Config.DoorSetting.INPUT.ActionUrlA"] = url
            reads = sim.hits["input/status"]
            sim.set_input(1, active=True)
            await consumer.wait_for(lambda _: consumer.event_data(DEVICE, "input.changed"))
            assert sim.pushes == [(url, 204)]
            # The push woke the poller: one read, not the next tick of the interval.
            assert sim.hits["input/status"] == reads + 1
            assert consumer.event_data(DEVICE, "input.changed") == [{"port": 1, "active": True}]

            sim.config["Config.DoorSetting.INPUT.ActionUrlA"] = url.replace(TOKEN, "x" * 32)
            sim.set_input(1, active=False)
            sim.set_input(1, active=True)
            await wait_until(lambda: len(sim.pushes) == 2)
            assert sim.pushes[1][1] == 404  # a wrong token wakes nothing
            assert sim.hits["input/status"] == reads + 1
    assert TOKEN.encode() not in b"".join(s.payload for s in consumer.seen)


async def test_device_reboot_and_bridge_restart_publish_each_record_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = OnetouchSimulator()
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer, sim)
            sim.swipe("00000001", door=0)
            await consumer.wait_for(lambda _: consumer.event_data(DEVICE, "card.read"))
            sim.advance(120)
            sim.reboot()
            await consumer.wait_for(lambda _: consumer.events(DEVICE, "device.started"))
            sim.swipe("00000002", door=0)
            await consumer.wait_for(lambda _: len(consumer.event_data(DEVICE, "card.read")) == 2)
        # The bridge is stopped (the SIGTERM path): what happens meanwhile is published once
        # at the next start, what was published before is not published again.
        sim.swipe("00000003", door=0)
        sim.enter_code("2222", door=0)
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer, sim)
            await consumer.wait_for(lambda _: len(consumer.event_data(DEVICE, "card.read")) == 3)
            reads = sim.hits["doorlog/get"]
            await wait_until(lambda: sim.hits["doorlog/get"] >= reads + 3)
        assert [d["uid"] for d in consumer.event_data(DEVICE, "card.read")] == [
            "00000001",
            "00000002",
            "00000003",
        ]
        assert [d["method"] for d in consumer.event_data(DEVICE, "access.granted")] == [
            "card"
        ] * 3 + ["code"]
        assert len(consumer.events(DEVICE, "device.started")) == 1
        assert_no_duplicates(consumer)
