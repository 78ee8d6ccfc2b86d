"""Event latency through the bridge: simulated device emits → MQTT consumer receives.

Separate processes: mosquitto, the simulator, the bridge (``bridge run``), and this script as
the consumer. Latency is the consumer's receive time minus the moment the simulator created
the event (same host clock), so it includes the long poll, normalization, the MQTT publish and
the broker hop. The generic device stamps its events' ``time`` in microseconds; a 2N device's
``utcTime`` has whole seconds only, so the benchmark's 2N simulator adds the creation time as
an extra event parameter ``t``, which the bridge passes through in ``data.raw.params``.

    .venv/bin/python bench/latency.py --driver 2n --events 1000 --rate 50
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import anyio
import httpx

from bridge.mosquitto import free_port
from bridge.process import listening, stop

BENCH = Path(__file__).resolve().parent
GENERIC = """
import sys, anyio
from bridge.simulators.generic import GenericSimulator
anyio.run(GenericSimulator().serve, "127.0.0.1", int(sys.argv[1]))
"""
SIMULATORS = {  # argv before the port
    "generic": [sys.executable, "-c", GENERIC],
    "2n": [sys.executable, str(BENCH / "stamped_2n.py")],  # + username, password
}
SIMULATOR_ARGS = {"generic": [], "2n": ["bench", "bench-secret"]}
PRESS = {"generic": {"button": 1}, "2n": {"key": "%1"}}
EVENTS_PER_PRESS = {"generic": 1, "2n": 2}  # 2N: KeyPressed and KeyReleased
DEVICE = {
    "generic": {"driver": "generic"},
    "2n": {"driver": "2n", "username": "bench", "password": "bench-secret"},
}


def created(body: dict[str, Any]) -> float:
    """When the simulator created the event."""
    stamp = body["data"].get("raw", {}).get("params", {}).get("t")
    if isinstance(stamp, float):
        return stamp
    return datetime.fromisoformat(str(body["time"])).timestamp()


def wait_port(port: int, process: subprocess.Popen[bytes], deadline: float = 10.0) -> None:
    if not listening(port, process, deadline):
        raise SystemExit(f"nothing listens on {port}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    mqtt_port: int, sim_port: int, driver: str, presses: int, rate: float
) -> tuple[list[float], list[float]]:
    events = presses * EVENTS_PER_PRESS[driver]
    latencies: list[float] = []
    to_bridge: list[float] = []  # created -> the bridge's ``received`` (ms resolution)
    done = anyio.Event()
    async with aiomqtt.Client("127.0.0.1", mqtt_port) as client:
        await client.subscribe("bridge/sim/event/#", qos=1)
        await client.subscribe("bridge/sim/availability", qos=1)

        async def receive() -> None:
            async for message in client.messages:
                now = time.time()
                if message.topic.value.endswith("availability"):
                    continue
                body = json.loads(message.payload)
                latencies.append(now - created(body))
                if "received" in body:
                    received = datetime.fromisoformat(body["received"]).timestamp()
                    to_bridge.append(received - created(body))
                if len(latencies) >= events:
                    done.set()
                    return

        async with anyio.create_task_group() as tg, httpx.AsyncClient() as http:
            tg.start_soon(receive)
            await anyio.sleep(1.0)  # let the bridge's first long poll settle
            interval = 1.0 / rate
            start = time.monotonic()
            for i in range(presses):
                await http.post(f"http://127.0.0.1:{sim_port}/_sim/press", json=PRESS[driver])
                delay = start + (i + 1) * interval - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
            with anyio.fail_after(30):
                await done.wait()
    return latencies, to_bridge


async def mqtt_hop(mqtt_port: int, count: int, rate: float) -> list[float]:
    """The floor: the same consumer receiving QoS 1 messages that a plain aiomqtt client
    publishes through the same mosquitto at the same rate, with no bridge in between."""
    latencies: list[float] = []
    done = anyio.Event()
    async with (
        aiomqtt.Client("127.0.0.1", mqtt_port) as consumer,
        aiomqtt.Client("127.0.0.1", mqtt_port) as publisher,
    ):
        await consumer.subscribe("baseline/#", qos=1)

        async def receive() -> None:
            async for message in consumer.messages:
                latencies.append(time.time() - json.loads(message.payload)["t"])
                if len(latencies) >= count:
                    done.set()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            start = time.monotonic()
            for i in range(count):
                await publisher.publish("baseline/x", json.dumps({"t": time.time()}), qos=1)
                delay = start + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
            with anyio.fail_after(30):
                await done.wait()
    return latencies


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [1000 * x for x in seconds]
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--driver", choices=sorted(SIMULATORS), default="2n")
    parser.add_argument("--events", type=int, default=1000, help="button presses")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    args = parser.parse_args()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    work = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    mqtt_port, sim_port, http_port = free_port(), free_port(), free_port()
    (work / "mosquitto.conf").write_text(
        f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n"
        "set_tcp_nodelay true\n"
    )
    (work / "bridge.yaml").write_text(
        json.dumps(
            {
                "mqtt": {"url": f"mqtt://127.0.0.1:{mqtt_port}", "client_id": "bench"},
                "http": {"listen": f"127.0.0.1:{http_port}"},
                "state_dir": str(work),
                "log": {"level": "warning"},
                "devices": [
                    {"id": "sim", "url": f"http://127.0.0.1:{sim_port}", **DEVICE[args.driver]}
                ],
            }
        )
    )
    procs = [subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")])]
    try:
        wait_port(mqtt_port, procs[-1])
        procs.append(
            subprocess.Popen(
                [*SIMULATORS[args.driver], str(sim_port), *SIMULATOR_ARGS[args.driver]]
            )
        )
        wait_port(sim_port, procs[-1])
        bridge = [sys.executable, "-m", "bridge", "run", "--config", str(work / "bridge.yaml")]
        procs.append(subprocess.Popen(bridge, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        wait_port(http_port, procs[-1])
        latencies, to_bridge = anyio.run(
            measure, mqtt_port, sim_port, args.driver, args.events, args.rate
        )
        floor = anyio.run(mqtt_hop, mqtt_port, len(latencies), args.rate)
        metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
        inner = [ln for ln in metrics.splitlines() if ln.startswith("bridge_event_latency_seconds")]
    finally:
        for proc in reversed(procs):
            stop(proc, 10)
    result = {
        "driver": args.driver,
        "events": len(latencies),
        "rate": args.rate,
        **summary(latencies),
        "device_to_bridge": summary(to_bridge),
        "mqtt_hop_alone": summary(floor),
        "machine": f"{os.cpu_count()} cpus, {sys.platform}, Python {sys.version.split()[0]}",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))
    print("\n".join(inner))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
