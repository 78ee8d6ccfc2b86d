"""The poll scheduler: the grid, the start offset, one job at a time, early wake-ups."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from bridge.drivers.base import Wakeup
from bridge.drivers.polling import Cadence, Poller, next_due

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("due", "interval", "now", "expected"),
    [
        (10.0, 1.0, 10.0, 11.0),  # ran exactly on time
        (10.0, 1.0, 10.9, 11.0),  # a slow job does not push the grid
        (10.0, 1.0, 11.0, 12.0),  # finished on the next tick: that tick is gone
        (10.0, 1.0, 13.5, 14.0),  # overran three ticks: skipped, not queued
        (10.0, 0.25, 10.1, 10.25),
        (10.0, 0.0, 10.5, 10.5),  # interval 0: as soon as possible
    ],
)
def test_next_due_keeps_the_grid(due: float, interval: float, now: float, expected: float) -> None:
    assert next_due(due, interval, now) == pytest.approx(expected)


async def test_cadences_run_at_their_rates_one_at_a_time() -> None:
    busy = 0
    overlaps = 0
    done = anyio.Event()
    counts = {"fast": 0, "slow": 0}

    def job(name: str) -> Cadence:
        async def run() -> None:
            nonlocal busy, overlaps
            busy += 1
            overlaps += busy > 1
            await anyio.lowlevel.checkpoint()  # anything else may run meanwhile
            busy -= 1
            counts[name] += 1
            if counts["fast"] >= 40:
                done.set()

        return Cadence(name, 0.005 if name == "fast" else 0.1, run)

    poller = Poller([job("fast"), job("slow")], Wakeup(), rng=random.Random(1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(poller.run)
        with anyio.fail_after(10):
            await done.wait()
        tg.cancel_scope.cancel()
    assert overlaps == 0
    # Counted, not timed: the slow cadence runs far less often than the fast one.
    assert counts["slow"] < counts["fast"] // 4


async def test_a_push_runs_the_wake_cadences_at_once() -> None:
    wakeup = Wakeup()
    ran = anyio.Event()
    slow_runs = 0

    async def status() -> None:
        ran.set()

    async def logs() -> None:
        nonlocal slow_runs
        slow_runs += 1

    poller = Poller(
        [Cadence("status", 3600, status, on_wake=True), Cadence("logs", 3600, logs)],
        wakeup,
        rng=random.Random(0),
    )
    # Seed 0 puts both first ticks tens of minutes away: only the push can run a job now.
    assert random.Random(0).random() * 3600 > 60
    async with anyio.create_task_group() as tg:
        tg.start_soon(poller.run)
        await anyio.wait_all_tasks_blocked()
        assert poller.runs == {"status": 0, "logs": 0}
        wakeup.set()
        with anyio.fail_after(5):
            await ran.wait()
        tg.cancel_scope.cancel()
    assert poller.runs == {"status": 1, "logs": 0}
    assert slow_runs == 0


async def test_a_push_before_the_start_is_read_by_the_baseline() -> None:
    wakeup = Wakeup()
    wakeup.set()  # arrived while the driver read its baseline
    poller = Poller([Cadence("status", 3600, _noop, on_wake=True)], wakeup, rng=random.Random(0))
    async with anyio.create_task_group() as tg:
        tg.start_soon(poller.run)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert poller.runs == {"status": 0}


async def test_a_job_error_ends_the_run() -> None:
    async def broken() -> None:
        raise RuntimeError("device lost")

    poller = Poller([Cadence("c", 0.001, broken)], Wakeup(), rng=random.Random(0))
    with pytest.raises(RuntimeError, match="device lost"), anyio.fail_after(5):
        await poller.run()


def test_a_poller_needs_a_cadence() -> None:
    with pytest.raises(ValueError, match="at least one cadence"):
        Poller([], Wakeup())


async def _noop() -> None:
    return None
