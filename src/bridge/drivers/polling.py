"""The poll scheduler of drivers whose devices have no event channel.

A polled driver reads several things at different rates (Onetouch: relay, input and call
status every ``poll_interval``, the door and call logs a little slower, SIP and the system
status slowly). :class:`Poller` runs those jobs:

- on a fixed grid per cadence (``start + k * interval``), so the period does not drift by the
  time the requests take; a job that overran skips the ticks it missed instead of bursting;
- with a random start offset per cadence, so devices started together do not poll in step;
- one job at a time, so a device never sees two requests from its poller at once (commands
  go through the same :class:`~bridge.http.DeviceHttp`, which serialises them too);
- woken early by a push (:class:`~bridge.drivers.base.Wakeup`): the cadences marked
  ``on_wake`` run at once, and their grid stays where it was.

A job raises ``DeviceError`` to end the run; the supervisor backs off and restarts the driver.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from bridge.drivers.base import Wakeup


@dataclass(frozen=True, slots=True)
class Cadence:
    """A job and its period in seconds; ``on_wake`` jobs also run when the device pushes."""

    name: str
    interval: float
    job: Callable[[], Awaitable[None]]
    on_wake: bool = False


def next_due(due: float, interval: float, now: float) -> float:
    """The next tick of the grid ``due + k * interval`` strictly after ``now``.

    >>> next_due(10.0, 1.0, 10.2)  # on time: the next tick
    11.0
    >>> next_due(10.0, 1.0, 12.5)  # the job overran two ticks: they are skipped, not queued
    13.0
    """
    if interval <= 0:
        return now
    missed = max(0, math.floor((now - due) / interval))
    return due + (missed + 1) * interval


class Poller:
    """Runs cadences until cancelled or until a job raises."""

    def __init__(
        self,
        cadences: Sequence[Cadence],
        wakeup: Wakeup,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not cadences:
            raise ValueError("a poller needs at least one cadence")
        self._cadences = tuple(cadences)
        self._wakeup = wakeup
        self._rng = rng or random.Random()
        self._clock = clock
        self.runs: dict[str, int] = {c.name: 0 for c in cadences}

    async def run(self) -> None:
        start = self._clock()
        due = {c.name: start + self._rng.random() * c.interval for c in self._cadences}
        self._wakeup.clear()  # what a push asked for before now, the baseline has read
        while True:
            cadence = min(self._cadences, key=lambda c: due[c.name])
            delay = due[cadence.name] - self._clock()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._wakeup.wait()
                if self._wakeup.is_set():
                    self._wakeup.clear()
                    for woken in self._cadences:
                        if woken.on_wake:
                            await self._run(woken)
                    continue
                if due[cadence.name] > self._clock():
                    continue  # woken a hair early by the timer: pick again
            await self._run(cadence)
            due[cadence.name] = next_due(due[cadence.name], cadence.interval, self._clock())

    async def _run(self, cadence: Cadence) -> None:
        self.runs[cadence.name] += 1
        await cadence.job()
