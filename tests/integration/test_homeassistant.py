"""Home Assistant discovery end to end: one simulated device of every driver, a real mosquitto,
the bridge, and every discovery config checked offline against Home Assistant's rules
(tests/hass.py, read from Home Assistant Core 2026.11.0) on what the bridge really publishes:

- every topic an entity reads is one the bridge publishes, and every message there reads as the
  entity's platform expects (the templates render on the real payloads);
- every topic an entity writes is one the bridge subscribes to, and what a button or switch
  sends is a command the bridge carries out (a switch then reads the new state);
- unique ids are unique, the same at every start, and a device removed from the configuration
  has its config emptied at the next start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from bridge.drivers import DRIVERS
from bridge.mqtt.topics import Topics
from bridge.simulators.base import Simulator
from bridge.simulators.generic import GenericSimulator
from bridge.simulators.grandstream import GrandstreamSimulator
from bridge.simulators.onetouch import OnetouchSimulator
from bridge.simulators.two_n import TwoNSimulator
from bridge.simulators.ultrastream import UltraStreamSimulator
from tests import hass
from tests.doctext import file_commands
from tests.helpers import Consumer, Mosquitto, Seen
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "homeassistant"
TOPICS = Topics()
CODE = "8642"  # a PIN typed at the side gate: it must reach no entity
# What a device may answer a button with besides ok: it acted on nothing (no call to hang up).
NOTHING_TO_DO = {"no_call"}
FAST = {"poll_interval": "100ms"}
DEVICES: dict[str, tuple[str, dict[str, Any]]] = {  # id → (driver, device options)
    "front-door": ("2n", {"username": "api", "password": "secret", "pull_timeout": "5s"}),
    "side-gate": (
        "onetouch",
        {"username": "admin", "password": "httpapi", **FAST, "log_interval": "100ms"},
    ),
    "yard-camera": (
        "grandstream",
        {"username": "admin", "password": "admin", **FAST, "slow_interval": "200ms"},
    ),
    "stage-encoder": (
        "ultrastream",
        {
            "username": "Admin",
            "password": "admin",
            **FAST,
            "status_interval": "200ms",
            "settings_interval": "500ms",
        },
    ),
    "door-5": ("generic", {"poll_timeout": "5s"}),
}


def simulators() -> dict[str, Simulator]:
    return {
        "front-door": TwoNSimulator(username="api", password="secret"),
        "side-gate": OnetouchSimulator(),
        "yard-camera": GrandstreamSimulator(),
        "stage-encoder": UltraStreamSimulator(),
        "door-5": GenericSimulator(),
    }


def config(url: str, sims: dict[str, Simulator], state_dir: Path) -> dict[str, Any]:
    settings = bridge_config(url, {}, state_dir)
    settings["devices"] = [
        {"id": device, "driver": DEVICES[device][0], "url": sim.url, **DEVICES[device][1]}
        for device, sim in sims.items()
    ]
    settings["homeassistant"] = {"enabled": True}
    return settings


# -- reading what was published ------------------------------------------------------------------


def discovery_topic(device: str) -> str:
    return f"{PREFIX}/device/bridge_{device}/config"


def configs(consumer: Consumer, *, fresh: bool = False) -> dict[str, Seen]:
    """The last discovery config seen per device (empty ones included); ``fresh``: only those
    published while the consumer was there (not the broker's retained copy of an earlier run)."""
    found: dict[str, Seen] = {}
    for seen in consumer.seen:
        if seen.topic.startswith(f"{PREFIX}/device/") and not (fresh and seen.retain):
            found[seen.topic.split("/")[-2].removeprefix("bridge_")] = seen
    return found


def components(
    consumer: Consumer, device: str, *, fresh: bool = False
) -> dict[str, dict[str, Any]]:
    seen = configs(consumer, fresh=fresh)[device]
    return hass.validate(seen.topic, seen.payload)


def published_only(seen: list[Seen]) -> list[Seen]:
    """What the bridge published (a consumer also sees the commands it sent itself)."""
    return [s for s in seen if not hass.matches("bridge/+/command", s.topic)]


def state(consumer: Consumer, device: str) -> bytes:
    return consumer.on(TOPICS.state(device))[-1].payload


# -- driving the entities as Home Assistant would ------------------------------------------------


async def press(consumer: Consumer, device: str, topic: str, payload: str) -> dict[str, Any]:
    """Publish what Home Assistant publishes (no id): the result is the next one of the device."""
    results = TOPICS.command_result(device)
    before = len(consumer.on(results))
    await consumer.publish(topic, payload)
    await consumer.wait_for(lambda _: len(consumer.on(results)) > before)
    result: dict[str, Any] = consumer.on(results)[before].json()
    return result


async def use_every_entity(consumer: Consumer, device: str) -> None:
    """Press every button; switch every switch on, then off, and see its state follow."""
    for key, component in components(consumer, device).items():
        if component["platform"] == "button":
            result = await press(
                consumer, device, component["command_topic"], component["payload_press"]
            )
            error = (result["error"] or {}).get("code")
            assert result["status"] == "ok" or error in NOTHING_TO_DO, (key, result)
        if component["platform"] == "switch":
            for payload, on in ((component["payload_on"], True), (component["payload_off"], False)):
                result = await press(consumer, device, component["command_topic"], payload)
                assert result["status"] == "ok", (key, result)
                await reads(consumer, device, component, on)


async def reads(consumer: Consumer, device: str, component: dict[str, Any], value: bool) -> None:
    """Wait until the entity reads ``value`` from the device's retained state."""
    topic = TOPICS.state(device)
    await consumer.wait_for(
        lambda _: hass.reading(component, topic, state(consumer, device)) is value
    )


async def appear(consumer: Consumer, device: str, keys: set[str], *, fresh: bool = False) -> None:
    """Wait until the device's discovery config has entities with these keys."""

    def present() -> bool:
        found = configs(consumer, fresh=fresh).get(device)
        return found is not None and {f"bridge_{device}_{k}" for k in keys} <= set(
            components(consumer, device, fresh=fresh)
        )

    await consumer.wait_for(lambda _: present())


def happen(sims: dict[str, Simulator]) -> None:
    """What people do at the doors: rings, cards, codes, the door contact, a tamper alarm."""
    intercom = sims["front-door"]
    assert isinstance(intercom, TwoNSimulator)
    intercom.press("%1")
    intercom.swipe(valid=True)
    intercom.swipe(valid=False)
    intercom.door(opened=True)
    intercom.door(opened=False)
    intercom.motion()
    intercom.tamper()
    gate = sims["side-gate"]
    assert isinstance(gate, OnetouchSimulator)
    gate.swipe(name="Alice", valid=True)
    gate.enter_code(CODE, name="Bob", valid=False)
    door = sims["door-5"]
    assert isinstance(door, GenericSimulator)
    door.press(1)


# -- the checks ----------------------------------------------------------------------------------


def heard(consumer: Consumer, device: str, key: str) -> list[Seen]:
    """What the bridge published that the entity ``key`` receives, as in Home Assistant: from
    the first config that has the entity on, plus what each retained topic held then (events
    are not retained)."""
    topic = discovery_topic(device)
    start = next(
        i
        for i, s in enumerate(consumer.seen)
        if s.topic == topic and s.payload and key in json.loads(s.payload)["components"]
    )
    held = {s.topic: s for s in consumer.seen[:start] if "/event/" not in s.topic}
    return published_only([*held.values(), *consumer.seen[start:]])


def check_entities(consumer: Consumer, devices: list[str]) -> int:
    """Every entity of ``devices`` against what the bridge published; the number checked."""
    unique_ids: list[str] = []
    for device in devices:
        for key, component in components(consumer, device).items():
            unique_ids.append(component["unique_id"])
            received = heard(consumer, device, key)
            for topic_filter in hass.subscriptions(component):
                seen = [s for s in received if hass.matches(topic_filter, s.topic)]
                assert seen, f"{key}: nothing was published on {topic_filter}"
                readings = [hass.reading(component, s.topic, s.payload) for s in seen]
                assert any(r is not None for r in readings), f"{key}: {topic_filter} read nothing"
                if component["platform"] == "event" and topic_filter == component["state_topic"]:
                    check_attributes(key, readings)
            for topic in hass.publications(component):
                assert any(hass.matches(f, topic) for f in TOPICS.subscriptions), (key, topic)
    assert len(unique_ids) == len(set(unique_ids)), "unique ids repeat"
    return len(unique_ids)


def check_attributes(key: str, readings: list[Any]) -> None:
    for _, attributes in readings:
        assert "raw" not in attributes, key
        assert CODE not in json.dumps(attributes), f"{key}: the code reached an entity"


def check_events_are_declared(consumer: Consumer, device: str) -> None:
    """The driver's ``events`` declaration (what discovery offers) covers what it published."""
    declared: Any = DRIVERS[DEVICES[device][0]]
    types = {e["type"] for e in consumer.events(device)}
    assert {t for t in types if not t.startswith("vendor.")} <= declared.events, device


async def retained(url: str) -> list[Seen]:
    """The discovery configs the broker keeps: what a new subscriber gets before a message it
    publishes itself after subscribing (the broker sends the retained ones first)."""
    marker = f"{PREFIX}/bridge-test/marker"
    async with Consumer(url, (f"{PREFIX}/#",)) as late:
        await late.publish(marker, b"end")
        await late.first(marker)
        return [s for s in late.seen if s.topic != marker and s.payload]


def ids(consumer: Consumer, device: str) -> dict[str, str]:
    """Unique id → entity id, of the config published while the consumer was there."""
    found = components(consumer, device, fresh=True)
    return {c["unique_id"]: c["default_entity_id"] for c in found.values()}


# -- the tests -----------------------------------------------------------------------------------


async def test_every_entity_of_every_driver_reads_and_writes_real_topics(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = simulators()
    expected = {  # entities the actions below must have made appear
        "front-door": {"doorbell", "access_granted", "access_denied", "door", "switch_1", "tamper"},
        "side-gate": {"access_granted", "access_denied", "switch_1", "sip_1", "call"},
        "yard-camera": {"camera", "recording", "motion_detection", "motion"},
        "stage-encoder": {"camera", "recording", "streaming", "video_signal"},
        "door-5": {"doorbell", "switch_1", "input_1", "camera"},
    }
    async with serving(sims), Consumer(mosquitto.url, ("bridge/#", f"{PREFIX}/#")) as consumer:
        async with running(config(mosquitto.url, sims, tmp_path)):
            for device, keys in expected.items():
                await appear(consumer, device, keys - {"tamper"})  # tamper: once it happened
            happen(sims)
            for device in sims:
                await use_every_entity(consumer, device)
            for device, keys in expected.items():
                await appear(consumer, device, keys)
            for type_ in ("door.closed", "access.denied", "doorbell.pressed"):
                await consumer.first(TOPICS.event("front-door", type_))
            await consumer.first(TOPICS.event("side-gate", "access.denied"))
            await consumer.first(TOPICS.event("door-5", "doorbell.pressed"))
            checked = check_entities(consumer, list(sims))
            for device in sims:
                check_events_are_declared(consumer, device)
    assert checked >= 60  # the five devices have more: a floor, not a count


async def test_ids_stay_and_a_removed_device_is_cleared_at_the_next_start(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"door-5": GenericSimulator(), "door-6": GenericSimulator()}

    async def run(settings: dict[str, Any], devices: list[str]) -> dict[str, dict[str, str]]:
        """Start, wait for the devices' full configs, stop; their ids."""
        async with Consumer(mosquitto.url, (f"{PREFIX}/#",)) as consumer:
            async with running(settings):
                for device in devices:
                    await appear(consumer, device, {"switch_1", "switch_2"}, fresh=True)
            return {d: ids(consumer, d) for d in devices}

    async with serving(sims):
        settings = bridge_config(mosquitto.url, sims, tmp_path)
        settings["homeassistant"] = {"enabled": True}
        first = await run(settings, ["door-5", "door-6"])
        assert len(first["door-5"]) > 5  # connectivity, doorbell, buttons, switches, ...
        assert first == await run(settings, ["door-5", "door-6"])
        assert (tmp_path / "homeassistant.json").exists()

        settings["devices"] = settings["devices"][:1]  # door-6 leaves the configuration
        async with Consumer(mosquitto.url, (f"{PREFIX}/#",)) as consumer:
            async with running(settings):
                await consumer.wait_for(
                    lambda _: configs(consumer, fresh=True).get("door-6") is not None
                )
                assert configs(consumer, fresh=True)["door-6"].payload == b""
                await appear(consumer, "door-5", {"switch_1"}, fresh=True)
                assert ids(consumer, "door-5") == first["door-5"]
        kept = await retained(mosquitto.url)
        assert [s.topic for s in kept] == [discovery_topic("door-5")]

        settings["homeassistant"] = {"enabled": False}  # discovery off: nothing of it stays
        async with Consumer(mosquitto.url, (f"{PREFIX}/#",)) as consumer:
            async with running(settings):
                await consumer.wait_for(
                    lambda _: configs(consumer).get("door-5", Seen("", b"x", False)).payload == b""
                )
        assert await retained(mosquitto.url) == []


# -- the documented commands, against the demo ---------------------------------------------------

DEMO_DEVICES = ["front-door", "side-gate", "yard-camera", "stage-encoder", "door-5"]
DOCUMENTED = [  # docs/home-assistant.md, in order
    "BRIDGE_HOMEASSISTANT__ENABLED=true bridge demo --mqtt-url mqtt://127.0.0.1:1883",
    "mosquitto_sub -h 127.0.0.1 -t 'homeassistant/device/+/config' -v -C 5",
    "mosquitto_pub -h 127.0.0.1 -r -n -t homeassistant/device/bridge_front-door/config",
]


def runnable(text: str, port: int) -> str:
    """A documented command pointed at the test's broker instead of 127.0.0.1:1883."""
    return text.replace("127.0.0.1:1883", f"127.0.0.1:{port}").replace(
        "-h 127.0.0.1", f"-h 127.0.0.1 -p {port}"
    )


def shell_env() -> dict[str, str]:
    """The environment a user has: the bridge's ``bridge`` command on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


async def test_the_documented_commands_show_the_demo_in_home_assistant(
    mosquitto: Mosquitto,
) -> None:
    documented = [c.text for c in file_commands(ROOT, "docs/home-assistant.md")]
    assert documented == DOCUMENTED
    demo, subscribe, remove = (runnable(text, mosquitto.port) for text in documented)
    async with Consumer(mosquitto.url, ("bridge/#", f"{PREFIX}/#")) as consumer:
        async with await anyio.open_process(
            ["sh", "-c", f"exec env {demo} --duration 60"],  # exec: the signal reaches the demo
            env=shell_env(),
            stdout=subprocess.DEVNULL,
        ) as process:
            try:
                await consumer.wait_for(
                    lambda _: all(
                        d in configs(consumer) and consumer.on(TOPICS.state(d))
                        for d in DEMO_DEVICES
                    ),
                    timeout=30,
                )
                with anyio.fail_after(30):
                    shown = await anyio.run_process(subscribe, env=shell_env(), check=True)
                lines = shown.stdout.decode().splitlines()
                assert sorted(line.split(" ", 1)[0] for line in lines) == sorted(
                    discovery_topic(d) for d in DEMO_DEVICES
                )
                for line in lines:
                    topic, payload = line.split(" ", 1)
                    hass.validate(topic, payload.encode())
                for device in DEMO_DEVICES:
                    check_state_entities(consumer, device)
            finally:
                process.terminate()
                with anyio.fail_after(15):
                    await process.wait()
    assert await retained(mosquitto.url) == []  # the demo took its configs away

    # By hand: a config the bridge does not know about any more goes with an empty one.
    left = [s for s in consumer.on(discovery_topic("front-door")) if s.payload][-1]
    async with Consumer(mosquitto.url, ()) as publisher:
        await publisher.publish(left.topic, left.payload, retain=True)
    assert [s.topic for s in await retained(mosquitto.url)] == [left.topic]
    await anyio.run_process(remove, env=shell_env(), check=True)
    assert await retained(mosquitto.url) == []


def check_state_entities(consumer: Consumer, device: str) -> None:
    """The demo device's entities that read its availability and state, on its real payloads."""
    payloads = {
        TOPICS.state(device): state(consumer, device),
        TOPICS.availability(device): consumer.on(TOPICS.availability(device))[-1].payload,
        TOPICS.bridge_state: b"online",
    }
    for key, component in components(consumer, device).items():
        for topic in hass.subscriptions(component):
            if topic in payloads:
                assert hass.reading(component, topic, payloads[topic]) is not None, key
