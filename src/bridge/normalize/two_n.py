"""Normalization for 2N IP intercoms (FW 2.42 manual) and 2N Helios IP (manual 2.15).

Everything here is pure: the 2N driver does the HTTP and hands over decoded JSON. The vendor
details come from ``../shared/research/seed-2n.md``: the ``{"success", "result"|"error"}``
envelope (§1.2), error codes (§1.3), ``/api/log/pull`` records (§2.6, §2.7) and the status
endpoints used as a state baseline (§3). Types in 2N payloads are loose (ints as strings,
booleans as ``"true"``), so every field is coerced leniently; a record this module cannot
understand is still published, as ``vendor.<Event>`` with its raw record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.errors import CommandError, DeviceProtocolError
from bridge.model import DeviceInfo, Event, StateUpdate, make_event
from bridge.normalize.coerce import as_bool, as_int, as_str, clean, redact

VENDOR = "2N"

# Events a subscription only delivers when named in ``filter`` (seed §2.2); the manual spells
# the external-camera event both ways.
HIDDEN_BY_DEFAULT: frozenset[str] = frozenset(
    {
        "FingerEnrollState",
        "DirectorySaved",
        "DirectoryChanged",
        "HardwareChanged",
        "DisplayTouched",
        "PairingStateChanged",
        "LiftConfigChanged",
        "CapabilitiesChanged",
        "ConfigurationChanged",
        "ExtCameraStateChanged",
        "ExternalCameraStateChanged",
    }
)

_SECRET_KEYS = frozenset({"code", "pin", "password", "passwd"})
_UINT32 = 2**32


# --- the envelope and vendor errors -------------------------------------------------------


class ApiError(DeviceProtocolError):
    """HTTP 200 with ``success: false``: the device refused the request."""

    def __init__(
        self, number: int, description: str, param: str | None = None, *, device: str | None = None
    ) -> None:
        where = f", param {param!r}" if param else ""
        super().__init__(
            f"2N error {number} ({description}{where})",
            device=device,
            code=f"vendor_{number}",
            detail=description,
        )
        self.number = number
        self.param = param
        self.description = description


def _bad(what: str, problem: str) -> DeviceProtocolError:
    return DeviceProtocolError(f"{what}: {problem}", code="bad_shape")


def unwrap(payload: object, what: str) -> dict[str, Any]:
    """The ``result`` of a 2N reply (``{}`` when it has none); raises on anything else."""
    if not isinstance(payload, dict):
        raise _bad(what, "expected a JSON object")
    success = payload.get("success")
    if success is True:
        result = payload.get("result", {})
        if not isinstance(result, dict):
            raise _bad(what, "'result' must be an object")
        return result
    if success is not False:
        raise _bad(what, "'success' must be true or false")
    error = payload.get("error")
    number = _int(error.get("code")) if isinstance(error, dict) else None
    if not isinstance(error, dict) or number is None:
        raise _bad(what, "success is false but 'error' has no numeric 'code'")
    description = _str(error.get("description")) or "no description"
    raise ApiError(number, description, _str(error.get("param")))


# vendor code -> (stable command error code, hint for the human message)
_COMMAND_ERRORS: dict[int, tuple[str, str]] = {
    1: ("unsupported", "this model does not have the function"),
    2: ("unsupported", "this firmware does not know the API path"),
    3: ("device_error", "the device refused the HTTP method"),
    4: ("unsupported", "the service is disabled in Services / HTTP API"),
    5: ("unsupported", "requires a licence on this firmware"),
    7: ("device_error", "the service requires HTTPS"),
    8: ("auth_failed", "the service requires another authentication method"),
    9: ("auth_failed", "the device requires authorisation"),
    10: ("forbidden", "the API user lacks the privilege"),
    11: ("invalid_args", "a mandatory parameter is missing"),
    12: ("invalid_args", "a parameter value is invalid"),
    13: ("invalid_args", "a parameter is too big"),
    14: ("action_failed", "the device could not reach the requested state"),
    15: ("no_data", "the device has no such data"),
    17: ("invalid_args", "parameters that must not be combined"),
    18: ("rejected", "the device rejected the request for now"),
}


def command_error(error: ApiError, command: str) -> CommandError:
    code, hint = _COMMAND_ERRORS.get(error.number, ("device_error", "the device refused"))
    return CommandError(code, f"{command}: {error} - {hint}")


# --- lenient coercion (shared: bridge.normalize.coerce) -----------------------------------

_int, _bool, _str, _clean = as_int, as_bool, as_str, clean


def _in_out(value: object) -> bool | None:
    """The ``state`` of interval events: ``in`` starts (True), ``out`` ends (False)."""
    text = value.strip().lower() if isinstance(value, str) else None
    return True if text == "in" else False if text == "out" else _bool(value)


def _redact(value: object) -> object:
    """Codes (CodeEntered, Dtmf*) and anything named like a password, at any depth."""
    return redact(value, _SECRET_KEYS)


# --- records of /api/log/pull -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One event of ``/api/log/pull`` (seed §2.6), fields coerced."""

    id: int
    utc_time: int
    up_time: int
    tz_shift: int
    name: str
    params: dict[str, Any]

    @property
    def boot(self) -> int:
        """The boot epoch: the same for every record of one device boot (±1 s of clock jitter)."""
        return self.utc_time - self.up_time


def _field(raw: dict[str, Any], key: str, *, low: int = 0, high: int = _UINT32) -> int:
    value = _int(raw.get(key))
    if value is None or not low <= value < high:
        raise _bad("event record", f"{key!r} must be an integer in [{low}, {high})")
    return value


def parse_record(raw: object) -> Record:
    if not isinstance(raw, dict):
        raise _bad("event record", "expected a JSON object")
    name = raw.get("event")
    if not isinstance(name, str) or not name:
        raise _bad("event record", "'event' must be a non-empty string")
    params = raw.get("params")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise _bad("event record", "'params' must be an object")
    return Record(
        id=_field(raw, "id"),
        utc_time=_field(raw, "utcTime"),
        up_time=_field(raw, "upTime"),
        tz_shift=0
        if raw.get("tzShift") is None
        else _field(raw, "tzShift", low=-(2**31), high=2**31),
        name=name,
        params=params,
    )


def parse_events(result: dict[str, Any]) -> tuple[list[Record], list[tuple[object, str]]]:
    items = result.get("events")
    if not isinstance(items, list):
        raise _bad("log/pull", "'events' must be a list")
    records: list[Record] = []
    bad: list[tuple[object, str]] = []
    for item in items:
        try:
            records.append(parse_record(item))
        except DeviceProtocolError as exc:
            bad.append((item, str(exc)))
    return records, bad


# --- device information and state baselines -----------------------------------------------


def parse_info(
    result: dict[str, Any], *, commands: list[str], capabilities: dict[str, Any]
) -> DeviceInfo:
    return DeviceInfo(
        vendor=VENDOR,
        model=_str(result.get("variant")),
        serial=_str(result.get("serialNumber")),
        firmware=_str(result.get("swVersion")),
        capabilities=capabilities,
        commands=commands,
    )


def firmware_version(sw: str | None) -> tuple[int, ...]:
    match = re.match(r"\s*(\d+(?:\.\d+)*)", sw or "")
    try:
        return tuple(int(part) for part in match.group(1).split(".")) if match else ()
    except ValueError:  # a part of more digits than int() converts (4300) is no version
        return ()


def parse_caps(result: dict[str, Any]) -> list[str]:
    events = result.get("events")
    if not isinstance(events, list):
        raise _bad("log/caps", "'events' must be a list")
    return list(dict.fromkeys(e for e in events if isinstance(e, str) and e))


def event_filter(caps: list[str], extra: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    excluded = set(exclude)
    return [name for name in dict.fromkeys([*caps, *extra]) if name not in excluded]


def parse_uptime(result: dict[str, Any]) -> tuple[int, int]:
    system_time, up_time = _int(result.get("systemTime")), _int(result.get("upTime"))
    if system_time is None or up_time is None:
        raise _bad("system/status", "'systemTime' and 'upTime' must be integers")
    return system_time, up_time


def _items(result: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = result.get(key, [])
    if not isinstance(items, list):
        raise _bad(key, f"{key!r} must be a list")
    return [item for item in items if isinstance(item, dict)]


def parse_switches(caps: dict[str, Any], status: dict[str, Any]) -> StateUpdate:
    """``switch/caps`` + ``switch/status`` results; 2.15 reports only ``switch`` and ``active``."""
    switches: dict[str, dict[str, Any]] = {}
    for item in [*_items(caps, "switches"), *_items(status, "switches")]:
        number = _int(item.get("switch"))
        if number is None:
            continue
        known: dict[str, Any] = {
            k: _bool(item.get(k)) for k in ("active", "locked", "held", "enabled")
        }
        known["mode"] = _str(item.get("mode"))
        switches.setdefault(str(number), {}).update(_clean(known))
    return StateUpdate(values={"switches": switches})


def parse_io(caps: dict[str, Any], status: dict[str, Any]) -> StateUpdate:
    """``io/caps`` gives each port's direction, ``io/status`` its level (int 0/1)."""
    kinds = {_str(p.get("port")): _str(p.get("type")) for p in _items(caps, "ports")}
    values: dict[str, dict[str, Any]] = {}
    for item in _items(status, "ports"):
        port, active = _str(item.get("port")), _bool(item.get("state"))
        group = {"input": "inputs", "output": "outputs"}.get(kinds.get(port) or "")
        if port is not None and active is not None and group:
            values.setdefault(group, {})[port] = {"active": active}
    return StateUpdate(values=values)


_IDLE = {"state": "idle", "direction": None, "session": None}
_CALL_RANK = {"connected": 0, "ringing": 1, "connecting": 2}


def parse_calls(result: dict[str, Any]) -> StateUpdate:
    """``call/status``: the most advanced active session, or idle when there is none."""
    sessions = sorted(
        _items(result, "sessions"), key=lambda s: _CALL_RANK.get(str(s.get("state")), 3)
    )
    if not sessions:
        return StateUpdate(values={"call": dict(_IDLE)})
    top = sessions[0]
    call = {
        "state": _str(top.get("state")) or "unknown",
        "direction": _str(top.get("direction")),
        "session": _int(top.get("session")),
    }
    return StateUpdate(values={"call": call})


def parse_phone(result: dict[str, Any]) -> StateUpdate:
    """``phone/status``; accounts disabled on the device are left out."""
    sip: dict[str, str] = {}
    for item in _items(result, "accounts"):
        account, registered = _int(item.get("account")), _bool(item.get("registered"))
        if account is not None and _bool(item.get("enabled")) is not False:
            sip[str(account)] = "registered" if registered else "unregistered"
    return StateUpdate(values={"sip": sip})


# --- event mapping ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Doorbell:
    """Which 2N events count as a doorbell press (device options of the driver)."""

    keys: frozenset[str] = frozenset({"%1"})
    on_outgoing_call: bool = False


@dataclass(frozen=True, slots=True)
class Normalized:
    events: list[Event]
    state: StateUpdate | None


# type, data without raw, state (or None); a mapper returns None when the params do not fit
Mapped = tuple[str, dict[str, Any], dict[str, Any] | None]
Mapper = Callable[[Record], Mapped | None]


def _device_state(r: Record) -> Mapped | None:
    started = str(r.params.get("state")).strip().lower() == "startup"
    return ("device.started", {"uptime": r.up_time}, None) if started else None


def _key(r: Record) -> Mapped | None:
    key = _str(r.params.get("key"))
    return None if key is None else ("key.pressed", {"key": key}, None)


def _access(p: dict[str, Any]) -> dict[str, Any]:
    """Fields shared by credential events; ``session`` ties them to the resulting switch."""
    uuid = _str(p.get("uuid"))
    return {
        "user": _str(p.get("name")) or uuid,
        "uuid": uuid,
        "ap": _int(p.get("ap")),
        "session": _int(p.get("session")),
    }


def _credential(type_: str, *keys: str) -> Mapper:
    """A code or card presented: ``valid`` is required, ``keys`` are copied as strings."""

    def mapper(r: Record) -> Mapped | None:
        valid = _bool(r.params.get("valid"))
        if valid is None:
            return None
        picked = {key: _str(r.params.get(key)) for key in keys}
        return type_, {"valid": valid, **picked, **_access(r.params)}, None

    return mapper


def _granted(r: Record) -> Mapped | None:
    apb_broken = _bool(r.params.get("apbBroken"))
    return "access.granted", {**_access(r.params), "apb_broken": apb_broken}, None


def _denied(r: Record) -> Mapped | None:
    return "access.denied", {"reason": _str(r.params.get("reason")), **_access(r.params)}, None


def _door(p: dict[str, Any]) -> dict[str, Any]:
    """2N has one door sensor and sends no door number, so ``door`` is 1. An access point (``ap``:
    0 entry, 1 exit, both sides of the same door) is passed on as such, never as a door."""
    return {"door": 1, "ap": _int(p.get("ap"))}


def _door_state(r: Record) -> Mapped | None:
    state = str(r.params.get("state")).strip().lower()
    type_ = {"opened": "door.opened", "closed": "door.closed"}.get(state)
    return None if type_ is None else (type_, _door(r.params), None)


def _interval(type_: str, state_key: str | None = None, *, door: bool = False) -> Mapper:
    """Events whose ``state`` is ``in``/``out``: ``{active}``, optionally a state flag."""

    def mapper(r: Record) -> Mapped | None:
        active = _in_out(r.params.get("state"))
        if active is None:
            return None
        data = (_door(r.params) if door else {}) | {"active": active}
        return type_, data, None if state_key is None else {state_key: active}

    return mapper


def _motion(r: Record) -> Mapped | None:
    active = _in_out(r.params.get("state"))
    if active is None:
        return None
    zone = _int(r.params.get("ID", r.params.get("id")))
    type_ = "motion.started" if active else "motion.stopped"
    return type_, {"zone": 1 if zone is None else zone}, {"motion": active}


def _switch(r: Record) -> Mapped | None:
    number, active = _int(r.params.get("switch")), _bool(r.params.get("state"))
    if number is None or active is None:
        return None
    data = {"switch": number, "active": active, "originator": _str(r.params.get("originator"))}
    data |= {"ap": _int(r.params.get("ap")), "session": _int(r.params.get("session"))}
    return "switch.changed", data, {"switches": {str(number): {"active": active}}}


def _port(type_: str, group: str) -> Mapper:
    def mapper(r: Record) -> Mapped | None:
        port, active = _str(r.params.get("port")), _bool(r.params.get("state"))
        if port is None or active is None:
            return None
        return type_, {"port": port, "active": active}, {group: {port: {"active": active}}}

    return mapper


def _login_blocked(r: Record) -> Mapped | None:
    address = _str(r.params.get("address"))
    return None if address is None else ("login.blocked", {"address": address}, None)


def _registration(r: Record) -> Mapped | None:
    account, state = _int(r.params.get("sipAccount")), _str(r.params.get("state"))
    if account is None or state is None:
        return None
    data = {"account": account, "state": state, "reason": _str(r.params.get("reason"))}
    return "sip.registration_changed", data, {"sip": {str(account): state}}


def _call(r: Record) -> Mapped | None:
    p, state = r.params, _str(r.params.get("state"))
    if state is None:
        return None
    direction, session = _str(p.get("direction")), _int(p.get("session"))
    data = {"direction": direction, "state": state, "peer": _str(p.get("peer")), "session": session}
    data |= {"reason": _str(p.get("reason")), "call": _int(p.get("call"))}
    call = {"state": state, "direction": direction, "session": session}
    return "call.state_changed", data, {"call": dict(_IDLE) if state == "terminated" else call}


_MAPPERS: dict[str, Mapper] = {
    "DeviceState": _device_state,
    "KeyPressed": _key,
    "CodeEntered": _credential("code.entered", "direction", "type"),
    "CardEntered": _credential("card.read", "reader", "uid", "direction"),
    "UserAuthenticated": _granted,
    "UserRejected": _denied,
    "DoorStateChanged": _door_state,
    "DoorOpenTooLong": _interval("door.open_too_long", door=True),
    "UnauthorizedDoorOpen": _interval("door.forced", door=True),
    "SwitchStateChanged": _switch,
    "InputChanged": _port("input.changed", "inputs"),
    "OutputChanged": _port("output.changed", "outputs"),
    "MotionDetected": _motion,
    "NoiseDetected": _interval("noise.detected", "noise"),
    "TamperSwitchActivated": _interval("tamper.changed", "tamper"),
    "LoginBlocked": _login_blocked,
    "RegistrationStateChanged": _registration,
    "CallStateChanged": _call,
}


def raw_record(record: Record) -> dict[str, Any]:
    """The vendor record as published in ``data.raw``, with codes and passwords redacted."""
    return {
        "event": record.name,
        "id": record.id,
        "utcTime": record.utc_time,
        "upTime": record.up_time,
        "tzShift": record.tz_shift,
        "params": _redact(record.params),
    }


def vendor_type(name: str) -> str:
    safe = "".join(c for c in name if c.isascii() and (c.isalnum() or c in "_-"))[:64]
    return f"vendor.{safe or 'Unknown'}"


def normalize(
    device: str,
    boot: int,
    record: Record,
    *,
    doorbell: Doorbell,
    received: datetime | None = None,
) -> Normalized:
    """One record to its events (one, or two for a doorbell call) and the state it implies."""
    mapper = _MAPPERS.get(record.name)
    mapped = mapper(record) if mapper else None
    type_, data, state = mapped or (vendor_type(record.name), {}, None)
    if type_ == "key.pressed" and data["key"] in doorbell.keys:
        type_, data = "doorbell.pressed", {"button": data["key"]}
    raw = raw_record(record)
    when = datetime.fromtimestamp(record.utc_time, UTC)

    def event(type_: str, data: dict[str, Any], sequence: str | int) -> Event:
        body = _clean(data) | {"raw": raw}
        return make_event(
            device, type_, body, time=when, boot=boot, sequence=sequence, received=received
        )

    events = [event(type_, data, record.id)]
    if (
        doorbell.on_outgoing_call
        and type_ == "call.state_changed"
        and (data["direction"], data["state"]) == ("outgoing", "connecting")
    ):
        ring = {"button": "call", "peer": data["peer"], "session": data["session"]}
        events.append(event("doorbell.pressed", ring, f"{record.id}-doorbell"))
    return Normalized(events=events, state=None if state is None else StateUpdate(values=state))
