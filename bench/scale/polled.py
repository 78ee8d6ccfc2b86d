"""One bridge with many polled devices (Onetouch, Ultra Stream, Grandstream) at their default
cadences (``poll_interval: 1s``): start-up, then what a poll costs the bridge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from bench.scale.processes import PhaseError
from bench.scale.scenarios import measure_online, scenario_of

if TYPE_CHECKING:
    from bench.scale.scenarios import Bench, Run

PREFIX = {"onetouch": "ot", "ultrastream": "us", "grandstream": "gs"}
SETTLE = 3.0  # seconds after the last device came online before the window opens


async def scenario(bench: Bench, kind: str, n: int) -> dict[str, Any]:
    """Start-up of ``n`` devices of ``kind``, then a steady window of ``polled_window_s``."""
    return await scenario_of(bench, kind, n, PREFIX[kind], phases)


async def phases(run: Run, result: dict[str, Any], bench: Bench) -> None:
    result["online"] = online = await measure_online(run, bench.opts.online_deadline)
    print(f"  online: {online}", flush=True)
    if online["all_s"] is None:
        raise PhaseError(f"only {online['online']} of {run.n} devices online")
    await anyio.sleep(SETTLE)
    run.profile("polling")
    result["polling"] = polling = await steady(run, bench.opts.polled_window_s, bench.ceiling)
    print(f"  polling: {polling}", flush=True)


async def steady(run: Run, window: float, ceiling: float) -> dict[str, Any]:
    """Requests and polls the devices answered over ``window`` seconds against the CPU the
    bridge used meanwhile.

    A poll is one run of the driver's ``poll_interval`` job (``simulators.POLL_MARK``); the
    other cadences' requests (logs, slow status) count as requests, not polls, but their CPU is
    in the cost of a poll: it is what serving a device at ``poll_interval: 1s`` costs.
    """
    before = await run.sims.requests()
    meter = run.meter()
    await anyio.sleep(window)
    used = meter.seconds()
    after = await run.sims.requests()
    run.check_alive()
    requests = after["requests"] - before["requests"]
    polls = after["polls"] - before["polls"]
    cpu = used["bridge"]
    wall = used["wall"]
    per_core = requests / cpu if cpu else None
    return {
        "window_s": round(wall, 2),
        "requests": requests,
        "polls": polls,
        "requests_per_s": round(requests / wall, 1),
        "polls_per_device_s": round(polls / wall / run.n, 3),  # 1.0: every device on time
        "bridge_cpu_pct": round(100 * cpu / wall, 1),
        "simulators_cpu_pct": round(100 * used["simulators"] / wall, 1),
        "other_cpu_pct": round(100 * used["other"] / wall, 1),
        "cpu_per_poll_ms": round(1000 * cpu / polls, 3) if polls else None,
        "cpu_per_request_ms": round(1000 * cpu / requests, 3) if requests else None,
        "requests_per_core_s": round(per_core) if per_core else None,
        "requests_per_core_s_ratio": round(per_core / ceiling, 3) if per_core else None,
        # Devices one core serves at poll_interval 1s: polls per CPU-second (the other cadences'
        # requests included), whether or not every device here was polled on time.
        "devices_per_core": round(polls / cpu) if cpu else None,
    }
