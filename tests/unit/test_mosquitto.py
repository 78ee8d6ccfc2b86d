"""The demo's broker: finding mosquitto, choosing its port, starting and stopping it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bridge.errors import StartupError
from bridge.mosquitto import (
    MosquittoProcess,
    choose_port,
    config_text,
    find_mosquitto,
    port_is_free,
    require_mosquitto,
)
from tests.helpers import free_port, mosquitto_binary


def executable(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_find_mosquitto_on_the_path_then_in_sbin(tmp_path: Path) -> None:
    on_path = executable(tmp_path / "bin" / "mosquitto")
    in_sbin = executable(tmp_path / "sbin" / "mosquitto")
    not_executable = executable(tmp_path / "other" / "mosquitto", mode=0o644)
    empty = tmp_path / "empty"
    empty.mkdir()
    sbin = (str(not_executable), str(in_sbin))
    assert find_mosquitto(str(on_path.parent), sbin) == str(on_path)
    assert find_mosquitto(str(empty), sbin) == str(in_sbin)
    assert find_mosquitto(str(empty), (str(not_executable),)) is None
    assert find_mosquitto(str(empty), ()) is None


def test_no_mosquitto_is_one_line_saying_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as raised:
        require_mosquitto(str(tmp_path), ())
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("the demo's broker is mosquitto, which is not installed: ")
    assert "sudo apt-get install mosquitto" in message
    assert "--mqtt-url" in message


@pytest.mark.parametrize(
    ("forced", "default_is_free", "port"),
    [
        (None, True, 1883),  # mosquitto_sub -t 'bridge/#' works as it is
        (None, False, 0),  # 1883 is taken (the user's own broker): any free port
        (1884, True, 1884),
        (1884, False, 1884),
    ],
)
def test_the_port(forced: int | None, default_is_free: bool, port: int) -> None:
    assert choose_port(forced, default_is_free) == port


def test_port_is_free_sees_a_listener() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert not port_is_free(taken)
    assert port_is_free(free_port())


def test_the_config_is_a_loopback_listener_for_anyone() -> None:
    lines = config_text(1884).splitlines()
    assert lines[0] == "listener 1884 127.0.0.1"
    assert {"allow_anonymous true", "set_tcp_nodelay true", "persistence false"} <= set(lines)


def test_mosquitto_runs_for_the_with_block() -> None:
    with MosquittoProcess(mosquitto_binary()) as broker:
        assert broker.port != 0
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5):
            pass
        process = broker.process
        assert process is not None
    assert process.returncode is not None  # stopped and reaped
    assert port_is_free(broker.port)


def test_a_port_mosquitto_cannot_have_is_its_own_words() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: mosquitto's bind fails
        port = taken.getsockname()[1]
        with pytest.raises(StartupError) as raised, MosquittoProcess(mosquitto_binary(), port):
            pass
    assert str(raised.value) == (
        f"mosquitto could not listen on 127.0.0.1:{port}: Error: Address already in use"
    )


def test_a_binary_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "mosquitto"
    with (
        pytest.raises(StartupError, match=r"cannot run mosquitto \(.*\): No such file"),
        MosquittoProcess(str(missing)),
    ):
        pass
