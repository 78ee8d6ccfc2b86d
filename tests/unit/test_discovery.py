"""Home Assistant discovery as a pure function: which entities facts give, and that every config
passes Home Assistant's rules (tests/hass.py, read from Home Assistant Core 2026.11.0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from bridge.commands import check_command, is_allowed, parse_command
from bridge.config import CommandPolicy
from bridge.drivers import DRIVERS
from bridge.model import EVENT_TYPES, DeviceInfo, event_id
from bridge.mqtt.discovery import (
    cleared,
    device_discovery,
    discovery_topic,
    entities,
    reshapes,
    stale_topics,
)
from bridge.mqtt.ledger import Ledger, ledger_path
from bridge.mqtt.topics import Topics
from tests import hass

TOPICS = Topics()
DEVICE = "front-door"

GENERIC_STATE = {
    "switches": {"1": {"active": False}, "2": {"active": True}},
    "inputs": {"1": {"active": False}, "2": {"active": True}},
    "motion": True,
    "updated": "2026-11-30T10:15:02Z",
}
TWO_N_STATE = {
    "switches": {"1": {"enabled": True, "active": False, "locked": False, "held": False}},
    "inputs": {"input1": {"active": True}},
    "outputs": {"relay1": {"active": False}},
    "call": {"state": "ringing", "direction": "incoming", "session": 3},
    "sip": {"1": "registered", "2": "disabled"},
    "tamper": True,
    "noise": False,
    "motion": False,
}
ONETOUCH_STATE = {
    "switches": {"1": {"active": False}, "2": {"active": False}, "3": {"active": True}},
    "inputs": {"1": {"active": False}},
    "call": {"state": "idle", "status": "READY"},
    "sip": {"1": "registered"},
}
GRANDSTREAM_STATE = {
    "inputs": {"1": {"active": True}},
    "outputs": {"1": {"active": False}},
    "motion": True,
    "recording": False,
    "record_mode": None,
    "motion_detection": True,
    "day_night": "day",
}
GXV3504_STATE = {
    "channels": {
        "0": {"motion": False, "recording": True, "record_mode": "manual"},
        "1": {"motion": True},
    },
    "motion_detection": False,
}
ULTRASTREAM_STATE = {
    "recording": True,
    "streaming": {"1": False, "2": True},
    "live_status": {"1": "idle", "2": "connected"},
    "video_signal": False,
    "storage": {"usb": "DiskValid"},
}


def facts(driver: str, policy: CommandPolicy | None = None) -> tuple[list[str], frozenset[str]]:
    """What the supervisor hands discovery: the driver's commands the policy allows, its events."""
    factory: Any = DRIVERS[driver]
    policy = policy or CommandPolicy()
    return [c for c in sorted(factory.commands) if is_allowed(c, policy)], factory.events


def config_of(
    driver: str, state: dict[str, Any], policy: CommandPolicy | None = None, **info: Any
) -> tuple[str, bytes]:
    commands, events = facts(driver, policy)
    message = device_discovery(
        TOPICS,
        prefix="homeassistant",
        device=DEVICE,
        name="Front door",
        info=DeviceInfo(vendor="Test", commands=commands, **info),
        state=state,
        events=events,
        version="1.2.3",
    )
    assert message.retain
    assert message.qos == 1
    return message.topic, message.payload


def kinds(driver: str, state: dict[str, Any], policy: CommandPolicy | None = None) -> set[str]:
    commands, events = facts(driver, policy)
    return {f"{e.platform}:{e.key}" for e in entities(TOPICS, DEVICE, commands, events, state)}


# -- what appears --------------------------------------------------------------------------------

COMMON = {"binary_sensor:connectivity"}


@pytest.mark.parametrize(
    ("driver", "state", "policy", "expected"),
    [
        pytest.param(
            "generic",
            GENERIC_STATE,
            None,
            {
                "event:doorbell",
                "button:open_door",
                "button:open_door_2",
                "button:snapshot",
                "button:hangup",
                "button:refresh",
                "camera:camera",
                "switch:switch_1",
                "switch:switch_2",
                "binary_sensor:input_1",
                "binary_sensor:input_2",
                "binary_sensor:motion",
            },
            id="generic",
        ),
        pytest.param(
            "generic",
            GENERIC_STATE,
            CommandPolicy(allow=["refresh", "reboot"]),
            {
                "event:doorbell",
                "button:refresh",
                "button:reboot",
                "binary_sensor:switch_1",
                "binary_sensor:switch_2",
                "binary_sensor:input_1",
                "binary_sensor:input_2",
                "binary_sensor:motion",
            },
            id="generic, only refresh and reboot allowed: no doors, relays read only",
        ),
        pytest.param(
            "2n",
            TWO_N_STATE,
            None,
            {
                "event:doorbell",
                "event:access_granted",
                "event:access_denied",
                "binary_sensor:door",
                "button:open_door",
                "button:snapshot",
                "button:answer",
                "button:hangup",
                "button:audio_test",
                "button:refresh",
                "camera:camera",
                "switch:switch_1",
                "binary_sensor:input_1",
                "binary_sensor:output_relay1",
                "binary_sensor:tamper",
                "binary_sensor:noise",
                "binary_sensor:motion",
                "sensor:call",
                "sensor:sip_1",
                "sensor:sip_2",
            },
            id="2n",
        ),
        pytest.param(
            "onetouch",
            ONETOUCH_STATE,
            None,
            {
                "event:access_granted",
                "event:access_denied",
                "button:open_door",
                "button:open_door_2",
                "button:open_door_3",
                "button:hangup",
                "button:refresh",
                "binary_sensor:switch_1",
                "binary_sensor:switch_2",
                "binary_sensor:switch_3",
                "binary_sensor:input_1",
                "sensor:call",
                "sensor:sip_1",
            },
            id="onetouch: no doorbell event, relays without set_switch",
        ),
        pytest.param(
            "grandstream",
            GRANDSTREAM_STATE,
            None,
            {
                "button:snapshot",
                "button:refresh",
                "camera:camera",
                "binary_sensor:input_1",
                "binary_sensor:output_1",
                "binary_sensor:motion",
                "switch:recording",
                "switch:motion_detection",
            },
            id="grandstream",
        ),
        pytest.param(
            "grandstream",
            GXV3504_STATE,
            CommandPolicy(deny=["motion_detection"]),
            {
                "button:snapshot",
                "button:refresh",
                "camera:camera",
                "binary_sensor:motion_channel_0",
                "binary_sensor:recording_channel_0",
                "binary_sensor:motion_channel_1",
                "binary_sensor:motion_detection",
            },
            id="grandstream GXV3504: per channel; motion_detection denied",
        ),
        pytest.param(
            "ultrastream",
            ULTRASTREAM_STATE,
            None,
            {
                "button:snapshot",
                "button:refresh",
                "camera:camera",
                "switch:recording",
                "switch:streaming",
                "binary_sensor:video_signal",
            },
            id="ultrastream",
        ),
        pytest.param(
            "ultrastream",
            ULTRASTREAM_STATE,
            CommandPolicy(deny=["stop_streaming", "snapshot"]),
            {
                "button:refresh",
                "switch:recording",
                "binary_sensor:streaming",
                "binary_sensor:video_signal",
            },
            id="ultrastream, stop_streaming denied: streaming read only",
        ),
        pytest.param("generic", {}, None, None, id="before the first state: doors fall back to 1"),
    ],
)
def test_entities_follow_commands_events_and_state_keys(
    driver: str, state: dict[str, Any], policy: CommandPolicy | None, expected: set[str] | None
) -> None:
    found = kinds(driver, state, policy)
    if expected is None:
        assert found == COMMON | {
            "event:doorbell",
            "button:open_door",
            "button:snapshot",
            "button:hangup",
            "button:refresh",
            "camera:camera",
        }
    else:
        assert found == COMMON | expected


def test_buttons_are_only_for_allowed_commands_and_refresh_is_not_an_update() -> None:
    _, payload = config_of("2n", TWO_N_STATE, CommandPolicy(allow=["refresh", "reboot"]))
    components = json.loads(payload)["components"]
    buttons = {k: v for k, v in components.items() if v["p"] == "button"}
    assert sorted(buttons) == [f"bridge_{DEVICE}_reboot", f"bridge_{DEVICE}_refresh"]
    refresh, reboot = buttons[f"bridge_{DEVICE}_refresh"], buttons[f"bridge_{DEVICE}_reboot"]
    assert "device_class" not in refresh
    assert refresh["entity_category"] == "diagnostic"
    assert (reboot["device_class"], reboot["entity_category"]) == ("restart", "config")
    # the default policy never allows reboot: no Reboot button
    assert "button:reboot" not in kinds("2n", TWO_N_STATE)


# -- Home Assistant's rules ----------------------------------------------------------------------

CASES = [
    ("generic", GENERIC_STATE),
    ("2n", TWO_N_STATE),
    ("onetouch", ONETOUCH_STATE),
    ("grandstream", GRANDSTREAM_STATE),
    ("grandstream", GXV3504_STATE),
    ("ultrastream", ULTRASTREAM_STATE),
]


@pytest.mark.parametrize(("driver", "state"), CASES)
def test_every_config_passes_home_assistants_rules(driver: str, state: dict[str, Any]) -> None:
    topic, payload = config_of(driver, state, model="M1", serial="S1", firmware="1.0")
    components = hass.validate(topic, payload)
    assert topic == f"homeassistant/device/bridge_{DEVICE}/config"
    config = json.loads(payload)
    assert config["device"] == {
        "identifiers": [f"bridge_{DEVICE}"],
        "name": "Front door",
        "manufacturer": "Test",
        "model": "M1",
        "serial_number": "S1",
        "sw_version": "1.0",
    }
    assert config["origin"] == {"name": "bridge", "sw_version": "1.2.3"}
    for key, component in components.items():
        assert component["unique_id"] == key
        assert key.startswith(f"bridge_{DEVICE}_")
        platform, suffix = component["default_entity_id"].split(".")
        assert platform == component["platform"]
        assert suffix == "front_door_" + key.removeprefix(f"bridge_{DEVICE}_").replace("-", "_")
        # availability: the bridge and the device, both online (connectivity: the bridge only)
        topics = [entry["topic"] for entry in component["availability"]]
        if key.endswith("_connectivity"):
            assert topics == ["bridge/bridge/state"]
        else:
            assert topics == ["bridge/bridge/state", f"bridge/{DEVICE}/availability"]
            assert component["availability_mode"] == "all"


def test_a_device_without_model_serial_or_firmware_is_still_valid() -> None:
    """Home Assistant refuses the whole config for one null string (cv.string(None))."""
    topic, payload = config_of("generic", GENERIC_STATE)
    hass.validate(topic, payload)
    assert set(json.loads(payload)["device"]) == {"identifiers", "name", "manufacturer"}


@pytest.mark.parametrize(("driver", "state"), CASES)
def test_commands_in_buttons_and_switches_pass_the_bridges_own_checks(
    driver: str, state: dict[str, Any]
) -> None:
    topic, payload = config_of(driver, state)
    factory: Any = DRIVERS[driver]
    for component in hass.validate(topic, payload).values():
        for key in ("payload_press", "payload_on", "payload_off"):
            if key in component and "command_topic" in component:
                request = parse_command(component[key].encode())
                check_command(request, supported=factory.commands, policy=CommandPolicy())
                assert component["command_topic"] == f"bridge/{DEVICE}/command"


@pytest.mark.parametrize(("driver", "state"), CASES)
def test_state_templates_read_the_state_they_were_made_from(
    driver: str, state: dict[str, Any]
) -> None:
    topic, payload = config_of(driver, state)
    retained = json.dumps(state).encode()
    readings = {
        key.removeprefix(f"bridge_{DEVICE}_"): hass.reading(
            component, TOPICS.state(DEVICE), retained
        )
        for key, component in hass.validate(topic, payload).items()
        if component.get("state_topic") == TOPICS.state(DEVICE)
    }
    expected: dict[str, dict[str, Any]] = {
        "generic": {
            "switch_1": False,
            "switch_2": True,
            "input_1": False,
            "input_2": True,
            "motion": True,
        },
        "2n": {
            "switch_1": False,
            "input_1": True,
            "output_relay1": False,
            "tamper": True,
            "noise": False,
            "motion": False,
            "call": "ringing",
            "sip_1": "registered",
            "sip_2": "disabled",
        },
        "onetouch": {
            "switch_1": False,
            "switch_2": False,
            "switch_3": True,
            "input_1": False,
            "call": "idle",
            "sip_1": "registered",
        },
        "grandstream": {
            "input_1": True,
            "output_1": False,
            "motion": True,
            "recording": False,
            "motion_detection": True,
        },
        "ultrastream": {"recording": True, "streaming": True, "video_signal": False},
    }
    if state is GXV3504_STATE:
        assert readings == {
            "motion_channel_0": False,
            "recording_channel_0": True,
            "motion_channel_1": True,
            "motion_detection": False,
        }
    else:
        assert readings == expected[driver]


def test_streaming_is_on_when_any_server_streams() -> None:
    topic, payload = config_of("ultrastream", ULTRASTREAM_STATE)
    streaming = hass.validate(topic, payload)[f"bridge_{DEVICE}_streaming"]
    for servers, on in (({"1": False, "2": False}, False), ({"1": True, "2": False}, True)):
        retained = json.dumps({**ULTRASTREAM_STATE, "streaming": servers}).encode()
        assert hass.reading(streaming, TOPICS.state(DEVICE), retained) is on


def event(type_: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id(DEVICE, 1, 7),
            "source": f"bridge/{DEVICE}",
            "type": type_,
            "time": "2026-11-30T10:15:02Z",
            "device": DEVICE,
            "data": data,
        }
    ).encode()


def test_access_events_carry_method_and_user_never_the_code() -> None:
    topic, payload = config_of("onetouch", ONETOUCH_STATE)
    components = hass.validate(topic, payload)
    denied = components[f"bridge_{DEVICE}_access_denied"]
    raw = {"Type": "Password", "Code": "***", "Name": "Bob"}
    message = event(
        "access.denied", {"method": "code", "user": "Bob", "reason": "invalid", "raw": raw}
    )
    assert hass.reading(denied, TOPICS.event(DEVICE, "access.denied"), message) == (
        "access.denied",
        {"method": "code", "user": "Bob", "reason": "invalid"},
    )
    granted = components[f"bridge_{DEVICE}_access_granted"]
    two_n = event("access.granted", {"user": 'O\'Brien "Al"', "uuid": "u-1", "raw": {}})
    assert hass.reading(granted, TOPICS.event(DEVICE, "access.granted"), two_n) == (
        "access.granted",
        {"method": None, "user": 'O\'Brien "Al"'},
    )


def test_the_door_contact_follows_door_events_and_ignores_the_others() -> None:
    topic, payload = config_of("2n", TWO_N_STATE)
    door = hass.validate(topic, payload)[f"bridge_{DEVICE}_door"]
    assert door["state_topic"] == f"bridge/{DEVICE}/event/+"
    read = {
        type_: hass.reading(door, TOPICS.event(DEVICE, type_), event(type_, {"door": 1}))
        for type_ in ("door.opened", "door.closed", "doorbell.pressed")
    }
    assert read == {"door.opened": True, "door.closed": False, "doorbell.pressed": None}


def test_the_doorbell_names_its_button() -> None:
    topic, payload = config_of("generic", GENERIC_STATE)
    bell = hass.validate(topic, payload)[f"bridge_{DEVICE}_doorbell"]
    ring = event("doorbell.pressed", {"button": 1, "raw": {"kind": "button"}})
    assert hass.reading(bell, TOPICS.event(DEVICE, "doorbell.pressed"), ring) == (
        "doorbell.pressed",
        {"button": 1},
    )


def test_connectivity_reads_the_device_availability() -> None:
    topic, payload = config_of("generic", GENERIC_STATE)
    connectivity = hass.validate(topic, payload)[f"bridge_{DEVICE}_connectivity"]
    where = TOPICS.availability(DEVICE)
    assert hass.reading(connectivity, where, b"online") is True
    assert hass.reading(connectivity, where, b"offline") is False


# -- ids, shape, removal -------------------------------------------------------------------------


def test_ids_depend_on_keys_not_on_names_or_state_values() -> None:
    def ids(name: str, state: dict[str, Any]) -> dict[str, str]:
        commands, events = facts("2n")
        message = device_discovery(
            TOPICS,
            prefix="homeassistant",
            device=DEVICE,
            name=name,
            info=DeviceInfo(vendor="2N", commands=commands),
            state=state,
            events=events,
            version="1",
        )
        components = json.loads(message.payload)["components"]
        return {c["unique_id"]: c["default_entity_id"] for c in components.values()}

    flipped = {**TWO_N_STATE, "tamper": False, "call": {"state": "idle"}}
    assert ids("Front door", TWO_N_STATE) == ids("Main entrance", flipped)


@pytest.mark.parametrize(
    ("state", "patch", "reshaped"),
    [
        ({}, {"motion": False}, True),
        ({"motion": False}, {"motion": True}, False),
        ({"switches": {"1": {"active": False}}}, {"switches": {"1": {"active": True}}}, False),
        ({"switches": {"1": {"active": False}}}, {"switches": {"2": {"active": False}}}, True),
        ({"switches": {"1": {"active": False}}}, {"switches": {"1": {"locked": True}}}, True),
        ({"motion": False}, {"tamper": True}, True),
        ({"streaming": False}, {"streaming": {"1": False}}, True),
        ({"streaming": {"1": False}}, {"streaming": False}, True),
        ({"call": {"state": "idle", "session": None}}, {"call": {"session": 4}}, False),
        ({"a": {"b": {"c": {"d": 1}}}}, {"a": {"b": {"c": {"e": 1}}}}, False),  # 4th level
    ],
)
def test_only_new_keys_reshape_the_state(
    state: dict[str, Any], patch: dict[str, Any], reshaped: bool
) -> None:
    assert reshapes(state, patch) is reshaped


def test_stale_topics_are_those_no_device_has_any_more() -> None:
    published = [discovery_topic("homeassistant", d) for d in ("a", "b")] + [
        "old/device/bridge_a/config"
    ]
    keep = [discovery_topic("homeassistant", "a")]
    assert stale_topics(published, keep) == [
        "homeassistant/device/bridge_b/config",
        "old/device/bridge_a/config",
    ]
    message = cleared("homeassistant/device/bridge_b/config")
    assert (message.payload, message.retain, message.qos) == (b"", True, 1)


def test_the_ledger_survives_a_restart_and_a_corrupt_file(tmp_path: Path) -> None:
    path = ledger_path(tmp_path)
    assert ledger_path(tmp_path, 2).name == "homeassistant-2.json"
    ledger = Ledger(path)
    assert ledger.topics == set()
    ledger.add("homeassistant/device/bridge_a/config")
    ledger.add("homeassistant/device/bridge_b/config")
    ledger.drop(["homeassistant/device/bridge_a/config"])
    assert Ledger(path).topics == {"homeassistant/device/bridge_b/config"}
    path.write_text("{not json")
    assert Ledger(path).topics == set()


# -- the validator catches what Home Assistant would refuse --------------------------------------


def good() -> dict[str, Any]:
    _, payload = config_of("generic", GENERIC_STATE)
    config: dict[str, Any] = json.loads(payload)
    return config


BUTTON = f"bridge_{DEVICE}_refresh"
SWITCH = f"bridge_{DEVICE}_switch_1"


def broken(change: Any) -> dict[str, Any]:
    config = good()
    change(config)
    return config


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (broken(lambda c: c.pop("device")), "'device' is required"),
        (broken(lambda c: c.pop("origin")), "'origin' is required"),
        (broken(lambda c: c.pop("components")), "one of 'components' or 'child_devices'"),
        (broken(lambda c: c["device"].update(model=None)), "device.model: a string"),
        (broken(lambda c: c["device"].pop("identifiers")), "needs 'identifiers'"),
        (broken(lambda c: c.update(state_class="x")), "unknown root key 'state_class'"),
        (broken(lambda c: c["components"][BUTTON].pop("unique_id")), "'unique_id' is required"),
        (
            broken(lambda c: c["components"][BUTTON].update(payload_pres="x")),
            "unknown key 'payload_pres'",
        ),
        (
            broken(lambda c: c["components"][BUTTON].update(device_class="reload")),
            "device_class 'reload'",
        ),
        (
            broken(lambda c: c["components"][BUTTON].update(command_topic="b/+/command")),
            "wildcards",
        ),
        (broken(lambda c: c["components"][BUTTON].update(platform="light")), "platform 'light'"),
        (
            broken(lambda c: c["components"][BUTTON].update(entity_category="system")),
            "entity_category",
        ),
        (
            broken(lambda c: c["components"][SWITCH].update(value_template="{{ value_json.x ")),
            "value_template",
        ),
        (broken(lambda c: c["components"][SWITCH].update(retain="no")), "retain: a boolean"),
        (
            broken(lambda c: c["components"][BUTTON].update(payload_press=1)),
            "payload_press: a string",
        ),
        (
            broken(lambda c: c["components"][SWITCH].update(default_entity_id="light.x")),
            "default_entity_id",
        ),
        (
            broken(lambda c: c["components"][SWITCH].pop("command_topic")),
            "'command_topic' is required",
        ),
        (
            broken(lambda c: c["components"][f"bridge_{DEVICE}_doorbell"].pop("event_types")),
            "'event_types' is required",
        ),
        (
            broken(
                lambda c: c["components"][f"bridge_{DEVICE}_motion"].update(
                    entity_category="config"
                )
            ),
            "entity_category 'config'",
        ),
        (broken(lambda c: c.update(availability_mode="every")), "availability_mode"),
        (
            broken(lambda c: c["availability"].append({"topic": "a/#/b"})),
            "'#' must be the last level",
        ),
    ],
)
def test_the_validator_catches_what_home_assistant_refuses(
    config: dict[str, Any], problem: str
) -> None:
    with pytest.raises(hass.InvalidError) as caught:
        hass.validate("homeassistant/device/bridge_x/config", json.dumps(config).encode())
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_the_validator_expands_abbreviations_like_home_assistant() -> None:
    config = good()
    short: dict[str, Any] = {
        "dev": {"ids": config["device"]["identifiers"], "name": "Front door", "mf": "Test"},
        "o": {"name": "bridge", "sw": "1.2.3"},
        "avty": [{"t": entry["topic"]} for entry in config["availability"]],
        "avty_mode": "all",
        "cmps": {
            BUTTON: {
                "p": "button",
                "name": "Refresh",
                "uniq_id": BUTTON,
                "cmd_t": "bridge/x/command",
                "pl_prs": "{}",
            }
        },
    }
    components = hass.validate("homeassistant/device/bridge_x/config", json.dumps(short).encode())
    assert components[BUTTON]["payload_press"] == "{}"
    assert components[BUTTON]["availability"] == [
        {"topic": e["topic"]} for e in config["availability"]
    ]


def test_the_validator_refuses_a_key_given_twice_and_a_bad_topic() -> None:
    with pytest.raises(hass.InvalidError, match="duplicate keys"):
        hass.validate("homeassistant/device/bridge_x/config", b'{"device": {}, "device": {}}')
    with pytest.raises(hass.InvalidError, match="not <prefix>/device"):
        hass.validate("homeassistant/device/bridge x/config", json.dumps(good()).encode())


def test_reading_refuses_what_an_entity_cannot_show() -> None:
    config = good()
    components = hass.validate("homeassistant/device/bridge_x/config", json.dumps(config).encode())
    bell = components[f"bridge_{DEVICE}_doorbell"]
    with pytest.raises(hass.InvalidError, match="not in"):
        hass.reading(bell, "t", event("doorbell.released", {}))
    switch = components[SWITCH]
    with pytest.raises(UndefinedError, match="no attribute '1'"):  # StrictUndefined
        hass.reading(switch, TOPICS.state(DEVICE), b'{"switches": {}}')
    with pytest.raises(hass.InvalidError, match="neither"):
        hass.reading({**switch, "value_template": "{{ value_json.x }}"}, "t", b'{"x": "on"}')


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_every_driver_declares_event_types_of_the_vocabulary(driver: str) -> None:
    """A driver's ``events`` (what discovery offers) are written out beside the vocabulary: a
    misspelt one would offer an entity no event ever feeds."""
    events = DRIVERS[driver].events  # type: ignore[attr-defined]
    assert events
    assert events <= EVENT_TYPES
