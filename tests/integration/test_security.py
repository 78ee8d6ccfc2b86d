"""Secrets never reach logs, MQTT, metrics, info topics or error messages; destructive commands
are denied by default. The bridge runs as a user runs it (``bridge run``, debug logs)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import httpx
import pytest
import yaml

from bridge.simulators.two_n import TwoNSimulator
from tests.helpers import Consumer, Mosquitto, free_port, wait_until
from tests.integration.harness import bridge_config, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DEVICE_SECRET = "Canary-device-7f3a9"
WRONG_SECRET = "Canary-wrong-51c2e"
MQTT_SECRET = "Canary-mqtt-0b8d4"
SECRETS = (DEVICE_SECRET, WRONG_SECRET, MQTT_SECRET)


async def test_secrets_appear_nowhere(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sims = {
        "front-door": TwoNSimulator(username="api", password=DEVICE_SECRET),
        "back-door": TwoNSimulator(username="api", password=DEVICE_SECRET),
    }
    async with serving(sims), Consumer(mosquitto.url, ("bridge/#", "homeassistant/#")) as consumer:
        http_port = free_port()
        config = bridge_config(mosquitto.url, sims, tmp_path, driver="2n", username="api")
        config["devices"][0]["password"] = DEVICE_SECRET
        config["devices"][1]["password_file"] = str(tmp_path / "wrong")
        (tmp_path / "wrong").write_text(WRONG_SECRET + "\n")
        config["mqtt"] |= {"username": "bridge", "password": "${MQTT_SECRET}"}
        config["http"] = {"listen": f"127.0.0.1:{http_port}"}
        config["homeassistant"] = {"enabled": True}
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "bridge", "run", "--config", str(path)]
        env = {"MQTT_SECRET": MQTT_SECRET, "PATH": "/usr/bin:/bin"}
        async with await anyio.open_process(
            [*command, "--log-format", "json", "--log-level", "debug"], env=env
        ) as process:
            await consumer.wait_for(
                lambda seen: (
                    {("bridge/front-door/availability", b"online")}
                    <= {(s.topic, s.payload) for s in seen}
                    and any(s.topic == "bridge/back-door/availability" for s in seen)
                )
            )
            sims["front-door"].press()
            sims["front-door"].enter_code("424242")
            for body in (
                {"command": "open_door", "id": "a"},
                {"command": "reboot", "id": "b"},
                {"command": "dial", "args": {"number": "sip:1@pbx"}, "id": "c"},
            ):
                await consumer.publish("bridge/front-door/command", json.dumps(body))
            await consumer.publish("bridge/bridge/request/info", b'{"id": 1}')
            await consumer.publish("bridge/bridge/request/devices", b'{"id": 2}')
            await consumer.first("bridge/bridge/response/devices", id=2)
            await consumer.first("bridge/front-door/event/code.entered")
            await wait_until(lambda: len(consumer.on("bridge/front-door/command/result")) == 3)
            async with httpx.AsyncClient() as http:
                base = f"http://127.0.0.1:{http_port}"
                pages = [(await http.get(f"{base}{p}")).text for p in ("/metrics", "/healthz")]
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                assert await process.wait() == 0
            logs = b""
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    async for chunk in stream:
                        logs += chunk

    answers = [s.json() for s in consumer.on("bridge/front-door/command/result")]
    assert {r["id"]: r["status"] for r in answers} == {"a": "ok", "b": "error", "c": "ok"}
    assert next(r for r in answers if r["id"] == "b")["error"]["code"] == "denied"
    info = consumer.on("bridge/back-door/info")[-1].json()
    assert "credentials refused" in info["last_error"]  # the error is there, the secret is not
    assert b"device_offline" in logs
    payloads = b"".join(s.payload for s in consumer.seen)
    for secret in (*SECRETS, "424242"):  # the entered code is a secret too
        assert secret.encode() not in payloads
        assert secret.encode() not in logs
        assert all(secret not in page for page in pages)
