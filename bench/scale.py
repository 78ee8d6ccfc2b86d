"""Scale of one bridge process: many simulated 2N devices, a real broker, QoS 1.

Separate processes, like ``bench/latency.py``: mosquitto, one or a few simulator processes (each
serving many simulated 2N intercoms on their own loopback ports, digest auth), the bridge
(``python -m bridge run`` on a generated configuration) and this script as the MQTT consumer.

Per device count (``--devices``, default 100 and 1000) it measures

* online time: bridge process start until every device's retained ``availability`` is ``online``;
* idle RSS and CPU of the bridge over a window after that (idle 2N devices long-poll, so "idle"
  includes a ``log/pull`` per device every ``pull_timeout``);
* event throughput at increasing target rates (``--rates``, at ``--throughput-devices``): the
  simulator processes press buttons in-process (KeyPressed + KeyReleased: two events, two MQTT
  messages), the consumer counts distinct event ids at QoS 1; a rate passes with no event lost,
  none duplicated and at least 95% of it received while the simulators were emitting (the ladder
  stops at the first rate that fails). Every load phase also gives the latency (device emits ->
  consumer receives, as in ``bench/latency.py``); at other device counts one phase runs at
  ``--load-rate`` across all devices;
* command round trip: ``open_door`` published -> ``command/result`` received, sequentially.

Once per run it also measures the raw MQTT ceiling: aiomqtt alone publishing QoS 1 messages of an
event's size to the same broker, as many in flight as the bridge allows, while a subscriber counts
them. The bridge cannot beat it. ``--py-spy DIR`` records the bridge per phase (py-spy must be
installed) and summarises where its time went. Every phase has a deadline; child processes are
stopped on exit, Ctrl-C and SIGTERM. Results: a table on stdout and JSON in ``bench/results/``
(git-ignored); the recorded figures are in docs/performance.md.

    .venv/bin/python bench/scale.py                      # 100 and 1000 devices, ~2.5 minutes
    .venv/bin/python bench/scale.py --quick              # 10 and 100 devices, ~1 minute
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import aiomqtt
import anyio
import httpx

# One simulator process: argv = device count, ports file, first device index. It writes
# {"ports": [...], "control": port} once every device listens. The control server's
# GET /drive?rate=R&duration=D presses buttons round robin over this process's devices at R
# events/s (a press is KeyPressed + KeyReleased) for D seconds, in-process, then answers with
# what it emitted. Every event carries its creation time as the extra parameter "t".
SIMULATOR = """
import json, os, sys, time
from pathlib import Path
import anyio
from bridge.simulators.two_n import TwoNSimulator
from bridge.simulators.server import Response, serve

class Stamped(TwoNSimulator):
    def emit(self, name, params=None):
        return super().emit(name, {**(params or {}), "t": time.time()})

SIMS = []

async def drive(rate, duration):
    per_second = rate / 2
    total = round(per_second * duration)
    start, first, done = time.monotonic(), time.time(), 0
    while done < total:
        due = min(total, 1 + int((time.monotonic() - start) * per_second))
        while done < due:
            SIMS[done % len(SIMS)].press("%1")
            done += 1
        await anyio.sleep(0.002)
    return {"emitted": 2 * done, "elapsed": time.monotonic() - start, "first": first}

async def control(request):
    if request.path != "/drive":
        return Response(404, b"{}")
    result = await drive(float(request.query["rate"]), float(request.query["duration"]))
    return Response(200, json.dumps(result).encode())

async def main():
    count, out, offset = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    async with anyio.create_task_group() as tg:
        ports = []
        for i in range(offset, offset + count):
            sim = Stamped(username=sys.argv[4], password=sys.argv[5], serial=f"54-{i:04d}-0001")
            SIMS.append(sim)
            ports.append(await tg.start(sim.serve, "127.0.0.1", 0))
        control_port = await tg.start(serve, control, "127.0.0.1", 0)
        out.with_suffix(".tmp").write_text(json.dumps({"ports": ports, "control": control_port}))
        os.replace(out.with_suffix(".tmp"), out)

anyio.run(main)
"""
USERNAME, PASSWORD = "bench", "bench-secret"
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
KEEPING_UP = 0.95  # a rate passes when >= 95% of it arrived while the simulators emitted
TARGETS = {  # spec §10
    "online_s": 10.0,
    "rss_mb": 150.0,
    "idle_cpu_pct": 5.0,
    "events_per_s": 5000.0,
    "latency_p99_ms_500_per_s": 20.0,
    "command_p99_ms": 20.0,
}
TICKS = os.sysconf("SC_CLK_TCK")
# As the bridge's own link: without it a PUBACK still waiting for the broker's delayed ACK holds
# the next publish back by Nagle's algorithm, ~40 ms per command on Linux loopback.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class PhaseError(Exception):
    """A phase missed its deadline or a process died: reported, and the run goes on."""


@dataclass(frozen=True)
class Options:
    devices: list[int]
    sim_procs: int
    throughput_devices: int
    rates: list[float]
    phase_s: float
    load_rate: float
    idle_s: float
    commands: int
    raw_messages: int
    online_deadline: float
    profile_dir: Path | None


# -- processes ----------------------------------------------------------------------------------


@dataclass
class Children:
    """Every child process; ``stop_all`` ends them (bridge first, broker last)."""

    work: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # A session of their own: Ctrl-C reaches this script only, which stops them in order.
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop(
        self, proc: subprocess.Popen[bytes], timeout: float = 15.0, sig: int = signal.SIGTERM
    ) -> int | None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.stop(proc)


def raise_nofile() -> int:
    """Children inherit the limit: 1000 devices are ~1000 sockets on each side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    """Until ``proc`` listens on ``port``; PhaseError when it exits or time is up."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        alive(proc, f"process {proc.pid}")
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            await anyio.sleep(0.01)
        else:
            await stream.aclose()
            return
    raise PhaseError(f"nothing listens on port {port} after {deadline:g} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its own threads, not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in (
        Path(f"/proc/{pid}/status").read_text(encoding="utf-8", errors="replace").splitlines()
    ):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise PhaseError(f"no VmRSS for {pid}")


def all_processes() -> dict[int, float]:
    """CPU seconds of every process on the machine, by pid."""
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):  # gone, or a zombie
                seconds[int(entry.name)] = cpu_seconds(int(entry.name))
    return seconds


@dataclass
class CpuMeter:
    """CPU % of one core used by each named process between construction and ``read``, and by
    every other process ("other": someone else's work on the machine, py-spy when profiling)."""

    pids: dict[str, list[int]]
    wall: float = field(default_factory=time.monotonic)
    start: dict[str, float] = field(default_factory=dict)
    others: dict[int, float] = field(default_factory=all_processes)

    def __post_init__(self) -> None:
        self.start = {name: self._cpu(pids) for name, pids in self.pids.items()}

    @staticmethod
    def _cpu(pids: list[int]) -> float:
        return sum(cpu_seconds(pid) for pid in pids)

    def read(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        used = {name: self._cpu(pids) - self.start[name] for name, pids in self.pids.items()}
        ours = {pid for pids in self.pids.values() for pid in pids}
        used["other"] = sum(
            cpu - self.others.get(pid, 0.0)
            for pid, cpu in all_processes().items()
            if pid not in ours
        )
        return {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}


def alive(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is not None:
        raise PhaseError(f"{name} exited with status {proc.returncode}")


@dataclass
class Profiler:
    """py-spy attached to the bridge for one phase at a time (``--py-spy DIR``)."""

    children: Children
    directory: Path | None
    recording: tuple[subprocess.Popen[bytes], Path] | None = None
    summaries: dict[str, Any] = field(default_factory=dict)

    def start(self, pid: int, label: str) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if self.directory is None:
            return
        out = self.directory / f"{label}.folded"
        argv = [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
        self.recording = (self.children.start(f"py-spy-{label}", [*argv, "-o", str(out)]), out)

    def stop(self) -> None:
        if self.recording is None:
            return
        proc, out = self.recording
        self.recording = None
        self.children.stop(proc, timeout=30, sig=signal.SIGINT)  # py-spy writes on SIGINT
        if out.exists():
            self.summaries[out.stem] = top_functions(out)


# Where the bridge's time goes, by the frames a sample passes through (a sample counts once).
PROFILE_PARTS = {
    "SSL context per device client": ("create_ssl_context (httpx/_config.py)",),
    "device HTTP requests (httpx)": ("DeviceHttp.request (bridge/http.py)",),
    "failed 'import sniffio' in httpcore": (
        "current_async_library (httpcore/_synchronization.py)",
    ),
    "checkpoint writes": ("Checkpoint.save (bridge/checkpoint.py)",),
    "normalize + supervisor": ("DeviceWorker.emit (bridge/supervisor.py)",),
    "MQTT publish (link, aiomqtt, paho)": (
        "MqttLink._publish_one (bridge/mqtt/link.py)",
        "MqttLink._send (bridge/mqtt/link.py)",
        "Client.loop_read (paho/mqtt/client.py)",
        "Client.loop_write (paho/mqtt/client.py)",
    ),
    "/metrics exposition": ("Metrics.exposition (bridge/metrics.py)",),
    "waiting in epoll": ("EpollSelector.select (selectors.py)",),
}


IDLE_THREAD_FRAMES = {
    "_worker (concurrent/futures/thread.py)",  # asyncio's default executor
    "Condition.wait (threading.py)",  # anyio's worker threads (to_thread.run_sync)
}


def top_functions(folded: Path, count: int = 15) -> dict[str, Any]:
    """Share of the samples per function: in the function itself, and with its callees."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    parts = dict.fromkeys(PROFILE_PARTS, 0)
    samples = workers = 0
    for line in folded.read_text(encoding="utf-8").splitlines():
        stack, _, weight = line.rpartition(" ")
        if not weight.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if frames[-1] in IDLE_THREAD_FRAMES:
            continue  # a worker thread waiting for work, which py-spy counts as busy
        samples += int(weight)
        workers += int(weight) if frames[0] == "Thread._bootstrap (threading.py)" else 0
        own[frames[-1]] = own.get(frames[-1], 0) + int(weight)
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + int(weight)
        for part, marks in PROFILE_PARTS.items():
            if any(mark in frames for mark in marks):
                parts[part] += int(weight)

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda item: -item[1])[:count]
        return [(name, round(100 * hits / max(1, samples), 1)) for name, hits in best]

    return {
        "samples": samples,
        "worker_threads_pct": round(100 * workers / max(1, samples), 1),  # the rest: event loop
        "parts_pct": dict(ranked(parts)),
        "self_pct": ranked(own),
        "total_pct": ranked(total),
    }


# -- the consumer -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread_ms(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = [1000 * s for s in seconds]
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
    }


@dataclass
class Phase:
    """Events of one load phase: those the simulators created after ``since`` (wall clock)."""

    since: float
    ids: set[str] = field(default_factory=set)
    messages: int = 0
    latencies: list[float] = field(default_factory=list)
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


# -- one device count ---------------------------------------------------------------------------


@dataclass
class Simulators:
    procs: list[subprocess.Popen[bytes]]
    ports: list[int]  # device i listens on ports[i]
    controls: list[int]  # control port of each process
    counts: list[int]  # devices of each process


async def start_simulators(children: Children, n: int, procs: int) -> Simulators:
    procs = max(1, min(procs, n))
    counts = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    files, started, offset = [], [], 0
    for i, count in enumerate(counts):
        out = children.work / f"sim-{n}-{i}.json"
        argv = [sys.executable, "-c", SIMULATOR, str(count), str(out), str(offset)]
        started.append(children.start(f"sim-{n}-{i}", [*argv, USERNAME, PASSWORD]))
        files.append(out)
        offset += count
    ports: list[int] = []
    controls: list[int] = []
    with anyio.fail_after(30 + n / 10):
        for proc, out in zip(started, files, strict=True):
            while not out.exists():
                alive(proc, "a simulator")
                await anyio.sleep(0.05)
            written = json.loads(out.read_bytes())
            ports += written["ports"]
            controls.append(written["control"])
    return Simulators(started, ports, controls, counts)


def device_ids(n: int) -> list[str]:
    return [f"n{n}-{i:04d}" for i in range(n)]


def write_config(work: Path, n: int, mqtt_port: int, http_port: int, sims: Simulators) -> Path:
    devices = [
        {
            "id": device,
            "driver": "2n",
            "url": f"http://127.0.0.1:{port}",
            "username": USERNAME,
            "password": PASSWORD,
            "auth": "digest",
        }
        for device, port in zip(device_ids(n), sims.ports, strict=True)
    ]
    config = {
        "mqtt": {"url": f"mqtt://127.0.0.1:{mqtt_port}", "client_id": f"bench-bridge-{n}"},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "state_dir": str(work / f"state-{n}"),
        "log": {"level": "warning"},
        "devices": devices,
    }
    path = work / f"bridge-{n}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@dataclass
class Run:
    """One bridge with its devices, the consumer, and the processes to watch."""

    n: int
    bridge: subprocess.Popen[bytes]
    sims: Simulators
    mosquitto: subprocess.Popen[bytes]
    client: aiomqtt.Client
    observer: Observer
    http_port: int
    profiler: Profiler

    def profile(self, label: str) -> None:
        """Record the bridge from now until the next call (or ``profile("")``)."""
        self.profiler.stop()
        if label:
            self.profiler.start(self.bridge.pid, f"bridge-{self.n}-{label}")

    def meter(self) -> CpuMeter:
        return CpuMeter(
            {
                "bridge": [self.bridge.pid],
                "simulators": [p.pid for p in self.sims.procs],
                "mosquitto": [self.mosquitto.pid],
                "consumer": [os.getpid()],
            }
        )

    def check_alive(self) -> None:
        alive(self.bridge, "the bridge")
        for proc in self.sims.procs:
            alive(proc, "a simulator")


async def measure_online(run: Run, started: float, deadline: float) -> dict[str, Any]:
    observer = run.observer
    meter = run.meter()
    http_s = None
    with anyio.move_on_after(deadline):
        await wait_port(run.http_port, deadline, run.bridge)
        http_s = round(time.monotonic() - started, 3)
        while not observer.all_online.is_set():
            run.check_alive()
            with anyio.move_on_after(0.5):
                await observer.all_online.wait()
    times = sorted(t - started for t in observer.online.values())
    return {
        "bridge_http_s": http_s,  # the bridge's own HTTP server listens: imports and config done
        "first_s": round(times[0], 3) if times else None,
        "median_s": round(statistics.median(times), 3) if times else None,
        "all_s": round(times[-1], 3) if len(times) == run.n else None,
        "online": len(times),
        "deadline_s": deadline,
        "cpu_pct": meter.read(),  # from the bridge's start until all are online
    }


async def measure_idle(run: Run, window: float) -> dict[str, Any]:
    await anyio.sleep(min(2.0, window))  # let the start-up publishes finish
    meter = run.meter()
    rss: list[float] = []
    end = time.monotonic() + window
    while time.monotonic() < end:
        run.check_alive()
        rss.append(rss_mib(run.bridge.pid))
        await anyio.sleep(min(1.0, max(0.0, end - time.monotonic())))
    cpu = meter.read()
    return {
        "window_s": window,
        "rss_mib": round(rss_mib(run.bridge.pid), 1),
        "rss_max_mib": round(max(rss), 1),
        "cpu_pct": cpu["bridge"],
        "cpu_pct_all": cpu,
        "online": len(run.observer.online),
    }


async def drive(run: Run, rate: float, seconds: float) -> dict[str, float]:
    """Have every simulator process press buttons, its share of ``rate``, at once."""
    sims = run.sims
    replies: list[dict[str, float]] = []
    async with httpx.AsyncClient(timeout=seconds + 30) as http:

        async def one(control: int, count: int) -> None:
            params = {"rate": rate * count / run.n, "duration": seconds}
            reply = await http.get(f"http://127.0.0.1:{control}/drive", params=params)
            replies.append(reply.raise_for_status().json())

        async with anyio.create_task_group() as tg:
            for control, count in zip(sims.controls, sims.counts, strict=True):
                tg.start_soon(one, control, count)
    return {
        "emitted": sum(r["emitted"] for r in replies),
        "elapsed": max(r["elapsed"] for r in replies),
    }


async def load_phase(run: Run, rate: float, seconds: float) -> dict[str, Any]:
    """One phase at ``rate`` events/s: loss, duplicates, achieved rate, latency, CPU.

    The achieved rate counts the events received while the simulators were still emitting: a
    bridge that falls behind builds a backlog, which a rate over the whole phase would hide
    (the backlog drains quickly once the load stops). /metrics is read only outside that window:
    at 1000 devices one exposition blocks the bridge's event loop for tens of milliseconds.
    """
    before = await scrape(run.http_port)
    phase = Phase(since=time.time())
    run.observer.phase = phase
    meter = run.meter()
    began = time.monotonic()
    try:
        with anyio.fail_after(seconds + 30):
            sent = await drive(run, rate, seconds)
        window = time.monotonic() - began
        in_window = len(phase.ids)
        at_end = await scrape(run.http_port)
        phase.target = int(sent["emitted"])
        phase.check()
        with anyio.move_on_after(30):  # the backlog's deadline
            await phase.done.wait()
        cpu = meter.read()
        await anyio.sleep(0.5)  # late duplicates
    finally:
        run.observer.phase = None
    after = await scrape(run.http_port)
    received = len(phase.ids)
    offered = sent["emitted"] / sent["elapsed"]
    achieved = in_window / window
    lost = int(sent["emitted"]) - received
    duplicates = phase.messages - received
    return {
        "target_per_s": rate,
        "emitted": int(sent["emitted"]),
        "received": received,
        "lost": lost,
        "duplicates": duplicates,
        "offered_per_s": round(offered, 1),
        "achieved_per_s": round(achieved, 1),
        "passed": lost == 0 and duplicates == 0 and achieved >= KEEPING_UP * offered,
        "latency": spread_ms(phase.latencies),
        "cpu_pct": cpu,
        "backlog_at_end": int(sent["emitted"]) - in_window,  # not yet received when it stopped
        "outbox_at_end": at_end["bridge_outbox_depth"],  # of which in the bridge's outbox
        "outbox_dropped": after["bridge_outbox_dropped_total"]
        - before["bridge_outbox_dropped_total"],
        "drained_after_s": round(max(0.0, phase.last - began - window), 2),
    }


async def throughput(run: Run, rates: list[float], seconds: float) -> dict[str, Any]:
    phases: list[dict[str, Any]] = []
    for rate in rates:
        run.check_alive()
        result = await load_phase(run, rate, seconds)
        phases.append(result)
        print(
            f"  {rate:>6g}/s: received {result['received']}/{result['emitted']},"
            f" achieved {result['achieved_per_s']}/s, bridge CPU {result['cpu_pct']['bridge']}%"
            f", p99 {result['latency']['p99_ms']} ms, behind at the end"
            f" {result['backlog_at_end']} (outbox {result['outbox_at_end']:g})",
            flush=True,
        )
        if not result["passed"]:
            break
        await anyio.sleep(1.0)
    best = max((p for p in phases if p["passed"]), key=lambda p: p["offered_per_s"], default=None)
    return {"phase_s": seconds, "phases": phases, "best": best}


async def command_round_trips(run: Run, count: int) -> dict[str, Any]:
    devices = device_ids(run.n)
    rtts: list[float] = []
    timeouts = 0
    for i in range(count):
        device, key = devices[i % len(devices)], f"rtt-{run.n}-{i}"
        waiter = anyio.Event()
        run.observer.results[key] = waiter
        payload = json.dumps({"command": "open_door", "id": key})
        started = time.perf_counter()
        await run.client.publish(f"bridge/{device}/command", payload, qos=1)
        with anyio.move_on_after(5) as scope:
            await waiter.wait()
        if scope.cancelled_caught:
            timeouts += 1
            run.observer.results.pop(key, None)
            run.check_alive()
        else:
            rtts.append(time.perf_counter() - started)
    ok = sum(1 for status in run.observer.statuses.values() if status == "ok")
    return {"commands": count, "ok": ok, "timeouts": timeouts, **spread_ms(rtts)}


async def scrape(http_port: int) -> dict[str, float]:
    """Totals of the bridge metrics that tell whether anything was dropped or failed."""
    wanted = (
        "bridge_device_up",
        "bridge_mqtt_publishes_total",
        "bridge_outbox_depth",
        "bridge_outbox_dropped_total",
        "bridge_events_duplicate_total",
        "bridge_device_errors_total",
        "bridge_mqtt_reconnects_total",
    )
    totals = dict.fromkeys(wanted, 0.0)
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{http_port}/metrics")).text
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in series:
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals | {"exposition_series": len(series), "exposition_bytes": len(text)}


async def scenario(
    children: Children, mosquitto: subprocess.Popen[bytes], mqtt_port: int, n: int, opts: Options
) -> dict[str, Any]:
    result: dict[str, Any] = {"devices": n, "sim_procs": min(opts.sim_procs, n)}
    sims = await start_simulators(children, n, opts.sim_procs)
    http_port = free_port()
    config = write_config(children.work, n, mqtt_port, http_port, sims)
    observer = Observer(set(device_ids(n)))
    async with (
        aiomqtt.Client(
            "127.0.0.1", mqtt_port, identifier=f"bench-consumer-{n}", socket_options=NODELAY
        ) as client,
        anyio.create_task_group() as tg,
    ):
        for topic in ("bridge/+/availability", "bridge/+/event/#", "bridge/+/command/result"):
            await client.subscribe(topic, qos=1)
        tg.start_soon(observer.run, client)
        started = time.monotonic()
        argv = [sys.executable, "-m", "bridge", "run", "--config", str(config)]
        bridge = children.start(f"bridge-{n}", argv)
        profiler = Profiler(children, opts.profile_dir)
        run = Run(n, bridge, sims, mosquitto, client, observer, http_port, profiler)
        run.profile("startup")
        try:
            await phases(run, result, started, opts)
        except (PhaseError, TimeoutError) as exc:
            result["error"] = str(exc) or "deadline exceeded"
            print(f"  error: {exc}", flush=True)
        finally:
            run.profile("")
        if profiler.summaries:
            result["profile"] = profiler.summaries
        with contextlib.suppress(httpx.HTTPError):
            scraped = time.perf_counter()
            result["metrics"] = await scrape(http_port)
            result["metrics_scrape_ms"] = round(1000 * (time.perf_counter() - scraped), 1)
        tg.cancel_scope.cancel()
    result["bridge_exit"] = children.stop(bridge)
    for proc in sims.procs:
        children.stop(proc)
    return result


async def phases(run: Run, result: dict[str, Any], started: float, opts: Options) -> None:
    n = run.n
    result["online"] = online = await measure_online(run, started, opts.online_deadline)
    print(f"  online: {online}", flush=True)
    if online["all_s"] is None:
        raise PhaseError(f"only {online['online']} of {n} devices online")
    run.profile("idle")
    result["idle"] = idle = await measure_idle(run, opts.idle_s)
    print(f"  idle: RSS {idle['rss_mib']} MiB, CPU {idle['cpu_pct']}%", flush=True)
    run.profile("load")
    if n == opts.throughput_devices:
        result["throughput"] = await throughput(run, opts.rates, opts.phase_s)
    else:
        result["load"] = load = await load_phase(run, opts.load_rate, opts.phase_s)
        print(f"  load {opts.load_rate:g}/s: {load}", flush=True)
    run.profile("commands")
    with anyio.fail_after(opts.commands * 5 + 30):
        result["commands"] = commands = await command_round_trips(run, opts.commands)
    print(f"  commands: {commands}", flush=True)


# -- raw MQTT ceiling ---------------------------------------------------------------------------


async def raw_ceiling(mqtt_port: int, count: int) -> dict[str, Any]:
    """aiomqtt alone: QoS 1 publishes, ``MAX_INFLIGHT`` in flight, counted by a subscriber."""
    payload = b"x" * EVENT_SIZE
    received = 0
    done = anyio.Event()
    last = 0.0
    v5 = aiomqtt.ProtocolVersion.V5  # as the bridge, whose broker grants it the same inflight
    async with (
        aiomqtt.Client(
            "127.0.0.1", mqtt_port, identifier="bench-raw-sub", socket_options=NODELAY
        ) as sub,
        aiomqtt.Client(
            "127.0.0.1",
            mqtt_port,
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


# -- report -------------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def table(results: dict[str, Any]) -> str:
    rows = [
        "| devices | bridge up | all online | RSS idle | CPU idle (bridge) | command p50 / p99 |",
        "|---|---|---|---|---|---|",
    ]
    for s in results["scenarios"]:
        online, idle, cmd = s.get("online", {}), s.get("idle", {}), s.get("commands", {})
        rows.append(
            f"| {s['devices']} | {fmt(online.get('bridge_http_s'), ' s')}"
            f" | {fmt(online.get('all_s'), ' s')} ({online.get('online', 0)}/{s['devices']})"
            f" | {fmt(idle.get('rss_mib'), ' MiB')} | {fmt(idle.get('cpu_pct'), ' %')}"
            f" | {fmt(cmd.get('p50_ms'))} / {fmt(cmd.get('p99_ms'), ' ms')} |"
        )
    rows += [
        "",
        (
            "| devices | target | offered | received / emitted | lost | dup"
            " | achieved while emitting | behind at the end (in outbox)"
            " | latency p50 / p99 | CPU % bridge / sims / broker / consumer / other |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["scenarios"]:
        load = s.get("throughput", {}).get("phases", []) + ([s["load"]] if "load" in s else [])
        for p in load:
            cpu, lat = p["cpu_pct"], p["latency"]
            rows.append(
                f"| {s['devices']} | {p['target_per_s']:g}/s | {p['offered_per_s']:g}/s"
                f" | {p['received']}/{p['emitted']} | {p['lost']} | {p['duplicates']}"
                f" | {p['achieved_per_s']:g}/s{'' if p['passed'] else ' ✗'}"
                f" | {p['backlog_at_end']} ({p['outbox_at_end']:g})"
                f" | {fmt(lat['p50_ms'])} / {fmt(lat['p99_ms'], ' ms')}"
                f" | {cpu['bridge']} / {cpu['simulators']} / {cpu['mosquitto']}"
                f" / {cpu['consumer']} / {cpu['other']} |"
            )
    raw = results.get("raw_mqtt")
    if raw:
        rows += [
            "",
            (
                f"Raw aiomqtt QoS 1 ceiling ({raw['messages']} x {raw['payload_bytes']} B,"
                f" {raw['inflight']} in flight): published {raw['published_per_s']}/s,"
                f" delivered {raw['delivered_per_s']}/s"
            ),
        ]
    return "\n".join(rows)


def first(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next((item[key] for item in items if key in item), {})


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Spec §10 targets, judged where this run measured them (None: not measured)."""
    scenarios = results["scenarios"]
    big = [s for s in scenarios if s["devices"] >= 1000]
    online = first(big, "online").get("all_s")
    rss = first(big, "idle").get("rss_mib")
    cpu = first(big, "idle").get("cpu_pct")
    best = first(scenarios, "throughput").get("best") or {}
    p99 = first(big, "load").get("latency", {}).get("p99_ms")
    command = max(
        (s["commands"]["p99_ms"] or 0 for s in scenarios if "commands" in s), default=None
    )

    def judge(value: float | None, limit: float, *, at_least: bool = False) -> dict[str, Any]:
        met = None if value is None else (value >= limit if at_least else value <= limit)
        return {"value": value, "limit": limit, "met": met}

    return {
        "online_1000_s": judge(online, TARGETS["online_s"]),
        "rss_1000_mb": judge(None if rss is None else round(rss * 1.048576, 1), TARGETS["rss_mb"]),
        "idle_cpu_1000_pct": judge(cpu, TARGETS["idle_cpu_pct"]),
        "events_per_s": judge(best.get("achieved_per_s"), TARGETS["events_per_s"], at_least=True),
        "latency_p99_ms_500_per_s_1000": judge(p99, TARGETS["latency_p99_ms_500_per_s"]),
        "command_p99_ms": judge(command, TARGETS["command_p99_ms"]),
    }


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(pages / 2**30, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[Options, Path, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--devices", help="device counts, default 100,1000 (quick: 10,100)")
    parser.add_argument("--quick", action="store_true", help="fast smoke run")
    parser.add_argument("--sim-procs", type=int, default=1, help="simulator processes")
    parser.add_argument("--throughput-devices", type=int, help="where the rate ladder runs")
    parser.add_argument("--rates", help="events/s ladder, default 200,500,750,...,5000")
    parser.add_argument("--load-rate", type=float, default=500.0, help="events/s elsewhere")
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="record the bridge with py-spy, per phase"
    )
    parser.add_argument("--out", type=Path, help="JSON, default bench/results/scale-<date>.json")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    devices = [int(d) for d in (args.devices or ("10,100" if quick else "100,1000")).split(",")]
    ladder = args.rates or ("200,1000" if quick else "200,500,750,1000,1500,2000,3500,5000")
    rates = [float(r) for r in ladder.split(",")]
    opts = Options(
        devices=devices,
        sim_procs=args.sim_procs,
        throughput_devices=args.throughput_devices or min(devices),
        rates=rates,
        phase_s=3.0 if quick else 10.0,
        load_rate=args.load_rate,
        idle_s=5.0 if quick else 20.0,
        commands=50 if quick else 500,
        raw_messages=2000 if quick else 20_000,
        online_deadline=60.0 if quick else 120.0,
        profile_dir=args.py_spy,
    )
    name = f"scale-{time.strftime('%Y-%m-%d')}{'-quick' if quick else ''}.json"
    out = args.out or Path(__file__).parent / "results" / name
    return opts, out, quick


async def bench(children: Children, opts: Options) -> dict[str, Any]:
    mqtt_port = free_port()
    conf = children.work / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=mqtt_port))
    mosquitto = children.start("mosquitto", [MOSQUITTO, "-c", str(conf)])
    await wait_port(mqtt_port, 10, mosquitto)
    results: dict[str, Any] = {"scenarios": []}
    print(f"raw MQTT ceiling, {opts.raw_messages} messages", flush=True)
    results["raw_mqtt"] = await raw_ceiling(mqtt_port, opts.raw_messages)
    print(f"  {results['raw_mqtt']}", flush=True)
    for n in opts.devices:
        print(f"{n} devices", flush=True)
        results["scenarios"].append(await scenario(children, mosquitto, mqtt_port, n, opts))
    return results


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=False, cwd=Path(__file__).parent
    ).stdout.strip()


def on_sigterm(*_: object) -> NoReturn:
    raise SystemExit(143)  # runs the finally blocks: children are stopped


def main(argv: list[str] | None = None) -> int:
    opts, out, quick = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    nofile = raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="bridge-scale-"))
    if opts.profile_dir is not None:
        opts.profile_dir.mkdir(parents=True, exist_ok=True)
    children = Children(work)
    started = time.time()
    try:
        results = anyio.run(bench, children, opts)
    finally:
        children.stop_all()
    results |= {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": quick,
        "options": opts.__dict__,
        "machine": machine(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_modified": bool(git("status", "--porcelain", "--", "src")),
        "mosquitto": subprocess.run(
            [MOSQUITTO, "-h"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.split("\n", 1)[0],
        "open_files_limit": nofile,
        "duration_s": round(time.time() - started),
        "logs": str(work),
    }
    results["targets"] = targets(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    for name, verdict in results["targets"].items():
        state = {True: "met", False: "NOT met", None: "not measured"}[verdict["met"]]
        print(f"{name}: {verdict['value']} (target {verdict['limit']}): {state}")
    for scenario_ in results["scenarios"]:
        for label, summary in scenario_.get("profile", {}).items():
            print(
                f"{label}: {summary['samples']} samples"
                f" ({summary['worker_threads_pct']}% in worker threads); % of them in"
            )
            for name, pct in summary["parts_pct"].items():
                print(f"  {pct:5.1f}  {name}")
    print(f"results: {out}; logs: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
