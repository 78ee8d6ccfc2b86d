"""Node-RED end to end: the docs' example flow (docs/examples/node-red-doorbell.json) in a real
Node-RED from npm, a simulated 2N intercom, a real mosquitto and the bridge.

A ring reaches Node-RED as an event, the flow publishes ``open_door``, the bridge opens the
door and Node-RED receives the result. Nothing may happen twice: each test ends with marker
messages that travel behind everything it caused, so "once" is checked after a condition, not
after a sleep.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.simulators.two_n import TwoNSimulator
from tests import nodered
from tests.helpers import Consumer, Mosquitto, free_port, wait_until
from tests.integration.demo_process import demo
from tests.integration.harness import bridge_config, running, serving

# The first run installs Node-RED from npm into the cache (tens of seconds), beyond the suite's
# default per-test timeout.
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.broker,
    pytest.mark.timeout(nodered.INSTALL_TIMEOUT + 120),
]
FLOW = Path(__file__).parents[2] / "docs" / "examples" / "node-red-doorbell.json"
DEVICE = "front-door"
EVENTS = f"bridge/{DEVICE}/event/"
RING = EVENTS + "doorbell.pressed"
COMMAND = f"bridge/{DEVICE}/command"
RESULT = f"bridge/{DEVICE}/command/result"
RESULT_PROBE = "bridge/nodered-probe/command/result"
DEMO_DEADLINE = 60.0  # seconds for `bridge demo` to start, and then for its first ring to open


def recorded(log: Path, topic: str) -> list[Any]:
    """The payloads Node-RED recorded on ``topic`` (received or, for commands, sent)."""
    return [r["payload"] for r in nodered.read_records(log) if r["topic"] == topic]


def ids(payloads: Iterable[dict[str, Any]]) -> list[Any]:
    return [p["id"] for p in payloads]


def bridge(mosquitto: Mosquitto, sim: TwoNSimulator, state_dir: Path) -> dict[str, Any]:
    options = {"username": "api", "password": "secret"}
    return bridge_config(mosquitto.url, {DEVICE: sim}, state_dir, driver="2n", **options)


@asynccontextmanager
async def stack(
    mosquitto: Mosquitto, tmp_path: Path, event_probe: tuple[str, dict[str, Any]]
) -> AsyncIterator[tuple[TwoNSimulator, Consumer, Path]]:
    """Node-RED with the example flow, subscribed; then the intercom and the bridge, online.

    Both of the flow's subscriptions are proven by a retained message each (``event_probe``
    on the event side, a result probe on the other) that Node-RED records once subscribed.
    """
    log = tmp_path / "node-red.jsonl"
    env = {
        "BRIDGE_MQTT_HOST": "127.0.0.1",
        "BRIDGE_MQTT_PORT": str(mosquitto.port),
        "BRIDGE_FLOW_LOG": str(log),
    }
    sim = TwoNSimulator(username="api", password="secret")
    probe_topic, probe = event_probe
    async with Consumer(mosquitto.url) as consumer:
        await consumer.publish(probe_topic, json.dumps(probe), retain=True)
        await consumer.publish(RESULT_PROBE, json.dumps({"id": "probe"}), retain=True)
        with nodered.running(FLOW, env) as red:
            try:
                await wait_until(
                    lambda: recorded(log, probe_topic) and recorded(log, RESULT_PROBE),
                    timeout=nodered.START_DEADLINE,
                )
            except TimeoutError:
                pytest.fail(f"Node-RED did not subscribe: {red.log_text()[-3000:]}")
            async with serving({DEVICE: sim}), running(bridge(mosquitto, sim, tmp_path)):
                await consumer.wait_for(
                    lambda seen: any(
                        s.topic == f"bridge/{DEVICE}/availability" and s.payload == b"online"
                        for s in seen
                    )
                )
                yield sim, consumer, log


async def ring_and_wait_for_result(
    sim: TwoNSimulator, consumer: Consumer, log: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Press the doorbell; return the ring event and the result of the command Node-RED sent,
    once Node-RED has recorded that result too."""
    before = len(consumer.on(RING))
    sim.press("%1")
    await consumer.wait_for(lambda _: len(consumer.on(RING)) > before)
    ring: dict[str, Any] = consumer.on(RING)[before].json()
    command_id = f"node-red:{ring['id']}"
    result: dict[str, Any] = (await consumer.first(RESULT, id=command_id)).json()
    await wait_until(lambda: command_id in ids(recorded(log, RESULT)))
    return ring, result


async def quiet(sim: TwoNSimulator, consumer: Consumer, log: Path) -> None:
    """Wait until Node-RED has recorded an event and a command result that come after
    everything the ring caused: whatever happened twice has been recorded by then.

    The event travels behind the ring on the same device stream; the ``refresh`` is sent
    after the flow's command was answered, and the bridge runs a device's commands in order.
    """
    sim.door(opened=True)
    door = await consumer.first(EVENTS + "door.opened")
    marker = await consumer.command(DEVICE, "refresh", "marker")
    assert marker["status"] == "ok"
    await wait_until(
        lambda: (
            door.json()["id"] in ids(recorded(log, EVENTS + "door.opened"))
            and "marker" in ids(recorded(log, RESULT))
        )
    )


def door_openings(sim: TwoNSimulator) -> tuple[list[dict[str, str]], list[Any]]:
    """What the intercom was asked to do on its switches, and each time switch 1 turned on."""
    requests = [params for _, path, params in sim.log if path == "/api/switch/ctrl"]
    turned_on = [
        e["id"]
        for e in sim.history
        if e["event"] == "SwitchStateChanged"
        and e["params"].get("switch") == 1
        and e["params"].get("state") is True
    ]
    return requests, turned_on


async def test_a_ring_opens_the_door_once_through_node_red(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    before = FLOW.read_bytes()
    probe = ("bridge/nodered-probe/event/probe", {"id": "probe", "type": "probe"})
    async with stack(mosquitto, tmp_path, probe) as (sim, consumer, log):
        ring, result = await ring_and_wait_for_result(sim, consumer, log)
        command_id = f"node-red:{ring['id']}"
        assert result == {
            "id": command_id,
            "command": "open_door",
            "status": "ok",
            "data": {"door": 1},
            "error": None,
        }
        await quiet(sim, consumer, log)

        # Node-RED saw the ring as the bridge published it, sent one command, saw its result.
        assert recorded(log, RING) == [ring]
        assert recorded(log, COMMAND) == [
            {"command": "open_door", "args": {"door": 1}, "id": command_id}
        ]
        assert [r for r in recorded(log, RESULT) if r["id"] == command_id] == [result]
        # The bridge received exactly that command once, and the door opened once.
        sent = [s.json() for s in consumer.on(COMMAND)]
        assert ids(sent) == [command_id, "marker"]
        requests, turned_on = door_openings(sim)
        assert requests == [{"switch": "1", "action": "trigger"}]
        assert len(turned_on) == 1
    assert FLOW.read_bytes() == before  # Node-RED ran the docs' file and never rewrote it


async def test_a_repeated_or_retained_ring_does_not_open_the_door_again(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # A ring left retained on the broker (never by the bridge; by a misconfigured publisher)
    # reaches Node-RED at every (re)subscription: the flow records it and does nothing.
    stale = {"id": f"{DEVICE}/0/1", "type": "doorbell.pressed", "device": DEVICE, "data": {}}
    async with stack(mosquitto, tmp_path, (RING, stale)) as (sim, consumer, log):
        assert [r["retain"] for r in nodered.read_records(log) if r["topic"] == RING] == [True]
        ring, result = await ring_and_wait_for_result(sim, consumer, log)
        assert result["status"] == "ok"

        # At-least-once delivery: the same ring arrives again after a reconnect.
        await consumer.publish(RING, json.dumps(ring))
        await wait_until(lambda: recorded(log, RING).count(ring) == 2)
        await quiet(sim, consumer, log)

        assert ids(recorded(log, RING)) == [stale["id"], ring["id"], ring["id"]]
        assert ids(recorded(log, COMMAND)) == [f"node-red:{ring['id']}"]
        requests, turned_on = door_openings(sim)
        assert requests == [{"switch": "1", "action": "trigger"}]
        assert len(turned_on) == 1


async def test_the_flow_opens_the_door_of_bridge_demo(tmp_path: Path) -> None:
    """docs/node-red.md's walk-through: `bridge demo` with its own mosquitto, the flow pointed
    at it. The demo's front door (a 2N intercom) rings every second or so."""
    port = free_port()
    log = tmp_path / "node-red.jsonl"
    env = {
        "BRIDGE_MQTT_HOST": "127.0.0.1",
        "BRIDGE_MQTT_PORT": str(port),
        "BRIDGE_FLOW_LOG": str(log),
    }
    args = ("--broker-port", str(port), "--devices", "1", "--interval", "0.2")
    with demo(*args, log_dir=tmp_path) as running_demo:
        await wait_until(lambda: running_demo.printed("demo: broker"), timeout=DEMO_DEADLINE)
        with nodered.running(FLOW, env) as red:

            def opened() -> bool:
                assert running_demo.process.poll() is None, running_demo.output()
                ok = {r["id"] for r in recorded(log, RESULT) if r["status"] == "ok"}
                return any(f"node-red:{ring['id']}" in ok for ring in recorded(log, RING))

            try:
                await wait_until(opened, timeout=DEMO_DEADLINE)
            except TimeoutError:
                pytest.fail(f"no door opened: {red.log_text()[-2000:]}\n{running_demo.output()}")
    rings = ids(recorded(log, RING))
    commands = recorded(log, COMMAND)
    assert len(set(rings)) == len(rings)  # the demo rings each time anew
    assert (
        commands
        == [
            {"command": "open_door", "args": {"door": 1}, "id": f"node-red:{ring}"}
            for ring in rings
        ][: len(commands)]
    )  # one command per ring, in order (the last ring's may still be on its way)
