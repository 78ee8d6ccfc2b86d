"""Device HTTP clients side by side: what one request costs the client, against the raw aiomqtt
QoS 1 ceiling of the same run (spec §10: a polled bridge's device requests per core-second
should reach 0.4 of it).

One simulator process serves ``--devices`` Ultra Stream encoders (the project's simulator,
:mod:`bridge.simulators.ultrastream`, each on its own loopback port); their ``ping`` is a polled
driver's most frequent request (no login, a small JSON reply). For each client, one client per
device as the bridge has, one task per device asks ``ping`` again as soon as the answer is in,
for ``--seconds``: requests per CPU-second of this process (the clients only: simulators and
broker are other processes) and that over the ceiling. Then, with every device answering only
after a delay, one request per device in flight: the objects the garbage collector tracks per
in-flight request, which is what a full collection walks for every long-polling device; and the
objects a finished request leaves in reference cycles, which only a collection frees.

Clients: the bridge's own path (:class:`bridge.http.DeviceHttp`, aiohttp with the bridge's status
checks, size caps, error mapping and request metric), aiohttp's ``ClientSession`` alone, httpx's
``AsyncClient`` (the bridge's client before issue 13) and httpcore's connection pool directly.
From the repository root:

    .venv/bin/python -m bench.http_clients                # ~1 minute
    .venv/bin/python -m bench.http_clients --quick        # a few seconds per client
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import aiohttp
import anyio
import httpcore
import httpx

from bench.scale import simulators
from bench.scale.peers import raw_ceiling, start_broker
from bench.scale.processes import ROOT, Children, CpuMeter, raise_nofile
from bench.scale.report import machine
from bridge.drivers.ultrastream import UltraStreamConfig
from bridge.http import DeviceHttp
from bridge.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Callable

PING = "/usapi?method=ping"
IN_FLIGHT_DELAY = 2.0  # seconds each device waits before answering, for the in-flight census


class Client(Protocol):
    async def get(self, path: str) -> bytes: ...

    async def aclose(self) -> None: ...


class BridgeClient:
    """The bridge's own path: ``DeviceHttp`` (aiohttp, with the bridge's checks and metrics)."""

    def __init__(self, url: str) -> None:
        config = UltraStreamConfig(id="bench", driver="ultrastream", url=url)
        self._http = DeviceHttp(config, metrics=Metrics())

    async def get(self, path: str) -> bytes:
        return await self._http.request("GET", path)

    async def aclose(self) -> None:
        await self._http.aclose()


class HttpxClient:
    def __init__(self, url: str) -> None:
        self._client = httpx.AsyncClient(base_url=url)

    async def get(self, path: str) -> bytes:
        return (await self._client.get(path)).content

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpcoreClient:
    def __init__(self, url: str) -> None:
        self._url = url
        self._pool = httpcore.AsyncConnectionPool(max_connections=4)

    async def get(self, path: str) -> bytes:
        response = await self._pool.request("GET", self._url + path)
        return response.content

    async def aclose(self) -> None:
        await self._pool.aclose()


class AiohttpClient:
    def __init__(self, url: str) -> None:
        self._url = url
        self._session: aiohttp.ClientSession | None = None

    async def get(self, path: str) -> bytes:
        if self._session is None:  # made inside the running event loop
            self._session = aiohttp.ClientSession(
                base_url=self._url, connector=aiohttp.TCPConnector(limit=4)
            )
        async with self._session.get(path) as response:
            return await response.read()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


CLIENTS: dict[str, Callable[[str], Client]] = {
    "bridge DeviceHttp (aiohttp)": BridgeClient,
    "httpx AsyncClient": HttpxClient,
    "httpcore AsyncConnectionPool": HttpcoreClient,
    "aiohttp ClientSession": AiohttpClient,
}


@dataclass(frozen=True)
class Options:
    devices: int
    seconds: float
    raw_messages: int


async def closed_loop(clients: list[Client], seconds: float) -> int:
    """Every client asks ``ping`` again as soon as it has the answer; requests answered."""
    done = 0

    async def worker(client: Client) -> None:
        nonlocal done
        while True:
            await client.get(PING)
            done += 1

    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(worker, client)
    return done


async def set_delay(urls: list[str], delay: float | None) -> None:
    """Every device answers ``ping`` only after ``delay`` seconds (None: at once again)."""
    async with httpx.AsyncClient() as control:
        for url in urls:
            if delay is None:
                await control.post(f"{url}/_sim/clear")
            else:
                fault = {"mode": None, "count": -1, "delay": delay, "path_prefix": "/usapi"}
                await control.post(f"{url}/_sim/fault", json=fault)


async def in_flight(clients: list[Client], urls: list[str]) -> float:
    """Objects the collector tracks per request in flight (one per client, all waiting)."""
    await set_delay(urls, IN_FLIGHT_DELAY)
    try:
        gc.collect()
        gc.freeze()  # everything before: not counted
        async with anyio.create_task_group() as tg:
            tracked = len(gc.get_objects())
            for client in clients:
                tg.start_soon(client.get, PING)
            await anyio.sleep(IN_FLIGHT_DELAY / 2)
            tracked = len(gc.get_objects()) - tracked
    finally:
        gc.unfreeze()
        await set_delay(urls, None)
    return tracked / len(clients)


async def cyclic_garbage(clients: list[Client], count: int = 200) -> float:
    """Objects per request that only the cycle collector frees (reference cycles), which a
    request leaves behind once it is done."""
    gc.collect()
    gc.disable()
    try:
        for i in range(count):
            await clients[i % len(clients)].get(PING)
        found = gc.collect()
    finally:
        gc.enable()
    return found / count


async def measure(
    make: Callable[[str], Client], sims: simulators.Simulators, opts: Options, ceiling: float
) -> dict[str, Any]:
    clients = [make(url) for url in sims.urls]
    try:
        await closed_loop(clients, min(1.0, opts.seconds))  # connections open, caches warm
        meter = CpuMeter({"simulators": [p.pid for p in sims.procs], "client": [os.getpid()]})
        cpu = time.process_time()
        requests = await closed_loop(clients, opts.seconds)
        cpu = time.process_time() - cpu
        used = meter.seconds()
        objects = await in_flight(clients, sims.urls)
        garbage = await cyclic_garbage(clients)
    finally:
        for client in clients:
            await client.aclose()
    per_core = requests / cpu
    return {
        "requests": requests,
        "requests_per_s": round(requests / used["wall"]),
        "client_cpu_pct": round(100 * cpu / used["wall"], 1),
        "simulators_cpu_pct": round(100 * used["simulators"] / used["wall"], 1),
        "other_cpu_pct": round(100 * used["other"] / used["wall"], 1),
        "cpu_per_request_us": round(1e6 * cpu / requests, 1),
        "requests_per_core_s": round(per_core),
        "ratio": round(per_core / ceiling, 3),
        "tracked_per_in_flight_request": round(objects, 1),
        "cyclic_garbage_per_request": round(garbage, 1),
    }


async def run(children: Children, opts: Options) -> dict[str, Any]:
    broker = await start_broker(children)
    raw = await raw_ceiling(broker.port, opts.raw_messages)
    children.stop(broker.proc)
    print(f"raw aiomqtt QoS 1 ceiling: {raw['published_per_s']}/s", flush=True)
    # Two simulator processes: the server side must not be what limits the clients.
    sims = await simulators.start(children, "ultrastream", opts.devices, 2)
    results: dict[str, Any] = {"raw_mqtt": raw, "clients": {}}
    for name, make in CLIENTS.items():
        found = await measure(make, sims, opts, float(raw["published_per_s"]))
        print(f"{name}: {found}", flush=True)
        results["clients"][name] = found
    return results


def table(results: dict[str, Any]) -> str:
    ceiling = results["raw_mqtt"]["published_per_s"]
    rows = [
        (
            "| client | requests/s | client CPU | CPU per request | requests per core-s"
            " | ceiling | ratio (goal >= 0.4) | tracked objects per request in flight"
            " | cyclic garbage per request |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["clients"].items():
        rows.append(
            f"| {name} | {r['requests_per_s']} | {r['client_cpu_pct']} % | "
            f"{r['cpu_per_request_us']} µs | {r['requests_per_core_s']} | {ceiling}/s"
            f" | {r['ratio']} | {r['tracked_per_in_flight_request']}"
            f" | {r['cyclic_garbage_per_request']} |"
        )
    return "\n".join(rows)


def on_sigterm(*_: object) -> NoReturn:
    raise SystemExit(143)  # runs the finally blocks: children are stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_clients", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 s per client")
    parser.add_argument("--devices", type=int, default=50, help="simulated devices, default 50")
    parser.add_argument("--out", type=Path, help="JSON, default bench/results/http-clients-<date>")
    args = parser.parse_args(argv)
    if args.devices < 1:
        parser.error("--devices must be at least 1")
    opts = Options(
        devices=args.devices,
        seconds=2.0 if args.quick else 10.0,
        raw_messages=2000 if args.quick else 20_000,
    )
    signal.signal(signal.SIGTERM, on_sigterm)
    raise_nofile()
    children = Children(Path(tempfile.mkdtemp(prefix="bridge-http-clients-")))
    try:
        results = anyio.run(run, children, opts)
    finally:
        children.stop_all()
    results |= {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "options": vars(opts)}
    name = f"http-clients-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    out = args.out or ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
