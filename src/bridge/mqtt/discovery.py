"""Home Assistant MQTT discovery, device-based (one retained config per device). Pure.

What a device gets is derived from three facts, never from its driver's name:

- ``info.commands``: what the device accepts, already narrowed by its ``commands`` policy, so a
  button or switch exists only for commands the policy allows;
- ``events``: the event types its driver publishes (the driver's ``events`` declaration): the
  doorbell, access and door-contact entities;
- the keys of its retained state: relays, inputs, outputs, motion, tamper, noise, video signal,
  recording, streaming, motion detection, call and SIP registration.

Entities stay template-light so openHAB's Home Assistant binding reads them too: availability is
plain ``online``/``offline`` on the bridge and device topics (both must be online), states are
read from the retained ``<base>/<device>/state`` with one ``value_json`` path each, and commands
are fixed JSON payloads on ``<base>/<device>/command``.

Unique ids are ``bridge_<device>_<key>`` and entity ids ``<platform>.<device>_<key>`` (as a slug):
both come from the device id and the entity's key, never from a name, so they are the same at
every start. docs/home-assistant.md lists every entity.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.mqtt.message import Message
from bridge.mqtt.render import dumps

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

    from bridge.model import DeviceInfo
    from bridge.mqtt.topics import Topics

NODE = "bridge"  # the first word of discovery object ids and unique ids

BUTTONS: dict[str, tuple[str, str | None, str | None]] = {
    # command (without arguments) → (name, HA device class, entity category)
    "snapshot": ("Take snapshot", None, None),
    "answer": ("Answer call", None, None),
    "hangup": ("Hang up", None, None),
    "audio_test": ("Audio test", None, "diagnostic"),
    "refresh": ("Refresh", None, "diagnostic"),  # re-reads the state: not a firmware `update`
    "reboot": ("Reboot", "restart", "config"),
}

FLAGS: dict[str, tuple[str, str | None]] = {
    # boolean state key → (name, HA binary_sensor device class)
    "motion": ("Motion", "motion"),
    "tamper": ("Tamper", "tamper"),
    "noise": ("Noise", "sound"),
    "video_signal": ("Video signal", None),
    "recording": ("Recording", None),
    "streaming": ("Streaming", None),
    "motion_detection": ("Motion detection", None),
}

TOGGLES: dict[str, tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    # state key → the commands that turn it on and off; a switch when the device takes both
    "recording": (("start_recording", {}), ("stop_recording", {})),
    "streaming": (("start_streaming", {}), ("stop_streaming", {})),
    "motion_detection": (
        ("motion_detection", {"enabled": True}),
        ("motion_detection", {"enabled": False}),
    ),
}

PORTS = {"inputs": "Input", "outputs": "Output"}  # state key → name of one port
MAX_DOOR = 64  # the range of open_door's door

ACCESS = {  # event type → (key, name, attributes taken from the event's data)
    "access.granted": ("access_granted", "Access granted", ("method", "user")),
    "access.denied": ("access_denied", "Access denied", ("method", "user", "reason")),
}


@dataclass(frozen=True, slots=True)
class Entity:
    """One discovery component: ``key`` makes its unique id and entity id."""

    key: str
    platform: str
    name: str | None
    options: dict[str, Any] = field(default_factory=dict)


def object_id(device: str) -> str:
    """The discovery object id (and device identifier) of a device: ``bridge_<device>``."""
    return f"{NODE}_{device}"


def discovery_topic(prefix: str, device: str) -> str:
    return f"{prefix}/device/{object_id(device)}/config"


def slug(text: str) -> str:
    """Lower case letters, digits and single ``_``: what Home Assistant keeps of an entity id."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def reshapes(state: Mapping[str, Any], patch: Mapping[str, Any], depth: int = 3) -> bool:
    """Whether deep-merging ``patch`` into ``state`` changes its key paths (up to three levels:
    ``switches``, ``switches.1``, ``switches.1.active``), the facts discovery is derived from.
    Values do not count. Costs the size of the patch, not of the state."""
    for key, value in patch.items():
        if key not in state:
            return True
        current = state[key]
        if isinstance(value, dict) != isinstance(current, dict):
            return True  # an object replaces a plain value, or the other way round
        if depth > 1 and isinstance(value, dict) and reshapes(current, value, depth - 1):
            return True
    return False


def stale_topics(published: Iterable[str], keep: Iterable[str]) -> list[str]:
    """Discovery topics published before that no configured device has any more, sorted."""
    return sorted(set(published) - set(keep))


def cleared(topic: str) -> Message:
    """The empty retained message that removes a discovery config (and its device) from HA."""
    return Message(topic, b"", 1, True)


def device_discovery(  # noqa: PLR0913 - keyword-only facts about one device
    topics: Topics,
    *,
    prefix: str,
    device: str,
    name: str | None,
    info: DeviceInfo,
    state: Mapping[str, Any],
    events: Collection[str],
    version: str,
) -> Message:
    """The retained discovery config of one device on ``<prefix>/device/bridge_<device>/config``.

    ``info.commands`` must already be narrowed by the device's policy; ``events`` are the event
    types its driver publishes; ``state`` is the device's current (merged) state.
    """
    uid = object_id(device)
    components = {
        f"{uid}_{entity.key}": {
            "p": entity.platform,  # "platform", abbreviated as in Home Assistant's examples
            "name": entity.name,
            "unique_id": f"{uid}_{entity.key}",
            "default_entity_id": f"{entity.platform}.{slug(device)}_{slug(entity.key)}",
            **entity.options,
        }
        for entity in entities(topics, device, info.commands, events, state)
    }
    about = {
        "identifiers": [uid],
        "name": name or device,
        "manufacturer": info.vendor,
        "model": info.model,
        "serial_number": info.serial,
        "sw_version": info.firmware,
    }
    config = {
        # Home Assistant refuses a whole config with a null string in it: absent keys instead.
        "device": {key: value for key, value in about.items() if value is not None},
        "origin": {"name": NODE, "sw_version": version},
        "availability": [
            {"topic": topics.bridge_state},
            {"topic": topics.availability(device)},
        ],
        "availability_mode": "all",
        "qos": 1,
        "components": components,
    }
    return Message(discovery_topic(prefix, device), dumps(config), 1, True)


def entities(
    topics: Topics,
    device: str,
    commands: Collection[str],
    events: Collection[str],
    state: Mapping[str, Any],
) -> list[Entity]:
    """Every entity of one device, in a stable order (see the module docstring)."""
    return [
        _connectivity(topics, device),
        *_event_entities(topics, device, events),
        *_buttons(topics, device, commands, state),
        *_state_entities(topics, device, commands, state),
    ]


# -- entities ------------------------------------------------------------------------------------


def _connectivity(topics: Topics, device: str) -> Entity:
    """Whether the bridge reaches the device: only the bridge's availability applies to it, so it
    reads ``off`` (not unavailable) while the device is away."""
    return Entity(
        "connectivity",
        "binary_sensor",
        "Connectivity",
        {
            "state_topic": topics.availability(device),
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "availability": [{"topic": topics.bridge_state}],
        },
    )


def _event_entities(topics: Topics, device: str, events: Collection[str]) -> list[Entity]:
    found: list[Entity] = []
    if "doorbell.pressed" in events:
        found.append(
            Entity(
                "doorbell",
                "event",
                "Doorbell",
                {
                    "state_topic": topics.event(device, "doorbell.pressed"),
                    "event_types": ["doorbell.pressed"],
                    "device_class": "doorbell",
                    "value_template": _event_template(("button",)),
                },
            )
        )
    for event_type, (key, name, attributes) in ACCESS.items():
        if event_type in events:
            found.append(
                Entity(
                    key,
                    "event",
                    name,
                    {
                        "state_topic": topics.event(device, event_type),
                        "event_types": [event_type],
                        "value_template": _event_template(attributes),
                    },
                )
            )
    if {"door.opened", "door.closed"} <= set(events):
        # No state key holds the door contact: it follows the events (every event of the device
        # reaches the template; the others render nothing, which Home Assistant ignores).
        found.append(
            Entity(
                "door",
                "binary_sensor",
                "Door",
                {
                    "state_topic": topics.event(device, "+"),
                    "device_class": "door",
                    "value_template": (
                        '{% if value_json.type == "door.opened" %}ON'
                        '{% elif value_json.type == "door.closed" %}OFF{% endif %}'
                    ),
                },
            )
        )
    return found


def _buttons(
    topics: Topics, device: str, commands: Collection[str], state: Mapping[str, Any]
) -> list[Entity]:
    press = {"command_topic": topics.command(device)}
    found: list[Entity] = []
    if "open_door" in commands:
        doors = _doors(state)
        found.extend(
            Entity(
                "open_door" if door == 1 else f"open_door_{door}",
                "button",
                "Open door" if len(doors) == 1 else f"Open door {door}",
                press | {"payload_press": _command("open_door", {"door": door})},
            )
            for door in doors
        )
    for command, (name, device_class, category) in BUTTONS.items():
        if command in commands:
            options = press | {"payload_press": _command(command, {})}
            if device_class:
                options["device_class"] = device_class
            if category:
                options["entity_category"] = category
            found.append(Entity(command, "button", name, options))
    if "snapshot" in commands:  # the last picture, raw JPEG on the retained topic
        found.append(Entity("camera", "camera", "Snapshot", {"topic": topics.snapshot(device)}))
    return found


def _doors(state: Mapping[str, Any]) -> list[int]:
    """Door *n* is switch (relay) *n* for every driver with ``open_door``; door 1 without any."""
    numbers = sorted(int(key) for key in state.get("switches", {}) if key.isdigit())
    return [n for n in numbers if 1 <= n <= MAX_DOOR] or [1]


def _state_entities(
    topics: Topics, device: str, commands: Collection[str], state: Mapping[str, Any]
) -> list[Entity]:
    read = {"state_topic": topics.state(device)}
    drive = read | {"command_topic": topics.command(device)}
    return [
        *_relays(read, drive, commands, state),
        *_ports(read, state),
        *_flags(read, drive, commands, state),
        *_channels(read, state),
        *_telephony(read, state),
    ]


def _relays(
    read: dict[str, Any], drive: dict[str, Any], commands: Collection[str], state: Mapping[str, Any]
) -> list[Entity]:
    """A switch per relay ``set_switch`` can drive, else a binary sensor."""
    found: list[Entity] = []
    for key, _ in _objects(state, "switches"):
        path = f"value_json.switches[{_literal(key)}].active"
        name = f"Switch {key}"
        if "set_switch" in commands and key.isdigit():
            switch = {"switch": int(key)}
            payloads = (
                _command("set_switch", switch | {"on": True}),
                _command("set_switch", switch | {"on": False}),
            )
            found.append(_switch(f"switch_{key}", name, drive, path, payloads))
        else:
            found.append(_flag(f"switch_{key}", name, read, path))
    return found


def _ports(read: dict[str, Any], state: Mapping[str, Any]) -> list[Entity]:
    found: list[Entity] = []
    for kind, label in PORTS.items():
        for key, _ in _objects(state, kind):
            path = f"value_json.{kind}[{_literal(key)}].active"
            number = _port_number(label, key)
            entity_key = f"{kind.removesuffix('s')}_{slug(number)}"
            found.append(_flag(entity_key, f"{label} {number}", read, path))
    return found


def _flags(
    read: dict[str, Any], drive: dict[str, Any], commands: Collection[str], state: Mapping[str, Any]
) -> list[Entity]:
    """The device-wide booleans: a switch where the device takes both commands, else a binary
    sensor. An object of booleans (Ultra Stream streaming per server) is on when any is."""
    found: list[Entity] = []
    for key, (name, device_class) in FLAGS.items():
        if key not in state:
            continue
        path = f"value_json.{key}"
        if isinstance(state[key], dict):
            path = f"value_json.{key}.values() | select | list"
        toggle = TOGGLES.get(key)
        if toggle and all(command in commands for command, _ in toggle):
            (on, on_args), (off, off_args) = toggle
            payloads = (_command(on, on_args), _command(off, off_args))
            found.append(_switch(key, name, drive, path, payloads))
        else:
            found.append(_flag(key, name, read, path, device_class))
    return found


def _channels(read: dict[str, Any], state: Mapping[str, Any]) -> list[Entity]:
    """Motion and recording per channel of a multi-channel camera (Grandstream GXV3504)."""
    found: list[Entity] = []
    for channel, values in _objects(state, "channels"):
        for key in ("motion", "recording"):
            if key in values:
                name, device_class = FLAGS[key]
                path = f"value_json.channels[{_literal(channel)}].{key}"
                entity_key = f"{key}_channel_{slug(channel)}"
                found.append(
                    _flag(entity_key, f"{name} channel {channel}", read, path, device_class)
                )
    return found


def _telephony(read: dict[str, Any], state: Mapping[str, Any]) -> list[Entity]:
    """The call state, and the registration of each SIP account."""
    found: list[Entity] = []
    if isinstance(state.get("call"), dict) and "state" in state["call"]:
        call = read | {"value_template": "{{ value_json.call.state }}"}
        found.append(Entity("call", "sensor", "Call", call))
    for account, _ in _objects(state, "sip", leaves=True):
        sip = read | {
            "value_template": f"{{{{ value_json.sip[{_literal(account)}] }}}}",
            "entity_category": "diagnostic",
        }
        found.append(Entity(f"sip_{slug(account)}", "sensor", f"SIP account {account}", sip))
    return found


def _objects(state: Mapping[str, Any], key: str, *, leaves: bool = False) -> list[tuple[str, Any]]:
    """The entries of ``state[key]`` (an object of objects, or of plain values with ``leaves``),
    by their keys in numeric then text order."""
    value = state.get(key)
    if not isinstance(value, dict):
        return []
    entries = [(k, v) for k, v in value.items() if leaves or isinstance(v, dict)]
    return sorted(entries, key=lambda item: (not item[0].isdigit(), item[0].zfill(8)))


def _flag(
    key: str, name: str, options: dict[str, Any], path: str, device_class: str | None = None
) -> Entity:
    """A binary sensor reading one boolean of the retained state."""
    flag = options | {"value_template": f"{{{{ 'ON' if {path} else 'OFF' }}}}"}
    if device_class:
        flag["device_class"] = device_class
    return Entity(key, "binary_sensor", name, flag)


def _switch(
    key: str, name: str, options: dict[str, Any], path: str, payloads: tuple[str, str]
) -> Entity:
    """A switch: its state from the retained state, its commands (``payloads``: on, off) on the
    command topic."""
    on, off = payloads
    return Entity(
        key,
        "switch",
        name,
        options
        | {
            "value_template": f"{{{{ 'ON' if {path} else 'OFF' }}}}",
            "state_on": "ON",
            "state_off": "OFF",
            "payload_on": on,
            "payload_off": off,
        },
    )


def _event_template(attributes: Iterable[str]) -> str:
    """The event entity's payload: the event type and some ``data`` fields as attributes (a
    field the event lacks is ``null``). Never ``raw``: what a device reports stays out."""
    fields = ", ".join(
        [
            '"event_type": value_json.type',
            *(f'"{name}": value_json.data.{name} | default(none)' for name in attributes),
        ]
    )
    return f"{{{{ {{{fields}}} | tojson }}}}"


def _command(name: str, args: dict[str, Any]) -> str:
    body: dict[str, Any] = {"command": name}
    if args:
        body["args"] = args
    return json.dumps(body, separators=(",", ":"))


def _literal(key: str) -> str:
    """A state key as a Jinja string literal."""
    return json.dumps(key)


def _port_number(label: str, key: str) -> str:
    """How a port is named after its kind: ``1`` for ``1`` and for ``input1`` (2N inputs),
    the key itself otherwise (``relay1``, a 2N output)."""
    match = re.fullmatch(r"([a-z]*)(\d+)", key)
    if match and match.group(1) in {"", label.lower()}:
        return match.group(2)
    return key
