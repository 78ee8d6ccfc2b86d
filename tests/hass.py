"""Home Assistant's MQTT discovery rules, checked offline: no Home Assistant runs here.

The rules are read from Home Assistant Core 2026.11.0 (the ``homeassistant`` wheel on PyPI, the
newest release when they were written), ``homeassistant/components/mqtt/``:

- ``abbreviations.py``: the abbreviations (only those of the keys below are known here);
- ``discovery.py``: how a device-based payload (``<prefix>/device/<object_id>/config``) is split
  into components: abbreviations expanded at the root, in ``origin``, ``device``, every
  ``availability`` entry and every component; the shared options (``SHARED_OPTIONS``) copied
  into each component that does not set them;
- ``schemas.py``: ``DEVICE_DISCOVERY_SCHEMA`` (the root: ``device`` and ``origin`` required,
  ``components`` or ``child_devices`` required, no other keys), the device, origin and
  availability schemas, ``check_unique_id`` (every entity component has a ``unique_id``);
- ``config.py`` and the platform modules ``binary_sensor.py``, ``button.py``, ``camera.py``,
  ``event.py``, ``image.py``, ``lock.py``, ``sensor.py``, ``switch.py``: each platform's keys,
  the required ones, the value types; device classes from
  ``homeassistant/components/<platform>/const.py``;
- ``helpers/template``: a value template is rendered with ``value`` (the payload as text) and
  ``value_json`` (the payload parsed, when it is JSON) in a sandboxed Jinja environment, and its
  output stripped; what each platform accepts as output is in its module (``binary_sensor``:
  ``payload_on``/``payload_off``, an empty output ignored; ``switch``: ``state_on``/``state_off``;
  ``event``: a JSON object whose ``event_type`` is one of ``event_types``; ``sensor``: at most
  255 characters).

Stricter than Home Assistant where it fails quietly: a key a platform does not know is an error
here (HA drops it without a word), and templates render with ``StrictUndefined`` (HA renders an
undefined value as an empty string and logs a warning). What cannot be checked without Home
Assistant is listed in docs/home-assistant.md.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from paho.mqtt.client import topic_matches_sub

HA_VERSION = "2026.11.0"

ABBREVIATIONS = {  # abbreviations.py ABBREVIATIONS, for the keys known here
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "cdevs": "child_devices",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cmps": "components",
    "cod_form": "code_format",
    "cont_type": "content_type",
    "def_ent_id": "default_entity_id",
    "dev": "device",
    "dev_cla": "device_class",
    "e": "encoding",
    "en": "enabled_by_default",
    "ent_cat": "entity_category",
    "ent_pic": "entity_picture",
    "evt_typ": "event_types",
    "exp_aft": "expire_after",
    "frc_upd": "force_update",
    "grp": "group",
    "ic": "icon",
    "img_e": "image_encoding",
    "img_t": "image_topic",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "lrst_val_tpl": "last_reset_value_template",
    "msg_exp_int": "message_expiry_interval",
    "o": "origin",
    "off_dly": "off_delay",
    "ops": "options",
    "opt": "optimistic",
    "p": "platform",
    "pl_avail": "payload_available",
    "pl_lock": "payload_lock",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "pl_open": "payload_open",
    "pl_prs": "payload_press",
    "pl_rst": "payload_reset",
    "pl_unlk": "payload_unlock",
    "ret": "retain",
    "stat_cla": "state_class",
    "stat_jam": "state_jammed",
    "stat_locked": "state_locked",
    "stat_locking": "state_locking",
    "stat_off": "state_off",
    "stat_on": "state_on",
    "stat_open": "state_open",
    "stat_opening": "state_opening",
    "stat_t": "state_topic",
    "stat_unlocked": "state_unlocked",
    "stat_unlocking": "state_unlocking",
    "sug_dsp_prc": "suggested_display_precision",
    "t": "topic",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "url_t": "url_topic",
    "url_tpl": "url_template",
    "val_tpl": "value_template",
    "vis": "visible_by_default",
}
DEVICE_ABBREVIATIONS = {
    "cns": "connections",
    "cu": "configuration_url",
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "mdl_id": "model_id",
    "hw": "hw_version",
    "sw": "sw_version",
    "sa": "suggested_area",
    "sn": "serial_number",
}
ORIGIN_ABBREVIATIONS = {"sw": "sw_version", "url": "support_url"}

SHARED_OPTIONS = (  # schemas.py: root options a component inherits unless it sets them
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "command_topic",
    "encoding",
    "message_expiry_interval",
    "payload_available",
    "payload_not_available",
    "state_topic",
    "qos",
)
AVAILABILITY = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
}
ROOT = AVAILABILITY | {
    "device",
    "components",
    "child_devices",
    "origin",
    "state_topic",
    "command_topic",
    "message_expiry_interval",
    "qos",
    "encoding",
}
DEVICE = {
    "identifiers",
    "connections",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "hw_version",
    "serial_number",
    "sw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
}
ORIGIN = {"name", "sw_version", "support_url"}
COMMON = AVAILABILITY | {  # MQTT_ENTITY_COMMON_SCHEMA and config.SCHEMA_BASE
    "device",
    "entity_picture",
    "origin",
    "enabled_by_default",
    "entity_category",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "default_entity_id",
    "message_expiry_interval",
    "unique_id",
    "visible_by_default",
    "qos",
    "encoding",
    "group",
    "name",
}
READ = {"state_topic", "value_template"}  # MQTT_RO_SCHEMA
WRITE = {"command_topic", "optimistic", "retain", "state_topic"}  # MQTT_RW_SCHEMA
SENSOR_CLASSES = (  # sensor/const.py SensorDeviceClass, space-separated
    "date enum timestamp uptime absolute_humidity apparent_power aqi area "
    "atmospheric_pressure battery blood_glucose_concentration carbon_monoxide carbon_dioxide "
    "conductivity current data_rate data_size distance duration energy energy_distance "
    "energy_storage frequency gas humidity illuminance irradiance moisture monetary "
    "nitrogen_dioxide nitrogen_monoxide nitrous_oxide ozone ph pm1 pm10 pm25 pm4 "
    "power_factor power precipitation precipitation_intensity pressure radon reactive_energy "
    "reactive_power signal_strength sound_pressure speed sulphur_dioxide temperature "
    "temperature_delta volatile_organic_compounds volatile_organic_compounds_parts voltage "
    "volume volume_storage volume_flow_rate water weight wind_direction wind_speed"
)


@dataclass(frozen=True)
class Platform:
    keys: frozenset[str]  # everything it knows besides COMMON
    required: frozenset[str]
    device_classes: frozenset[str] = frozenset()  # empty: no device_class key
    config_category: bool = True  # whether entity_category "config" is allowed


def _platform(
    keys: set[str], required: set[str], classes: str = "", *, config: bool = True
) -> Platform:
    return Platform(frozenset(keys), frozenset(required), frozenset(classes.split()), config)


PLATFORMS = {
    "binary_sensor": _platform(
        READ
        | {
            "device_class",
            "expire_after",
            "force_update",
            "off_delay",
            "payload_off",
            "payload_on",
        },
        {"state_topic"},
        "battery battery_charging carbon_monoxide cold connectivity door garage_door gas "
        "glass_break heat light lock moisture motion moving occupancy opening plug power presence "
        "problem running safety smoke sound tamper update vibration window",
        config=False,
    ),
    "sensor": _platform(
        READ
        | {
            "device_class",
            "expire_after",
            "force_update",
            "last_reset_value_template",
            "options",
            "suggested_display_precision",
            "state_class",
            "unit_of_measurement",
        },
        {"state_topic"},
        SENSOR_CLASSES,
        config=False,
    ),
    "switch": _platform(
        WRITE
        | {
            "command_template",
            "payload_off",
            "payload_on",
            "state_off",
            "state_on",
            "value_template",
            "device_class",
        },
        {"command_topic"},
        "outlet switch",
    ),
    "lock": _platform(
        WRITE
        | {
            "code_format",
            "command_template",
            "payload_lock",
            "payload_unlock",
            "payload_open",
            "payload_reset",
            "state_jammed",
            "state_locked",
            "state_locking",
            "state_open",
            "state_opening",
            "state_unlocked",
            "state_unlocking",
            "value_template",
        },
        {"command_topic"},
    ),
    "button": _platform(
        {"command_template", "command_topic", "device_class", "payload_press", "retain"},
        {"command_topic"},
        "identify restart update",
    ),
    "event": _platform(
        READ | {"device_class", "event_types"},
        {"state_topic", "event_types"},
        "doorbell button motion",
    ),
    "camera": _platform({"topic", "image_encoding"}, {"topic"}),
    "image": _platform(
        {"content_type", "url_topic", "image_topic", "image_encoding", "url_template"}, set()
    ),
}
ENTITY_CATEGORIES = {"config", "diagnostic"}
SUBSCRIBE_TOPICS = ("state_topic", "topic", "image_topic", "url_topic", "json_attributes_topic")
TEMPLATES = (
    "value_template",
    "command_template",
    "json_attributes_template",
    "availability_template",
    "url_template",
    "last_reset_value_template",
)
BOOLEANS = ("optimistic", "retain", "force_update", "enabled_by_default", "visible_by_default")
COUNTS = ("expire_after", "off_delay", "suggested_display_precision", "message_expiry_interval")
STRINGS = (
    "unique_id",
    "default_entity_id",
    "icon",
    "entity_picture",
    "encoding",
    "content_type",
    "unit_of_measurement",
    "code_format",
)  # and every payload_* and state_* but state_topic and state_class
SLUG = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
OBJECT_ID = re.compile(r"[a-zA-Z0-9_-]+")
DISCOVERY_TOPIC = re.compile(r"(?P<prefix>.+)/device/(?P<object_id>[^/]+)/config")
SENSOR_STATE_MAX = 255
MAX_TOPIC = 65535  # bytes, MQTT's limit
ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined)


class InvalidError(AssertionError):
    """A discovery config Home Assistant would refuse or misread; ``problems`` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# -- parsing -------------------------------------------------------------------------------------


def loads(payload: bytes) -> dict[str, Any]:
    """The JSON object of a payload; a key twice in one object is an error (JSON parsers keep
    the last one silently, so one entity would vanish)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise InvalidError([f"duplicate keys {twice}"])
        return dict(items)

    value = json.loads(payload, object_pairs_hook=pairs)
    if not isinstance(value, dict):
        raise InvalidError(["not a JSON object"])
    return dict(value)


def _expand(value: Any, table: dict[str, str]) -> Any:
    if not isinstance(value, dict):
        return value
    return {table.get(key, key): item for key, item in value.items()}


def expand(config: dict[str, Any]) -> dict[str, Any]:
    """Abbreviations replaced as discovery.py does for a device-based payload."""
    root: dict[str, Any] = _expand(config, ABBREVIATIONS)
    root["availability"] = _availability(root)
    if "origin" in root:
        root["origin"] = _expand(root["origin"], ORIGIN_ABBREVIATIONS)
    if "device" in root:
        root["device"] = _expand(root["device"], DEVICE_ABBREVIATIONS)
    if isinstance(root.get("components"), dict):
        components = {}
        for key, component in root["components"].items():
            expanded = _expand(component, ABBREVIATIONS)
            if isinstance(expanded, dict) and "availability" in expanded:
                expanded["availability"] = _availability(expanded)
            components[key] = expanded
        root["components"] = components
    if root["availability"] is None:
        del root["availability"]
    return root


def _availability(config: dict[str, Any]) -> Any:
    value = config.get("availability")
    if isinstance(value, list):
        return [_expand(entry, ABBREVIATIONS) for entry in value]
    return value


# -- the rules -----------------------------------------------------------------------------------


def validate(topic: str, payload: bytes) -> dict[str, dict[str, Any]]:
    """Check one device-based discovery message; return its components as Home Assistant sees
    them (abbreviations expanded, shared options merged in, ``platform`` kept). Raises
    ``InvalidError`` with every problem found."""
    problems: list[str] = []
    if DISCOVERY_TOPIC.fullmatch(topic) is None or not OBJECT_ID.fullmatch(topic.split("/")[-2]):
        problems.append(f"{topic}: not <prefix>/device/<[a-zA-Z0-9_-]+>/config")
    config = expand(loads(payload))
    problems += _root(config)
    components: dict[str, dict[str, Any]] = {}
    for key, component in (config.get("components") or {}).items():
        if not isinstance(component, dict):
            problems.append(f"components.{key}: not an object")
            continue
        merged = dict(component)
        for option in SHARED_OPTIONS:
            if option in config and option not in merged:
                merged[option] = config[option]
        problems += [f"components.{key}: {p}" for p in _component(merged)]
        components[key] = merged
    if problems:
        raise InvalidError(problems)
    return components


def _root(config: dict[str, Any]) -> list[str]:
    problems = [f"unknown root key {key!r}" for key in sorted(set(config) - ROOT)]
    if "components" not in config and "child_devices" not in config:
        problems.append("one of 'components' or 'child_devices' is required")
    if not isinstance(config.get("components", {}), dict):
        problems.append("'components' is not an object")
    problems += _device(config.get("device"))
    problems += _origin(config.get("origin"))
    problems += _availability_rules(config)
    problems += _shared_types(config)
    return problems


def _device(device: Any) -> list[str]:
    if not isinstance(device, dict):
        return ["'device' is required and must be an object"]
    problems = [f"unknown device key {key!r}" for key in sorted(set(device) - DEVICE)]
    identifiers = device.get("identifiers")
    if isinstance(identifiers, str):
        identifiers = [identifiers]
    if not identifiers and not device.get("connections"):
        problems.append("device: needs 'identifiers' or 'connections'")
    if identifiers and not all(isinstance(i, str) for i in identifiers):
        problems.append("device.identifiers: strings only")
    problems += [
        f"device.{key}: a string, not {value!r}"
        for key, value in device.items()
        if key not in {"identifiers", "connections"} and not isinstance(value, str)
    ]
    if "name" not in device:
        problems.append("device: no 'name' (HA logs that every device needs one)")
    return problems


def _origin(origin: Any) -> list[str]:
    if not isinstance(origin, dict):
        return ["'origin' is required and must be an object"]
    problems = [f"unknown origin key {key!r}" for key in sorted(set(origin) - ORIGIN)]
    if not isinstance(origin.get("name"), str):
        problems.append("origin.name: a string is required")
    problems += [
        f"origin.{key}: a string, not {value!r}"
        for key, value in origin.items()
        if not isinstance(value, str)
    ]
    return problems


def _availability_rules(config: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if "availability" in config and "availability_topic" in config:
        problems.append("'availability' and 'availability_topic' are exclusive")
    mode = config.get("availability_mode", "latest")
    if mode not in {"all", "any", "latest"}:
        problems.append(f"availability_mode {mode!r}: all, any or latest")
    entries = config.get("availability", [])
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        return [*problems, "'availability' must be a list"]
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"availability[{index}]: not an object")
            continue
        known = {"topic", "payload_available", "payload_not_available", "value_template"}
        problems += [
            f"availability[{index}]: unknown key {k!r}" for k in sorted(set(entry) - known)
        ]
        problems += [f"availability[{index}].topic: {p}" for p in _subscribe(entry.get("topic"))]
        if "value_template" in entry:
            problems += _template(entry["value_template"], f"availability[{index}].value_template")
    if "availability_topic" in config:
        problems += [f"availability_topic: {p}" for p in _subscribe(config["availability_topic"])]
    return problems


def _shared_types(config: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if "qos" in config and config["qos"] not in (0, 1, 2):
        problems.append(f"qos {config['qos']!r}: 0, 1 or 2")
    if "state_topic" in config:
        problems += [f"state_topic: {p}" for p in _subscribe(config["state_topic"])]
    if "command_topic" in config:
        problems += [f"command_topic: {p}" for p in _publish(config["command_topic"])]
    return problems


def _component(component: dict[str, Any]) -> list[str]:  # noqa: C901, PLR0912 - one rule per branch
    platform = component.get("platform")
    rules = PLATFORMS.get(str(platform))
    if rules is None:
        return [f"platform {platform!r} is not one checked here ({', '.join(PLATFORMS)})"]
    options = {key: value for key, value in component.items() if key != "platform"}
    if options and not isinstance(options.get("unique_id"), str):
        return ["'unique_id' is required (schemas.check_unique_id)"]
    known = COMMON | rules.keys
    problems = [
        f"unknown key {key!r} (Home Assistant drops it)" for key in sorted(set(options) - known)
    ]
    problems += [f"{key!r} is required" for key in sorted(rules.required - set(options))]
    if platform == "image" and ("image_topic" in options) == ("url_topic" in options):
        problems.append("exactly one of 'image_topic' or 'url_topic'")
    if "name" in options and not isinstance(options["name"], str | None):
        problems.append("name: a string or null")
    device_class = options.get("device_class")
    if device_class is not None and device_class not in rules.device_classes:
        problems.append(f"device_class {options['device_class']!r} is not a {platform} class")
    category = options.get("entity_category")
    if category is not None and (
        category not in ENTITY_CATEGORIES or (category == "config" and not rules.config_category)
    ):
        problems.append(f"entity_category {category!r} not allowed for {platform}")
    for key in SUBSCRIBE_TOPICS:
        if key in options:
            problems += [f"{key}: {p}" for p in _subscribe(options[key])]
    if "command_topic" in options:
        problems += [f"command_topic: {p}" for p in _publish(options["command_topic"])]
    for key in TEMPLATES:
        if key in options:
            problems += _template(options[key], key)
    problems += [
        f"{k}: a boolean" for k in BOOLEANS if k in options and not isinstance(options[k], bool)
    ]
    problems += [f"{k}: an integer >= 0" for k in COUNTS if k in options and not _count(options[k])]
    problems += [
        f"{k}: a string" for k in options if _string(k) and not isinstance(options[k], str)
    ]
    if "event_types" in options:
        types = options["event_types"]
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            problems.append("event_types: a non-empty list of strings")
    if "default_entity_id" in options:
        domain, _, object_id = str(options["default_entity_id"]).partition(".")
        if domain != platform or not SLUG.fullmatch(object_id):
            problems.append(
                f"default_entity_id {options['default_entity_id']!r}: {platform}.<slug>"
            )
    on, off = _payloads(component, "payload_on", "payload_off")
    if platform in {"binary_sensor", "switch"} and on == off:
        problems.append("payload_on and payload_off are equal")
    return problems + _shared_types(options) + _availability_rules(options)


def _string(key: str) -> bool:
    payload = key.startswith(("payload_", "state_")) and key not in {"state_topic", "state_class"}
    return payload or key in STRINGS


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _topic(value: Any) -> list[str]:
    if not isinstance(value, str) or not value:
        return ["a non-empty string"]
    if any(c == "\0" or c <= "\x1f" or "\x7f" <= c <= "\x9f" for c in value):
        return ["control characters"]
    if len(value.encode()) > MAX_TOPIC:
        return ["longer than 65535 bytes"]
    return []


def _subscribe(value: Any) -> list[str]:
    problems = _topic(value)
    if problems:
        return problems
    levels = value.split("/")
    if any("+" in level and level != "+" for level in levels):
        return ["'+' must be a whole level"]
    if "#" in value and (levels[-1] != "#" or value.count("#") > 1):
        return ["'#' must be the last level"]
    return []


def _publish(value: Any) -> list[str]:
    problems = _topic(value)
    if not problems and ("+" in value or "#" in value):
        return ["wildcards cannot be published to"]
    return problems


def _template(value: Any, key: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{key}: a string"]
    try:
        ENV.parse(value)
    except TemplateError as exc:
        return [f"{key}: {exc}"]
    return []


def _payloads(component: dict[str, Any], on_key: str, off_key: str) -> tuple[str, str]:
    return str(component.get(on_key, "ON")), str(component.get(off_key, "OFF"))


# -- what a component reads, writes and renders --------------------------------------------------


def subscriptions(component: dict[str, Any]) -> list[str]:
    """The topics (filters) Home Assistant subscribes to for this component."""
    found = [component[key] for key in SUBSCRIBE_TOPICS if key in component]
    found += [entry["topic"] for entry in component.get("availability", [])]
    if "availability_topic" in component:
        found.append(component["availability_topic"])
    return found


def publications(component: dict[str, Any]) -> list[str]:
    """The topics Home Assistant publishes to for this component."""
    return [component["command_topic"]] if "command_topic" in component else []


def matches(topic_filter: str, topic: str) -> bool:
    return bool(topic_matches_sub(topic_filter, topic))


def render(template: str, payload: bytes) -> str:
    """A value template rendered as Home Assistant does (``value``, ``value_json``, stripped),
    but an undefined value raises instead of rendering empty."""
    value = payload.decode()
    variables: dict[str, Any] = {"value": value}
    with contextlib.suppress(ValueError):
        variables["value_json"] = json.loads(value)
    return ENV.from_string(template).render(**variables).strip()


def reading(component: dict[str, Any], topic: str, payload: bytes) -> Any:
    """What the entity makes of one message on one of its topics, as its platform would:
    ``True``/``False``/``None`` (ignored) for binary sensors and switches, the state text of a
    sensor, ``(event_type, attributes)`` of an event, ``"online"``/``"offline"`` for
    availability, the image for a camera. Raises ``InvalidError`` for a message it would refuse."""
    for entry in component.get("availability", []):
        if matches(entry["topic"], topic):
            expected = (
                entry.get("payload_available", "online"),
                entry.get("payload_not_available", "offline"),
            )
            text = (
                render(entry["value_template"], payload)
                if "value_template" in entry
                else payload.decode()
            )
            if text not in expected:
                raise InvalidError([f"availability {topic}: {text!r} is not one of {expected}"])
            return text
    platform = component["platform"]
    template = component.get("value_template")
    text = render(template, payload) if template else payload.decode(errors="replace")
    if platform == "binary_sensor":
        on, off = _payloads(component, "payload_on", "payload_off")
        return _boolean(text, on, off, topic, empty_ok=True)
    if platform == "switch":
        on, off = _payloads(component, "payload_on", "payload_off")
        on, off = component.get("state_on", on), component.get("state_off", off)
        return _boolean(text, on, off, topic, empty_ok=False)
    if platform == "sensor":
        if len(text) > SENSOR_STATE_MAX:
            raise InvalidError([f"{topic}: sensor state longer than {SENSOR_STATE_MAX}"])
        return text
    if platform == "event":
        return _event(component, text, topic)
    if platform == "camera":
        return payload
    raise InvalidError([f"{platform}: reading {topic} is not modelled here"])


def _boolean(text: str, on: str, off: str, topic: str, *, empty_ok: bool) -> bool | None:
    if text == on:
        return True
    if text == off:
        return False
    if text == "" and empty_ok:
        return None
    raise InvalidError([f"{topic}: rendered {text!r}, neither {on!r} nor {off!r}"])


def _event(component: dict[str, Any], text: str, topic: str) -> tuple[str, dict[str, Any]]:
    try:
        attributes = json.loads(text)
    except ValueError:
        raise InvalidError([f"{topic}: event payload {text!r} is not JSON"]) from None
    if not isinstance(attributes, dict) or "event_type" not in attributes:
        raise InvalidError([f"{topic}: event payload {text!r} has no event_type"])
    event_type = str(attributes.pop("event_type"))
    if event_type not in component["event_types"]:
        raise InvalidError(
            [f"{topic}: event_type {event_type!r} not in {component['event_types']}"]
        )
    return event_type, attributes
