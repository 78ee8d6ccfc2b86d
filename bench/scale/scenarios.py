"""One bridge with many 2N intercoms (long polls): start-up, idle, events at QoS 1, commands,
``/metrics`` scrapes and the garbage collector, in that order."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt
import anyio
import httpx

from bench.scale import simulators
from bench.scale.gcwatch import Watched, pauses, start_bridge
from bench.scale.peers import NODELAY, Broker, Observer, Phase, scrape
from bench.scale.processes import CpuMeter, PhaseError, alive, free_port, rss_mib, wait_port
from bench.scale.profile import Profiler
from bench.scale.report import spread_ms

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from bench.scale.processes import Children
    from bench.scale.simulators import Simulators

KEEPING_UP = 0.95  # a rate passes when >= 95% of it arrived while the simulators emitted


@dataclass(frozen=True)
class Options:
    devices: list[int]
    sim_procs: int
    throughput_devices: int
    rates: list[float]
    phase_s: float
    load_rate: float | None  # events/s at the other device counts; None: from the ceiling
    idle_s: float
    commands: int
    scrapes: int
    raw_messages: int
    online_deadline: float
    polled: list[str]  # simulator kinds of the polled scenario
    polled_devices: list[int]
    polled_window_s: float
    profile_dir: Path | None
    refreeze: float | None  # gcwatch --refreeze: a collector policy to try


@dataclass(frozen=True)
class Bench:
    """What every scenario of a run shares."""

    children: Children
    broker: Broker
    opts: Options
    ceiling: float  # raw aiomqtt QoS 1 publishes acknowledged per second, this run


def device_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{n}-{i:04d}" for i in range(n)]


def write_config(
    work: Path, name: str, devices: list[dict[str, Any]], mqtt_port: int, http_port: int
) -> Path:
    """A bridge configuration with ``devices`` (id, driver, url, ... each) in ``work``."""
    config = {
        "mqtt": {"url": f"mqtt://127.0.0.1:{mqtt_port}", "client_id": f"bench-{name}"},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "state_dir": str(work / f"state-{name}"),
        "log": {"level": "warning"},
        "devices": devices,
    }
    path = work / f"{name}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@dataclass
class Run:
    """One bridge with its devices, the consumer, and the processes to watch."""

    started: float
    n: int
    ids: list[str]
    bridge: Watched
    sims: Simulators
    broker: Broker
    client: aiomqtt.Client
    observer: Observer
    http_port: int
    profiler: Profiler

    def profile(self, label: str) -> None:
        """Record the bridge from now until the next call (or ``profile("")``)."""
        self.profiler.stop()
        if label:
            self.profiler.start(self.bridge.pid, f"bridge-{self.sims.kind}-{self.n}-{label}")

    def meter(self) -> CpuMeter:
        return CpuMeter(
            {
                "bridge": [self.bridge.pid],
                "simulators": [p.pid for p in self.sims.procs],
                "mosquitto": [self.broker.proc.pid],
                "consumer": [os.getpid()],
            }
        )

    def check_alive(self) -> None:
        alive(self.bridge.proc, "the bridge")
        for proc in self.sims.procs:
            alive(proc, "a simulator")


@contextlib.asynccontextmanager
async def running(bench: Bench, sims: Simulators, prefix: str) -> AsyncIterator[Run]:
    """A bridge for ``sims`` (started now, while the consumer already listens) and its Run;
    ``Run.started`` is when its process was started (monotonic)."""
    children, broker = bench.children, bench.broker
    n = len(sims.ports)
    ids = device_ids(prefix, n)
    http_port = free_port()
    name = f"bridge-{sims.kind}-{n}"
    devices = [
        {"id": device, **simulators.device_config(sims.kind, url)}
        for device, url in zip(ids, sims.urls, strict=True)
    ]
    config = write_config(children.work, name, devices, broker.port, http_port)
    observer = Observer(set(ids))
    async with (
        aiomqtt.Client(
            "127.0.0.1", broker.port, identifier=f"bench-consumer-{name}", socket_options=NODELAY
        ) as client,
        anyio.create_task_group() as tg,
    ):
        for topic in ("bridge/+/availability", "bridge/+/event/#", "bridge/+/command/result"):
            await client.subscribe(topic, qos=1)
        tg.start_soon(observer.run, client)
        started = time.monotonic()
        bridge = start_bridge(children, name, config, bench.opts.refreeze)
        run = Run(
            started,
            n,
            ids,
            bridge,
            sims,
            broker,
            client,
            observer,
            http_port,
            Profiler(children, bench.opts.profile_dir),
        )
        try:
            yield run
        finally:
            run.profile("")
            tg.cancel_scope.cancel()
            children.stop(bridge.proc)


Phases = Callable[["Run", dict[str, Any], "Bench"], Awaitable[None]]


async def scenario_of(
    bench: Bench, kind: str, n: int, prefix: str, phases: Phases
) -> dict[str, Any]:
    """``n`` simulated devices of ``kind``, a bridge for them (device ids ``<prefix><n>-<i>``)
    and ``phases`` on that Run; a phase that fails ends the scenario with ``error``."""
    opts = bench.opts
    result: dict[str, Any] = {"kind": kind, "devices": n, "sim_procs": min(opts.sim_procs, n)}
    sims = await simulators.start(bench.children, kind, n, opts.sim_procs)
    try:
        async with running(bench, sims, prefix) as run:
            run.profile("startup")
            try:
                await phases(run, result, bench)
            except (PhaseError, TimeoutError) as exc:
                result["error"] = str(exc) or "deadline exceeded"
                print(f"  error: {exc}", flush=True)
            run.profile("")
            if run.profiler.summaries:
                result["profile"] = run.profiler.summaries
            with contextlib.suppress(httpx.HTTPError):
                result["metrics"] = await scrape(run.http_port)
    finally:
        for proc in sims.procs:
            bench.children.stop(proc)
    return result


async def scenario(bench: Bench, n: int) -> dict[str, Any]:
    """Every phase at ``n`` 2N devices."""
    return await scenario_of(bench, "2n", n, "n", phases)


def load_rate(opts: Options, ceiling: float) -> float:
    """The rate of the latency target: 500 events/s, or 0.05 of the ceiling where that is less
    (spec §10 as issue 13 states it)."""
    return opts.load_rate if opts.load_rate is not None else min(500.0, round(0.05 * ceiling))


async def phases(run: Run, result: dict[str, Any], bench: Bench) -> None:
    opts = bench.opts
    n = run.n
    result["online"] = online = await measure_online(run, opts.online_deadline)
    print(f"  online: {online}", flush=True)
    if online["all_s"] is None:
        raise PhaseError(f"only {online['online']} of {n} devices online")
    run.profile("idle")
    result["idle"] = idle = await measure_idle(run, opts.idle_s)
    print(f"  idle: RSS {idle['rss_mib']} MiB, CPU {idle['cpu_pct']}%", flush=True)
    run.profile("")
    result["heap"] = await heap(run)
    print(f"  heap: {result['heap']['tracked']} tracked, {result['heap']['frozen']} frozen")
    await anyio.sleep(1.0)
    run.profile("load")
    if n == opts.throughput_devices:
        result["throughput"] = await throughput(run, opts.rates, opts.phase_s)
    else:
        rate = load_rate(opts, bench.ceiling)
        result["load"] = load = await load_phase(run, rate, opts.phase_s)
        print(f"  load {rate:g}/s: {load}", flush=True)
    run.profile("commands")
    with anyio.fail_after(opts.commands * 5 + 30):
        result["commands"] = commands = await command_round_trips(run, opts.commands)
    print(f"  commands: {commands}", flush=True)
    run.profile("scrapes")
    result["scrapes"] = scrapes = await measure_scrapes(run, opts.scrapes)
    print(f"  /metrics: {scrapes}", flush=True)
    result["heap_end"] = end = await heap(run, reclaim=True)
    print(f"  heap at the end: {end['tracked']} tracked, {end['reclaim']}", flush=True)


async def measure_online(run: Run, deadline: float) -> dict[str, Any]:
    """From the bridge's start until every device's ``availability`` is ``online``."""
    observer = run.observer
    meter = run.meter()
    http_s = None
    with anyio.move_on_after(deadline):
        await wait_port(run.http_port, deadline, run.bridge.proc)
        http_s = round(time.monotonic() - run.started, 3)
        while not observer.all_online.is_set():
            run.check_alive()
            with anyio.move_on_after(0.5):
                await observer.all_online.wait()
    times = sorted(t - run.started for t in observer.online.values())
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
    """RSS and CPU of the bridge over ``window`` seconds with nothing happening."""
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


async def heap(run: Run, *, reclaim: bool = False) -> dict[str, Any]:
    """What the bridge's collector walks once its devices are online: a census by type (the
    bridge stalls while it is taken, so it comes after the idle window). ``reclaim``: also the
    garbage in the frozen heap, which freezing kept from being collected (this changes what is
    frozen: at the end of a scenario only)."""
    stats = await run.bridge.stats(census=True, reclaim=reclaim)
    census = stats["census"]
    per_device = {name: round(count / run.n, 1) for name, count in census["by_type"].items()}
    return {
        "tracked": stats["tracked"],
        "frozen": stats["frozen"],
        "tracked_per_device": round(stats["tracked"] / run.n, 1),
        "by_type_per_device": dict(list(per_device.items())[:25]),
        "referrers": census["referrers"],
        "collections": stats["collections"],
        "reclaim": stats.get("reclaim"),
    }


async def load_phase(run: Run, rate: float, seconds: float) -> dict[str, Any]:
    """One phase at ``rate`` events/s: loss, duplicates, achieved rate, latency, CPU, and the
    collector's pauses meanwhile.

    The achieved rate counts the events received while the simulators were still emitting: a
    bridge that falls behind builds a backlog, which a rate over the whole phase would hide
    (the backlog drains quickly once the load stops). /metrics is read only outside that window.
    """
    before = await scrape(run.http_port)
    phase = Phase(since=time.time())
    run.observer.phase = phase
    meter = run.meter()
    began = time.monotonic()
    try:
        with anyio.fail_after(seconds + 30):
            sent = await run.sims.drive(rate, seconds)
        window = time.monotonic() - began
        in_window = len(phase.ids)
        at_end = await scrape(run.http_port)
        phase.target = int(sent["emitted"])
        phase.check()
        with anyio.move_on_after(30):  # the backlog's deadline
            await phase.done.wait()
        cpu = meter.read()
        ended = time.monotonic()
        await anyio.sleep(0.5)  # late duplicates
    finally:
        run.observer.phase = None
    after = await scrape(run.http_port)
    collector = await run.bridge.stats()
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
        "gc": pauses(collector, began, ended),
        "backlog_at_end": int(sent["emitted"]) - in_window,  # not yet received when it stopped
        "outbox_at_end": at_end["bridge_outbox_depth"],  # of which in the bridge's outbox
        "outbox_dropped": after["bridge_outbox_dropped_total"]
        - before["bridge_outbox_dropped_total"],
        "drained_after_s": round(max(0.0, phase.last - began - window), 2),
    }


async def throughput(run: Run, rates: list[float], seconds: float) -> dict[str, Any]:
    """The rate ladder, up to the first rate that is not sustained."""
    phases: list[dict[str, Any]] = []
    for rate in rates:
        run.check_alive()
        result = await load_phase(run, rate, seconds)
        phases.append(result)
        print(
            f"  {rate:>6g}/s: received {result['received']}/{result['emitted']},"
            f" achieved {result['achieved_per_s']}/s, bridge CPU {result['cpu_pct']['bridge']}%"
            f", p99 {result['latency']['p99_ms']} ms, behind at the end"
            f" {result['backlog_at_end']} (outbox {result['outbox_at_end']:g}),"
            f" full collections {result['gc']['gen2']}",
            flush=True,
        )
        if not result["passed"]:
            break
        await anyio.sleep(1.0)
    best = max((p for p in phases if p["passed"]), key=lambda p: p["offered_per_s"], default=None)
    return {"phase_s": seconds, "phases": phases, "best": best}


async def command_round_trips(run: Run, count: int) -> dict[str, Any]:
    """``open_door`` published -> ``command/result`` received, one at a time."""
    rtts: list[float] = []
    timeouts = 0
    for i in range(count):
        device, key = run.ids[i % len(run.ids)], f"rtt-{run.n}-{i}"
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


PROBE_GAP = 0.002  # seconds between two /healthz probes


async def curl_scrapes(url: str, count: int) -> list[tuple[float, float]]:
    """``count`` scrapes by curl, whose own clock leaves out a Python client's reading time
    (httpx spends milliseconds on 300 kB): (first byte, whole reply) in seconds each."""
    timings = []
    for _ in range(count):
        done = await anyio.run_process(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total}", url]
        )
        first_byte, total = map(float, done.stdout.split())
        timings.append((first_byte, total))
        await anyio.sleep(0.2)
    return timings


async def measure_scrapes(run: Run, count: int) -> dict[str, Any]:
    """``count`` scrapes of /metrics, one after the other, timed by the client, while a second
    client asks /healthz without pause: how long the bridge's event loop was held up is how
    late those answers came (their longest time during the scrapes, against their median
    before them)."""
    url = f"http://127.0.0.1:{run.http_port}"
    probes: list[tuple[float, float]] = []  # (monotonic start, seconds)
    took: list[float] = []
    size = series = 0
    async with (
        httpx.AsyncClient(timeout=30) as scraper,
        httpx.AsyncClient(timeout=30) as prober,
        anyio.create_task_group() as tg,
    ):

        async def probe() -> None:
            while True:
                sent = time.perf_counter()
                await prober.get(f"{url}/healthz")  # 503 too: it is the answer time that counts
                probes.append((sent, time.perf_counter() - sent))
                await anyio.sleep(PROBE_GAP)

        tg.start_soon(probe)
        await anyio.sleep(1.0)  # the probe's baseline
        baseline = [seconds for _, seconds in probes]
        first = time.perf_counter()
        for _ in range(count):
            sent = time.perf_counter()
            reply = (await scraper.get(f"{url}/metrics")).raise_for_status()
            took.append(time.perf_counter() - sent)
            size = len(reply.content)
            series = sum(1 for line in reply.text.splitlines() if line and line[0] != "#")
            await anyio.sleep(0.2)
        last = time.perf_counter()
        tg.cancel_scope.cancel()
    during = [seconds for sent, seconds in probes if first <= sent <= last]
    curl = await curl_scrapes(f"{url}/metrics", count)
    return {
        "scrapes": count,
        "bytes": size,
        "series": series,
        "scrape_ms": spread_ms(took),
        "curl_total_ms": spread_ms([total for _, total in curl]),
        "curl_first_byte_ms": spread_ms([first_byte for first_byte, _ in curl]),
        "healthz_before_ms": spread_ms(baseline),
        "healthz_during_ms": spread_ms(during),
        "stall_ms": round(1000 * (max(during, default=0.0) - statistics.median(baseline)), 1)
        if baseline
        else None,
    }
