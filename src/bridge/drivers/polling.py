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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from bridge.model import Event, StateUpdate, event_id, utcnow
from bridge.normalize.transitions import Change, transitions
from bridge.normalize.uptime import Clock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence
    from datetime import datetime

    from bridge.checkpoint import Checkpoint
    from bridge.checkpoint import Sequence as SequenceCounter
    from bridge.drivers.base import Emit, Wakeup


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


Details = Callable[[Change], dict[str, Any]]
Extra = Callable[[dict[str, Any] | None, dict[str, Any]], list[tuple[str, dict[str, Any]]]]


class PolledState:
    """The last reading of a polled device and what its changes mean.

    ``apply`` merges a new reading (some sections of the normalized state, spec §4.2) into the
    last one, emits the events of the shared transition step (:mod:`bridge.normalize.transitions`)
    and whatever ``extra`` finds (vendor events), then the sections that changed as one
    ``StateUpdate``. Events get ids from the device's :class:`~bridge.checkpoint.Sequence`,
    unique per occurrence, and are emitted without ``on_ack``: nothing can replay a transition,
    so the bridge keeps them in its durable outbox until the broker has them.
    """

    def __init__(self, device: str, sequence: SequenceCounter) -> None:
        self.device = device
        self.values: dict[str, Any] | None = None  # None until the baseline
        self._sequence = sequence

    def event(
        self,
        type_: str,
        data: dict[str, Any],
        *,
        boot: int | str,
        time: datetime,
        sequence: str | None = None,
    ) -> Event:
        """An event of this device; without ``sequence`` (a vendor number such as a log record
        ID) it takes the next number of the device's counter."""
        number = sequence if sequence is not None else str(self._sequence.next())
        return Event(
            id=event_id(self.device, boot, number),
            source=f"bridge/{self.device}",
            type=type_,
            time=time,
            device=self.device,
            received=utcnow(),
            data=data,
        )

    async def apply(
        self,
        values: dict[str, Any],
        emit: Emit,
        *,
        boot: int | str,
        details: Details = lambda change: change.data,
        extra: Extra | None = None,
    ) -> None:
        """Diff ``values`` against the last reading: events for what changed, then the state.
        ``details(change)`` gives an event's data (add ``raw`` there); the first reading
        (``values`` is None before it) is a baseline: state, no events."""
        previous = self.values
        current = {**(previous or {}), **values}
        received = utcnow()
        found = [(change.type, details(change)) for change in transitions(previous, current)]
        if extra is not None:
            found += extra(previous, current)
        for type_, data in found:
            await emit(self.event(type_, data, boot=boot, time=received))
        changed = {k: v for k, v in values.items() if (previous or {}).get(k) != v}
        self.values = current
        if changed or previous is None:
            await emit(StateUpdate(values=changed or values))


class ClockCheckpoint:
    """A device's last clock reading, kept in ``state_dir`` across bridge restarts, so a reboot
    that happened while the bridge was down is still seen (:func:`~bridge.normalize.uptime.rebooted`
    against the saved reading)."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self._checkpoint = checkpoint

    def load(self) -> Clock | None:
        saved = self._checkpoint.load() or {}
        system_time, uptime = saved.get("system_time"), saved.get("uptime")
        if type(system_time) is int and type(uptime) is int:
            return Clock(system_time, uptime)
        return None

    def save(self, clock: Clock) -> None:
        self._checkpoint.save({"system_time": clock.system_time, "uptime": clock.uptime})

    def close(self) -> None:
        self._checkpoint.close()
