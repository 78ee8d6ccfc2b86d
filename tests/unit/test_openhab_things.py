"""The docs' openHAB example (docs/examples/openhab/bridge.things) against the bridge's MQTT
contract: every topic it reads is one the bridge publishes for a `bridge demo` device, every
command it sends is one the bridge accepts. tests/integration/test_openhab_demo.py tries the
same file against a running `bridge demo`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.commands import CATALOGUE, is_allowed, parse_command
from bridge.config import CommandPolicy
from bridge.demo import DEVICES, device_ids
from bridge.model import EVENT_TYPES
from bridge.mqtt.topics import Inbound, Topics
from tests.openhab import (
    Channel,
    Thing,
    ThingsSyntaxError,
    apply_transformation,
    jsonpath_steps,
    parse_things,
)

THINGS = Path(__file__).parents[2] / "docs" / "examples" / "openhab" / "bridge.things"
TOPICS = Topics()
CHANNEL_TYPES = {"switch", "string", "trigger", "contact", "number"}


def published() -> set[str]:
    """Every topic the bridge publishes for the demo's devices (all vendors)."""
    topics = {TOPICS.bridge_state, TOPICS.bridge_info}
    for device in device_ids(len(DEVICES)):
        topics |= {TOPICS.availability(device), TOPICS.info(device), TOPICS.state(device)}
        topics |= {TOPICS.event(device, type_) for type_ in EVENT_TYPES}
    return topics


def example() -> list[Thing]:
    return parse_things(THINGS.read_text(encoding="utf-8"))


def channels() -> list[tuple[Thing, Channel]]:
    return [(thing, channel) for thing in example() for channel in thing.channels]


def device_of(thing: Thing) -> str | None:
    """The device a Thing stands for, from its availability topic (None: the bridge)."""
    topic = str(thing.params["availabilityTopic"])
    _, owner, _ = topic.split("/", 2)
    return None if owner == "bridge" else owner


# -- the parser and the transformation, on tables ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Bridge mqtt:broker:b "B" [ host="h", port=1883, secure=false ]',
            [Thing("Bridge", "mqtt:broker:b", "B", None, {"host": "h", "port": 1883, "secure": False})],
        ),
        (
            (
                '// a comment\nThing mqtt:topic:t "T" (mqtt:broker:b) { Channels:\n'
                '  Type switch : s "S" [ on="{\\"a\\":1}", off="x" ] // trailing\n}'
            ),
            [
                Thing(
                    "Thing", "mqtt:topic:t", "T", "mqtt:broker:b", {},
                    [Channel("switch", "s", "S", {"on": '{"a":1}', "off": "x"})],
                )
            ],
        ),
        ("Thing mqtt:topic:t (mqtt:broker:b) [ qos=1.5 ]", [Thing("Thing", "mqtt:topic:t", "", "mqtt:broker:b", {"qos": 1.5})]),
        ("", []),
    ],
)  # fmt: skip
def test_parse_things(text: str, expected: list[Thing]) -> None:
    assert parse_things(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('Item x "X"', "expected 'Bridge' or 'Thing', found 'Item'"),
        ("Thing a:b [ host=h ]", "a parameter value must be quoted: 'h'"),
        ('Thing a:b [ host="h" port=1 ]', "expected ',', found 'port'"),
        ("Thing a:b { Channels: Type switch s }", "expected 'colon', found 's'"),
        ('Thing a:b "unterminated', "line 1: unexpected '\"unterminated'"),
    ],
)  # fmt: skip
def test_parse_errors_name_what_is_unexpected(text: str, message: str) -> None:
    with pytest.raises(ThingsSyntaxError) as caught:
        parse_things(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("pattern", "payload", "expected"),
    [
        ("JSONPATH:$.switches['1'].active", b'{"switches":{"1":{"active":true}}}', "true"),
        ("JSONPATH($.switches['1'].active)", b'{"switches":{"1":{"active":false}}}', "false"),
        ("JSONPATH:$.data.button", b'{"data":{"button":"%1"}}', "%1"),
        ("JSONPATH:$.data.button", b'{"data":{"button":1}}', "1"),
        ("JSONPATH:$.list[1]", b'{"list":[0,5]}', "5"),
        ("JSONPATH:$.call.state", b'{"switches":{}}', None),
        ("JSONPATH:$.call", b'{"call":null}', None),
        ("JSONPATH:$.a", b"online", None),
        ("", b"online", "online"),
    ],
)
def test_apply_transformation(pattern: str, payload: bytes, expected: str | None) -> None:
    assert apply_transformation(pattern, payload) == expected


@pytest.mark.parametrize("path", ["switches", "$..active", "$.switches[*]", "$[?(@.a)]"])
def test_unsupported_jsonpaths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="JSONPath"):
        jsonpath_steps(path)


# -- the example file ---------------------------------------------------------------------------


def test_one_broker_and_things_on_it() -> None:
    things = example()
    brokers = [t for t in things if t.kind == "Bridge"]
    assert [b.uid.split(":")[:2] for b in brokers] == [["mqtt", "broker"]]
    assert brokers[0].params["qos"] == 1  # commands at least once, as the bridge publishes
    others = [t for t in things if t.kind == "Thing"]
    assert others
    assert all(t.bridge == brokers[0].uid and t.uid.startswith("mqtt:topic:") for t in others)


def test_each_thing_follows_an_availability_the_bridge_publishes() -> None:
    devices = {device_of(t) for t in example() if t.kind == "Thing"}
    assert None in devices  # the bridge itself (its last will)
    assert "front-door" in devices  # the demo's 2N intercom
    for thing in (t for t in example() if t.kind == "Thing"):
        assert thing.params["availabilityTopic"] in published()
        assert (thing.params["payloadAvailable"], thing.params["payloadNotAvailable"]) == (
            "online",
            "offline",
        )


def test_every_state_topic_is_one_the_bridge_publishes_for_that_device() -> None:
    for thing, channel in channels():
        assert channel.type in CHANNEL_TYPES, channel
        topic = channel.params.get("stateTopic")
        if topic is None:
            continue
        assert topic in published(), channel
        owner = str(topic).split("/")[1]
        assert owner == (device_of(thing) or "bridge"), channel
        jsonpath = str(channel.params.get("transformationPattern", ""))
        if jsonpath:
            apply_transformation(jsonpath, b"{}")  # a pattern the check below can evaluate


def test_the_doorbell_is_a_trigger_channel_on_the_ring_event() -> None:
    triggers = [(t, c) for t, c in channels() if c.type == "trigger"]
    assert [(device_of(t), c.params["stateTopic"]) for t, c in triggers] == [
        ("front-door", TOPICS.event("front-door", "doorbell.pressed"))
    ]


def test_every_command_is_one_the_bridge_accepts_for_that_device() -> None:
    commands = [(t, c) for t, c in channels() if "commandTopic" in c.params]
    assert [c.id for _, c in commands] == ["door"]
    policy = CommandPolicy()
    for thing, channel in commands:
        topic = str(channel.params["commandTopic"])
        assert TOPICS.parse(topic) == Inbound("command", str(device_of(thing)))
        assert channel.params.get("retained", False) is False  # retained commands are refused
        for value in (channel.params["on"], channel.params["off"]):
            request = parse_command(str(value).encode())
            assert request.id is not None  # so its result can be matched
            spec = CATALOGUE[request.command]
            spec.args.model_validate(request.args)
            assert is_allowed(spec.name, policy)  # no policy needed (reboot would be)
    (door,) = (channel for _, channel in commands)
    assert parse_command(str(door.params["on"]).encode()).command == "open_door"


def test_switches_that_read_state_say_which_values_are_on_and_off() -> None:
    for _, channel in channels():
        if channel.type == "switch" and "stateTopic" in channel.params:
            assert {"on", "off"} <= channel.params.keys(), channel
