"""``bridge discover``: the manual's datagram is recognised, and the command a user runs prints a
config that loads. The datagram is sent on loopback (no multicast needed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest
import yaml

from bridge.discover import Encoder, parse_announcement, snippet
from bridge.settings import build_settings
from tests.helpers import free_port

# The manual's example datagram (seed-ultrastream.md §1.8), verbatim.
MANUAL = {
    "version": "1.0",
    "flag": "ssip",
    "product": "Ultra Stream",
    "boxname": "[LH-SDI]-1.2.1",
    "serialnumber": "A302190719003",
    "wifiip": "192.168.48.1",
    "ethip": "192.168.1.217",
    "status": 65600,
}


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        (
            json.dumps(MANUAL).encode(),
            Encoder("A302190719003", "[LH-SDI]-1.2.1", "192.168.1.217", "Ultra Stream"),
        ),
        (
            json.dumps({**MANUAL, "ethip": ""}).encode(),
            Encoder("A302190719003", "[LH-SDI]-1.2.1", "192.168.48.1", "Ultra Stream"),
        ),
        (b'{"flag":"ssip"}', None),  # our own probe, looped back
        (json.dumps({**MANUAL, "flag": "other"}).encode(), None),
        (b"\xff\xfe not json", None),
        (b"[1, 2]", None),
    ],
)
def test_parse_announcement(datagram: bytes, expected: Encoder | None) -> None:
    assert parse_announcement(datagram) == expected


def test_the_snippet_is_a_valid_config() -> None:
    encoder = parse_announcement(json.dumps(MANUAL).encode())
    assert encoder is not None
    text = snippet([encoder])
    devices: list[dict[str, Any]] = yaml.safe_load(text)["devices"]
    assert devices[0]["id"] == "lh-sdi-1-2-1"
    assert devices[0]["url"] == "http://192.168.1.217"
    devices[0].pop("password_file")  # the file is for the user to create
    settings = build_settings({"devices": devices}, {})
    assert settings.devices[0].driver == "ultrastream"


def announce(port: int, stop: threading.Event) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while not stop.wait(0.05):  # an encoder that repeats its datagram, as a reply would
            sock.sendto(json.dumps(MANUAL).encode(), ("127.0.0.1", port))


def test_bridge_discover_prints_a_config_snippet() -> None:
    # docs/drivers.md: `bridge discover --seconds 3`
    port = free_port()
    stop = threading.Event()
    sender = threading.Thread(target=announce, args=(port, stop))
    sender.start()
    try:
        found = subprocess.run(
            [sys.executable, "-m", "bridge", "discover", "--seconds", "3", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop.set()
        sender.join()
    assert found.returncode == 0, found.stderr
    assert found.stdout.count("driver: ultrastream") == 1  # one encoder, however often it spoke
    assert "url: http://192.168.1.217" in found.stdout


def test_nothing_heard_says_so() -> None:
    quiet = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "discover",
            "--seconds",
            "0.5",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert quiet.returncode == 1
    assert "no Ultra Stream encoder answered within 0.5 s" in quiet.stderr
    assert "Traceback" not in quiet.stderr
