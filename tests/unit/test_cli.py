from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from bridge import __version__


def bridge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
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
