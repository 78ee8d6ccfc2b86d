"""The Grandstream driver end to end: GXV simulator, real mosquitto, the bridge.

"Within one poll" is checked by counting the simulator's status reads between the change and
its arrival, never by a wall-clock bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.simulators.grandstream import GrandstreamSimulator
from tests.helpers import Consumer, Mosquitto
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DEVICE = "cam"
TOKEN = "fedcba9876543210fedcba9876543210"
STATUS = "motiondetect?get_md_statu"
FAST = {"poll_interval": "100ms", "slow_interval": "200ms"}


def config(mosquitto: Mosquitto, sim: GrandstreamSimulator, state_dir: Path, **device: Any) -> Any:
    options = {"username": "admin", "password": "admin", **FAST, **device}
    return bridge_config(mosquitto.url, {DEVICE: sim}, state_dir, driver="grandstream", **options)


async def online(consumer: Consumer, sim: GrandstreamSimulator) -> None:
    await consumer.wait_for(
        lambda seen: any(
            s.topic == f"bridge/{DEVICE}/availability" and s.payload == b"online" for s in seen
        )
    )


def last_state(consumer: Consumer) -> dict[str, Any]:
    found = consumer.on(f"bridge/{DEVICE}/state")
    return found[-1].json() if found else {}


async def test_motion_and_alarm_input_reach_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = GrandstreamSimulator(model="GXV3504")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer, sim)
            info = (await consumer.first(f"bridge/{DEVICE}/info")).json()
            assert (info["vendor"], info["model"], info["serial"]) == (
                "Grandstream",
                "GXV3504",
                sim.mac,
            )
            assert "ptz" in info["commands"]
            assert "reboot" not in info["commands"]  # destructive: denied unless allowed

            reads = sim.hits[STATUS]
            sim.set_motion(3, active=True)
            await consumer.wait_for(lambda _: consumer.event_data(DEVICE, "motion.started"))
            assert sim.hits[STATUS] <= reads + 2  # within one poll
            assert consumer.event_data(DEVICE, "motion.started") == [{"channel": 3}]

            reads = sim.hits["device?get"]
            sim.set_input(1, active=True)
            await consumer.wait_for(lambda _: consumer.event_data(DEVICE, "input.changed"))
            assert sim.hits["device?get"] <= reads + 2
            assert consumer.event_data(DEVICE, "input.changed") == [{"port": 1, "active": True}]

            sim.set_motion(3, active=False)
            await consumer.wait_for(lambda _: consumer.event_data(DEVICE, "motion.stopped"))
            assert consumer.event_data(DEVICE, "motion.stopped") == [{"channel": 3}]
            # The retained state may come before or after the event (docs/mqtt-api.md).
            await consumer.wait_for(
                lambda _: (
                    last_state(consumer).get("inputs", {}).get("1") == {"active": True}
                    and last_state(consumer)["channels"]["3"]["motion"] is False
                )
            )
        assert b"admin:admin" not in b"".join(s.payload for s in consumer.seen)


async def test_a_push_brings_motion_with_one_status_read(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = GrandstreamSimulator()
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        settings = config(
            # The case is poll_interval 30s; an hour makes sure no scheduled tick (the
            # first lands at random within the interval) can stand in for the push.
            mosquitto,
            sim,
            tmp_path,
            poll_interval="1h",
            slow_interval="1h",
            push_token=TOKEN,
        )
        async with running(settings) as bridge:
            await online(consumer, sim)
            # What the installer enters in the web UI (Alarm HTTP server; upload enabled).
            base = f"http://127.0.0.1:{bridge.http_port}/push/{DEVICE}/{TOKEN}"
            sim.configure_push(f"{base}?alarm_type=%d&channel=%d")
            reads = sim.hits[STATUS]
            sim.set_motion(0, active=True)
            await consumer.wait_for(lambda _: consumer.event_data(DEVICE, "motion.started"))
            assert sim.pushes == [(f"{base}?alarm_type=2&channel=0", 204)]
            # The push woke the poller: one read, not the next tick of a 30 s interval.
            assert sim.hits[STATUS] == reads + 1
            state = await consumer.wait_for(lambda _: last_state(consumer).get("motion"))
            assert state is True
    assert TOKEN.encode() not in b"".join(s.payload for s in consumer.seen)
