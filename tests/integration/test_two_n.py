"""The 2N driver end to end: 2N simulator, real mosquitto, the bridge."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.simulators.two_n import TwoNSimulator
from tests.helpers import Consumer, Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DEVICE = "front-door"
REBOOT_TAKES = 60.0  # seconds a real intercom needs to restart; the simulated clock skips them


class Clock:
    """The simulated device's wall clock, which a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def config(mosquitto: Mosquitto, sim: TwoNSimulator, state_dir: Path, **device: Any) -> Any:
    options = {"username": "api", "password": "secret"} | device
    return bridge_config(mosquitto.url, {DEVICE: sim}, state_dir, driver="2n", **options)


def events(consumer: Consumer, type_: str | None = None) -> list[dict[str, Any]]:
    prefix = f"bridge/{DEVICE}/event/"
    return [
        s.json()
        for s in consumer.seen
        if s.topic.startswith(prefix) and (type_ is None or s.topic == prefix + type_)
    ]


def presses(consumer: Consumer) -> list[str]:
    return [e["id"] for e in events(consumer, "doorbell.pressed")]


async def online(consumer: Consumer) -> None:
    await consumer.wait_for(
        lambda seen: any(
            s.topic == f"bridge/{DEVICE}/availability" and s.payload == b"online" for s in seen
        )
    )


async def command(consumer: Consumer, name: str, id_: str, **args: Any) -> dict[str, Any]:
    body = {"command": name, "args": args, "id": id_}
    await consumer.publish(f"bridge/{DEVICE}/command", json.dumps(body))
    found = await consumer.first(f"bridge/{DEVICE}/command/result", id=id_)
    result: dict[str, Any] = found.json()
    return result


def assert_no_duplicates_and_in_order(consumer: Consumer) -> None:
    ids = [e["id"] for e in events(consumer)]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates
    by_boot: dict[str, list[int]] = {}
    for event_id in ids:
        _, boot, sequence = event_id.split("/")
        by_boot.setdefault(boot, []).append(int(sequence.split("-")[0]))
    for sequences in by_boot.values():
        assert sequences == sorted(sequences)


async def test_doorbell_state_and_commands(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = TwoNSimulator(username="api", password="secret", serial="54-1234-5678")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer)
            info = (await consumer.first(f"bridge/{DEVICE}/info")).json()
            assert (info["vendor"], info["serial"]) == ("2N", "54-1234-5678")
            assert "reboot" not in info["commands"]  # denied unless allowed
            state = (await consumer.first(f"bridge/{DEVICE}/state")).json()
            assert state["switches"]["1"]["active"] is False
            assert state["call"]["state"] == "idle"

            sim.press("%1")
            ring = (await consumer.first(f"bridge/{DEVICE}/event/doorbell.pressed")).json()
            assert ring["data"]["button"] == "%1"
            assert ring["data"]["raw"]["event"] == "KeyPressed"

            opened = await command(consumer, "open_door", "o1")
            assert opened["status"] == "ok"
            await consumer.wait_for(
                lambda _: (
                    [e["data"]["active"] for e in events(consumer, "switch.changed")]
                    == [True, False]
                )
            )
            assert events(consumer, "switch.changed")[0]["data"]["originator"] == "api"

            locked = await command(consumer, "set_switch", "l1", switch=2, action="lock")
            assert locked["status"] == "ok"
            refused = await command(consumer, "set_switch", "l2", switch=2, on=True)
            assert refused["error"]["code"] == "action_failed"
            assert "14" in refused["error"]["message"]
            await consumer.wait_for(
                lambda _: any(
                    s.json().get("switches", {}).get("2", {}).get("locked")
                    for s in consumer.on(f"bridge/{DEVICE}/state")
                )
            )

            snapshot = await command(consumer, "snapshot", "s1")
            assert snapshot["status"] == "ok"
            image = await consumer.first(f"bridge/{DEVICE}/snapshot")
            assert image.payload.startswith(b"\xff\xd8")
            assert snapshot["data"]["size"] == len(image.payload)

            no_call = await command(consumer, "answer", "a1")
            assert no_call["error"]["code"] == "no_call"
            denied = await command(consumer, "reboot", "r1")
            assert denied["error"]["code"] == "denied"
            bad = await command(consumer, "set_output", "p1", port="nope", on=True)
            assert bad["error"]["code"] == "invalid_args"

        assert all("response" not in params for _, _, params in sim.log)
        assert all(b"secret" not in s.payload for s in consumer.seen)
        assert_no_duplicates_and_in_order(consumer)


async def test_reboot_and_channel_expiry_lose_and_duplicate_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = Clock()
    sim = TwoNSimulator(username="api", password="secret", clock=clock)
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer)
            for _ in range(3):
                sim.press()
            await wait_until(lambda: len(presses(consumer)) == 3)

            # The channel expires; the next presses happen before the bridge has a new one.
            sim.close_channels()
            sim.press()
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 5)

            # The device restarts (which takes a real one about a minute) mid-stream.
            clock.offset += REBOOT_TAKES
            sim.reboot()
            sim.press()
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 7)
            started = (await consumer.first(f"bridge/{DEVICE}/event/device.started")).json()
            assert started["data"]["raw"]["id"] == 1

        assert len(events(consumer, "device.started")) == 1
        assert len(set(presses(consumer))) == 7
        assert_no_duplicates_and_in_order(consumer)
