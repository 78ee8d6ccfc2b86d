"""Normalization for the generic JSON device (the simulator used by the demo and the tests).

The generic device speaks a deliberately small API, documented in ``docs/drivers.md``:

* ``GET /api/info``: ``{"vendor", "model", "serial", "firmware", "boot"}``
* ``GET /api/state``: ``{"switches": {"1": true}, "inputs": {"1": false}}``
* ``GET /api/events?after=N&timeout=S``: ``{"boot": B, "events": [{"seq", "time", "kind", ...}]}``
* ``POST /api/command``: ``{"ok": true, "data": {...}}`` or ``{"ok": false, "error": "..."}``
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.errors import DeviceProtocolError
from bridge.model import DeviceInfo, Event, StateUpdate, make_event

VENDOR = "generic"


@dataclass(frozen=True, slots=True)
class Batch:
    boot: int
    records: list[dict[str, Any]]
    malformed: list[tuple[object, str]]  # records without a usable ``seq``, with the reason


def _object(payload: object, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise DeviceProtocolError(f"{what}: expected a JSON object", code="bad_shape")
    return payload


def _int(record: dict[str, Any], key: str, what: str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DeviceProtocolError(f"{what}: {key!r} must be an integer", code="bad_shape")
    return value


def parse_info(payload: object, *, commands: list[str]) -> tuple[int, DeviceInfo]:
    info = _object(payload, "info")
    boot = _int(info, "boot", "info")
    return boot, DeviceInfo(
        vendor=str(info.get("vendor", VENDOR)),
        model=_optional_str(info.get("model")),
        serial=_optional_str(info.get("serial")),
        firmware=_optional_str(info.get("firmware")),
        capabilities={"switches": info.get("switches", 0), "inputs": info.get("inputs", 0)},
        commands=commands,
    )


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def parse_state(payload: object) -> StateUpdate:
    state = _object(payload, "state")
    values: dict[str, Any] = {}
    for key, target in (("switches", "switches"), ("inputs", "inputs")):
        group = state.get(key, {})
        if not isinstance(group, dict):
            raise DeviceProtocolError(f"state: {key!r} must be an object", code="bad_shape")
        values[target] = {str(k): {"active": bool(v)} for k, v in group.items()}
    return StateUpdate(values=values)


def parse_batch(payload: object) -> Batch:
    """One long-poll reply. A record without a usable ``seq`` is set aside, not fatal."""
    body = _object(payload, "events")
    boot = _int(body, "boot", "events")
    records = body.get("events")
    if not isinstance(records, list):
        raise DeviceProtocolError("events: 'events' must be a list", code="bad_shape")
    good: list[dict[str, Any]] = []
    malformed: list[tuple[object, str]] = []
    for record in records:
        try:
            _int(_object(record, "events"), "seq", "events")
        except DeviceProtocolError as exc:
            malformed.append((record, str(exc)))
        else:
            good.append(record)
    return Batch(boot=boot, records=good, malformed=malformed)


def _index(record: dict[str, Any], key: str) -> int:
    value = record.get(key, 1)
    text = "" if isinstance(value, bool) or not isinstance(value, int | str) else str(value)
    # isdecimal, not isdigit: int() refuses digits such as "²"; 20 digits stay within its limit.
    if not text.isdecimal() or len(text) > 20:
        raise DeviceProtocolError(f"events: {key!r} must be a number", code="bad_shape")
    return int(text)


def _time(record: dict[str, Any]) -> datetime:
    value = record.get("time")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            # In UTC now: converting it when the event is published could leave the year range.
            utc = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        except (ValueError, OverflowError):
            pass
        else:
            return utc
    raise DeviceProtocolError("events: 'time' must be an ISO-8601 timestamp", code="bad_shape")


def normalize(
    device: str, boot: int, record: dict[str, Any], *, received: datetime | None = None
) -> tuple[Event, StateUpdate | None]:
    """One vendor record to one event, plus the state it implies (if any)."""
    kind = str(record.get("kind", ""))
    when = _time(record)
    raw = dict(record)
    state: StateUpdate | None = None
    data: dict[str, Any]
    if kind == "button":
        type_, data = "doorbell.pressed", {"button": record.get("button", 1)}
    elif kind == "switch":
        number, active = _index(record, "switch"), bool(record.get("active"))
        type_, data = "switch.changed", {"switch": number, "active": active}
        state = StateUpdate(values={"switches": {str(number): {"active": active}}})
    elif kind == "input":
        number, active = _index(record, "input"), bool(record.get("active"))
        type_, data = "input.changed", {"port": number, "active": active}
        state = StateUpdate(values={"inputs": {str(number): {"active": active}}})
    elif kind == "motion":
        active = bool(record.get("active"))
        type_ = "motion.started" if active else "motion.stopped"
        data = {"zone": record.get("zone", 1)}
        state = StateUpdate(values={"motion": active})
    elif kind == "startup":
        type_, data = "device.started", {"uptime": record.get("uptime", 0)}
    else:
        safe = "".join(c for c in kind if c.isalnum() or c in "_-") or "Unknown"
        type_, data = f"vendor.{safe}", {}
    data["raw"] = raw
    event = make_event(
        device, type_, data, time=when, boot=boot, sequence=record["seq"], received=received
    )
    return event, state
