from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from bridge.errors import DeviceProtocolError
from bridge.model import StateUpdate
from bridge.normalize.generic import normalize, parse_batch, parse_info, parse_state

T = "2026-11-21T10:15:02Z"


@pytest.mark.parametrize(
    ("record", "type_", "data", "state"),
    [
        ({"kind": "button", "button": 2}, "doorbell.pressed", {"button": 2}, None),
        (
            {"kind": "switch", "switch": 1, "active": True},
            "switch.changed",
            {"switch": 1, "active": True},
            {"switches": {"1": {"active": True}}},
        ),
        (
            {"kind": "input", "input": "2", "active": False},
            "input.changed",
            {"port": 2, "active": False},
            {"inputs": {"2": {"active": False}}},
        ),
        ({"kind": "motion", "active": True}, "motion.started", {"zone": 1}, {"motion": True}),
        ({"kind": "motion", "active": False}, "motion.stopped", {"zone": 1}, {"motion": False}),
        ({"kind": "startup", "uptime": 3}, "device.started", {"uptime": 3}, None),
        ({"kind": "Tamper Alarm!"}, "vendor.TamperAlarm", {}, None),
        ({}, "vendor.Unknown", {}, None),
    ],
)
def test_records_normalize(
    record: dict[str, object], type_: str, data: dict[str, object], state: dict[str, object] | None
) -> None:
    full = {"seq": 7, "time": T, **record}
    event, update = normalize("d", 42, full)
    assert event.type == type_
    assert event.id == "d/42/7"
    assert event.time == datetime(2026, 11, 21, 10, 15, 2, tzinfo=UTC)
    assert event.data == {**data, "raw": full}
    assert update == (StateUpdate(values=state) if state is not None else None)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"events": []},
        {"boot": "x", "events": []},
        {"boot": 1, "events": {}},
    ],
)
def test_malformed_batches_are_typed_errors(payload: object) -> None:
    with pytest.raises(DeviceProtocolError):
        parse_batch(payload)


def test_records_without_a_usable_seq_are_set_aside_not_fatal() -> None:
    good = {"seq": 2, "time": T, "kind": "button"}
    batch = parse_batch({"boot": 1, "events": [1, {"seq": "1"}, good]})
    assert batch.records == [good]
    assert [record for record, _ in batch.malformed] == [1, {"seq": "1"}]
    assert all(reason for _, reason in batch.malformed)


@pytest.mark.parametrize(
    "record",
    [
        {"seq": 1, "time": "yesterday"},
        {"seq": 1},
        {"seq": 1, "time": T, "kind": "switch", "switch": "one"},
        # found by the property tests: these raised ValueError, or built an event whose time
        # could not be published (OverflowError converting it to UTC)
        {"seq": 1, "time": T, "kind": "switch", "switch": "²"},
        {"seq": 1, "time": T, "kind": "input", "input": "1" * 5000},
        {"seq": 1, "time": "9999-12-31T23:59:59-10:00"},
        {"seq": 1, "time": "0001-01-01T00:00:00+10:00"},
    ],
)
def test_malformed_records_are_typed_errors(record: dict[str, object]) -> None:
    with pytest.raises(DeviceProtocolError):
        normalize("d", 1, record)


def test_times_are_kept_in_utc() -> None:
    event, _ = normalize("d", 1, {"seq": 1, "time": "9999-12-31T23:59:59+10:00", "kind": "x"})
    assert event.time == datetime(9999, 12, 31, 13, 59, 59, tzinfo=UTC)
    assert b'"time":"9999-12-31T13:59:59Z"' in event.to_json()
    event, _ = normalize("d", 1, {"seq": 1, "time": "2026-11-21T10:15:02", "kind": "input"})
    assert event.time == datetime(2026, 11, 21, 10, 15, 2, tzinfo=UTC)  # naive: taken as UTC
    assert event.data["port"] == 1


def test_info_and_state() -> None:
    boot, info = parse_info({"boot": 5, "model": "M", "serial": 12}, commands=["refresh"])
    assert boot == 5
    assert (info.model, info.serial, info.commands) == ("M", "12", ["refresh"])
    assert parse_state({"switches": {"1": True}}).values == {
        "switches": {"1": {"active": True}},
        "inputs": {},
    }
    with pytest.raises(DeviceProtocolError):
        parse_state({"switches": [True]})


def test_normalize_modules_do_no_io() -> None:
    """normalize/ stays pure: importing it pulls in none of the I/O libraries."""
    code = (
        "import sys, pkgutil, importlib, bridge.normalize as n\n"
        "for m in pkgutil.iter_modules(n.__path__): importlib.import_module(f'bridge.normalize.{m.name}')\n"
        "print(sorted(x for x in ('aiohttp', 'httpx', 'anyio', 'aiomqtt', 'paho') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
