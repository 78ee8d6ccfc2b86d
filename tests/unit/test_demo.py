"""The demo's pure decisions: which devices, what a line shows, which topics are its own."""

from __future__ import annotations

import json

import pytest

from bridge.demo import (
    Broker,
    broker_line,
    device_ids,
    devices_line,
    in_demo,
    summary,
    watch_command,
)

VENDORS = ["front-door", "side-gate", "yard-camera", "stage-encoder"]


@pytest.mark.parametrize(
    ("count", "ids"),
    [
        (1, ["front-door"]),
        (2, ["front-door", "side-gate"]),
        (4, VENDORS),
        (5, [*VENDORS, "door-5"]),
        (7, [*VENDORS, "door-5", "door-6", "door-7"]),
    ],
)
def test_device_ids_are_stable(count: int, ids: list[str]) -> None:
    assert device_ids(count) == ids


def test_the_devices_line_names_each_device_and_its_kind() -> None:
    assert devices_line(5) == (
        "demo: devices front-door (2N intercom), side-gate (Onetouch door station), "
        "yard-camera (Grandstream camera), stage-encoder (Ultra Stream encoder), door-5 (generic)"
    )


@pytest.mark.parametrize(
    ("broker", "command"),
    [
        (Broker("127.0.0.1", 1883, own=True), "mosquitto_sub -t 'bridge/#' -v"),
        (Broker("127.0.0.1", 40123, own=True), "mosquitto_sub -p 40123 -t 'bridge/#' -v"),
        (Broker("localhost", 1883, own=False), "mosquitto_sub -t 'bridge/#' -v"),
        (Broker("broker.lan", 1883, own=False), "mosquitto_sub -h broker.lan -t 'bridge/#' -v"),
        (Broker("::1", 1884, own=False), "mosquitto_sub -h ::1 -p 1884 -t 'bridge/#' -v"),
    ],
)
def test_the_watch_command_is_the_shortest_that_works(broker: Broker, command: str) -> None:
    assert watch_command(broker) == command


def test_the_first_line_says_where_the_broker_is_and_how_to_watch_it() -> None:
    assert broker_line(Broker("127.0.0.1", 1883, own=True)) == (
        "demo: broker mqtt://127.0.0.1:1883 (mosquitto started by the demo); "
        "watch it with: mosquitto_sub -t 'bridge/#' -v"
    )
    assert broker_line(Broker("::1", 1884, own=False)) == (
        "demo: broker mqtt://[::1]:1884 (yours); watch it with: mosquitto_sub -h ::1 -p 1884 "
        "-t 'bridge/#' -v"
    )


def cloud_event(data: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "front-door/1796047392/22",
            "source": "bridge/front-door",
            "type": "card.read",
            "time": "2026-11-30T14:07:17Z",
            "datacontenttype": "application/json",
            "device": "front-door",
            "data": data,
        }
    ).encode()


@pytest.mark.parametrize(
    ("topic", "payload", "shown"),
    [
        # An event: its data, whole, without the vendor's raw record.
        (
            "bridge/front-door/event/access.granted",
            cloud_event(
                {
                    "user": "Alice",
                    "uuid": "user-4BD9E903",
                    "ap": 0,
                    "session": 4,
                    "apb_broken": False,
                    "raw": {
                        "event": "UserAuthenticated",
                        "params": {"name": "Alice"} | {f"k{i}": "x" * 20 for i in range(20)},
                    },
                }
            ),
            '{"user":"Alice","uuid":"user-4BD9E903","ap":0,"session":4,"apb_broken":false}',
        ),
        (
            "bridge/front-door/event/doorbell.pressed",
            cloud_event({"button": "%1", "raw": {"event": "KeyPressed"}}),
            '{"button":"%1"}',
        ),
        (
            "bridge/side-gate/event/card.read",
            cloud_event({"uid": "00B4161D", "valid": True, "user": "Ünal"}),
            '{"uid":"00B4161D","valid":true,"user":"Ünal"}',
        ),
        # Anything else: whole, however long.
        (
            "bridge/front-door/state",
            b'{"switches":{"1":{"active":false}}}' + b" " * 300,
            '{"switches":{"1":{"active":false}}}' + " " * 300,
        ),
        ("bridge/bridge/state", b"online", "online"),
        ("bridge/front-door/command", b"{not json", "{not json"),
        # An event topic without an event in it: as it came.
        ("bridge/door-5/event/x", b"{not json", "{not json"),
        ("bridge/door-5/event/x", b"[1, 2]", "[1, 2]"),
        ("bridge/front-door/snapshot", b"\xff\xd8\xff\xe0", "<4 bytes>"),
    ],
)
def test_what_a_line_shows(topic: str, payload: bytes, shown: str) -> None:
    assert summary(topic, payload) == shown


@pytest.mark.parametrize(
    ("topic", "ours"),
    [
        ("bridge/bridge/state", True),
        ("bridge/bridge/info", True),
        ("bridge/front-door/availability", True),
        ("bridge/front-door/command", True),
        ("bridge/door-5/state", True),
        ("bridge/porch/availability", False),  # another bridge's device on the user's broker
        ("bridge/door-6/state", False),  # not one of this run's devices
        ("other/front-door/state", False),
        ("bridge", False),
    ],
)
def test_the_demo_clears_only_its_own_topics(topic: str, ours: bool) -> None:
    assert in_demo(topic, device_ids(5)) is ours
