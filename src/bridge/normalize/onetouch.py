"""Normalization for Onetouch intercoms (HTTP API manual v1.0). Pure.

The vendor details come from ``../shared/research/seed-onetouch.md`` (cited as §n): the
``retcode`` envelope with errors under HTTP 200 (§1.4), values as strings in one endpoint and
ints in the next (§6.3), the reply's ``action`` field that is often wrong and never read (§6.4),
raw GPIO levels whose active level is the input's trigger option (§4.6), the door and call logs
read by record ``ID`` (§3.2). The driver does the HTTP and hands over decoded JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from bridge.errors import DeviceProtocolError
from bridge.model import DeviceInfo
from bridge.normalize.coerce import as_int, as_str, clean, redact

VENDOR = "Onetouch"
LETTERS = "ABC"  # relays and inputs A/B/C are numbered 1/2/3 (the manual's own `num`)


class ApiError(DeviceProtocolError):
    """HTTP 200 with ``retcode`` other than 0: the device refused (§1.4)."""

    def __init__(self, what: str, retcode: object, message: str) -> None:
        super().__init__(
            f"{what}: Onetouch retcode {retcode} ({message})",
            code="vendor_error",
            detail=message,
        )
        self.message = message

    @property
    def unsupported(self) -> bool:
        """The reply of an unknown target or action (§1.4: ``unsupport action``)."""
        return "unsupport" in self.message.lower()


def unwrap(payload: object, what: str) -> dict[str, Any]:
    """The ``data`` of a reply (``{}`` when it has none); raises ``ApiError`` on a refusal and
    ``DeviceProtocolError`` on anything that is not the envelope."""
    if not isinstance(payload, dict):
        raise DeviceProtocolError(f"{what}: expected a JSON object", code="bad_shape")
    retcode = as_int(payload.get("retcode"))
    if retcode != 0:
        message = as_str(payload.get("message")) or "no message"
        raise ApiError(what, payload.get("retcode"), message[:200])
    data = payload.get("data", {})
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DeviceProtocolError(f"{what}: 'data' must be an object", code="bad_shape")
    return data


# --- device info and clock ----------------------------------------------------------------


def parse_info(data: dict[str, Any], *, commands: list[str]) -> DeviceInfo:
    """``system/info`` (§4.2): every value a string; the MAC is the serial."""
    found = data.get("Status")
    status: dict[str, Any] = found if isinstance(found, dict) else {}
    return DeviceInfo(
        vendor=VENDOR,
        model=as_str(status.get("Model")),
        serial=as_str(status.get("MAC")),
        firmware=as_str(status.get("FirmwareVersion")),
        capabilities=clean(
            {
                "hardware": as_str(status.get("HardwareVersion")),
                "switches": len(LETTERS),
                "inputs": len(LETTERS),
                "sip_accounts": 2,
            }
        ),
        commands=commands,
    )


def parse_clock(data: dict[str, Any], what: str = "system/status") -> tuple[int, int]:
    """``system/status`` (§4.3): ``(SystemTime, UpTime)`` in seconds."""
    system_time, uptime = as_int(data.get("SystemTime")), as_int(data.get("UpTime"))
    if system_time is None or uptime is None or uptime < 0:
        raise DeviceProtocolError(
            f"{what}: expected integer SystemTime and UpTime", code="bad_shape"
        )
    return system_time, uptime


# --- status -> normalized state (spec §4.2) -----------------------------------------------


def _levels(data: dict[str, Any], prefix: str, what: str) -> dict[str, int]:
    levels: dict[str, int] = {}
    for number, letter in enumerate(LETTERS, start=1):
        if f"{prefix}{letter}" not in data:
            continue
        level = as_int(data[f"{prefix}{letter}"])
        if level is None:
            raise DeviceProtocolError(f"{what}: {prefix}{letter} is not a number", code="bad_shape")
        levels[str(number)] = level
    if not levels:
        raise DeviceProtocolError(f"{what}: no {prefix}A/B/C", code="bad_shape")
    return levels


def parse_relays(data: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """``relay/status`` (§4.5): ``RelayA/B/C``, 0 released, anything else active."""
    return {
        n: {"active": level != 0} for n, level in _levels(data, "Relay", "relay/status").items()
    }


def input_triggers(data: dict[str, Any]) -> dict[str, int]:
    """``input/get`` (§5.3): the level at which each input triggers (``OptionX``: 0 low, 1
    high). An input whose option is missing or odd triggers low, the device's default."""
    triggers: dict[str, int] = {}
    for number, letter in enumerate(LETTERS, start=1):
        option = as_int(data.get(f"Config.DoorSetting.INPUT.Option{letter}"))
        triggers[str(number)] = 1 if option == 1 else 0
    return triggers


def parse_inputs(data: dict[str, Any], triggers: dict[str, int]) -> dict[str, dict[str, bool]]:
    """``input/status`` (§4.6): raw GPIO levels; active when the level is the trigger level."""
    levels = _levels(data, "Input", "input/status")
    return {n: {"active": level == triggers.get(n, 0)} for n, level in levels.items()}


# Only READY is in the manual (§4.7); the others are read by their first letters, and any
# other value is a call in some state the manual does not name: ``active``.
_CALL_STATES: tuple[tuple[str, str], ...] = (
    ("READY", "idle"),
    ("IDLE", "idle"),
    ("RING", "ringing"),
    ("CALL", "calling"),
    ("DIAL", "calling"),
    ("TALK", "connected"),
    ("CONNECT", "connected"),
)


def parse_call(data: dict[str, Any]) -> dict[str, Any]:
    """``call/status`` (§4.7): ``{"state": idle|ringing|calling|connected|active, "status": the
    device's own word}`` (always both: the retained state is merged, so a ``status`` left out
    would keep the last call's word)."""
    status = (as_str(data.get("Status")) or "").strip().upper()
    if not status:
        raise DeviceProtocolError("call/status: no Status", code="bad_shape")
    state = next((name for prefix, name in _CALL_STATES if status.startswith(prefix)), "active")
    return {"state": state, "status": status}


SIP_STATES = {-1: "unknown", 0: "disabled", 1: "registering", 2: "registered", 3: "failed"}


def parse_sip(data: dict[str, Any]) -> dict[str, str]:
    """``sip/status`` (§4.8): per account ``Status`` -1..3 as words."""
    accounts: dict[str, str] = {}
    for number in (1, 2):
        account = data.get(f"Account{number}")
        if isinstance(account, dict):
            code = as_int(account.get("Status"))
            accounts[str(number)] = (
                SIP_STATES.get(code, "unknown") if code is not None else "unknown"
            )
    return accounts


def relay_names(data: dict[str, Any]) -> dict[str, str]:
    """``relay/get`` (§5.2): the relays' display names, and nothing else of that reply (it
    carries ``RELAY.Password``)."""
    names = {}
    for number, letter in enumerate(LETTERS, start=1):
        name = as_str(data.get(f"Config.DoorSetting.RELAY.Name{letter}"))
        if name:
            names[str(number)] = name
    return names


# --- door and call logs (§3.2) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of ``doorlog/get`` or ``callog/get``: its numeric ID, device-local time (no
    zone: the driver's ``timezone`` tells), and the record itself."""

    id: int
    local_time: datetime | None
    fields: dict[str, Any]


def parse_log(data: dict[str, Any], what: str) -> tuple[list[LogRecord], list[tuple[object, str]]]:
    """The records of a log reply in ID order, and the malformed ones with a reason."""
    items = data.get("item", [])
    if not isinstance(items, list):
        raise DeviceProtocolError(f"{what}: 'item' must be a list", code="bad_shape")
    records: list[LogRecord] = []
    malformed: list[tuple[object, str]] = []
    for item in items:
        if not isinstance(item, dict):
            malformed.append((item, "not an object"))
            continue
        record_id = as_int(item.get("ID"))
        if record_id is None:
            malformed.append((redact(item), "no numeric ID"))
            continue
        records.append(LogRecord(record_id, _local_time(item), item))
    records.sort(key=lambda r: r.id)
    return records, malformed


def _local_time(item: dict[str, Any]) -> datetime | None:
    date, time_ = as_str(item.get("Date")), as_str(item.get("Time"))
    if not date or not time_:
        return None
    try:
        # Device-local and zoneless (§3.2): record_time gives it the configured zone.
        return datetime.strptime(f"{date.strip()} {time_.strip()}", "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007
    except ValueError:
        return None


def record_time(record: LogRecord, zone: tzinfo, fallback: datetime) -> datetime:
    """When the record says it happened, in UTC; ``fallback`` where it says nothing usable."""
    if record.local_time is None:
        return fallback
    return record.local_time.replace(tzinfo=zone).astimezone(UTC)


# Door log ``Type`` as a name or its number (§3.2: 0 Unknow, 1 Card, 2 Password, 3 Public,
# 4 Face) -> the access method of spec §4.1; ``Status`` 0/Success grants, 1/Failed denies.
_METHODS = {
    "card": "card",
    "1": "card",
    "password": "code",
    "2": "code",
    "public": "public_code",
    "3": "public_code",
    "face": "face",
    "4": "face",
}


def door_events(record: LogRecord) -> list[tuple[str, dict[str, Any]]]:
    """The events of one door log record: ``card.read`` (card records) then ``access.granted``
    or ``access.denied``; a record whose Status is neither is ``vendor.DoorLog``. The entered
    code never leaves: ``raw`` has ``Code`` redacted, and only a card's number is published
    (as ``uid``)."""
    fields = record.fields
    raw = redact(fields)
    kind = (as_str(fields.get("Type")) or "").strip().lower()
    method = _METHODS.get(kind, "unknown")
    status = (as_str(fields.get("Status")) or "").strip().lower()
    valid = True if status in {"0", "success"} else False if status in {"1", "failed"} else None
    if valid is None:
        return [("vendor.DoorLog", {"raw": raw})]
    user = as_str(fields.get("Name")) or None
    events: list[tuple[str, dict[str, Any]]] = []
    if method == "card":
        uid = as_str(fields.get("Code")) or None
        events.append(("card.read", clean({"uid": uid, "valid": valid, "raw": raw})))
    access = "access.granted" if valid else "access.denied"
    reason = None if valid else "refused by the device"
    events.append((access, clean({"method": method, "user": user, "reason": reason, "raw": raw})))
    return events


# Call log ``Type`` (§3.2): the record is written when the call is over.
_CALL_LOG = {
    "dialed": ("outgoing", "ended"),
    "1": ("outgoing", "ended"),
    "received": ("incoming", "ended"),
    "2": ("incoming", "ended"),
    "missed": ("incoming", "missed"),
    "3": ("incoming", "missed"),
    "forwarded": ("incoming", "forwarded"),
    "4": ("incoming", "forwarded"),
}


def call_events(record: LogRecord) -> list[tuple[str, dict[str, Any]]]:
    """A call log record is a ``call.state_changed`` with the call's end: ``state`` ended,
    missed or forwarded, ``direction``, ``peer`` (``Num``) and ``name``; ``source: "log"`` tells
    it from the live states read off ``call/status``. An unknown Type is ``vendor.CallLog``."""
    fields = record.fields
    raw = redact(fields)
    kind = (as_str(fields.get("Type")) or "").strip().lower()
    if kind not in _CALL_LOG:
        return [("vendor.CallLog", {"raw": raw})]
    direction, state = _CALL_LOG[kind]
    data = {
        "state": state,
        "direction": direction,
        "peer": as_str(fields.get("Num")) or None,
        "name": as_str(fields.get("Name")) or None,
        "source": "log",
        "raw": raw,
    }
    return [("call.state_changed", clean(data))]
