"""DeviceWorker against a scripted driver: availability hysteresis, de-duplication, state."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import pytest

from bridge.backoff import Backoff
from bridge.commands import CheckedCommand
from bridge.config import DeviceConfig
from bridge.drivers.base import Emit, Outcome
from bridge.errors import DeviceUnreachableError
from bridge.metrics import Metrics
from bridge.model import DeviceInfo, StateUpdate, make_event
from bridge.mqtt.message import Message, Received
from bridge.mqtt.topics import Topics
from bridge.supervisor import DeviceWorker, merge

pytestmark = pytest.mark.anyio
WHEN = datetime(2026, 11, 21, tzinfo=UTC)


class Config(DeviceConfig):
    driver: str = "scripted"


@dataclass
class ScriptedDriver:
    """Each run() takes the next step: an exception to raise or updates to emit."""

    steps: list[Exception | list[object]]
    commands: frozenset[str] = frozenset({"refresh"})
    events: frozenset[str] = frozenset()
    runs: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)

    async def run(self, emit: Emit) -> None:
        self.runs += 1
        if not self.steps:
            self.done.set()
            await anyio.sleep_forever()
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        for update in step:
            await emit(update)  # type: ignore[arg-type]
        raise DeviceUnreachableError("channel closed")

    async def execute(self, command: CheckedCommand) -> Outcome:
        return Outcome(data={"ran": command.name})

    async def aclose(self) -> None:
        pass


def worker(
    driver: ScriptedDriver, published: list[Message], offline_after: int = 3
) -> DeviceWorker:
    config = Config(id="d", url="http://192.0.2.1", offline_after=offline_after)
    return DeviceWorker(
        config,
        driver,
        publish=published.append,
        topics=Topics("bridge"),
        metrics=Metrics(),
        qos=1,
        backoff=Backoff(base=0.001, cap=0.001, floor=0.0, rng=random.Random(0)),
    )


def availability(published: list[Message]) -> list[bytes]:
    return [m.payload for m in published if m.topic == "bridge/d/availability"]


async def supervise_until_done(w: DeviceWorker, driver: ScriptedDriver) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.supervise)
        with anyio.fail_after(5):
            await driver.done.wait()
        tg.cancel_scope.cancel()


async def test_a_single_blip_does_not_flap_availability() -> None:
    info = DeviceInfo(vendor="v")
    blip = DeviceUnreachableError("reset")
    driver = ScriptedDriver([[info], blip, [info], blip, [info]])
    published: list[Message] = []
    w = worker(driver, published)
    await supervise_until_done(w, driver)
    # online once: the step after each emit fails too, but never 3 failures in a row
    assert availability(published) == [b"online"]


async def test_repeated_failures_go_offline_once_and_recover() -> None:
    info = DeviceInfo(vendor="v")
    down = DeviceUnreachableError("connect refused")
    driver = ScriptedDriver([[info], down, down, down, down, down, [info]])
    published: list[Message] = []
    w = worker(driver, published)
    await supervise_until_done(w, driver)
    assert availability(published) == [b"online", b"offline", b"online"]
    infos = [json.loads(m.payload) for m in published if m.topic == "bridge/d/info"]
    assert any(i.get("last_error", "").startswith("connect refused") for i in infos)


async def test_a_channel_that_breaks_right_after_opening_backs_off_further() -> None:
    info = DeviceInfo(vendor="v")
    driver = ScriptedDriver([[info], [info], [info], [info]])
    published: list[Message] = []
    w = worker(driver, published)
    await supervise_until_done(w, driver)
    # Each run emitted (so the device is online) but none lasted: no reset of the backoff.
    assert w._backoff.attempt == 4


async def test_duplicates_are_published_once_and_state_only_on_change() -> None:
    ring = make_event("d", "doorbell.pressed", {"button": 1}, time=WHEN, boot=1, sequence=1)
    same_state = StateUpdate(values={"switches": {"1": {"active": False}}})
    driver = ScriptedDriver([[DeviceInfo(vendor="v"), ring, same_state], [ring, same_state, ring]])
    published: list[Message] = []
    await supervise_until_done(worker(driver, published), driver)
    events = [m for m in published if "/event/" in m.topic]
    states = [m for m in published if m.topic == "bridge/d/state"]
    assert len(events) == 1
    assert len(states) == 1


async def test_commands_need_an_online_device() -> None:
    driver = ScriptedDriver([])
    published: list[Message] = []
    w = worker(driver, published)
    await w.handle_command(Received("bridge/d/command", b'{"command": "refresh", "id": 1}'))
    result = json.loads(published[-1].payload)
    assert result["error"]["code"] == "offline"
    w.online = True
    await w.handle_command(Received("bridge/d/command", b'{"command": "refresh", "id": 2}'))
    assert json.loads(published[-1].payload)["data"] == {"ran": "refresh"}


def test_merge_reports_changes() -> None:
    state: dict[str, object] = {}
    assert merge(state, {"a": {"b": 1}})
    assert not merge(state, {"a": {"b": 1}})
    assert merge(state, {"a": {"c": 2}})
    assert state == {"a": {"b": 1, "c": 2}}
