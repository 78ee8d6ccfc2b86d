from __future__ import annotations

import argparse
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge import __version__
from bridge.cli import count, main, mqtt_url, port, seconds
from bridge.demo import device_ids
from tests.helpers import free_port


def bridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env=None if env is None else {**os.environ, **env},
    )


def test_version() -> None:
    result = bridge("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"bridge {__version__}"


def test_run_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("mqtt:\n  url: mqtt://localhost\n  qos: 7\n")
    result = bridge("run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith("mqtt.qos:")


def test_a_busy_http_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "bridge.yaml"
        config.write_text(
            f"http: {{listen: '127.0.0.1:{port}'}}\nmqtt: {{url: 'mqtt://127.0.0.1:1'}}\n"
        )
        result = bridge("run", "--config", str(config))
    assert result.returncode == 1
    assert f"bridge: http.listen 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


# -- argument types: tables -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt://127.0.0.1", ("127.0.0.1", 1883)),  # no port: 1883, as MQTT clients have it
        ("mqtt://127.0.0.1/", ("127.0.0.1", 1883)),  # a trailing slash is no path
        ("mqtt://broker.lan:1884", ("broker.lan", 1884)),
        ("mqtt://broker.lan:1884/", ("broker.lan", 1884)),
        ("mqtt://[::1]:1884", ("::1", 1884)),
        (" mqtt://localhost:1883 ", ("localhost", 1883)),
    ],
)
def test_mqtt_url_is_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert mqtt_url(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "mqtts://broker.lan",
            (
                "expected mqtt://host[:port], got 'mqtts://broker.lan'; the demo "
                "speaks plain MQTT (no TLS, no websockets)"
            ),
        ),
        ("ws://broker.lan/mqtt", "the demo speaks plain MQTT"),
        ("broker.lan:1883", "expected mqtt://host[:port], got 'broker.lan:1883'"),
        ("127.0.0.1", "expected mqtt://host[:port], got '127.0.0.1'"),
        ("mqtt://broker.lan/bridge", "an MQTT broker has no path or query"),
        ("mqtt://broker.lan?x=1", "an MQTT broker has no path or query"),
        ("mqtt://broker.lan:0", "the port must be from 1 to 65535"),
        ("mqtt://broker.lan:99999", "the port must be from 1 to 65535"),
        ("mqtt://broker.lan:http", "the port must be from 1 to 65535"),
        ("mqtt://:1883", "the host is missing"),
        ("mqtt://bridge:s3cret@broker.lan", "the demo connects anonymously: no user or password"),
        ("s3cret@broker.lan", "the demo connects anonymously: no user or password"),
    ],
)
def test_a_wrong_mqtt_url_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        mqtt_url(text)
    assert message in str(raised.value)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (count, "1", 1),
        (count, "5", 5),
        (count, "100", 100),
        (count, "0", None),
        (count, "-3", None),
        (count, "101", None),
        (count, "2.5", None),
        (count, "five", None),
        (port, "1", 1),
        (port, "65535", 65535),
        (port, "0", None),
        (port, "65536", None),
        (port, "-1", None),
        (port, "http", None),
        (seconds(3600), "0.5", 0.5),
        (seconds(3600), "3600", 3600.0),
        (seconds(3600), "3601", None),
        (seconds(3600), "0", None),
        (seconds(3600), "-1", None),
        (seconds(3600), "nan", None),
        (seconds(3600), "soon", None),
        (seconds(math.inf), "1e6", 1e6),
        (seconds(math.inf), "inf", math.inf),
    ],
)
def test_numbers_are_in_range_or_refused(parse: Any, text: str, expected: float | None) -> None:
    if expected is None:
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {text!r}"):
            parse(text)
    else:
        assert parse(text) == expected


# -- every user error is one line and a non-zero exit ----------------------------------------


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's way out
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "status", "line"),
    [
        ((), 2, "bridge: the following arguments are required: COMMAND (see bridge --help)"),
        (("serve",), 2, "bridge: argument COMMAND: invalid choice: 'serve'"),
        (("run",), 2, "bridge run: the following arguments are required: --config/-c"),
        (("run", "-c", "{missing}"), 2, "{missing}: cannot read: No such file or directory"),
        (
            ("run", "-c", "{config}", "--log-format", "xml"),
            2,
            "argument --log-format: invalid choice",
        ),
        (("check-config",), 2, "bridge check-config: the following arguments are required"),
        (("check-config", "-c", "{tmp}"), 2, "{tmp}: cannot read: Is a directory"),
        (("check-config", "-c", "{latin1}"), 2, "{latin1}: not UTF-8 text (byte 5)"),
        (
            ("demo", "--devices", "0"),
            2,
            "bridge demo: argument --devices: expected a whole number from 1 to 100, got '0'",
        ),
        (("demo", "--devices", "many"), 2, "argument --devices: expected a whole number"),
        (("demo", "--interval", "0"), 2, "argument --interval: expected seconds above 0"),
        (
            ("demo", "--duration", "-5"),
            2,
            "argument --duration: expected seconds above 0, got '-5'",
        ),
        (("demo", "--mqtt-url", "mqtts://broker.lan"), 2, "argument --mqtt-url: expected mqtt://"),
        (("demo", "--mqtt-url", "mqtt://u:s3cret@broker.lan"), 2, "no user or password"),
        (
            ("demo", "--mqtt-url", "mqtt://127.0.0.1", "--broker-port", "1884"),
            2,
            "argument --broker-port: not allowed with argument --mqtt-url",
        ),
        (("demo", "--broker-port", "0"), 2, "argument --broker-port: expected a port from 1"),
        (("demo", "--log-level", "loud"), 2, "argument --log-level: invalid choice: 'loud'"),
        (("discover", "--port", "70000"), 2, "bridge discover: argument --port: expected a port"),
        (
            ("discover", "--seconds", "4000"),
            2,
            "argument --seconds: expected seconds above 0 and at most 3600",
        ),
        (("schema",), 2, "bridge schema: the following arguments are required: --out"),
        (
            ("schema", "--out", "{config}/schema"),
            1,
            "bridge schema: --out {config}/schema: cannot write: Not a directory",
        ),
    ],
)
def test_every_user_error_is_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: tuple[str, ...],
    status: int,
    line: str,
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("mqtt: {url: 'mqtt://127.0.0.1:1'}\n")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"# Geb\xe4ude\n")  # Latin-1, as an old editor saves it
    paths = {
        "missing": tmp_path / "absent.yaml",
        "config": config,
        "latin1": latin1,
        "tmp": tmp_path,
    }
    code, out, err = run_main(capsys, *(arg.format(**paths) for arg in argv))
    assert code == status
    assert out == ""
    assert err.count("\n") == 1, err
    assert line.format(**paths) in err
    assert "s3cret" not in err


def test_a_broker_that_is_down_is_one_line() -> None:
    port = free_port()  # nothing listens there
    result = bridge("demo", "--mqtt-url", f"mqtt://127.0.0.1:{port}/")
    assert result.returncode == 1
    assert result.stderr == (
        f"bridge demo: cannot connect to the broker at mqtt://127.0.0.1:{port}: "
        "[Errno 111] Connection refused\n"
    )
    assert result.stdout == ""


def test_a_busy_broker_port_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = bridge("demo", "--broker-port", str(port))
    assert result.returncode == 1
    assert result.stderr == f"bridge demo: --broker-port {port}: 127.0.0.1:{port} is in use\n"


def test_a_wrong_bridge_variable_is_named_by_the_demo_too() -> None:
    # The demo's bridge reads BRIDGE_* as `bridge run` does (the docs turn discovery on that way).
    port = free_port()
    result = bridge("demo", "--broker-port", str(port), env={"BRIDGE_MQTT__QOS": "7"})
    assert result.returncode == 2
    assert result.stderr == "bridge demo: BRIDGE_MQTT__QOS (mqtt.qos): must be at most 2\n"


# -- help ------------------------------------------------------------------------------------


def test_help_is_plain_text() -> None:
    result = bridge("--help")
    assert result.returncode == 0
    assert "`" not in result.stdout  # no reST markup from a docstring
    for command in ("run", "check-config", "demo", "discover", "schema"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "option", "words"),
    [
        ("run", "--config", "the YAML configuration file"),
        ("run", "--log-format", "console for people, json"),
        ("run", "--log-level", "the least severe level logged"),
        ("check-config", "--config", "the YAML configuration file"),
        ("demo", "--log-format", "console for people, json"),
        ("demo", "--log-level", "(default: warning)"),
        ("demo", "--mqtt-url", "port 1883 if not given"),
        ("demo", "--broker-port", "1883 when free"),
        ("schema", "--out", "directory to write them into"),
    ],
)
def test_every_option_says_what_it_does(
    capsys: pytest.CaptureFixture[str], command: str, option: str, words: str
) -> None:
    code, out, _ = run_main(capsys, command, "--help")
    assert code == 0
    options = " ".join(out.partition("options:")[2].split())  # as wrapped to any width
    assert option in options
    assert words in options.partition(option)[2].partition(" --")[0]


def test_demo_help_names_the_device_ids_the_demo_uses(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_main(capsys, "demo", "--help")
    text = " ".join(out.split())
    for device in device_ids(6):
        assert device in text


def test_schema_writes_only_where_it_is_told(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_main(capsys, "schema")
    assert code == 2
    assert list(tmp_path.iterdir()) == []  # no ./docs/schema in whatever directory it ran
    code, out, _ = run_main(capsys, "schema", "--out", "out")
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "event.schema.json" in written
    assert sorted(out.splitlines()) == [str(Path("out") / name) for name in written]


@pytest.mark.parametrize(
    ("config", "line"),
    [
        (
            "mqtt: {url: 'mqtts://127.0.0.1:1', tls: {ca_file: '{missing}'}}",
            "mqtt.tls.ca_file {missing}: cannot read: No such file or directory",
        ),
        (
            "mqtt: {url: 'mqtts://127.0.0.1:1', tls: {ca_file: '{text}'}}",
            "mqtt.tls.ca_file {text}: not a PEM CA bundle",
        ),
        (
            "devices: [{id: d, driver: generic, url: 'https://192.0.2.1', tls: {ca_file: '{missing}'}}]",
            "devices[0].tls.ca_file {missing}: cannot read: No such file or directory",
        ),
        (
            "devices: [{id: d, driver: generic, url: 'https://192.0.2.1', tls: {ca_file: '{text}'}}]",
            "devices[0].tls.ca_file {text}: not a PEM CA bundle",
        ),
    ],
)
def test_check_config_loads_the_tls_files_as_run_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: str, line: str
) -> None:
    paths = {"missing": tmp_path / "absent.pem", "text": tmp_path / "notes.txt"}
    paths["text"].write_text("not a certificate\n")
    path = tmp_path / "bridge.yaml"
    path.write_text(
        config.replace("{missing}", str(paths["missing"])).replace("{text}", str(paths["text"]))
    )
    code, out, err = run_main(capsys, "check-config", "-c", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(line.format(**paths))
    assert err.count("\n") == 1
