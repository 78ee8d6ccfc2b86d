"""The driver test kit: a driver, its simulator and an in-memory emit, without a broker.

Resume, reboot and diff logic is tested here against the vendor simulator over real HTTP; the
broker tests (``tests/integration``) stay for the MQTT contract. ``Recorder`` stands in for the
supervisor's emit: it records what the driver hands over and acknowledges events like a broker
would (at once, or later when ``broker_away``), which moves the driver's checkpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx

from bridge.config import DeviceConfig
from bridge.drivers import build_driver
from bridge.drivers.base import Ack, Driver, DriverContext
from bridge.metrics import Metrics
from bridge.model import DeviceInfo, Event, StateUpdate, Update
from bridge.settings import build_settings
from bridge.simulators.base import Simulator
from tests.helpers import DEADLINE, POLL

SimulatorT = TypeVar("SimulatorT", bound=Simulator)


@dataclass
class Recorder:
    """An emit that records updates, merges state, and acknowledges events."""

    broker_away: bool = False
    updates: list[Update] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    unacked: list[Ack] = field(default_factory=list)
    durable: list[Event] = field(default_factory=list)  # emitted without on_ack
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, update: Update, /, *, on_ack: Ack | None = None) -> None:
        self.updates.append(update)
        if isinstance(update, StateUpdate):
            _merge(self.state, update.values)
        if isinstance(update, Event):
            if on_ack is None:
                self.durable.append(update)
            elif self.broker_away:
                self.unacked.append(on_ack)
            else:
                on_ack()
        self._changed.set()
        self._changed = anyio.Event()

    def acknowledge(self) -> None:
        """The broker came back and acknowledged everything."""
        self.broker_away = False
        for ack in self.unacked:
            ack()
        self.unacked.clear()

    @property
    def events(self) -> list[Event]:
        return [u for u in self.updates if isinstance(u, Event)]

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]

    @property
    def info(self) -> DeviceInfo | None:
        found = [u for u in self.updates if isinstance(u, DeviceInfo)]
        return found[-1] if found else None

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = DEADLINE) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every emit, and every ``POLL``
        for conditions on the simulator's side); return its value."""
        with anyio.fail_after(timeout):
            while not (value := predicate()):
                with anyio.move_on_after(POLL):
                    await self._changed.wait()
            return value


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def device_config(device: dict[str, Any]) -> DeviceConfig:
    """A device's config, validated as the bridge validates it."""
    config = build_settings({"devices": [device]}, {}).devices[0]
    assert isinstance(config, DeviceConfig)
    return config


@dataclass
class Driving:
    driver: Driver
    recorder: Recorder
    context: DriverContext
    failure: list[BaseException] = field(default_factory=list)


@asynccontextmanager
async def driving(
    device: dict[str, Any], state_dir: Path, recorder: Recorder | None = None
) -> AsyncIterator[Driving]:
    """Run the driver of ``device`` (a config dict) until the block ends; a driver that raises
    is recorded in ``failure`` (the supervisor would back off and run it again)."""
    config = device_config(device)
    context = DriverContext(device=config.id, metrics=Metrics(), state_dir=state_dir)
    driver = build_driver(config, context)
    run = Driving(driver, recorder or Recorder(), context)
    async with anyio.create_task_group() as tg:

        async def go() -> None:
            try:
                await driver.run(run.recorder)
            except Exception as exc:  # handed to the test
                run.failure.append(exc)

        tg.start_soon(go)
        try:
            yield run
        finally:
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await driver.aclose()


@asynccontextmanager
async def served(sim: SimulatorT) -> AsyncIterator[SimulatorT]:
    """Serve ``sim`` on a free loopback port until the block ends."""
    async with anyio.create_task_group() as tg:
        await tg.start(sim.serve)
        yield sim
        tg.cancel_scope.cancel()


@asynccontextmanager
async def client_of(sim: Simulator, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``sim`` and talk to it with a plain httpx client (``options``: httpx's, such as
    ``auth``): the simulators' own tests, which look at the wire, not through the bridge."""
    async with served(sim), httpx.AsyncClient(base_url=sim.url, timeout=5, **options) as http:
        yield http
