"""Simulator processes: many simulated devices of one kind per process, each on its own
loopback port, the project's own simulators (:mod:`bridge.simulators`).

Run as ``python -m bench.scale.simulators KIND COUNT OUT OFFSET``: it serves ``COUNT`` devices
numbered from ``OFFSET`` and, once every one listens, writes ``{"ports": [...], "control":
port}`` to ``OUT``. Its control server answers

- ``GET /drive?rate=R&duration=D`` (2N only): press buttons round robin over this process's
  devices at ``R`` events/s (a press is ``KeyPressed`` + ``KeyReleased``) for ``D`` seconds,
  in-process, then answer with what was emitted. Every event carries its creation time (wall
  clock) as the extra parameter ``t``;
- ``GET /counts``: the HTTP requests the devices have answered so far (``requests``, digest
  challenges included) and the polls among them (``polls``: the first request of a polled
  driver's ``poll_interval`` job, see ``POLL_MARK``).

The parent side (:func:`start`) starts the processes and reads their control servers.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from bench.scale.processes import PhaseError, alive
from bridge.simulators.grandstream import GrandstreamSimulator
from bridge.simulators.onetouch import OnetouchSimulator
from bridge.simulators.server import Request, Response, serve
from bridge.simulators.two_n import TwoNSimulator
from bridge.simulators.ultrastream import UltraStreamSimulator

if TYPE_CHECKING:
    import subprocess

    from bench.scale.processes import Children
    from bridge.simulators.base import Simulator

USERNAME, PASSWORD = "bench", "bench-secret"
KINDS = ("2n", "onetouch", "ultrastream", "grandstream")
POLLED = KINDS[1:]
# The first request of each polled driver's ``poll_interval`` job, as the simulator counts it.
POLL_MARK = {"onetouch": "relay/status", "ultrastream": "ping", "grandstream": "device?get"}


class StampedTwoN(TwoNSimulator):
    """A 2N simulator whose events carry their creation time (``params.t``, wall clock)."""

    def emit(self, name: str, params: dict[str, Any] | None = None) -> Any:  # noqa: ANN401 - the parent's event
        return super().emit(name, {**(params or {}), "t": time.time()})


def make(kind: str, index: int) -> Simulator:
    """Device number ``index`` of ``kind``, with the benchmark's credentials."""
    if kind == "2n":
        return StampedTwoN(username=USERNAME, password=PASSWORD, serial=f"54-{index:04d}-0001")
    mac = f"0C11{index:08X}"
    if kind == "onetouch":
        return OnetouchSimulator(
            username=USERNAME,
            password=PASSWORD,
            mac=":".join(mac[i : i + 2] for i in range(0, 12, 2)),
        )
    if kind == "ultrastream":
        # The device's own progress (live, long operations) ticks once a second, not 20 times:
        # a thousand of them would keep the simulator process busy for nothing.
        return UltraStreamSimulator(
            username=USERNAME, password=PASSWORD, step=1.0, serial=f"C3{index:011d}"
        )
    if kind == "grandstream":
        return GrandstreamSimulator(username=USERNAME, password=PASSWORD, mac=mac)
    raise ValueError(f"unknown simulator kind {kind!r}; known: {', '.join(KINDS)}")


def device_config(kind: str, url: str) -> dict[str, Any]:
    """What a bridge's ``devices:`` entry needs for a simulator of ``kind`` at ``url``."""
    config: dict[str, Any] = {
        "driver": kind,
        "url": url,
        "username": USERNAME,
        "password": PASSWORD,
    }
    return config | ({"auth": "digest"} if kind == "2n" else {})


@dataclass
class Devices:
    """The devices one simulator process serves."""

    kind: str
    sims: list[Simulator]

    async def drive(self, rate: float, duration: float) -> dict[str, float]:
        """Press buttons round robin at ``rate`` events/s for ``duration`` seconds."""
        per_second = rate / 2
        total = round(per_second * duration)
        start, first, done = time.monotonic(), time.time(), 0
        while done < total:
            due = min(total, 1 + int((time.monotonic() - start) * per_second))
            while done < due:
                sim = self.sims[done % len(self.sims)]
                if isinstance(sim, TwoNSimulator):
                    sim.press("%1")
                done += 1
            await anyio.sleep(0.002)
        return {"emitted": 2 * done, "elapsed": time.monotonic() - start, "first": first}

    def counts(self) -> dict[str, int]:
        mark = POLL_MARK.get(self.kind)
        polls = sum(getattr(sim, "hits", {}).get(mark, 0) for sim in self.sims) if mark else 0
        return {"requests": sum(sim.requests for sim in self.sims), "polls": polls}

    async def control(self, request: Request) -> Response:
        if request.path == "/counts":
            return Response(200, json.dumps(self.counts()).encode())
        if request.path == "/drive" and self.kind == "2n":
            result = await self.drive(
                float(request.query["rate"]), float(request.query["duration"])
            )
            return Response(200, json.dumps(result).encode())
        return Response(404, b"{}")


async def serve_devices(kind: str, count: int, out: Path, offset: int) -> None:
    devices = Devices(kind, [make(kind, i) for i in range(offset, offset + count)])
    async with anyio.create_task_group() as tg:
        ports = [await tg.start(sim.serve, "127.0.0.1", 0) for sim in devices.sims]
        control = await tg.start(serve, devices.control, "127.0.0.1", 0)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"ports": ports, "control": control}))
        tmp.replace(out)


# -- the parent side ------------------------------------------------------------------------


@dataclass
class Simulators:
    """Simulator processes of one kind; device ``i`` listens on ``ports[i]``."""

    kind: str
    procs: list[subprocess.Popen[bytes]]
    ports: list[int]
    controls: list[int]  # control port of each process
    counts: list[int]  # devices of each process

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    async def drive(self, rate: float, seconds: float) -> dict[str, float]:
        """Have every process press buttons, its share of ``rate``, at once: events emitted
        and the longest time it took."""
        replies: list[dict[str, float]] = []
        total = sum(self.counts)
        async with httpx.AsyncClient(timeout=seconds + 30) as http:

            async def one(control: int, count: int) -> None:
                params = {"rate": rate * count / total, "duration": seconds}
                reply = await http.get(f"http://127.0.0.1:{control}/drive", params=params)
                replies.append(reply.raise_for_status().json())

            async with anyio.create_task_group() as tg:
                for control, count in zip(self.controls, self.counts, strict=True):
                    tg.start_soon(one, control, count)
        return {
            "emitted": sum(r["emitted"] for r in replies),
            "elapsed": max(r["elapsed"] for r in replies),
        }

    async def requests(self) -> dict[str, int]:
        """HTTP requests and polls answered so far, over every process."""
        totals = {"requests": 0, "polls": 0}
        async with httpx.AsyncClient(timeout=10) as http:
            for control in self.controls:
                counts = (await http.get(f"http://127.0.0.1:{control}/counts")).json()
                for key in totals:
                    totals[key] += int(counts[key])
        return totals


async def start(children: Children, kind: str, n: int, procs: int) -> Simulators:
    """``n`` devices of ``kind`` over ``procs`` processes, once every one listens."""
    procs = max(1, min(procs, n))
    counts = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    files, started, offset = [], [], 0
    for i, count in enumerate(counts):
        out = children.work / f"sim-{kind}-{n}-{i}.json"
        argv = [sys.executable, "-m", "bench.scale.simulators", kind, str(count), str(out)]
        started.append(children.start(f"sim-{kind}-{n}-{i}", [*argv, str(offset)]))
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
    if len(ports) != n:
        raise PhaseError(f"{len(ports)} of {n} simulated devices listen")
    return Simulators(kind, started, ports, controls, counts)


def main(argv: list[str]) -> None:
    kind, count, out, offset = argv
    if kind not in KINDS:
        raise SystemExit(f"unknown simulator kind {kind!r}; known: {', '.join(KINDS)}")
    anyio.run(serve_devices, kind, int(count), Path(out), int(offset))


if __name__ == "__main__":
    main(sys.argv[1:])
