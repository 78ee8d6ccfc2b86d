"""The docs' openHAB example (docs/examples/openhab/bridge.things) tried against a running
`bridge demo`, doing what openHAB's MQTT binding does with each channel: subscribe to its state
topic and apply its transformation, publish its on/off values to its command topic.

openHAB itself is not installable here: this checks the topics, payloads and JSONPaths of the
file, not openHAB's reading of it (docs/openhab.md says so).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.helpers import Consumer, Mosquitto, Seen, wait_until
from tests.integration.demo_process import demo
from tests.openhab import Channel, Thing, apply_transformation, parse_things

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
THINGS = Path(__file__).parents[2] / "docs" / "examples" / "openhab" / "bridge.things"
DEADLINE = 60.0  # seconds for the demo to start, and for its front door to ring


def things() -> list[Thing]:
    return [t for t in parse_things(THINGS.read_text(encoding="utf-8")) if t.kind == "Thing"]


def values(consumer: Consumer, channel: Channel) -> list[str | None]:
    """What the binding makes of each message seen on the channel's state topic."""
    pattern = str(channel.params.get("transformationPattern", ""))
    topic = channel.params["stateTopic"]
    return [apply_transformation(pattern, s.payload) for s in consumer.seen if s.topic == topic]


def received(consumer: Consumer, topic: str, payload: str) -> bool:
    return any(s.payload.decode() == payload for s in consumer.on(topic))


def usable(consumer: Consumer, channel: Channel) -> bool:
    """Whether a message on the channel's state topic survived its transformation."""
    return any(v is not None for v in values(consumer, channel))


def result_of(consumer: Consumer, topic: str, id_: object) -> list[Seen]:
    return [s for s in consumer.on(topic) if s.json().get("id") == id_]


async def test_the_things_file_works_with_bridge_demo(mosquitto: Mosquitto, tmp_path: Path) -> None:
    things_ = things()
    channels = [c for t in things_ for c in t.channels]
    topics = {str(t.params["availabilityTopic"]) for t in things_}
    topics |= {str(c.params["stateTopic"]) for c in channels if "stateTopic" in c.params}
    topics |= {f"{c.params['commandTopic']}/result" for c in channels if "commandTopic" in c.params}
    args = ("--mqtt-url", mosquitto.url, "--devices", "1", "--interval", "0.2")
    async with Consumer(mosquitto.url, tuple(sorted(topics))) as consumer:
        with demo(*args, log_dir=tmp_path) as running_demo:

            async def until(condition: Callable[[], object]) -> None:
                def check() -> object:
                    assert running_demo.process.poll() is None, running_demo.output()
                    return condition()

                await wait_until(check, timeout=DEADLINE)

            # Every Thing goes online.
            for thing in things_:
                topic, online = thing.params["availabilityTopic"], thing.params["payloadAvailable"]
                await until(partial(received, consumer, str(topic), str(online)))

            # Every state channel gets values it can use: a switch its on or off value, a
            # string or a trigger anything the transformation does not discard (the doorbell
            # needs the demo's front door to ring).
            for channel in (c for c in channels if "stateTopic" in c.params):
                await until(partial(usable, consumer, channel))
                if channel.type == "switch":
                    accepted = {channel.params["on"], channel.params["off"]}
                    assert set(values(consumer, channel)) <= accepted, channel

            # Every command value is executed.
            for channel in (c for c in channels if "commandTopic" in c.params):
                topic = f"{channel.params['commandTopic']}/result"
                for value in (channel.params["on"], channel.params["off"]):
                    id_ = json.loads(str(value))["id"]
                    await consumer.publish(str(channel.params["commandTopic"]), str(value))
                    await until(partial(result_of, consumer, topic, id_))
                    (result,) = result_of(consumer, topic, id_)
                    assert result.json()["status"] == "ok", result.json()

            # The door lock channel follows the door being opened (the command above, a card).
            lock = next(c for c in channels if c.id == "lock")
            await until(lambda: "true" in values(consumer, lock))
