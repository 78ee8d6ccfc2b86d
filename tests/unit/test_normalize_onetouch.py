"""Onetouch normalization, in tables: the envelope, status, logs, and what never leaves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.errors import DeviceProtocolError
from bridge.normalize import onetouch as norm


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"retcode": 0, "action": "info", "message": "OK", "data": {"a": 1}}, {"a": 1}),
        ({"retcode": "0", "action": 0, "message": "OK"}, {}),  # action a number, no data
        ({"retcode": 0, "action": "status", "message": "OK", "data": None}, {}),
    ],
)
def test_unwrap_accepts(payload: object, expected: dict[str, Any]) -> None:
    assert norm.unwrap(payload, "x/y") == expected


@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        (
            {"retcode": -1, "action": "unknow", "message": "unsupport action"},
            norm.ApiError,
            "unsupport",
        ),
        ({"retcode": -1, "message": "Wrong MD5", "data": {"md5": "x"}}, norm.ApiError, "Wrong MD5"),
        (
            {"action": "get", "message": "OK"},
            norm.ApiError,
            "retcode None",
        ),  # no retcode: not a success
        (
            {"retcode": True, "message": "OK"},
            norm.ApiError,
            "retcode True",
        ),  # a boolean is no retcode
        ([1, 2], DeviceProtocolError, "JSON object"),
        ({"retcode": 0, "data": [1]}, DeviceProtocolError, "'data' must be an object"),
    ],
)
def test_unwrap_refuses(payload: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        norm.unwrap(payload, "x/y")


def test_unsupported_is_recognised() -> None:
    with pytest.raises(norm.ApiError) as caught:
        norm.unwrap(
            {"retcode": -1, "action": "unknow", "message": "unsupport action"}, "callog/get"
        )
    assert caught.value.unsupported


def test_info() -> None:
    info = norm.parse_info(
        {
            "Status": {
                "Model": "OT-IP-LP-C9",
                "MAC": "0C:11:05:08:93:C6",
                "FirmwareVersion": "29.31.1.617",
                "HardwareVersion": "29.3.0",
            },
            "Lan": {"PortType": "0"},
        },
        commands=["open_door"],
    )
    assert (info.vendor, info.model, info.serial, info.firmware) == (
        "Onetouch",
        "OT-IP-LP-C9",
        "0C:11:05:08:93:C6",
        "29.31.1.617",
    )
    assert info.capabilities["hardware"] == "29.3.0"
    assert norm.parse_info({"Status": "odd"}, commands=[]).model is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"SystemTime": 1544336389, "UpTime": 137}, (1544336389, 137)),
        ({"SystemTime": "1544336389", "UpTime": "137"}, (1544336389, 137)),
    ],
)
def test_clock(data: dict[str, Any], expected: tuple[int, int]) -> None:
    assert norm.parse_clock(data) == expected


@pytest.mark.parametrize(
    "data", [{}, {"SystemTime": 1, "UpTime": -1}, {"SystemTime": "x", "UpTime": 1}]
)
def test_clock_refuses(data: dict[str, Any]) -> None:
    with pytest.raises(DeviceProtocolError, match="SystemTime and UpTime"):
        norm.parse_clock(data)


def test_relays_ints_or_strings() -> None:
    assert norm.parse_relays({"RelayA": 0, "RelayB": "1", "RelayC": 2}) == {
        "1": {"active": False},
        "2": {"active": True},
        "3": {"active": True},
    }
    with pytest.raises(DeviceProtocolError, match="no RelayA/B/C"):
        norm.parse_relays({})
    with pytest.raises(DeviceProtocolError, match="RelayB is not a number"):
        norm.parse_relays({"RelayA": 0, "RelayB": "on"})


@pytest.mark.parametrize(
    ("options", "levels", "active"),
    [
        (
            {"A": "0", "B": "0", "C": "0"},
            {"A": 1, "B": 1, "C": 1},
            [False, False, False],
        ),  # low trig, idle high
        ({"A": "0", "B": "0", "C": "0"}, {"A": 0, "B": 1, "C": 1}, [True, False, False]),
        (
            {"A": "1", "B": "1", "C": "1"},
            {"A": 1, "B": 0, "C": "1"},
            [True, False, True],
        ),  # high trig
        (
            {"A": "2", "B": "", "C": "1"},
            {"A": 0, "B": 0, "C": 0},
            [True, True, False],
        ),  # odd option: low
    ],
)
def test_inputs_follow_the_trigger_option(
    options: dict[str, str], levels: dict[str, Any], active: list[bool]
) -> None:
    triggers = norm.input_triggers(
        {f"Config.DoorSetting.INPUT.Option{k}": v for k, v in options.items()}
    )
    state = norm.parse_inputs({f"Input{k}": v for k, v in levels.items()}, triggers)
    assert [state[n]["active"] for n in ("1", "2", "3")] == active


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("READY", {"state": "idle", "status": "READY"}),
        ("ready", {"state": "idle", "status": "READY"}),
        ("RINGING", {"state": "ringing", "status": "RINGING"}),
        ("CALLING", {"state": "calling", "status": "CALLING"}),
        ("TALKING", {"state": "connected", "status": "TALKING"}),
        ("HOLD", {"state": "active", "status": "HOLD"}),  # not in the manual: some call
    ],
)
def test_call(status: str, expected: dict[str, str]) -> None:
    assert norm.parse_call({"Status": status}) == expected


def test_sip() -> None:
    data = {
        "Account1": {"UserName": "130", "SipServer": "192.168.1.115", "Status": "2"},
        "Account2": {"UserName": "", "SipServer": "", "Status": "7"},
    }
    assert norm.parse_sip(data) == {"1": "registered", "2": "unknown"}
    assert norm.parse_sip({"Account1": {"Status": "3"}}) == {"1": "failed"}


def test_relay_names_leave_the_password_behind() -> None:
    data = {
        "Config.DoorSetting.RELAY.NameA": "Gate",
        "Config.DoorSetting.RELAY.NameB": "",
        "Config.DoorSetting.RELAY.Password": "s3cret",
    }
    assert norm.relay_names(data) == {"1": "Gate"}


def record(**fields: Any) -> norm.LogRecord:
    base = {"ID": "7", "Date": "2026-11-21", "Time": "10:15:02"}
    records, malformed = norm.parse_log({"num": 1, "item": [base | fields]}, "doorlog/get")
    assert not malformed
    return records[0]


DOOR_CASES = [
    (
        {"Type": "Card", "Status": "Success", "Name": "Alice", "Code": "00B4161D"},
        [
            ("card.read", {"uid": "00B4161D", "valid": True}),
            ("access.granted", {"method": "card", "user": "Alice"}),
        ],
    ),
    (
        {"Type": "1", "Status": "1", "Name": "", "Code": "DEADBEEF"},
        [
            ("card.read", {"uid": "DEADBEEF", "valid": False}),
            ("access.denied", {"method": "card", "reason": "refused by the device"}),
        ],
    ),
    (
        {"Type": "Password", "Status": "Success", "Name": "Bob", "Code": "1234"},
        [("access.granted", {"method": "code", "user": "Bob"})],
    ),
    (
        {"Type": "Public", "Status": "Failed", "Name": "", "Code": "9999"},
        [("access.denied", {"method": "public_code", "reason": "refused by the device"})],
    ),
    (
        {"Type": "4", "Status": "0", "Name": "Carol"},
        [("access.granted", {"method": "face", "user": "Carol"})],
    ),
    ({"Type": "Unknow", "Status": "Success"}, [("access.granted", {"method": "unknown"})]),
    ({"Type": "Card", "Status": "Maybe", "Code": "1"}, [("vendor.DoorLog", {})]),
]


@pytest.mark.parametrize(("fields", "expected"), DOOR_CASES)
def test_door_events(fields: dict[str, Any], expected: list[tuple[str, dict[str, Any]]]) -> None:
    events = norm.door_events(record(**fields))
    assert [(t, {k: v for k, v in d.items() if k != "raw"}) for t, d in events] == expected
    for _, data in events:
        assert data["raw"].get("Code") == ("***" if "Code" in fields else None)
        if fields.get("Type") in {"Password", "Public", "2", "3"}:
            assert fields["Code"] not in repr(data)  # the entered code goes nowhere


CALL_CASES = [
    (
        {"Type": "Received", "Num": "192.168.1.98@192.168.1.98", "Name": "Lobby"},
        ("ended", "incoming"),
    ),
    ({"Type": "Dialed", "Num": "101"}, ("ended", "outgoing")),
    ({"Type": "Missed", "Num": "101"}, ("missed", "incoming")),
    ({"Type": "Forwarded", "Num": "101"}, ("forwarded", "incoming")),
]


@pytest.mark.parametrize(("fields", "expected"), CALL_CASES)
def test_call_events(fields: dict[str, Any], expected: tuple[str, str]) -> None:
    [(type_, data)] = norm.call_events(record(**fields))
    assert type_ == "call.state_changed"
    assert (data["state"], data["direction"], data["peer"], data["source"]) == (
        *expected,
        fields["Num"],
        "log",
    )


def test_unknown_call_log_type_is_vendor() -> None:
    assert norm.call_events(record(Type="Unknow"))[0][0] == "vendor.CallLog"


def test_log_records_sorted_and_malformed_ones_reported() -> None:
    data = {"num": 4, "item": [{"ID": "10"}, {"ID": "9"}, {"ID": "x", "Code": "1234"}, "junk"]}
    records, malformed = norm.parse_log(data, "doorlog/get")
    assert [r.id for r in records] == [9, 10]
    assert [reason for _, reason in malformed] == ["no numeric ID", "not an object"]
    assert "1234" not in repr(malformed)
    with pytest.raises(DeviceProtocolError, match="'item' must be a list"):
        norm.parse_log({"item": {}}, "doorlog/get")


def test_record_time_uses_the_device_zone() -> None:
    fallback = datetime(2000, 1, 1, tzinfo=UTC)
    when = norm.record_time(record(), ZoneInfo("Europe/Prague"), fallback)
    assert when == datetime(2026, 11, 21, 9, 15, 2, tzinfo=UTC)
    assert norm.record_time(record(Time="25:99"), UTC, fallback) == fallback
