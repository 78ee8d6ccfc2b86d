"""The transition step, one table: previous state, new state, the events expected."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.normalize.transitions import Change, transitions

ON, OFF = {"active": True}, {"active": False}

CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any], list[tuple[str, dict[str, Any]]]]] = [
    ("first poll is a baseline", None, {"switches": {"1": ON}, "motion": True}, []),
    ("nothing changed", {"switches": {"1": OFF}}, {"switches": {"1": OFF}}, []),
    (
        "relay on",
        {"switches": {"1": OFF, "2": OFF}},
        {"switches": {"1": ON, "2": OFF}},
        [("switch.changed", {"switch": 1, "active": True})],
    ),
    (
        "relay off, other fields ignored",
        {"switches": {"1": {"active": True, "name": "A"}}},
        {"switches": {"1": {"active": False, "name": "B"}}},
        [("switch.changed", {"switch": 1, "active": False})],
    ),
    ("a new relay is a baseline", {"switches": {}}, {"switches": {"3": ON}}, []),
    ("a new section is a baseline", {}, {"inputs": {"1": ON}}, []),
    (
        "inputs in numeric order",
        {"inputs": {"10": OFF, "2": OFF}},
        {"inputs": {"10": ON, "2": ON}},
        [
            ("input.changed", {"port": 2, "active": True}),
            ("input.changed", {"port": 10, "active": True}),
        ],
    ),
    (
        "outputs",
        {"outputs": {"1": ON}},
        {"outputs": {"1": OFF}},
        [("output.changed", {"port": 1, "active": False})],
    ),
    ("motion starts", {"motion": False}, {"motion": True}, [("motion.started", {})]),
    ("motion stops", {"motion": True}, {"motion": False}, [("motion.stopped", {})]),
    (
        "motion per zone",
        {"motion": {"1": False, "2": True}},
        {"motion": {"1": True, "2": False}},
        [("motion.started", {"zone": 1}), ("motion.stopped", {"zone": 2})],
    ),
    ("tamper", {"tamper": False}, {"tamper": True}, [("tamper.changed", {"active": True})]),
    ("recording", {"recording": False}, {"recording": True}, [("recording.started", {})]),
    (
        "recording per medium",
        {"recording": {"sd": True, "usb": False}},
        {"recording": {"sd": False, "usb": False}},
        [("recording.stopped", {"medium": "sd"})],
    ),
    (
        "streaming per server",
        {"streaming": {"1": False, "2": False}},
        {"streaming": {"1": True, "2": False}},
        [("streaming.started", {"server": 1})],
    ),
    (
        "video signal lost",
        {"video_signal": True},
        {"video_signal": False},
        [("video_signal.lost", {})],
    ),
    (
        "video signal back",
        {"video_signal": False},
        {"video_signal": True},
        [("video_signal.restored", {})],
    ),
    (
        "storage",
        {"storage": {"usb": "ready"}},
        {"storage": {"usb": "full"}},
        [("storage.changed", {"medium": "usb", "status": "full"})],
    ),
    (
        "sip",
        {"sip": {"1": "registered", "2": "disabled"}},
        {"sip": {"1": "failed", "2": "disabled"}},
        [("sip.registration_changed", {"account": 1, "state": "failed"})],
    ),
    (
        "call carries the whole call object",
        {"call": {"state": "idle"}},
        {"call": {"state": "ringing", "direction": "incoming"}},
        [("call.state_changed", {"state": "ringing", "direction": "incoming"})],
    ),
    (
        "call peer alone is no event",
        {"call": {"state": "idle"}},
        {"call": {"state": "idle", "peer": "1"}},
        [],
    ),
    ("a value going unknown is no event", {"motion": True}, {"motion": None}, []),
    (
        "channels carry their number",
        {"channels": {"1": {"motion": False}, "2": {"motion": False}}},
        {"channels": {"1": {"motion": False}, "2": {"motion": True}}},
        [("motion.started", {"channel": 2})],
    ),
    (
        "channel items",
        {"channels": {"1": {"inputs": {"1": OFF}}}},
        {"channels": {"1": {"inputs": {"1": ON}}}},
        [("input.changed", {"channel": 1, "port": 1, "active": True})],
    ),
    ("a new channel is a baseline", {"channels": {}}, {"channels": {"1": {"motion": True}}}, []),
    (
        "several sections in rule order",
        {"inputs": {"1": OFF}, "switches": {"1": OFF}},
        {"inputs": {"1": ON}, "switches": {"1": ON}},
        [
            ("switch.changed", {"switch": 1, "active": True}),
            ("input.changed", {"port": 1, "active": True}),
        ],
    ),
    ("unknown sections are ignored", {"fan": 1}, {"fan": 2}, []),
    ("a malformed section is ignored", {"switches": [1]}, {"switches": {"1": ON}}, []),
]


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_transitions(
    previous: dict[str, Any] | None,
    current: dict[str, Any],
    expected: list[tuple[str, dict[str, Any]]],
) -> None:
    assert transitions(previous, current) == [Change(t, d) for t, d in expected]


def test_every_type_is_an_event_type() -> None:
    from bridge.model import is_event_type
    from bridge.normalize.transitions import RULES

    for rule in RULES:
        types = rule.types if isinstance(rule.types, tuple) else (rule.types,)
        assert all(is_event_type(t) for t in types), rule
