"""Property-based tests of what operators and MQTT clients send: commands and configuration.

Any command payload is a ``CommandRequest`` or a ``bad_request``; any request passes
``check_command`` or fails with a stable code; every error result serializes and validates
against the published schema. Durations parse to seconds or are refused, and the settings
loader turns any YAML-like document into ``Settings`` or a ``ConfigError`` whose problems are
single lines naming a key path and never containing a secret.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.commands import CATALOGUE, check_command, parse_command, request_id
from bridge.config import CommandPolicy, parse_duration
from bridge.errors import CommandError, ConfigError
from bridge.model import CommandRequest, CommandResult
from bridge.settings import Settings, build_settings
from tests.unit.test_properties import (
    COMMAND_RESULT_SCHEMA,
    HUGE,
    digit_strings,
    examples,
    json_ints,
    json_text,
    json_values,
    load_schema,
    mostly,
    outcome,
    secrets,
    validator,
)

COMMAND_SCHEMA = validator("command")
ARGS_VALIDATORS = {
    name: validator(name, schema)
    for name, schema in load_schema("command-args")["properties"].items()
}
NAMES = sorted(CATALOGUE)

# --- commands -------------------------------------------------------------------------------

# Text as a JSON payload can spell it: "\ud800" escapes decode to lone surrogates.
payload_text = st.text(max_size=12) | st.text(st.characters(categories=["Cs"]), min_size=1)
ARG_KEYS = ["door", "switch", "on", "action", "timeout", "port", "number", "width", "height"]
ARG_KEYS += ["time", "server", "speed", "enabled"]
ARG_WORDS = ["on", "off", "trigger", "hold", "left", "zoom_in", "1s", "500ms", "5m", "-1s"]
arg_values = st.one_of(
    st.integers(-5, 70),
    st.booleans(),
    st.sampled_from(ARG_WORDS),
    digit_strings,
    json_ints,
    st.floats(),
    json_values,
)
args = st.dictionaries(mostly(st.sampled_from(ARG_KEYS), payload_text), arg_values, max_size=4)
command_names = mostly(st.sampled_from(NAMES), payload_text | st.text(min_size=60, max_size=70))
request_dicts = st.fixed_dictionaries(
    {"command": command_names},
    optional={
        "args": mostly(args, json_values),
        "id": st.one_of(st.none(), json_ints, payload_text, json_values),
        "reply": json_values,
    },
)


def encodings(value: object) -> st.SearchStrategy[bytes]:
    """``value`` as JSON in the encodings json.loads detects, ASCII-escaped or not."""
    return st.sampled_from(
        [
            json.dumps(value).encode(),
            json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            json.dumps(value).encode("utf-16"),
        ]
    )


payloads = st.one_of(
    st.binary(max_size=40),
    request_dicts.flatmap(encodings),
    json_values.flatmap(encodings),
    st.integers(1, 2000).map(lambda n: b"[" * n * 50),  # nesting deeper than json.loads recurses
    st.integers(4000, 5000).map(lambda n: b'{"command": "refresh", "id": %s}' % (b"9" * n)),
)
ERROR_CODES = {"unknown_command", "unsupported", "denied", "invalid_args"}


def check_result(result: CommandResult) -> None:
    COMMAND_RESULT_SCHEMA.validate(json.loads(result.to_json()))


@examples(300)
@given(payload=payloads)
def test_any_payload_is_a_request_or_a_bad_request(payload: bytes) -> None:
    id_ = request_id(payload)
    assert id_ is None or (isinstance(id_, str | int) and not isinstance(id_, bool))
    request = outcome(lambda: parse_command(payload), CommandError)
    if isinstance(request, CommandError):
        assert request.code == "bad_request"
        check_result(CommandResult.failed(request.code, request.message, id_=id_))
        return
    COMMAND_SCHEMA.validate(json.loads(request.model_dump_json()))
    assert request_id(payload) == request.id
    check_result(CommandResult(id=request.id, command=request.command, status="ok"))


names = st.lists(mostly(st.sampled_from(NAMES), json_text), max_size=5)
policies = st.builds(CommandPolicy, allow=st.none() | names, deny=names)
requests = st.builds(
    CommandRequest,
    command=mostly(st.sampled_from(NAMES), st.text(min_size=1, max_size=64)),
    # parse_command refuses lone surrogates, so no request reaching the checks carries one
    args=args.filter(lambda a: not any("\ud800" <= c <= "\udfff" for k in a for c in k)),
    id=st.none() | st.integers() | st.text(max_size=8),
)


@examples(300)
@given(request=requests, supported=st.frozensets(st.sampled_from(NAMES)), policy=policies)
def test_checks_pass_or_refuse_with_a_stable_code(
    request: CommandRequest, supported: frozenset[str], policy: CommandPolicy
) -> None:
    checked = outcome(
        lambda: check_command(request, supported=supported, policy=policy), CommandError
    )
    if isinstance(checked, CommandError):
        assert checked.code in ERROR_CODES
        assert (checked.code == "unknown_command") == (request.command not in CATALOGUE)
        result = CommandResult.failed(
            checked.code, checked.message, command=request.command, id_=request.id
        )
        check_result(result)
        return
    assert checked.name == request.command
    assert checked.name in supported
    assert checked.name not in policy.deny
    assert checked.id == request.id
    args_json = checked.args.model_dump(mode="json")
    ARGS_VALIDATORS[checked.name].validate(args_json)


# --- durations and the settings loader ------------------------------------------------------

UNITS = ["", "ms", "s", "m", "h", "d"]
durations = st.one_of(
    st.tuples(
        st.integers(0, 10**6) | digit_strings,
        st.sampled_from(["", ".5", ".25"]),
        st.sampled_from(["", " "]),
        st.sampled_from(UNITS),
    ).map(lambda parts: "".join(map(str, parts))),
    st.text(max_size=10),
)
# What yaml.safe_load produces beyond JSON: dates, timestamps, binary.
yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    json_ints,
    st.floats(),
    json_text,
    st.dates(),
    st.datetimes(),
    st.binary(max_size=6),
)
DEVICE = {"id": "front-door", "driver": "generic", "url": "http://192.0.2.10"}


@examples(150)
@given(value=durations)
def test_duration_text_is_seconds_or_refused(value: str) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert isinstance(seconds, float)
    assert seconds >= 0
    assert not math.isnan(seconds)


@examples(150)
@given(value=durations | yaml_scalars | st.sampled_from([HUGE, -HUGE, 10**308 * 10]) | json_values)
def test_duration_through_the_loader(value: object) -> None:
    settings = outcome(
        lambda: build_settings({"devices": [{**DEVICE, "timeout": value}]}, {}), ConfigError
    )
    if isinstance(settings, ConfigError):
        assert settings.problems
        assert all(p.startswith("devices[0].timeout: ") for p in settings.problems)
        return
    timeout = settings.devices[0].timeout
    assert isinstance(timeout, float)
    assert timeout >= 0


# Keys the loader knows at several levels, plus pydantic-settings' own init options (they start
# with "_"), so that random documents reach deep validation as well as unknown keys.
CONFIG_KEYS = [
    *("mqtt", "devices", "http", "log", "shard", "homeassistant", "state_dir", "url", "id"),
    *("driver", "password", "password_file", "username", "timeout", "tls", "listen", "commands"),
    *("allow", "deny", "fingerprint", "ca_file", "verify", "qos", "protocol", "base_topic"),
    *("index", "count", "level", "format", "pull_timeout", "doorbell_keys", "keepalive"),
    *("_env_prefix", "_secrets_dir", "_cli_parse_args", "_env_file", "values"),
]
CONFIG_WORDS = [
    *("mqtt://broker", "mqtts://u:p@broker", "http://192.0.2.1", "https://[::1", "generic", "2n"),
    *("2s", "500ms", "-1s", "${HOME}", "${UNSET}", "${UNSET:-5}", "127.0.0.1:99999", "a:b"),
    *("front-door", "bridge", "AB:CD", "json", "debug", "5", "3.1.1"),
]
config_keys = st.one_of(
    st.sampled_from(CONFIG_KEYS), json_text, st.integers(-3, 3), st.none(), st.booleans()
)
config_values = st.recursive(
    yaml_scalars | st.sampled_from(CONFIG_WORDS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(config_keys, inner, max_size=4),
    max_leaves=15,
)
device_dicts = (
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.sampled_from(["front-door", "gate", "Bad Id", "bridge"]) | json_text,
            "driver": st.sampled_from(["generic", "2n", "axis"]) | json_values,
            "url": st.sampled_from(CONFIG_WORDS) | json_text,
            "password_file": mostly(json_text, config_values),
            **dict.fromkeys(("timeout", "tls", "commands"), config_values),
        },
    )
    | config_values
)
documents = st.one_of(
    st.dictionaries(config_keys, config_values, max_size=5),
    st.fixed_dictionaries(
        {},
        optional={
            "mqtt": st.dictionaries(config_keys, config_values, max_size=4),
            "devices": st.lists(device_dicts, max_size=3),
            "http": st.fixed_dictionaries({"listen": st.sampled_from(CONFIG_WORDS) | json_text}),
            "shard": st.dictionaries(st.sampled_from(["index", "count"]), json_ints, max_size=2),
        },
    ),
)
environs = st.dictionaries(st.sampled_from(["HOME", "UNSET", "X"]), st.text(max_size=5), max_size=2)


def render_key(key: object) -> str:
    """How a problem line names a key: as written, or quoted when empty or holding a line break."""
    text = str(key)
    return text if text and text.isprintable() else repr(text)


def check_problems(problems: list[str], document: dict[Any, Any], *secrets: str) -> None:
    roots = {render_key(key) for key in document} | set(Settings.model_fields)
    assert problems
    for problem in problems:
        assert isinstance(problem, str)
        assert "\n" not in problem
        assert "\r" not in problem
        assert any(
            problem.startswith(root) and problem[len(root) : len(root) + 1] in {":", ".", "["}
            for root in roots
        ), f"{problem!r} names no key path"
        for secret in secrets:
            assert secret not in problem


@examples(300)
@given(document=documents, environ=environs)
def test_any_document_is_settings_or_config_error(
    document: dict[Any, Any], environ: dict[str, str]
) -> None:
    before = copy.deepcopy(document)
    settings = outcome(lambda: build_settings(document, environ), ConfigError)
    if isinstance(settings, ConfigError):
        check_problems(settings.problems, document)
    assert document == before, "the loader changed the document it was given"


@examples(150)
@given(document=documents, secret=secrets, where=st.sampled_from(["mqtt", "device", "url"]))
def test_problems_never_echo_a_password(document: dict[Any, Any], secret: str, where: str) -> None:
    """A password, wherever the document holds it (also inside a URL), is in no problem line."""
    document = dict(document)
    mqtt = document.get("mqtt")
    mqtt = mqtt if isinstance(mqtt, dict) else {}
    devices = document.get("devices")
    devices = devices if isinstance(devices, list) else []
    if where == "mqtt":
        document["mqtt"] = {**mqtt, "password": secret}
    elif where == "device":
        for password in (secret, [secret], {"value": secret}):
            devices = [*devices, {**DEVICE, "id": "x", "password": password, "timeout": "nope"}]
        document["devices"] = devices
    else:
        document["mqtt"] = {**mqtt, "url": f"mqtt://bridge:{secret}@broker"}
        for scheme in ("http", "ftp"):
            devices = [*devices, {**DEVICE, "id": "y", "url": f"{scheme}://admin:{secret}@door"}]
        document["devices"] = devices
    settings = outcome(lambda: build_settings(document, {}), ConfigError)
    if isinstance(settings, ConfigError):
        check_problems(settings.problems, document, secret)
