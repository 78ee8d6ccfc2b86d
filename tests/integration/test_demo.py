"""`bridge demo` as a user runs it: embedded broker, simulated devices, what flows."""

from __future__ import annotations

import subprocess
import sys


def test_demo_shows_events_and_answers_commands() -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--duration", "4", "--interval", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    lines = demo.stdout.splitlines()
    assert lines[0].startswith("demo: broker mqtt://127.0.0.1:")

    def seen(topic_part: str, text: str = "") -> bool:
        return any(topic_part in line.split()[0] and text in line for line in lines[1:] if line)

    assert seen("bridge/bridge/state", "online")
    assert seen("/availability", "online")
    assert seen("/event/doorbell.pressed", '"specversion":"1.0"')
    assert seen("bridge/front-door/info", '"vendor":"2N"')  # the simulated 2N intercom
    assert seen("bridge/front-door/event/")
    assert seen("bridge/side-gate/info", '"vendor":"Onetouch"')  # the Onetouch door station
    assert seen("bridge/side-gate/event/")
    assert seen("bridge/yard-camera/info", '"vendor":"Grandstream"')  # the camera
    assert seen("bridge/yard-camera/event/")
    assert seen("bridge/stage-encoder/info", '"vendor":')  # the encoder
    assert seen("bridge/stage-encoder/event/")
    assert seen("/command/result", '"status":"ok"')
    assert seen("/command/result", '"code":"bad_request"')
    assert seen("/command/result", '"code":"denied"')
    assert lines[-1].split() == ["bridge/bridge/state", "offline"]
    assert "Traceback" not in demo.stderr
    assert "demo-secret" not in demo.stdout + demo.stderr
    assert '"2468"' not in demo.stdout + demo.stderr  # the PIN entered at the side gate
