"""Normalization for Grandstream GXV cameras and encoders ("Video Surveillance HTTP API"
v1.0.0.54). Pure.

The vendor details come from ``../shared/research/seed-grandstream.md`` (cited as §n): replies of
``key=value`` lines grouped by ``channel=`` on the four-channel GXV3504 (§2.5), result words under
HTTP 200 for every refusal (§2.3), parameter names that the OCR'd manual spells with spaces where
the device most likely has dots (§0.2; matched here separator-insensitively), alarm inputs and
outputs whose active state is ``status XOR type`` (§3.19), motion from ``get_md_statu`` (§3.13),
the recording state from ``sdrecord`` (§3.28), the uptime and IR-cut state from ``systeminfo``
(§3.7). The driver does the HTTP and hands over the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bridge.errors import DeviceProtocolError
from bridge.model import DeviceInfo
from bridge.normalize.coerce import as_int, clean
from bridge.normalize.text import TextReply, parse_lines

VENDOR = "Grandstream"
MARKERS = frozenset({"channel"})
PTZ_MODELS = ("GXV3500", "GXV3504")  # §3.11: RS-485 Pelco on the encoders only
RECORD_STATES = {0: None, 1: "manual", 2: "scheduled", 3: "alarm"}  # §3.28 state_record
NO_STORAGE = 4
DAY_NIGHT = {1: "day", 2: "night"}  # §3.7 ircutstatu

_SEPARATORS = re.compile(r"[._\s]+")
_STATUS_LINE = re.compile(r"^(HTTP/\d\.\d\s+)?\d{3}(\s+\S.*)?$", re.IGNORECASE)


def canonical(key: str) -> str:
    """A parameter name without its separators' spelling: ``md.alarm.statu``,
    ``md_alarm_statu`` and the manual's ``md alarm statu`` are one name (§0.2)."""
    return _SEPARATORS.sub(".", key.strip().lower())


class GoformError(DeviceProtocolError):
    """A result word other than ``Successful`` (§2.3), which the device sends with HTTP 200.

    ``kind``: ``no_privilege``, ``invalid`` or ``missing`` (``param`` names the parameter), or
    ``unexpected`` for a word the manual does not list.
    """

    def __init__(self, what: str, word: str, kind: str, param: str | None = None) -> None:
        super().__init__(f"{what}: {word}", code="vendor_error", detail=word)
        self.word, self.kind, self.param = word, kind, param


def _refusal(what: str, words: list[str]) -> GoformError | None:
    """The error a reply's result words carry, if any; status lines in the body are skipped
    (the manual prints replies as ``HTTP/1.0 200 OK\\r\\nSuccessful``, §6.3)."""
    for word in words:
        if _STATUS_LINE.match(word) or word.lower().startswith("successful"):
            continue
        if word.lower() == "no privilege":
            return GoformError(what, word, "no_privilege")
        param, _, last = word.rpartition(" ")
        if last.lower() in {"invalid", "missing"} and param:
            return GoformError(what, word, last.lower(), param)
        return GoformError(what, word, "unexpected")
    return None


def parse_get(text: str, what: str) -> TextReply:
    """A ``cmd=get`` reply: its groups; a refusal raises ``GoformError``."""
    reply = parse_lines(text, MARKERS)
    error = _refusal(what, reply.words)
    if error is not None:
        raise error
    if not reply.groups:
        raise DeviceProtocolError(f"{what}: no key=value lines", code="bad_shape")
    return reply


def parse_set(text: str, what: str) -> bool:
    """A ``cmd=set`` reply: True when the change needs a reboot (``Successful Need Reboot``,
    with or without a comma), False for ``Successful``; a refusal raises ``GoformError``."""
    reply = parse_lines(text, MARKERS)
    error = _refusal(what, reply.words)
    if error is not None:
        raise error
    successes = [w for w in reply.words if w.lower().startswith("successful")]
    if not successes:
        raise GoformError(what, text.strip()[:80] or "(empty reply)", "unexpected")
    return any("reboot" in w.lower() for w in successes)


def value(group: dict[str, str], name: str) -> str | None:
    """The value of parameter ``name`` in ``group``, whatever separators the device uses."""
    wanted = canonical(name)
    return next((v for k, v in group.items() if canonical(k) == wanted), None)


def spelling(groups: list[dict[str, str]], name: str) -> str | None:
    """The device's own spelling of parameter ``name`` (``md_active_enable`` for
    ``md.active.enable``), or None when no group has it."""
    wanted = canonical(name)
    return next((k for g in groups for k in g if canonical(k) == wanted), None)


def channel_groups(reply: TextReply) -> dict[str, dict[str, str]]:
    """The groups of a reply by channel number (the device's own, ``"0"``-``"3"``). A reply
    without ``channel=`` lines (a single-channel camera) is channel ``"0"``; groups before the
    first channel (device-wide keys) are left out of a multi-channel reply."""
    channels: dict[str, dict[str, str]] = {}
    for group in reply.groups:
        number = as_int(group.get("channel"))
        if number is not None and number >= 0:
            channels[str(number)] = group
    if not channels:
        return {"0": reply.merged()}
    return channels


# --- device info and clock ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Features:
    """What a model can do: channels (``"0"``...), PTZ, storage for recording."""

    model: str
    channels: tuple[str, ...]
    ptz: bool
    storage: bool


def has_ptz(model: str | None) -> bool:
    return bool(model) and (model or "").upper().startswith(PTZ_MODELS)


def parse_info(
    system: dict[str, str], features: Features, *, commands: list[str], inputs: int
) -> DeviceInfo:
    """``systeminfo?cmd=get`` (§3.7): the MAC (12 hex digits) is the serial."""
    return DeviceInfo(
        vendor=VENDOR,
        model=value(system, "productmode") or None,
        serial=value(system, "mac") or None,
        firmware=value(system, "firmwareversion") or None,
        capabilities=clean(
            {
                "hardware": value(system, "hardwareversion") or None,
                "channels": [int(c) for c in features.channels],
                "inputs": inputs,
                "outputs": inputs,
                "ptz": features.ptz,
                "storage": features.storage,
            }
        ),
        commands=commands,
    )


def parse_uptime(system: dict[str, str], what: str = "systeminfo") -> int:
    """``systemrun``: the uptime (seconds per the manual's example, §3.7)."""
    uptime = as_int(value(system, "systemrun"))
    if uptime is None or uptime < 0:
        raise DeviceProtocolError(f"{what}: expected an integer systemrun", code="bad_shape")
    return uptime


def parse_day_night(system: dict[str, str]) -> str | None:
    """``ircutstatu``: 1 day, 2 night; None on models without IR-cut."""
    return DAY_NIGHT.get(as_int(value(system, "ircutstatu")) or 0)


# --- status -> normalized state (spec §4.2) -----------------------------------------------


def _bit(group: dict[str, str], name: str, what: str) -> int:
    found = as_int(value(group, name))
    if found not in {0, 1}:
        raise DeviceProtocolError(f"{what}: {name} is not 0 or 1", code="bad_shape")
    return found or 0


def parse_io(reply: TextReply, what: str = "device") -> dict[str, dict[str, dict[str, bool]]]:
    """``device?cmd=get`` (§3.19): ``inputs`` and ``outputs`` numbered from 1, one of each per
    channel (the GXV3504 has four). Active = ``status XOR type``: type 0 normally open, 1
    normally closed; status 0 open, 1 closed (the manual's truth table)."""
    inputs: dict[str, dict[str, bool]] = {}
    outputs: dict[str, dict[str, bool]] = {}
    for index, (_, group) in enumerate(sorted(channel_groups(reply).items()), start=1):
        port = str(index)
        if value(group, "alarmin.status") is not None:
            status, kind = _bit(group, "alarmin.status", what), _bit(group, "alarmin.type", what)
            inputs[port] = {"active": bool(status ^ kind)}
        if value(group, "alarmout.status") is not None:
            status, kind = _bit(group, "alarmout.status", what), _bit(group, "alarmout.type", what)
            outputs[port] = {"active": bool(status ^ kind)}
    if not inputs and not outputs:
        raise DeviceProtocolError(f"{what}: no alarmin/alarmout status", code="bad_shape")
    return {"inputs": inputs, "outputs": outputs}


def parse_motion(reply: TextReply, what: str = "motiondetect") -> dict[str, bool]:
    """``motiondetect?cmd=get_md_statu`` (§3.13): ``md.alarm.statu`` 0/1 per channel."""
    motion: dict[str, bool] = {}
    for channel, group in channel_groups(reply).items():
        found = as_int(value(group, "md.alarm.statu"))
        if found is None:
            raise DeviceProtocolError(f"{what}: no md.alarm.statu", code="bad_shape")
        motion[channel] = found != 0
    return motion


def parse_recording(reply: TextReply) -> dict[str, int | None]:
    """``sdrecord?cmd=get`` (§3.28): ``state_record`` per channel (None where absent)."""
    return {c: as_int(value(g, "state_record")) for c, g in channel_groups(reply).items()}


def parse_md_enabled(reply: TextReply) -> bool | None:
    """``motiondetect?cmd=get``: ``md.active.enable`` of the first channel."""
    for group in reply.groups:
        found = as_int(value(group, "md.active.enable"))
        if found is not None:
            return found != 0
    return None


def channel_state(
    motion: dict[str, bool], recording: dict[str, int | None], *, multi: bool
) -> dict[str, Any]:
    """Motion and recording in the shape the transition step reads: top level on a camera,
    under ``channels`` on a multi-channel model (events then carry ``channel``)."""
    per_channel: dict[str, dict[str, Any]] = {}
    for channel in sorted(set(motion) | set(recording), key=int):
        entry: dict[str, Any] = {}
        if channel in motion:
            entry["motion"] = motion[channel]
        record = recording.get(channel)
        if record is not None and record != NO_STORAGE:
            entry["recording"] = record in RECORD_STATES and record != 0
            entry["record_mode"] = RECORD_STATES.get(record)
        per_channel[channel] = entry
    if multi:
        return {"channels": per_channel}
    return per_channel.get("0", {})
