"""Metrics checked by Prometheus' own linter, and health probes that fail when they should."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from bridge.simulators.generic import GenericSimulator
from tests.helpers import Consumer, Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
BLOCKED_FOR = 1.0  # how long the test blocks the event loop; the probe's timeout is 0.5 s


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        msg = "promtool is not installed: run `make test`, which installs Debian's prometheus"
        raise RuntimeError(msg)
    return found


async def test_metrics_pass_promtool_and_bound_their_labels(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator(), "gate": GenericSimulator()}
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        async with running(bridge_config(mosquitto.url, sims, tmp_path)) as bridge:
            await consumer.wait_for(
                lambda seen: len({s.topic for s in seen if s.payload == b"online"}) >= 3
            )
            sims["front-door"].press()
            sims["gate"].push("Some Vendor Thing", detail="x")  # an unmapped vendor event
            await consumer.publish(
                "bridge/front-door/command", json.dumps({"command": "open_door", "id": 1})
            )
            await consumer.publish("bridge/gate/command", b"{oops")
            await consumer.wait_for(
                lambda seen: len([s for s in seen if s.topic.endswith("command/result")]) >= 2
            )
            await consumer.first("bridge/gate/event/vendor.SomeVendorThing")
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{bridge.http_port}/metrics")).text

    lint = subprocess.run(  # noqa: ASYNC221 - the bridge is stopped; nothing else runs
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for name in (
        "bridge_build_info",
        "bridge_device_up",
        "bridge_events_total",
        "bridge_event_latency_seconds_bucket",
        "bridge_device_request_duration_seconds_bucket",
        "bridge_commands_total",
        "bridge_command_duration_seconds_bucket",
        "bridge_mqtt_connected",
        "bridge_mqtt_publishes_total",
        "bridge_outbox_depth",
        "bridge_outbox_dropped_total",
    ):
        assert f"\n{name}" in text, name
    # Labels are bounded: vendor strings never become label values.
    assert 'type="vendor"' in text
    assert "SomeVendorThing" not in text
    assert 'code="bad_request"' in text


async def test_health_and_readiness(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sims = {"front-door": GenericSimulator()}
    async with serving(sims):
        config = bridge_config(mosquitto.url, sims, tmp_path)
        async with (
            running(config, heartbeat_interval=3600) as bridge,
            httpx.AsyncClient(timeout=2) as http,
        ):
            url = f"http://127.0.0.1:{bridge.http_port}"
            await wait_until(lambda: bridge.link.connected)
            assert (await http.get(f"{url}/readyz")).status_code == 200
            assert (await http.get(f"{url}/healthz")).status_code == 200

            # Broker gone: not ready (take it out of a Service), but still alive.
            mosquitto.stop()
            await wait_until(lambda: not bridge.link.connected)
            assert (await http.get(f"{url}/readyz")).json() == {"ready": False}
            assert (await http.get(f"{url}/healthz")).status_code == 200

            # Supervisor stuck (no heartbeat for longer than allowed): liveness fails.
            bridge.heartbeat -= 60
            stuck = await http.get(f"{url}/healthz")
            assert stuck.status_code == 503
            assert stuck.json()["healthy"] is False
            bridge.heartbeat = time.monotonic()

            # Event loop blocked: the probe gets no answer within its timeout.
            started, outcome = threading.Event(), []

            def probe() -> None:
                started.set()
                try:
                    httpx.get(f"{url}/healthz", timeout=0.5)
                    outcome.append("answered")
                except httpx.TimeoutException:
                    outcome.append("timeout")

            thread = threading.Thread(target=probe)
            thread.start()
            # The event loop is blocked from here on, as a runaway computation would block it.
            assert started.wait(5)
            time.sleep(BLOCKED_FOR)  # noqa: ASYNC251
            thread.join()
            assert outcome == ["timeout"]
            mosquitto.start()


def test_alert_rules_pass_promtool() -> None:
    rules = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yaml"
    check = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
