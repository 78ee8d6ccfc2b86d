"""2N normalization, driven by the example payloads of the 2N HTTP API manuals (seed-2n.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bridge.errors import DeviceProtocolError
from bridge.model import Event, StateUpdate
from bridge.normalize.two_n import (
    HIDDEN_BY_DEFAULT,
    VENDOR,
    ApiError,
    Doorbell,
    Record,
    command_error,
    event_filter,
    firmware_version,
    normalize,
    parse_calls,
    parse_caps,
    parse_events,
    parse_info,
    parse_io,
    parse_phone,
    parse_record,
    parse_switches,
    parse_uptime,
    unwrap,
)

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "docs" / "schema" / "event.schema.json").read_text()
)
UUID = "54877b0e-4cc3-c645-9530-6c7850f47a9c"
BELL = Doorbell()


def rec(id_: int, utc: int, up: int, event: str, params: dict[str, Any]) -> dict[str, Any]:
    """A log/pull record as the manual prints it."""
    return {"id": id_, "tzShift": 0, "utcTime": utc, "upTime": up, "event": event, "params": params}


def valid(events: list[Event]) -> list[Event]:
    """Every event must validate against the published CloudEvents schema."""
    for event in events:
        jsonschema.validate(json.loads(event.to_json()), SCHEMA)
    return events


def run(raw: dict[str, Any], doorbell: Doorbell = BELL) -> tuple[list[Event], StateUpdate | None]:
    record = parse_record(raw)
    out = normalize("door", record.boot, record, doorbell=doorbell)
    return valid(out.events), out.state


# (manual example, type, data without raw, state)
EXAMPLES: list[tuple[dict[str, Any], str, dict[str, Any], dict[str, Any] | None]] = [
    (
        rec(1, 1437987102, 8, "DeviceState", {"state": "startup"}),
        "device.started",
        {"uptime": 8},
        None,
    ),
    (rec(21, 1585037151, 256, "CapabilitiesChanged", {}), "vendor.CapabilitiesChanged", {}, None),
    (
        rec(5, 1441369745, 275, "LoginBlocked", {"address": "10.0.23.32"}),
        "login.blocked",
        {"address": "10.0.23.32"},
        None,
    ),
    (
        rec(26, 1438073190, 9724, "AudioLoopTest", {"result": "passed"}),
        "vendor.AudioLoopTest",
        {},
        None,
    ),
    (
        rec(2, 1441357589, 1, "MotionDetected", {"state": "in"}),
        "motion.started",
        {"zone": 1},
        {"motion": True},
    ),
    (
        rec(3, 1441357599, 11, "MotionDetected", {"state": "out", "ID": 2}),
        "motion.stopped",
        {"zone": 2},
        {"motion": False},
    ),
    (
        rec(2, 1441357589, 1, "NoiseDetected", {"state": "in"}),
        "noise.detected",
        {"active": True},
        {"noise": True},
    ),
    (
        rec(4, 1437987888, 794, "KeyPressed", {"key": "5"}),
        "key.pressed",
        {"key": "5"},
        None,
    ),
    (rec(5, 1437987889, 795, "KeyReleased", {"key": "5"}), "vendor.KeyReleased", {}, None),
    (
        rec(
            128,
            1548078453,
            1061,
            "CodeEntered",
            {
                "ap": 0,
                "session": 8,
                "direction": "in",
                "code": "1234",
                "type": "user",
                "uuid": UUID,
                "valid": True,
            },
        ),
        "code.entered",
        {
            "valid": True,
            "ap": 0,
            "session": 8,
            "direction": "in",
            "type": "user",
            "user": UUID,
            "uuid": UUID,
        },
        None,
    ),
    (  # the v2.15 manual's example
        rec(7, 1437987900, 806, "CodeEntered", {"code": "5864", "valid": False}),
        "code.entered",
        {"valid": False},
        None,
    ),
    (
        rec(
            86,
            1558522871,
            3531,
            "DtmfEntered",
            {"code": "00", "type": "uni", "call": 3, "valid": True},
        ),
        "vendor.DtmfEntered",
        {},
        None,
    ),
    (
        rec(
            60,
            1548078014,
            622,
            "CardEntered",
            {
                "ap": 0,
                "session": 5,
                "direction": "in",
                "reader": "ext2",
                "uid": "4BD9E903",
                "uuid": UUID,
                "valid": True,
            },
        ),
        "card.read",
        {
            "reader": "ext2",
            "uid": "4BD9E903",
            "valid": True,
            "ap": 0,
            "session": 5,
            "direction": "in",
            "user": UUID,
            "uuid": UUID,
        },
        None,
    ),
    (
        rec(
            9,
            1516893493,
            354,
            "CardHeld",
            {
                "ap": 1,
                "session": 4,
                "direction": "out",
                "reader": "ext2",
                "uid": "3F00F318E7",
                "valid": True,
            },
        ),
        "vendor.CardHeld",
        {},
        None,
    ),
    (
        rec(
            1368,
            1548145535,
            62598,
            "FingerEntered",
            {"ap": 0, "session": 1, "direction": "in", "valid": False},
        ),
        "vendor.FingerEntered",
        {},
        None,
    ),
    (
        rec(14, 1511859513, 65887, "FingerEntered", {"session": 3, "valid": False}),
        "vendor.FingerEntered",
        {},
        None,
    ),
    (
        rec(
            161,
            1548079174,
            1782,
            "MobKeyEntered",
            {
                "ap": 0,
                "session": 9,
                "direction": "in",
                "authid": "48c48155eed7ea1dbb0b4d534b7459b9",
                "uuid": UUID,
                "valid": True,
            },
        ),
        "vendor.MobKeyEntered",
        {},
        None,
    ),
    (
        rec(
            197,
            1516894499,
            1360,
            "PairingStateChanged",
            {"state": "pending", "authId": "F2CAE955C9B4E81CD00E3A096E52543B"},
        ),
        "vendor.PairingStateChanged",
        {},
        None,
    ),
    (
        rec(
            65,
            1593606655,
            7951,
            "UserAuthenticated",
            {
                "ap": 0,
                "session": 6,
                "name": "Alice Gruberová",
                "uuid": "8fa29ebc-2fe8-4a8c-9a3b-d8b0351fb6f8",
                "apbBroken": True,
            },
        ),
        "access.granted",
        {
            "user": "Alice Gruberová",
            "uuid": "8fa29ebc-2fe8-4a8c-9a3b-d8b0351fb6f8",
            "ap": 0,
            "session": 6,
            "apb_broken": True,
        },
        None,
    ),
    (
        rec(
            173,
            1548079274,
            1882,
            "UserRejected",
            {
                "ap": 0,
                "session": 10,
                "name": "Joseph",
                "uuid": UUID,
                "reason": "invalidCredential",
            },
        ),
        "access.denied",
        {"reason": "invalidCredential", "user": "Joseph", "uuid": UUID, "ap": 0, "session": 10},
        None,
    ),
    (
        rec(408, 1517302112, 408951, "AccessLimited", {"ap": 0, "type": "card", "state": "in"}),
        "vendor.AccessLimited",
        {},
        None,
    ),
    (
        rec(35, 1558522465, 3125, "ApLockStateChanged", {"ap": 0, "state": "in"}),
        "vendor.ApLockStateChanged",
        {},
        None,
    ),
    (
        rec(29, 1558522162, 2822, "RexActivated", {"ap": 1, "session": 1}),
        "vendor.RexActivated",
        {},
        None,
    ),
    (
        rec(
            200,
            1548079445,
            2053,
            "SilentAlarm",
            {"ap": 0, "session": 17, "name": "Joseph", "uuid": UUID},
        ),
        "vendor.SilentAlarm",
        {},
        None,
    ),
    (
        rec(240, 1516895295, 2156, "DoorStateChanged", {"state": "opened"}),
        "door.opened",
        {"door": 1},
        None,
    ),
    (
        rec(241, 1516895300, 2161, "DoorStateChanged", {"state": "closed"}),
        "door.closed",
        {"door": 1},
        None,
    ),
    (
        rec(54, 1441367000, 100, "TamperSwitchActivated", {"state": "in"}),
        "tamper.changed",
        {"active": True},
        {"tamper": True},
    ),
    (
        rec(80, 1441367842, 231, "UnauthorizedDoorOpen", {"state": "in"}),
        "door.forced",
        {"door": 1, "active": True},
        None,
    ),
    (
        rec(96, 1441367900, 289, "DoorOpenTooLong", {"state": "out"}),
        "door.open_too_long",
        {"door": 1, "active": False},
        None,
    ),
    (
        rec(205, 1516894667, 1528, "SwitchesBlocked", {"state": "in"}),
        "vendor.SwitchesBlocked",
        {},
        None,
    ),
    (
        rec(2, 1437987103, 9, "OutputChanged", {"port": "led_secured", "state": False}),
        "output.changed",
        {"port": "led_secured", "active": False},
        {"outputs": {"led_secured": {"active": False}}},
    ),
    (
        rec(2, 1437987103, 9, "InputChanged", {"port": "input1", "state": True}),
        "input.changed",
        {"port": "input1", "active": True},
        {"inputs": {"input1": {"active": True}}},
    ),
    (
        rec(2, 1437987103, 9, "SwitchStateChanged", {"switch": 1, "state": True}),
        "switch.changed",
        {"switch": 1, "active": True},
        {"switches": {"1": {"active": True}}},
    ),
    (
        rec(
            3,
            1437987104,
            10,
            "SwitchStateChanged",
            {"switch": 1, "state": False, "originator": "ap", "ap": 0, "session": 6},
        ),
        "switch.changed",
        {"switch": 1, "active": False, "originator": "ap", "ap": 0, "session": 6},
        {"switches": {"1": {"active": False}}},
    ),
    (
        rec(
            5,
            1438064126,
            660,
            "CallStateChanged",
            {
                "direction": "incoming",
                "state": "ringing",
                "peer": "sip:2229@10.0.97.150:5062;user=phone",
                "session": 1,
                "call": 1,
            },
        ),
        "call.state_changed",
        {
            "direction": "incoming",
            "state": "ringing",
            "peer": "sip:2229@10.0.97.150:5062;user=phone",
            "session": 1,
            "call": 1,
        },
        {"call": {"state": "ringing", "direction": "incoming", "session": 1}},
    ),
    (
        rec(
            6,
            1438064136,
            670,
            "CallStateChanged",
            {
                "direction": "incoming",
                "state": "terminated",
                "peer": "sip:2229@10.0.97.150",
                "reason": "normal",
                "session": 1,
                "call": 1,
            },
        ),
        "call.state_changed",
        {
            "direction": "incoming",
            "state": "terminated",
            "peer": "sip:2229@10.0.97.150",
            "reason": "normal",
            "session": 1,
            "call": 1,
        },
        {"call": {"state": "idle", "direction": None, "session": None}},
    ),
    (
        rec(
            3, 1437987105, 11, "RegistrationStateChanged", {"sipAccount": 1, "state": "registered"}
        ),
        "sip.registration_changed",
        {"account": 1, "state": "registered"},
        {"sip": {"1": "registered"}},
    ),
    (
        rec(2871, 1561540370, 73822, "LiftStatusChanged", {"module": 0, "ready": True}),
        "vendor.LiftStatusChanged",
        {},
        None,
    ),
    (
        rec(
            2872,
            1561540371,
            73823,
            "LiftFloorsEnabled",
            {"type": "user", "floors": [0, 1, 2, 3, 4], "uuid": UUID},
        ),
        "vendor.LiftFloorsEnabled",
        {},
        None,
    ),
    (
        rec(337, 1517301424, 408263, "DisplayTouched", {"x": 89, "y": 100, "dx": 0, "dy": 0}),
        "vendor.DisplayTouched",
        {},
        None,
    ),
]


@pytest.mark.parametrize(
    ("raw", "type_", "data", "state"),
    EXAMPLES,
    ids=[f"{r['event']}-{r['id']}" for r, *_ in EXAMPLES],
)
def test_manual_examples(
    raw: dict[str, Any], type_: str, data: dict[str, Any], state: dict[str, Any] | None
) -> None:
    (event,), update = run(raw)
    boot = raw["utcTime"] - raw["upTime"]
    assert event.type == type_
    assert event.id == f"door/{boot}/{raw['id']}"
    assert event.source == "bridge/door"
    assert event.time == datetime.fromtimestamp(raw["utcTime"], UTC)
    params = {k: "***" if k == "code" else v for k, v in raw["params"].items()}
    assert event.data == {**data, "raw": {**raw, "params": params}}
    assert update == (None if state is None else StateUpdate(values=state))


@pytest.mark.parametrize(
    ("event", "params"),
    [
        (
            "CodeEntered",
            {"code": "1234", "valid": True, "ap": 0, "uuid": UUID, "session": 8},
        ),
        ("CodeEntered", {"code": 1234, "valid": "true"}),
        ("DtmfEntered", {"code": "1234", "type": "uni", "call": 3, "valid": True}),
        ("DtmfPressed", {"code": "1234", "call": 3, "valid": True}),
        ("DtmfSent", {"code": "1234", "call": 3}),
        ("FutureEvent", {"nested": {"PIN": "1234"}, "list": [{"password": "1234"}]}),
    ],
)
def test_codes_are_never_published(event: str, params: dict[str, Any]) -> None:
    (published,), _ = run(rec(128, 1548078453, 1061, event, params))
    assert "1234" not in published.to_json().decode()
    assert "1234" not in repr(published)
    if "code" in params:
        assert published.data["raw"]["params"]["code"] == "***"


@pytest.mark.parametrize(
    ("event", "params", "type_", "data", "state"),
    [
        (
            "SwitchStateChanged",
            {"switch": "2", "state": "true"},
            "switch.changed",
            {"switch": 2, "active": True},
            {"switches": {"2": {"active": True}}},
        ),
        (
            "InputChanged",
            {"port": "in1", "state": "1"},
            "input.changed",
            {"port": "in1", "active": True},
            {"inputs": {"in1": {"active": True}}},
        ),
        (
            "OutputChanged",
            {"port": 3, "state": 0},
            "output.changed",
            {"port": "3", "active": False},
            {"outputs": {"3": {"active": False}}},
        ),
        (
            "CodeEntered",
            {"valid": "false", "ap": "1", "session": "8", "code": "99"},
            "code.entered",
            {"valid": False, "ap": 1, "session": 8},
            None,
        ),
        (
            "CardEntered",
            {"valid": "TRUE", "uid": "4BD9E903", "reader": "internal"},
            "card.read",
            {"valid": True, "uid": "4BD9E903", "reader": "internal"},
            None,
        ),
        (
            "RegistrationStateChanged",
            {"sipAccount": "2", "state": "unregistered", "reason": "timeout"},
            "sip.registration_changed",
            {"account": 2, "state": "unregistered", "reason": "timeout"},
            {"sip": {"2": "unregistered"}},
        ),
        (
            "MotionDetected",
            {"state": "IN", "ID": "3"},
            "motion.started",
            {"zone": 3},
            {"motion": True},
        ),
        (
            "UserAuthenticated",
            {"ap": "0", "session": "6", "uuid": UUID, "apbBroken": "false"},
            "access.granted",
            {"user": UUID, "uuid": UUID, "ap": 0, "session": 6, "apb_broken": False},
            None,
        ),
        ("UserRejected", {}, "access.denied", {}, None),
        # params that do not fit the event type: published as vendor.<Name>, never dropped
        (
            "SwitchStateChanged",
            {"switch": "one", "state": True},
            "vendor.SwitchStateChanged",
            {},
            None,
        ),
        (
            "SwitchStateChanged",
            {"switch": 1, "state": "maybe"},
            "vendor.SwitchStateChanged",
            {},
            None,
        ),
        ("InputChanged", {"state": True}, "vendor.InputChanged", {}, None),
        ("MotionDetected", {"state": "sideways"}, "vendor.MotionDetected", {}, None),
        ("DeviceState", {"state": "shutdown"}, "vendor.DeviceState", {}, None),
        ("DoorStateChanged", {"state": "ajar"}, "vendor.DoorStateChanged", {}, None),
        ("CodeEntered", {"code": "1234"}, "vendor.CodeEntered", {}, None),
        ("CallStateChanged", {"direction": "incoming"}, "vendor.CallStateChanged", {}, None),
        (
            "RegistrationStateChanged",
            {"state": "registered"},
            "vendor.RegistrationStateChanged",
            {},
            None,
        ),
        ("KeyPressed", {"key": None}, "vendor.KeyPressed", {}, None),
        ("LoginBlocked", {}, "vendor.LoginBlocked", {}, None),
        # unknown events and unsafe names
        ("BrandNewEvent", {"x": 1}, "vendor.BrandNewEvent", {}, None),
        ("Tamper Alarm/+#!", {}, "vendor.TamperAlarm", {}, None),
        ("Ünïcödé", {}, "vendor.ncd", {}, None),
        ("€€€", {}, "vendor.Unknown", {}, None),
    ],
)
def test_lenient_coercion_and_fallbacks(
    event: str,
    params: dict[str, Any],
    type_: str,
    data: dict[str, Any],
    state: dict[str, Any] | None,
) -> None:
    (published,), update = run(rec(9, 1600000000, 100, event, params))
    assert published.type == type_
    assert {k: v for k, v in published.data.items() if k != "raw"} == data
    assert published.data["raw"]["event"] == event
    assert update == (None if state is None else StateUpdate(values=state))


def test_record_fields_are_coerced_leniently() -> None:
    record = parse_record(
        {"id": "7", "utcTime": "1437987102", "upTime": 8.0, "event": "KeyPressed", "params": None}
    )
    assert record == Record(
        id=7, utc_time=1437987102, up_time=8, tz_shift=0, name="KeyPressed", params={}
    )
    assert record.boot == 1437987094
    assert parse_record({**rec(1, 10, 2, "X", {}), "tzShift": "-60"}).tz_shift == -60
    assert parse_record({"id": 1, "utcTime": 10, "upTime": 2, "event": "X"}).params == {}
    assert parse_record({**rec(1, 10, 2, "X", {}), "tzShift": None}).tz_shift == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([], "object"),
        ("event", "object"),
        ({"utcTime": 1, "upTime": 1, "event": "X", "params": {}}, "'id'"),
        ({**rec(1, 1, 1, "X", {}), "id": "abc"}, "'id'"),
        ({**rec(1, 1, 1, "X", {}), "id": True}, "'id'"),
        ({**rec(1, 1, 1, "X", {}), "id": -1}, "'id'"),
        ({**rec(1, 1, 1, "X", {}), "event": None}, "'event'"),
        ({**rec(1, 1, 1, "X", {}), "event": ""}, "'event'"),
        ({**rec(1, 1, 1, "X", {}), "params": []}, "'params'"),
        ({**rec(1, 1, 1, "X", {}), "params": "state=in"}, "'params'"),
        ({**rec(1, 1, 1, "X", {}), "utcTime": None}, "'utcTime'"),
        ({**rec(1, 1, 1, "X", {}), "upTime": "soon"}, "'upTime'"),
        ({**rec(1, 1, 1, "X", {}), "utcTime": 2**40}, "'utcTime'"),
        ({**rec(1, 1, 1, "X", {}), "tzShift": "UTC+1"}, "'tzShift'"),
        ({**rec(1, 1, 1, "X", {}), "id": "9" * 5000}, "'id'"),
    ],
)
def test_malformed_records_name_the_field(raw: object, field: str) -> None:
    with pytest.raises(DeviceProtocolError, match=field) as caught:
        parse_record(raw)
    assert caught.value.code == "bad_shape"


def test_parse_events_keeps_order_and_sets_malformed_records_aside() -> None:
    good1, good2 = rec(1, 1437987102, 8, "DeviceState", {"state": "startup"}), rec(3, 5, 1, "X", {})
    records, bad = parse_events({"events": [good1, {"id": 2}, good2, "junk"]})
    assert [r.id for r in records] == [1, 3]
    assert [item for item, _ in bad] == [{"id": 2}, "junk"]
    assert all(isinstance(reason, str) and reason for _, reason in bad)
    assert parse_events({"events": []}) == ([], [])
    for result in ({}, {"events": None}, {"events": {"id": 1}}):
        with pytest.raises(DeviceProtocolError) as caught:
            parse_events(result)
        assert caught.value.code == "bad_shape"


def test_manual_pull_reply_end_to_end() -> None:
    reply = {
        "success": True,
        "result": {
            "events": [
                rec(1, 1437987102, 8, "DeviceState", {"state": "startup"}),
                rec(
                    3,
                    1437987105,
                    11,
                    "RegistrationStateChanged",
                    {"sipAccount": 1, "state": "registered"},
                ),
            ]
        },
    }
    records, bad = parse_events(unwrap(reply, "log/pull"))
    assert not bad
    assert {r.boot for r in records} == {1437987094}
    events = [e for r in records for e in normalize("d", r.boot, r, doorbell=BELL).events]
    assert [(e.id, e.type) for e in valid(events)] == [
        ("d/1437987094/1", "device.started"),
        ("d/1437987094/3", "sip.registration_changed"),
    ]


# --- doorbell ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "doorbell", "type_", "data"),
    [
        ("%1", Doorbell(), "doorbell.pressed", {"button": "%1"}),
        ("%2", Doorbell(), "key.pressed", {"key": "%2"}),
        ("%2", Doorbell(keys=frozenset({"%2", "%3"})), "doorbell.pressed", {"button": "%2"}),
        ("%1", Doorbell(keys=frozenset()), "key.pressed", {"key": "%1"}),
        ("*", Doorbell(keys=frozenset({"*"})), "doorbell.pressed", {"button": "*"}),
        ("5", Doorbell(), "key.pressed", {"key": "5"}),
    ],
)
def test_doorbell_keys(key: str, doorbell: Doorbell, type_: str, data: dict[str, Any]) -> None:
    (event,), state = run(rec(4, 1437987888, 794, "KeyPressed", {"key": key}), doorbell)
    assert (event.type, event.id) == (type_, "door/1437987094/4")
    assert {k: v for k, v in event.data.items() if k != "raw"} == data
    assert state is None


def call(direction: str, state: str) -> dict[str, Any]:
    params = {"direction": direction, "state": state, "peer": "sip:1@x", "session": 2, "call": 2}
    return rec(5, 1438064126, 660, "CallStateChanged", params)


def test_outgoing_call_rings_the_doorbell_when_enabled() -> None:
    events, state = run(call("outgoing", "connecting"), Doorbell(on_outgoing_call=True))
    assert [(e.type, e.id) for e in events] == [
        ("call.state_changed", "door/1438063466/5"),
        ("doorbell.pressed", "door/1438063466/5-doorbell"),
    ]
    bell = events[1]
    assert bell.time == events[0].time
    assert bell.data == {
        "button": "call",
        "peer": "sip:1@x",
        "session": 2,
        "raw": events[0].data["raw"],
    }
    assert state == StateUpdate(
        values={"call": {"state": "connecting", "direction": "outgoing", "session": 2}}
    )


@pytest.mark.parametrize(
    ("direction", "state", "on_outgoing_call"),
    [
        ("outgoing", "connecting", False),
        ("outgoing", "ringing", True),
        ("outgoing", "connected", True),
        ("incoming", "connecting", True),
        ("incoming", "ringing", True),
    ],
)
def test_other_calls_do_not_ring(direction: str, state: str, on_outgoing_call: bool) -> None:
    events, _ = run(call(direction, state), Doorbell(on_outgoing_call=on_outgoing_call))
    assert [e.type for e in events] == ["call.state_changed"]


def test_normalize_is_pure() -> None:
    raw = call("outgoing", "connecting")
    record = parse_record(raw)
    received = datetime(2026, 11, 21, 10, 15, 2, tzinfo=UTC)
    first = normalize(
        "d", record.boot, record, doorbell=Doorbell(on_outgoing_call=True), received=received
    )
    second = normalize(
        "d", record.boot, record, doorbell=Doorbell(on_outgoing_call=True), received=received
    )
    assert first == second
    assert [e.to_json() for e in first.events] == [e.to_json() for e in second.events]
    assert all(e.received == received for e in first.events)
    assert raw == call("outgoing", "connecting"), "the input record is not mutated"
    secret = parse_record(rec(1, 2, 1, "CodeEntered", {"code": "1234", "valid": True}))
    normalize("d", 1, secret, doorbell=BELL)
    assert secret.params["code"] == "1234", "redaction copies, it does not mutate the record"


# --- envelope and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "result"),
    [
        ({"success": True}, {}),
        ({"success": True, "result": {"id": 2121013117}}, {"id": 2121013117}),
        ({"success": True, "result": {}}, {}),
    ],
)
def test_unwrap_success(payload: object, result: dict[str, Any]) -> None:
    assert unwrap(payload, "x") == result


@pytest.mark.parametrize(
    ("error", "number", "param", "message"),
    [
        (
            {"code": 12, "param": "id", "description": "invalid parameter value"},
            12,
            "id",
            "2N error 12 (invalid parameter value, param 'id')",
        ),
        (
            {"code": "9", "description": "authorisation required"},
            9,
            None,
            "2N error 9 (authorisation required)",
        ),
        (
            {
                "code": 12,
                "param": "blob-cert",
                "description": "invalid certificate",
                "data": "invalid_cert",
            },
            12,
            "blob-cert",
            "2N error 12 (invalid certificate, param 'blob-cert')",
        ),
        ({"code": 14}, 14, None, "2N error 14 (no description)"),
    ],
)
def test_unwrap_vendor_error(
    error: dict[str, Any], number: int, param: str | None, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        unwrap({"success": False, "error": error}, "switch/ctrl")
    exc = caught.value
    assert (exc.number, exc.param, str(exc), exc.code) == (
        number,
        param,
        message,
        f"vendor_{number}",
    )
    assert exc.description == error.get("description", "no description")
    assert isinstance(exc, DeviceProtocolError)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "success",
        {},
        {"success": "true"},
        {"success": 1},
        {"result": {}},
        {"success": True, "result": []},
        {"success": True, "result": "ok"},
        {"success": False},
        {"success": False, "error": "broken"},
        {"success": False, "error": {"description": "no code"}},
        {"success": False, "error": {"code": "twelve"}},
    ],
)
def test_unwrap_garbage_is_bad_shape(payload: object) -> None:
    with pytest.raises(DeviceProtocolError) as caught:
        unwrap(payload, "system/info")
    assert not isinstance(caught.value, ApiError)
    assert caught.value.code == "bad_shape"
    assert str(caught.value).startswith("system/info: ")


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (1, "unsupported"),
        (2, "unsupported"),
        (3, "device_error"),
        (4, "unsupported"),
        (5, "unsupported"),
        (6, "device_error"),
        (7, "device_error"),
        (8, "auth_failed"),
        (9, "auth_failed"),
        (10, "forbidden"),
        (11, "invalid_args"),
        (12, "invalid_args"),
        (13, "invalid_args"),
        (14, "action_failed"),
        (15, "no_data"),
        (16, "device_error"),
        (17, "invalid_args"),
        (18, "rejected"),
        (19, "device_error"),
        (0, "device_error"),
        (999, "device_error"),
    ],
)
def test_command_error_mapping(number: int, code: str) -> None:
    error = command_error(ApiError(number, "some description", "switch"), "open_door")
    assert error.code == code
    assert error.message == str(error)
    for part in ("open_door", f"2N error {number}", "some description", "param 'switch'"):
        assert part in error.message


def test_licence_error_says_so() -> None:
    error = command_error(ApiError(5, "function is licensed"), "snapshot")
    assert "requires a licence on this firmware" in error.message


# --- info, capabilities and state baselines ---------------------------------------------


def test_parse_info_both_generations() -> None:
    current = {
        "devType": "2-14-0-0",
        "variant": "2N IP Verso",
        "variantId": 14,
        "serialNumber": "00-0000-0005",
        "macAddr": "FC-1E-B3-00-00-05",
        "hwVersion": "570v1",
        "swVersion": "2.35.0.45.0",
        "buildType": "dev",
        "deviceName": "2N IP Verso",
    }
    info = parse_info(current, commands=["open_door"], capabilities={"switches": 4})
    assert (info.vendor, info.model, info.serial, info.firmware) == (
        VENDOR,
        "2N IP Verso",
        "00-0000-0005",
        "2.35.0.45.0",
    )
    assert (info.commands, info.capabilities) == (["open_door"], {"switches": 4})
    old = parse_info(
        {"variant": "2N Helios IP Vario", "swVersion": "2.15.0.12.2"}, commands=[], capabilities={}
    )
    assert (old.model, old.serial, old.firmware) == ("2N Helios IP Vario", None, "2.15.0.12.2")
    assert parse_info({}, commands=[], capabilities={}).model is None


@pytest.mark.parametrize(
    ("sw", "version"),
    [
        ("2.35.0.45.0", (2, 35, 0, 45, 0)),
        ("2.15", (2, 15)),
        (" 2.42.0.1.7 beta", (2, 42, 0, 1, 7)),
        ("", ()),
        (None, ()),
        ("garbage", ()),
        ("v2.35", ()),
        ("2." + "9" * 5000, ()),  # more digits than int() converts: no version, no ValueError
    ],
)
def test_firmware_version(sw: str | None, version: tuple[int, ...]) -> None:
    assert firmware_version(sw) == version
    assert (firmware_version(sw) >= (2, 36)) == (version >= (2, 36))


def test_caps_and_filter() -> None:
    caps = parse_caps(
        {
            "events": [
                "KeyPressed",
                "KeyReleased",
                "InputChanged",
                "KeyPressed",
                7,
                "",
                "CardEntered",
            ]
        }
    )
    assert caps == ["KeyPressed", "KeyReleased", "InputChanged", "CardEntered"]
    with pytest.raises(DeviceProtocolError):
        parse_caps({"events": "KeyPressed"})
    assert event_filter(caps, ["CapabilitiesChanged", "InputChanged"], ["KeyReleased"]) == [
        "KeyPressed",
        "InputChanged",
        "CardEntered",
        "CapabilitiesChanged",
    ]
    assert event_filter([], iter(("A", "A"))) == ["A"]
    assert {"ExtCameraStateChanged", "ExternalCameraStateChanged", "CapabilitiesChanged"} <= (
        HIDDEN_BY_DEFAULT
    )
    assert "KeyPressed" not in HIDDEN_BY_DEFAULT


def test_parse_uptime() -> None:
    assert parse_uptime({"systemTime": 1418225091, "upTime": 190524}) == (1418225091, 190524)
    assert parse_uptime({"systemTime": "1418225091", "upTime": "5"}) == (1418225091, 5)
    with pytest.raises(DeviceProtocolError):
        parse_uptime({"systemTime": 1418225091})


def test_parse_switches_current_firmware() -> None:
    caps = {
        "switches": [
            {
                "switch": 1,
                "enabled": True,
                "mode": "monostable",
                "switchOnDuration": 5,
                "type": "normal",
            },
            {"switch": 2, "enabled": True, "mode": "bistable", "type": "normal"},
            {"switch": 3, "enabled": False},
        ]
    }
    status = {
        "switches": [
            {"switch": 1, "active": True, "locked": False, "held": True},
            {"switch": 2, "active": True, "locked": False, "held": False},
            {"switch": 3, "active": False, "locked": True, "held": True},
            {"switch": "4", "active": "false", "locked": "true", "held": False, "holdTimeout": 5},
            {"active": True},
        ]
    }
    assert parse_switches(caps, status).values == {
        "switches": {
            "1": {
                "enabled": True,
                "mode": "monostable",
                "active": True,
                "locked": False,
                "held": True,
            },
            "2": {
                "enabled": True,
                "mode": "bistable",
                "active": True,
                "locked": False,
                "held": False,
            },
            "3": {"enabled": False, "active": False, "locked": True, "held": True},
            "4": {"active": False, "locked": True, "held": False},
        }
    }


def test_parse_switches_helios_2_15() -> None:
    status = {"switches": [{"switch": 1, "active": True}, {"switch": 2, "active": False}]}
    assert parse_switches({}, status).values == {
        "switches": {"1": {"active": True}, "2": {"active": False}}
    }
    with pytest.raises(DeviceProtocolError):
        parse_switches({}, {"switches": {"1": True}})


def test_parse_io() -> None:
    caps = {
        "ports": [
            {"port": "relay1", "type": "output"},
            {"port": "relay2", "type": "output"},
            {"port": "input1", "type": "input"},
        ]
    }
    status = {
        "ports": [
            {"port": "relay1", "state": 0},
            {"port": "relay2", "state": 1},
            {"port": "input1", "state": "1"},
            {"port": "mystery", "state": 1},
        ]
    }
    assert parse_io(caps, status).values == {
        "outputs": {"relay1": {"active": False}, "relay2": {"active": True}},
        "inputs": {"input1": {"active": True}},
    }
    assert parse_io({}, {}).values == {}


@pytest.mark.parametrize(
    ("sessions", "call"),
    [
        ([], {"state": "idle", "direction": None, "session": None}),
        (
            [{"session": 1, "direction": "outgoing", "state": "ringing"}],
            {"state": "ringing", "direction": "outgoing", "session": 1},
        ),
        (
            [
                {"session": 1, "direction": "outgoing", "state": "ringing"},
                {"session": "2", "direction": "incoming", "state": "connected"},
            ],
            {"state": "connected", "direction": "incoming", "session": 2},
        ),
    ],
)
def test_parse_calls(sessions: list[dict[str, Any]], call: dict[str, Any]) -> None:
    assert parse_calls({"sessions": sessions}).values == {"call": call}


def test_parse_calls_without_sessions_is_idle() -> None:
    assert parse_calls({}).values == {"call": {"state": "idle", "direction": None, "session": None}}


def test_parse_phone() -> None:
    accounts = [
        {
            "account": 1,
            "enabled": True,
            "sipNumber": "5207",
            "registrationEnabled": True,
            "registered": True,
            "registerTime": 1663585547,
        },
        {
            "account": 2,
            "enabled": False,
            "sipNumber": "",
            "registrationEnabled": True,
            "registered": False,
        },
    ]
    assert parse_phone({"accounts": accounts}).values == {"sip": {"1": "registered"}}
    # v2.15 has no "enabled"
    old = [{"account": 1, "registered": False}, {"account": "2", "registered": "true"}]
    assert parse_phone({"accounts": old}).values == {
        "sip": {"1": "unregistered", "2": "registered"}
    }


def test_an_access_point_is_never_taken_for_a_door_number() -> None:
    events, _ = run(rec(7, 1516895295, 2156, "DoorStateChanged", {"state": "opened", "ap": 0}))
    data = {k: v for k, v in events[0].data.items() if k != "raw"}
    assert data == {"door": 1, "ap": 0}
