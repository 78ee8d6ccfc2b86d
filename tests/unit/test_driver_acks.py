"""The 2N and generic drivers move their checkpoints only past acknowledged events.

The drivers run against their simulators over real HTTP, with an emit that holds the events'
``on_ack`` instead of a broker; the checkpoint file is read after each step.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from bridge.drivers import build_driver
from bridge.drivers.base import Ack, DriverContext
from bridge.metrics import Metrics
from bridge.model import Event, Update
from bridge.settings import build_settings
from bridge.simulators.generic import GenericSimulator
from bridge.simulators.two_n import TwoNSimulator
from tests.helpers import wait_until
from tests.integration.harness import serving

pytestmark = pytest.mark.anyio
DEVICE = "door"


@dataclass
class Held:
    """An emit standing in for the supervisor and a broker that has not acknowledged yet."""

    events: list[tuple[Event, Ack | None]] = field(default_factory=list)

    async def __call__(self, update: Update, /, *, on_ack: Ack | None = None) -> None:
        if isinstance(update, Event):
            self.events.append((update, on_ack))

    def acks(self, type_: str | None = None) -> list[Ack]:
        return [a for e, a in self.events if a is not None and type_ in {None, e.type}]


@asynccontextmanager
async def driving(device: dict[str, Any], state_dir: Path, emit: Held) -> AsyncIterator[None]:
    config = build_settings({"devices": [device]}, {}).devices[0]
    driver = build_driver(
        config, DriverContext(device=DEVICE, metrics=Metrics(), state_dir=state_dir)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(driver.run, emit)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await driver.aclose()


def saved(path: Path) -> dict[str, Any] | None:
    try:
        value: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value


async def test_the_2n_checkpoint_passes_an_event_once_it_and_all_before_are_acknowledged(
    tmp_path: Path,
) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    path = tmp_path / f"{DEVICE}.2n.json"
    emit = Held()
    device = {"id": DEVICE, "driver": "2n", "username": "api", "password": "secret"}
    async with serving({DEVICE: sim}):
        async with driving({**device, "url": sim.url, "pull_timeout": "5s"}, tmp_path, emit):
            await sim.wait_parked()
            listening = saved(path)  # "listening since now": id 0 of the current boot
            assert listening is not None
            assert listening["id"] == 0
            assert set(listening) == {"boot", "id", "up", "utc", "saved"}  # the format as ever
            sim.press()
            sim.press()
            await wait_until(lambda: len(emit.acks()) == 4)  # KeyPressed + KeyReleased, twice
            first, first_release, second, second_release = emit.acks()
            ids = [e.id.rsplit("/", 1)[1] for e, _ in emit.events]
            assert saved(path) == listening  # nothing acknowledged yet
            second()
            second_release()
            assert saved(path) == listening  # the first press still waits
            first()
            assert (saved(path) or {})["id"] == int(ids[0])  # its release still waits
            first_release()
            assert (saved(path) or {})["id"] == int(ids[3]) == sim.history[-1]["id"]
            # Events the driver made itself are not replayable: emitted without on_ack.
            assert all(a is not None for e, a in emit.events if e.type != "device.started")


async def test_the_generic_checkpoint_passes_an_event_once_acknowledged(tmp_path: Path) -> None:
    sim = GenericSimulator()
    path = tmp_path / f"{DEVICE}.generic.json"
    emit = Held()
    async with serving({DEVICE: sim}):
        device = {"id": DEVICE, "driver": "generic", "url": sim.url, "poll_timeout": "5s"}
        async with driving(device, tmp_path, emit):
            sim.press()
            sim.press()
            await wait_until(lambda: len(emit.acks()) == 2)
            assert saved(path) is None
            emit.acks()[0]()
            assert saved(path) == {"boot": sim.boot, "seq": 1}
            emit.acks()[1]()
            assert saved(path) == {"boot": sim.boot, "seq": 2}
        # A restarted driver resumes after what was acknowledged.
        sim.press()
        again = Held()
        async with driving(device, tmp_path, again):
            await wait_until(lambda: len(again.events) == 1)
            assert again.events[0][0].id == f"{DEVICE}/{sim.boot}/3"
        # Across a device reboot it starts at the new boot's beginning.
        sim.reboot()
        sim.press()
        third = Held()
        async with driving(device, tmp_path, third):
            await wait_until(lambda: len(third.events) == 2)
            assert [e.type for e, _ in third.events] == ["device.started", "doorbell.pressed"]
