"""The bridge's peers in the benchmark: the broker (mosquitto), the raw aiomqtt ceiling every
throughput figure is compared with, and the consumer that reads what the bridge publishes."""

from __future__ import annotations

import json
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiomqtt
import anyio
import httpx

from bench.scale.processes import free_port, wait_port

if TYPE_CHECKING:
    import subprocess

    from bench.scale.processes import Children

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_CONF = """listener {port} 127.0.0.1
allow_anonymous true
log_dest none
set_tcp_nodelay true
# The consumer must not be the one losing messages: mosquitto drops QoS 1 messages for a client
# beyond 1000 queued by default.
max_queued_messages 1000000
"""
EVENT_SIZE = 420  # bytes of a typical 2N doorbell event as the bridge publishes it
MAX_INFLIGHT = 100  # the bridge's mqtt.max_inflight default
# As the bridge's own link: without it a PUBACK still waiting for the broker's delayed ACK holds
# the next publish back by Nagle's algorithm, ~40 ms per command on Linux loopback.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


async def start_broker(children: Children) -> Broker:
    """mosquitto on a free loopback port, once it listens."""
    port = free_port()
    conf = children.work / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port))
    proc = children.start("mosquitto", [MOSQUITTO, "-c", str(conf)])
    await wait_port(port, 10, proc)
    return Broker(proc, port)


async def raw_ceiling(port: int, count: int) -> dict[str, Any]:
    """aiomqtt alone: ``count`` QoS 1 publishes of an event's size, ``MAX_INFLIGHT`` in flight,
    counted by a subscriber. ``published_per_s`` (acknowledged by the broker) is the ceiling
    every throughput target of the run is a ratio to."""
    payload = b"x" * EVENT_SIZE
    received = 0
    done = anyio.Event()
    last = 0.0
    v5 = aiomqtt.ProtocolVersion.V5  # as the bridge, whose broker grants it the same inflight
    async with (
        aiomqtt.Client(
            "127.0.0.1", port, identifier="bench-raw-sub", socket_options=NODELAY
        ) as sub,
        aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier="bench-raw-pub",
            protocol=v5,
            max_inflight_messages=MAX_INFLIGHT,
            socket_options=NODELAY,
        ) as pub,
        anyio.create_task_group() as tg,
    ):
        pub.pending_calls_threshold = MAX_INFLIGHT + 10
        await sub.subscribe("bench/raw", qos=1)

        async def counter() -> None:
            nonlocal received, last
            async for _ in sub.messages:
                received += 1
                last = time.perf_counter()
                if received >= count:
                    done.set()

        tg.start_soon(counter)
        numbers = iter(range(count))

        async def publisher() -> None:
            for _ in numbers:
                await pub.publish("bench/raw", payload, qos=1)

        started = time.perf_counter()
        with anyio.fail_after(120):
            async with anyio.create_task_group() as workers:
                for _ in range(MAX_INFLIGHT):
                    workers.start_soon(publisher)
            acked = time.perf_counter() - started
            with anyio.move_on_after(30):
                await done.wait()
        tg.cancel_scope.cancel()
    delivered = last - started
    return {
        "messages": count,
        "payload_bytes": EVENT_SIZE,
        "inflight": MAX_INFLIGHT,
        "received": received,
        "published_per_s": round(count / acked),
        "delivered_per_s": round(received / delivered) if received else 0,
    }


# -- the consumer ---------------------------------------------------------------------------


@dataclass
class Phase:
    """Events of one load phase: those the simulators created after ``since`` (wall clock)."""

    since: float
    ids: set[str] = field(default_factory=set)
    messages: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, device emits -> received
    last: float = 0.0  # monotonic time of the last counted event
    target: int | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def check(self) -> None:
        if self.target is not None and len(self.ids) >= self.target:
            self.done.set()


@dataclass
class Observer:
    """Reads everything the bridge publishes that a phase needs."""

    devices: set[str]
    online: dict[str, float] = field(default_factory=dict)  # device -> monotonic time
    offline_after_online: int = 0
    all_online: anyio.Event = field(default_factory=anyio.Event)
    phase: Phase | None = None
    results: dict[str, anyio.Event] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)

    async def run(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                self.dispatch(message.topic.value, bytes(payload))

    def dispatch(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) < 3:
            return
        device, kind = parts[1], parts[2]
        if kind == "availability":
            self._availability(device, payload)
        elif kind == "event":
            self._event(payload)
        elif kind == "command" and parts[3:] == ["result"]:
            body = json.loads(payload)
            waiter = self.results.pop(str(body.get("id")), None)
            if waiter is not None:
                self.statuses[str(body.get("id"))] = str(body.get("status"))
                waiter.set()

    def _availability(self, device: str, payload: bytes) -> None:
        if payload == b"online":
            self.online.setdefault(device, time.monotonic())
            if self.devices <= self.online.keys():
                self.all_online.set()
        elif device in self.online:
            self.offline_after_online += 1

    def _event(self, payload: bytes) -> None:
        now = time.time()
        phase = self.phase
        if phase is None:
            return
        body = json.loads(payload)
        stamp = body.get("data", {}).get("raw", {}).get("params", {}).get("t")
        if not isinstance(stamp, float) or stamp < phase.since:
            return
        phase.messages += 1
        phase.ids.add(str(body["id"]))
        phase.latencies.append(now - stamp)
        phase.last = time.monotonic()
        phase.check()


METRIC_TOTALS = (
    "bridge_device_up",
    "bridge_mqtt_publishes_total",
    "bridge_outbox_depth",
    "bridge_outbox_dropped_total",
    "bridge_events_duplicate_total",
    "bridge_device_errors_total",
    "bridge_mqtt_reconnects_total",
    "bridge_device_request_duration_seconds_count",
)


def metric_totals(text: str) -> dict[str, float]:
    """Sums over every series of the ``METRIC_TOTALS`` in a Prometheus exposition, and its
    size: ``exposition_series`` and ``exposition_bytes``."""
    totals = dict.fromkeys(METRIC_TOTALS, 0.0)
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in series:
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals | {"exposition_series": len(series), "exposition_bytes": len(text)}


async def scrape(http_port: int) -> dict[str, float]:
    """The bridge's /metrics, summed: see :func:`metric_totals`."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{http_port}/metrics")).text
    return metric_totals(text)
