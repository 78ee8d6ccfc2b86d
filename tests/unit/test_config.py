from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.errors import ConfigError
from bridge.settings import build_settings, load_settings

CONFIG_DIR = Path(__file__).parents[2] / "config"
DEVICE = {"id": "front-door", "driver": "generic", "url": "http://192.0.2.10"}


def problems(data: dict[str, object], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings(data, environ or {})
    return caught.value.problems


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_example_is_valid(path: Path, tmp_path: Path) -> None:
    # The systemd example reads its secrets from the unit's credentials (LoadCredential=).
    for name in re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/([\w-]+)", path.read_text()):
        (tmp_path / name).write_text("0123456789abcdef0123456789abcdef\n")
    environ = {
        "CREDENTIALS_DIRECTORY": str(tmp_path),
        "MQTT_PASSWORD": "x",
        "FRONT_DOOR_PASSWORD": "y",
        "SIDE_GATE_PASSWORD": "z",
        "SIDE_GATE_PUSH_TOKEN": "0123456789abcdef0123456789abcdef",
        "YARD_CAMERA_PASSWORD": "w",
        "YARD_CAMERA_PUSH_TOKEN": "fedcba9876543210fedcba9876543210",
        "STAGE_ENCODER_PASSWORD": "v",
    }
    settings = load_settings(path, environ)
    assert settings.devices


def test_defaults() -> None:
    settings = build_settings({}, {})
    assert settings.mqtt.url == "mqtt://localhost:1883"
    assert settings.mqtt.base_topic == "bridge"
    assert settings.mqtt.qos == 1
    assert settings.http.port == 9880


def test_unknown_key_names_its_path() -> None:
    assert problems({"devices": [DEVICE, {**DEVICE, "id": "b", "colour": "red"}]}) == [
        "devices[1].colour: unknown key"
    ]
    assert problems({"mqtt": {"hostname": "x"}}) == ["mqtt.hostname: unknown key"]


def test_each_problem_gets_one_line() -> None:
    found = problems(
        {
            "mqtt": {"url": "http://broker", "qos": 3},
            "devices": [
                {"id": "Bad Id", "driver": "generic", "url": "http://x"},
                {"id": "b", "driver": "nope", "url": "http://x"},
                {"id": "c", "driver": "generic"},
            ],
        }
    )
    assert any(p.startswith("mqtt.qos:") for p in found)
    assert any(p.startswith("devices[0].id:") for p in found)
    assert any(p.startswith("devices[1]") and "unknown driver" in p for p in found)
    assert "devices[2].url: required" in found


def test_durations() -> None:
    settings = build_settings(
        {"devices": [{**DEVICE, "offline_after": 2, "timeout": "1m", "command_timeout": "500ms"}]},
        {},
    )
    device = settings.devices[0]
    assert (device.offline_after, device.timeout, device.command_timeout) == (2, 60.0, 0.5)
    assert problems({"devices": [{**DEVICE, "timeout": "soon"}]})[0].startswith(
        "devices[0].timeout: invalid duration"
    )


def test_a_huge_duration_is_a_problem_not_an_overflow() -> None:
    """Found by the property tests: YAML's ``timeout: 1000...0`` raised OverflowError."""
    assert problems({"devices": [{**DEVICE, "timeout": 10**400}]}) == [
        "devices[0].timeout: duration too large"
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({1: "x"}, ["1: unknown key"]),  # raised TypeError: keywords must be strings
        (
            {None: "x", "log": {"level": "loud"}},
            ["log.level: expected", "None: unknown key"],
        ),
        # pydantic-settings options: they changed how settings load, or raised TypeError
        ({"_env_file": False}, ["_env_file: unknown key"]),
        ({"_cli_parse_args": True}, ["_cli_parse_args: unknown key"]),
        ({"_secrets_dir": "/"}, ["_secrets_dir: unknown key"]),
        ({"": 1}, ["'': unknown key"]),
        ({"a\nb": 1, "mqtt": {"c\nd": 2}}, ["mqtt.'c\\nd': unknown key", "'a\\nb': unknown key"]),
    ],
)
def test_any_top_level_key_is_a_problem_line(
    data: dict[object, object], expected: list[str]
) -> None:
    """Found by the property tests: every problem is one line starting with its key path."""
    found = problems(data)  # type: ignore[arg-type]
    assert len(found) == len(expected)
    assert all(p.startswith(e) for p, e in zip(found, expected, strict=True)), found


def test_env_references_and_missing_variables() -> None:
    settings = build_settings(
        {"mqtt": {"password": "${MQTT_PASSWORD}", "username": "${USER_NAME:-bridge}"}},
        {"MQTT_PASSWORD": "s3cret"},
    )
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"
    assert settings.mqtt.username == "bridge"
    assert problems({"devices": [{**DEVICE, "password": "${NOPE}"}]}) == [
        "devices[0].password: environment variable NOPE is not set"
    ]


def test_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    settings = build_settings({"devices": [{**DEVICE, "password_file": str(secret)}]}, {})
    password = settings.devices[0].password
    assert password is not None
    assert password.get_secret_value() == "from-file"
    found = problems({"devices": [{**DEVICE, "password_file": str(tmp_path / "missing")}]})
    assert len(found) == 1
    assert found[0].startswith("devices[0].password_file: cannot read")
    # found by the property tests: a path that is no string raised TypeError; one with a line
    # break split its problem over two lines
    assert problems({"devices": [{**DEVICE, "password_file": 5}]}) == [
        "devices[0].password_file: expected the path of a file"
    ]
    found = problems({"devices": [{**DEVICE, "password_file": "a\nb"}]})
    assert found == ["devices[0].password_file: cannot read 'a\\nb': No such file or directory"]


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_MQTT__URL", "mqtts://broker.example:8883")
    monkeypatch.setenv("BRIDGE_SHARD__INDEX", "1")
    monkeypatch.setenv("BRIDGE_SHARD__COUNT", "3")
    settings = build_settings({"mqtt": {"url": "mqtt://localhost", "base_topic": "site"}})
    assert settings.mqtt.url == "mqtts://broker.example:8883"
    assert settings.mqtt.base_topic == "site"
    assert (settings.shard.index, settings.shard.count) == (1, 3)


def test_numbers_may_come_from_the_environment_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_MQTT__QOS", "0")
    assert build_settings({}).mqtt.qos == 0
    monkeypatch.delenv("BRIDGE_MQTT__QOS")
    settings = build_settings({"mqtt": {"qos": "${QOS}", "protocol": 5}}, {"QOS": "2"})
    assert (settings.mqtt.qos, settings.mqtt.protocol) == (2, "5")
    with pytest.raises(ConfigError, match=r"mqtt\.protocol"):
        build_settings({"mqtt": {"protocol": 4}}, {})


def test_a_malformed_environment_override_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_HTTP", "not-json")
    assert problems({}, None) == [
        "http: BRIDGE_HTTP must be a JSON object; set nested keys with BRIDGE_HTTP__<KEY> instead"
    ]


def test_rules_across_fields() -> None:
    assert problems({"devices": [DEVICE, DEVICE]}) == ["devices: duplicate id 'front-door'"]
    assert problems({"shard": {"index": 2, "count": 2}}) == ["shard: index 2 must be below count 2"]
    found = problems({"devices": [{**DEVICE, "url": "http://api:hunter2@192.0.2.1"}]})
    assert found == ["devices[0].url: put credentials in username/password, not in the URL"]
    assert "hunter2" not in "".join(found)
    assert problems({"devices": [{**DEVICE, "id": "bridge"}]})[0].startswith("devices[0].id:")
    pin = "ab" * 32
    assert problems({"devices": [{**DEVICE, "tls": {"fingerprint": pin, "ca_file": "/ca"}}]}) == [
        "devices[0].tls: give either ca_file or fingerprint, not both"
    ]
    unverified = {"fingerprint": pin, "verify": False}
    assert problems({"devices": [{**DEVICE, "tls": unverified}]}) == [
        "devices[0].tls.fingerprint: a pinned certificate is verified; remove verify: false"
    ]


@pytest.mark.parametrize(
    "given",
    [":".join(["AB"] * 32), "ab" * 32, "Ab" * 32, "AB" * 16 + ":ab" * 16, f" {'ab' * 32}\n"],
)
def test_a_fingerprint_pin_is_sha256_hex_colons_optional_any_case(given: str) -> None:
    settings = build_settings({"devices": [{**DEVICE, "tls": {"fingerprint": given}}]}, {})
    assert settings.devices[0].tls.fingerprint == "ab" * 32


@pytest.mark.parametrize(
    "given", ["ab" * 31, "ab" * 33, "zz" * 32, "ab " * 32, "sha256 Fingerprint=" + "ab" * 32, ""]
)
def test_a_malformed_fingerprint_names_its_key(given: str) -> None:
    expected = (
        "devices[0].tls.fingerprint: expected a SHA-256 fingerprint: 64 hex digits, "
        "colons optional (openssl x509 -noout -fingerprint -sha256)"
    )
    assert problems({"devices": [{**DEVICE, "tls": {"fingerprint": given}}]}) == [expected]


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("devices:\n  - {id: a, driver: generic, url: 'http://192.0.2.1'}\n")
    assert main(["check-config", "--config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt:\n  port: 1883\ndevices:\n  - {id: a, driver: generic}\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["mqtt.port: unknown key", "devices[0].url: required"]
    assert main(["check-config", "--config", str(tmp_path / "absent.yaml")]) == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("devices: [\n")
    assert main(["check-config", "--config", str(broken)]) == 2


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            {"mqtt": {"url": "mqtt://h:99999"}},
            "mqtt.url: the port must be a number from 1 to 65535",
        ),
        (
            {"devices": [{**DEVICE, "url": "http://h:abc"}]},
            "devices[0].url: the port must be a number from 1 to 65535",
        ),
        (
            {"devices": [{**DEVICE, "url": "http:/admin:Sekr1t@door"}]},
            "devices[0].url: put credentials in username/password, not in the URL",
        ),
    ],
)
def test_urls_are_checked_before_first_use_and_never_echoed(
    document: dict[str, object], problem: str
) -> None:
    assert problems(document) == [problem]


def test_checks_across_keys_name_the_key_they_are_about() -> None:
    assert problems({"http": {"listen": "9880"}}) == ["http.listen: expected host:port, got '9880'"]
    assert problems({"devices": [{"id": "a", "url": "http://x"}]}) == [
        "devices[0].driver: required (one of 2n, generic, grandstream, onetouch, ultrastream)"
    ]


def test_the_documented_push_token_command_makes_an_accepted_token() -> None:
    # docs/configuration.md, driver onetouch: "Make one with `openssl rand -hex 16`".
    import subprocess

    token = subprocess.run(
        ["openssl", "rand", "-hex", "16"], capture_output=True, text=True, check=True
    ).stdout.strip()
    device = {
        "id": "gate",
        "driver": "onetouch",
        "url": "http://192.0.2.20",
        "push_token": token,
    }
    settings = build_settings({"devices": [device]}, {})
    assert settings.devices[0].push_token.get_secret_value() == token  # type: ignore[union-attr]
    short = problems({"devices": [{**device, "push_token": "abc"}]})
    assert short == [
        "devices[0].push_token: expected 16 to 128 letters, digits, '-' or '_' (openssl rand -hex 16)"
    ]
    assert "abc" not in short[0]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"mqtt": {"base_topic": "home\tbridge"}},
            "mqtt.base_topic: must not contain control characters (a tab, a line break, NUL)",
        ),
        (
            {"mqtt": {"base_topic": "home\x00"}},
            "mqtt.base_topic: must not contain control characters (a tab, a line break, NUL)",
        ),
        (
            {"mqtt": {"base_topic": "home//bridge"}},
            "mqtt.base_topic: must not have empty levels ('//', or a leading or trailing '/')",
        ),
        (
            {"mqtt": {"base_topic": "/bridge"}},
            "mqtt.base_topic: must not have empty levels ('//', or a leading or trailing '/')",
        ),
        (
            {"mqtt": {"base_topic": "bridge/#"}},
            "mqtt.base_topic: must not contain the wildcards '+' or '#'",
        ),
        ({"mqtt": {"base_topic": ""}}, "mqtt.base_topic: must not be empty"),
        (
            {"homeassistant": {"prefix": "ha\n"}},
            "homeassistant.prefix: must not contain control characters (a tab, a line break, NUL)",
        ),
        (
            {"devices": [{**DEVICE, "driver": "2n", "commands": {"deny": ["open-door"]}}]},
            (
                "devices[0].commands.deny: unknown command 'open-door'; the 2n driver has answer, "
                "audio_test, dial, hangup, open_door, reboot, refresh, set_output, set_switch, snapshot"
            ),
        ),
        (
            {"devices": [{**DEVICE, "driver": "onetouch", "commands": {"allow": ["snapshot"]}}]},
            (
                "devices[0].commands.allow: unknown command 'snapshot'; the onetouch driver has "
                "dial, hangup, open_door, reboot, refresh"
            ),
        ),
    ],
)
def test_values_that_end_up_in_topics_or_policies_are_checked(
    data: dict[str, object], expected: str
) -> None:
    assert problems(data) == [expected]


def test_a_variable_without_braces_is_refused() -> None:
    assert problems({"mqtt": {"password": "$MQTT_PASSWORD"}}, {"MQTT_PASSWORD": "s3cret"}) == [
        (
            "mqtt.password: $MQTT_PASSWORD looks like an environment variable without braces: "
            "write ${MQTT_PASSWORD} (a value that really is $MQTT_PASSWORD can come from a *_file)"
        )
    ]
    # Not a variable's shape: a password that merely starts with a dollar is a password.
    settings = build_settings({"mqtt": {"password": "$ecret-1"}}, {})
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "$ecret-1"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mqtt": {"username": 5}}, "mqtt.username: expected text"),
        ({"mqtt": {"qos": "x"}}, "mqtt.qos: expected a whole number"),
        ({"mqtt": {"qos": 3}}, "mqtt.qos: must be at most 2"),
        ({"log": {"level": "loud"}}, "log.level: expected 'debug', 'info', 'warning' or 'error'"),
        ({"devices": {}}, "devices: expected a list"),
        ({"devices": [{**DEVICE, "id": 5}]}, "devices[0].id: expected text"),
        (
            {"devices": [{**DEVICE, "enabled": "maybe"}]},
            "devices[0].enabled: expected true or false",
        ),
    ],
)
def test_messages_are_in_the_projects_words(data: dict[str, object], expected: str) -> None:
    assert problems(data) == [expected]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BRIDGE_MQTT__PASWORD", "x", "BRIDGE_MQTT__PASWORD (mqtt.pasword): unknown key"),
        ("BRIDGE_MQTT__QOS", "7", "BRIDGE_MQTT__QOS (mqtt.qos): must be at most 2"),
        ("BRIDGE_SHARD__INDEX", "a", "BRIDGE_SHARD__INDEX (shard.index): expected a whole number"),
    ],
)
def test_errors_from_the_environment_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        build_settings({})
    assert caught.value.problems == [expected]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "mqtt: [\n",
            (
                "not valid YAML: while parsing a flow node: expected the node content, "
                "but found '<stream end>' (line 2, column 1)"
            ),
        ),
        ("a: b: c\n", "not valid YAML: mapping values are not allowed here (line 1, column 5)"),
        ("a: &a [*a]\n", "nested too deeply (an alias that refers to itself?)"),
        ("- 1\n", "the top level must be a mapping"),
    ],
)
def test_a_file_that_is_no_config_is_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert caught.value.problems == [f"{path}: {problem}"]
