"""`bridge demo` as a user runs it: its own mosquitto (or the user's broker), simulated devices of
every vendor, the bridge, and what flows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.demo import DOOR_RELEASE
from bridge.mosquitto import port_is_free
from tests.helpers import Consumer, Mosquitto, Seen, free_port, wait_until
from tests.integration.demo_process import Demo, demo

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
FIRST_EVENT = 30.0  # seconds: the bound for `make demo`, which also makes a venv first
DOOR_CYCLE = DOOR_RELEASE + 15.0  # seconds for the lock to close and the door after it


def lines_of(running: Demo) -> list[str]:
    return running.stdout.read_text(errors="replace").splitlines()


def is_event(line: str) -> bool:
    return "/event/" in line.partition(" ")[0]


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "demo", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def test_demo_shows_events_and_answers_commands() -> None:
    port = free_port()
    demo_run = run_demo("--broker-port", str(port), "--duration", "6", "--interval", "0.1")
    assert demo_run.returncode == 0, demo_run.stderr[-2000:]
    lines = demo_run.stdout.splitlines()
    assert lines[0] == (
        f"demo: broker mqtt://127.0.0.1:{port} (mosquitto started by the demo); "
        f"watch it with: mosquitto_sub -p {port} -t 'bridge/#' -v"
    )
    assert lines[1].startswith("demo: devices front-door (2N intercom), side-gate (Onetouch ")

    def seen(topic_part: str, text: str = "") -> bool:
        return any(topic_part in line.split()[0] and text in line for line in lines[3:] if line)

    assert seen("bridge/bridge/state", "online")
    assert seen("/availability", "online")
    assert seen("bridge/front-door/info", '"vendor":"2N"')  # the simulated 2N intercom
    assert seen("bridge/front-door/event/")
    assert seen("bridge/side-gate/info", '"vendor":"Onetouch"')  # the Onetouch door station
    assert seen("bridge/side-gate/event/")
    assert seen("bridge/yard-camera/info", '"vendor":"Grandstream"')  # the camera
    assert seen("bridge/yard-camera/event/")
    assert seen("bridge/stage-encoder/info", '"vendor":')  # the encoder
    assert seen("bridge/stage-encoder/event/")
    # Events show their data whole: who rang, which card, which user.
    assert seen("/event/doorbell.pressed", '{"button":"%1"}')
    assert seen("/event/card.read", '"uid":"')
    assert seen("/event/access.granted", '"user":"Alice"')
    assert not any(line.endswith("...") for line in lines)  # nothing cut short
    assert seen("/command/result", '"status":"ok"')
    assert seen("/command/result", '"code":"bad_request"')
    assert seen("/command/result", '"code":"denied"')
    assert lines[-1].split() == ["bridge/bridge/state", "offline"]
    assert "Traceback" not in demo_run.stderr
    assert "demo-secret" not in demo_run.stdout + demo_run.stderr
    assert '"2468"' not in demo_run.stdout + demo_run.stderr  # the PIN entered at the side gate
    assert port_is_free(port)  # its mosquitto stopped with it


async def test_the_first_event_comes_soon_and_sigterm_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    with demo("--broker-port", str(port), log_dir=tmp_path) as running:
        await wait_until(lambda: any(is_event(line) for line in lines_of(running)), FIRST_EVENT)
        assert not port_is_free(port)  # the demo's mosquitto
        running.process.terminate()  # what Ctrl-C does too
        assert running.process.wait(timeout=30) == 0, running.output()
    lines = lines_of(running)
    assert lines[0].startswith(f"demo: broker mqtt://127.0.0.1:{port} (mosquitto started")
    assert lines[-1].split() == ["bridge/bridge/state", "offline"]
    assert "Traceback" not in running.stderr.read_text()
    assert port_is_free(port)  # and the broker is gone


def door(seen: Seen) -> str | None:
    """``lock released``/``lock closed``/``door.opened``/``door.closed`` for the front door's
    switch and contact events, else None."""
    prefix = "bridge/front-door/event/"
    if not seen.topic.startswith(prefix):
        return None
    kind = seen.topic.removeprefix(prefix)
    if kind == "switch.changed":
        return "lock released" if seen.json()["data"]["active"] else "lock closed"
    return kind if kind.startswith("door.") else None


async def test_a_retained_command_is_refused_and_the_door_closes_again(tmp_path: Path) -> None:
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    topic = "bridge/front-door/command"
    # No activity of the demo's own: whatever the door does comes from the commands below.
    with demo("--broker-port", str(port), "--interval", "3600", log_dir=tmp_path) as running:
        await wait_until(lambda: running.printed("bridge/front-door/availability"))
        async with Consumer(url, ("bridge/#", "demo-test/reply")) as consumer:
            await consumer.wait_for(
                lambda seen: any(
                    s.topic == "bridge/front-door/availability" and s.payload == b"online"
                    for s in seen
                )
            )
            retained = {"command": "open_door", "args": {"door": 1}, "id": "retained-1"}
            await consumer.publish(topic, json.dumps(retained), retain=True)
            refused = await consumer.first(f"{topic}/result", id="retained-1")
            assert refused.json()["error"]["code"] == "retained"

            # As an app does it with MQTT 5: the result also comes to its response topic.
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = "demo-test/reply"
            props.CorrelationData = b"app-7"
            live = {"command": "open_door", "args": {"door": 1}, "id": "live-1"}
            await consumer.publish(topic, json.dumps(live), properties=props)
            reply = await consumer.first("demo-test/reply")
            assert reply.correlation == b"app-7"
            assert reply.json()["id"] == "live-1"
            assert reply.json()["status"] == "ok"
            await consumer.wait_for(
                lambda seen: "door.closed" in [door(s) for s in seen], DOOR_CYCLE
            )
            moves = [move for move in map(door, consumer.seen) if move is not None]
            # Once (the retained command opened nothing), and closed again, as a real door.
            assert moves == ["lock released", "door.opened", "lock closed", "door.closed"]
        await wait_until(lambda: running.printed('"code":"retained"'))  # the demo shows it too


async def test_on_the_users_broker_it_leaves_no_retained_topics(mosquitto: Mosquitto) -> None:
    demo_run = run_demo(
        *("--mqtt-url", f"{mosquitto.url}/", "--duration", "5", "--interval", "0.2"),
        env={"BRIDGE_HOMEASSISTANT__ENABLED": "true"},  # discovery too, as home-assistant.md does
    )
    assert demo_run.returncode == 0, demo_run.stderr[-2000:]
    lines = demo_run.stdout.splitlines()
    assert lines[0] == (
        f"demo: broker {mosquitto.url} (yours); "
        f"watch it with: mosquitto_sub -p {mosquitto.port} -t 'bridge/#' -v"
    )
    cleared = re.fullmatch(r"demo: cleared the (\d+) retained topics it left on (.+)", lines[-1])
    assert cleared is not None, lines[-3:]
    # bridge state and info; each device's availability, info, state and discovery config
    assert int(cleared[1]) >= 2 + 4 * 5
    assert cleared[2] == mosquitto.url

    # The next subscriber, e.g. the next run's: nothing stale. The marker comes after whatever
    # the broker had retained.
    async with Consumer(mosquitto.url, ("#", "demo-test/marker")) as consumer:
        await consumer.publish("demo-test/marker", b"end of retained")
        await consumer.first("demo-test/marker")
        assert [s.topic for s in consumer.seen if s.retain] == []


def test_a_reader_that_goes_away_stops_it_cleanly() -> None:
    """``bridge demo | head``: when nobody reads any more, the demo stops as after Ctrl-C."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo", "--broker-port", str(port), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(b"demo: broker ")
        process.stdout.close()  # what head does after its lines
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    errors = process.stderr.read().decode()
    process.stderr.close()
    assert "Traceback" not in errors
    assert "BrokenPipe" not in errors
    assert port_is_free(port)  # its mosquitto stopped with it
