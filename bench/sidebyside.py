"""The bridge beside a Node-RED flow that does the same job, in one run.

A user who does not run ``bridge`` long-polls the 2N API with a Node-RED flow
(``bench/node-red-2n.json``: ``http request`` with a persistent connection, a ``function``
that splits the batch, ``mqtt out`` at QoS 1, re-polling at once). This benchmark runs that
flow and the bridge side by side: one mosquitto (``set_tcp_nodelay true``), two copies of a
2N device (one per side), ``KeyPressed`` events injected alternately into the two devices
``--gap`` apart, and one consumer that receives both sides' messages. Latency is the
consumer's receive time minus the moment the device created the event (the event's ``t``
parameter, same host clock), matched by the device's event id.

Devices: ``--device plain`` is ``bench/plain_2n.py`` (the standard library's threading HTTP
server, one write per reply, ``TCP_NODELAY``), ``--device simulator`` the project's simulator
(``bench/stamped_2n.py``). ``--peer none`` measures the bridge alone.

    .venv/bin/python bench/sidebyside.py --device plain --events 300
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.nodered and tests.helpers: the same parts the tests use

from tests.helpers import Mosquitto  # noqa: E402
from tests.nodered import running  # noqa: E402

from bench.latency import summary, wait_port  # noqa: E402
from bench.scale.processes import cpu_seconds  # noqa: E402
from bridge.mosquitto import free_port  # noqa: E402
from bridge.process import stop  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

FLOW = Path(__file__).with_name("node-red-2n.json")
DEVICES = {
    "plain": [sys.executable, str(ROOT / "bench" / "plain_2n.py")],
    "simulator": [sys.executable, str(ROOT / "bench" / "stamped_2n.py")],
}
DEADLINE = 30.0


@dataclass
class Side:
    """One side of the comparison: its device, its MQTT topics, what the consumer saw."""

    name: str
    device_port: int
    topic: str
    latencies: dict[int, float] = field(default_factory=dict)  # device event id -> seconds
    to_receipt: dict[int, float] = field(default_factory=dict)  # device -> bridge `received`
    injected: set[int] = field(default_factory=set)
    pid: int = 0  # the process whose CPU time is this side's cost
    cpu: float = 0.0  # its CPU seconds during the measured injections


def record(side: Side, event: dict[str, Any], now: float) -> None:
    """Note one received event: the raw 2N record is the Node-RED payload, and the bridge's
    event carries it in ``data.raw``."""
    raw = event.get("data", {}).get("raw", event)
    event_id, created = int(raw["id"]), float(raw["params"]["t"])
    if event_id not in side.latencies:  # may come before the injection's reply: filter later
        side.latencies[event_id] = now - created
        if "received" in event:
            received = datetime.fromisoformat(event["received"]).timestamp()
            side.to_receipt[event_id] = received - created


async def consume(client: aiomqtt.Client, sides: list[Side]) -> None:
    by_topic = {side.topic.rstrip("#"): side for side in sides}
    async for message in client.messages:
        now = time.time()
        side = next(s for prefix, s in by_topic.items() if message.topic.value.startswith(prefix))
        record(side, json.loads(message.payload), now)


async def inject(http: httpx.AsyncClient, side: Side, device: str) -> int:
    if device == "plain":
        reply = await http.post(f"http://127.0.0.1:{side.device_port}/_inject")
        event_id = int(reply.json()["id"])
    else:
        body = {"name": "KeyPressed", "params": {"key": "1"}}
        reply = await http.post(f"http://127.0.0.1:{side.device_port}/_sim/event", json=body)
        event_id = int(reply.json()["events"][-1]["id"])
    side.injected.add(event_id)
    return event_id


async def warm_up(http: httpx.AsyncClient, side: Side, device: str) -> None:
    """Inject until the side delivers: it is connected and polling. Not measured."""
    with anyio.fail_after(DEADLINE):
        while True:
            event_id = await inject(http, side, device)
            with anyio.move_on_after(1.0):
                while event_id not in side.latencies:  # noqa: ASYNC110 - filled by consume()
                    await anyio.sleep(0.01)
                side.latencies.clear()
                side.to_receipt.clear()
                side.injected.clear()
                return


async def measure(mqtt_port: int, sides: list[Side], device: str, events: int, gap: float) -> None:
    async with (
        aiomqtt.Client("127.0.0.1", mqtt_port, identifier="bench-consumer") as client,
        httpx.AsyncClient() as http,
    ):
        for side in sides:
            await client.subscribe(side.topic, qos=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, client, sides)
            for side in sides:
                await warm_up(http, side, device)
            cpu = {side.name: cpu_seconds(side.pid) for side in sides}
            start = time.monotonic()
            for i in range(events):
                await inject(http, sides[i % len(sides)], device)
                delay = start + (i + 1) * gap - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
            with anyio.move_on_after(DEADLINE):
                while any(s.injected - s.latencies.keys() for s in sides):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            for side in sides:
                side.cpu = cpu_seconds(side.pid) - cpu[side.name]
            tg.cancel_scope.cancel()
    for side in sides:
        missing = sorted(side.injected - side.latencies.keys())
        if missing:
            raise SystemExit(f"{side.name}: {len(missing)} events never arrived: {missing[:10]}")


def histogram_quantiles(metrics: str, name: str) -> dict[str, str]:
    """p50 and p99 of a Prometheus histogram as the bucket bound that holds them."""
    buckets = [
        (float(sample.labels["le"]), sample.value)
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == f"{name}_bucket"
    ]
    total = buckets[-1][1] if buckets else 0
    quantiles = {}
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        bound = next((le for le, count in sorted(buckets) if count >= q * total), float("nan"))
        quantiles[label] = f"<= {bound * 1000:g} ms"
    return quantiles


@contextmanager
def process(
    argv: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env)
    try:
        yield proc
    finally:
        stop(proc, 10)


def bridge_config(work: Path, mqtt_port: int, device_port: int, http_port: int) -> Path:
    path = work / "bridge.yaml"
    config = {
        "mqtt": {"url": f"mqtt://127.0.0.1:{mqtt_port}", "client_id": "bench-bridge"},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "state_dir": str(work / "state"),
        "log": {"level": "warning"},
        "devices": [{"id": "sim", "driver": "2n", "url": f"http://127.0.0.1:{device_port}"}],
    }
    path.write_text(json.dumps(config))
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bridge-sidebyside-"))
    (work / "broker").mkdir()
    broker = Mosquitto(work / "broker", extra_config="set_tcp_nodelay true\n")
    with ExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        sides = [Side("bridge", free_port(), "bridge/sim/event/#")]
        if args.peer == "node-red":
            sides.append(Side("node-red", free_port(), "peer/sim/event/#"))
        for side in sides:
            device = stack.enter_context(process([*DEVICES[args.device], str(side.device_port)]))
            wait_port(side.device_port, device)
        http_port = free_port()
        config = bridge_config(work, broker.port, sides[0].device_port, http_port)
        bridge = [sys.executable, "-m", "bridge", "run", "--config", str(config)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if args.bridge_src:  # another checkout's bridge, for a before/after table
            env["PYTHONPATH"] = args.bridge_src
        bridge_process = stack.enter_context(process(bridge, env))
        sides[0].pid = bridge_process.pid
        wait_port(http_port, bridge_process)
        if args.peer == "node-red":
            env = {
                "DEVICE_URL": f"http://127.0.0.1:{sides[1].device_port}",
                "MQTT_HOST": "127.0.0.1",
                "MQTT_PORT": str(broker.port),
                "MQTT_TOPIC": "peer/sim/event/KeyPressed",
            }
            sides[1].pid = stack.enter_context(running(FLOW, env)).process.pid
        anyio.run(measure, broker.port, sides, args.device, args.events, args.gap)
        metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    result: dict[str, Any] = {
        "device": args.device,
        "events": args.events,
        "gap_ms": args.gap * 1000,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cpus, {sys.platform}, Python {sys.version.split()[0]}",
    }
    for side in sides:
        result[side.name] = summary([side.latencies[i] for i in side.injected])
        result[side.name]["cpu_ms_per_event"] = round(1000 * side.cpu / len(side.injected), 3)
        if side.to_receipt:
            to_receipt = [side.to_receipt[i] for i in side.injected]
            result[f"{side.name}_device_to_received"] = summary(to_receipt)
    if len(sides) == 2:
        ours, peer = result["bridge"], result["node-red"]
        result["ratio_p50"] = round(ours["p50_ms"] / peer["p50_ms"], 2)
        result["ratio_p99"] = round(ours["p99_ms"] / peer["p99_ms"], 2)
    result["bridge_outbox_wait"] = histogram_quantiles(metrics, "bridge_mqtt_queue_seconds")
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=sorted(DEVICES), default="plain")
    parser.add_argument("--peer", choices=["node-red", "none"], default="node-red")
    parser.add_argument("--events", type=int, default=300, help="events, both sides together")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between injections")
    parser.add_argument(
        "--bridge-src",
        help="run the bridge from this src/ directory (another checkout: a before/after table)",
    )
    args = parser.parse_args()
    print(json.dumps(run(args), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
