"""Home Assistant MQTT discovery, device-based (one retained config per device). Pure.

Entities stay template-light so openHAB's Home Assistant binding reads them too: availability
is plain ``online``/``offline`` on the bridge and device topics (both must be online), the
doorbell is an ``event`` entity fed by the event topic, and commands are ``button`` entities
publishing fixed command payloads.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bridge.mqtt.message import Message
from bridge.mqtt.render import dumps

if TYPE_CHECKING:
    from bridge.model import DeviceInfo
    from bridge.mqtt.topics import Topics

BUTTONS = {  # command → (name, payload, HA device class)
    "open_door": ("Open door", {"command": "open_door", "args": {"door": 1}}, None),
    "refresh": ("Refresh", {"command": "refresh"}, "update"),
    "reboot": ("Reboot", {"command": "reboot"}, "restart"),
}


def discovery_topic(prefix: str, device: str) -> str:
    return f"{prefix}/device/bridge_{device}/config"


def device_discovery(  # noqa: PLR0913 - keyword-only facts about one device
    topics: Topics,
    *,
    prefix: str,
    device: str,
    name: str | None,
    info: DeviceInfo,
    state: dict[str, Any],
    version: str,
) -> Message:
    uid = f"bridge_{device}"
    components: dict[str, dict[str, Any]] = {
        f"{uid}_doorbell": {
            "p": "event",
            "name": "Doorbell",
            "device_class": "doorbell",
            "event_types": ["doorbell.pressed"],
            "state_topic": topics.event(device, "doorbell.pressed"),
            "value_template": '{"event_type": "{{ value_json.type }}"}',
            "unique_id": f"{uid}_doorbell",
        }
    }
    for command, (label, payload, device_class) in BUTTONS.items():
        if command in info.commands:
            components[f"{uid}_{command}"] = {
                "p": "button",
                "name": label,
                "command_topic": topics.command(device),
                "payload_press": json.dumps(payload, separators=(",", ":")),
                "unique_id": f"{uid}_{command}",
                **({"device_class": device_class} if device_class else {}),
            }
    if "snapshot" in info.commands:  # the last picture, raw JPEG on the retained topic
        components[f"{uid}_camera"] = {
            "p": "camera",
            "name": "Snapshot",
            "topic": topics.snapshot(device),
            "unique_id": f"{uid}_camera",
        }
    for number in sorted(state.get("switches", {})):
        components[f"{uid}_switch_{number}"] = {
            "p": "binary_sensor",
            "name": f"Switch {number}",
            "state_topic": topics.state(device),
            "value_template": (
                f"{{{{ 'ON' if value_json.switches['{number}'].active else 'OFF' }}}}"
            ),
            "unique_id": f"{uid}_switch_{number}",
        }
    config = {
        "device": {
            "identifiers": [uid],
            "name": name or device,
            "manufacturer": info.vendor,
            "model": info.model,
            "serial_number": info.serial,
            "sw_version": info.firmware,
        },
        "origin": {"name": "bridge", "sw_version": version},
        "availability": [
            {"topic": topics.bridge_state},
            {"topic": topics.availability(device)},
        ],
        "availability_mode": "all",
        "qos": 1,
        "components": components,
    }
    return Message(discovery_topic(prefix, device), dumps(config), 1, True)
