"""Nothing taken from a device is lost at a stop (spec §7), with the bridge as a subprocess.

The scenario of the issue: the bridge runs while no broker listens on its port, takes events
from a device, and is stopped (SIGTERM or SIGKILL); then a broker starts on that port and the
bridge starts again: every event arrives, once. Events a device replays (2N log, the generic
device's event log) come back because the checkpoint moved only past acknowledged events; an
event nobody can replay (the ``device.started`` the 2N driver makes itself) comes back from the
durable outbox in ``state_dir``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
import yaml

from bridge.simulators.generic import GenericSimulator
from bridge.simulators.onetouch import OnetouchSimulator
from bridge.simulators.two_n import TwoNSimulator
from tests.helpers import DEADLINE, POLL, Consumer, Mosquitto, free_port, wait_until
from tests.integration.harness import bridge_config, serving

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import Process

    from bridge.simulators.base import Simulator

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DEVICE = "front-door"
PRESSES = 3


class Clock:
    """The simulated 2N device's wall clock, which a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Setup:
    """One device, a bridge config on a broker port where nobody listens yet, and the bridge's
    runs as subprocesses with their logs in files."""

    def __init__(self, tmp_path: Path, driver: str, sim: Simulator) -> None:
        self.tmp_path = tmp_path
        self.broker = Mosquitto(tmp_path / "broker")
        self.broker.workdir.mkdir()
        self.http_port = free_port()
        options: dict[str, Any] = {
            "2n": {"username": "api", "password": "secret"},
            "onetouch": {"poll_interval": "100ms", "log_interval": "100ms"},
        }.get(driver, {})
        config = bridge_config(self.broker.url, {DEVICE: sim}, tmp_path, driver=driver, **options)
        config["http"]["listen"] = f"127.0.0.1:{self.http_port}"
        self.config_path = tmp_path / "bridge.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.runs = 0

    @asynccontextmanager
    async def bridge(self) -> AsyncIterator[Process]:
        """Start the bridge; the test stops it (a bridge left running is killed)."""
        self.runs += 1
        command = [sys.executable, "-m", "bridge", "run", "--config", str(self.config_path)]
        with self.log(self.runs).open("wb") as out:
            process = await anyio.open_process(
                [*command, "--log-format", "json"], stdout=out, stderr=out
            )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.CancelScope(shield=True):
                await process.aclose()

    def log(self, run: int) -> Path:
        return self.tmp_path / f"bridge-{run}.log"

    def logged(self, run: int, event: str) -> list[dict[str, Any]]:
        lines = self.log(run).read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [r for r in records if r.get("event") == event]

    async def metric(self, series: str) -> float | None:
        """One series of the running bridge's ``/metrics`` (None while it does not answer)."""
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                reply = await http.get(f"http://127.0.0.1:{self.http_port}/metrics")
        except httpx.HTTPError:
            return None
        for line in reply.text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        return None

    async def wait_metric(self, series: str, at_least: float, timeout: float = DEADLINE) -> None:
        with anyio.fail_after(timeout):
            while (value := await self.metric(series)) is None or value < at_least:  # noqa: ASYNC110
                await anyio.sleep(POLL)  # a subprocess's metrics have no event to wait on

    async def stop(self, process: Process, how: str) -> None:
        if how == "sigkill":
            process.kill()
            expected = -signal.SIGKILL
        else:
            process.send_signal(signal.SIGTERM)
            expected = 0
        with anyio.fail_after(DEADLINE):
            assert await process.wait() == expected


def events(consumer: Consumer, type_: str) -> list[str]:
    topic = f"bridge/{DEVICE}/event/{type_}"
    return [s.json()["id"] for s in consumer.seen if s.topic == topic]


def assert_once_in_order(ids: list[str]) -> None:
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    sequences = [int(i.rsplit("/", 1)[1]) for i in ids]
    assert sequences == sorted(sequences)


async def barrier(consumer: Consumer) -> None:
    """Return once the consumer has everything the broker took before now: a message of its
    own, published now, arrives after all of it."""
    marker = f"barrier-{time.monotonic_ns()}"
    await consumer.publish("bridge/test/barrier", marker)
    await consumer.wait_for(lambda seen: any(s.payload == marker.encode() for s in seen))


def press(sim: Simulator) -> None:
    assert isinstance(sim, TwoNSimulator | GenericSimulator)
    sim.press()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
@pytest.mark.parametrize("driver", ["2n", "generic"])
async def test_events_taken_while_the_broker_is_away_survive_a_stop(
    tmp_path: Path, driver: str, how: str
) -> None:
    sim: Simulator = (
        TwoNSimulator(username="api", password="secret") if driver == "2n" else GenericSimulator()
    )
    presses = f'bridge_events_total{{device="{DEVICE}",type="doorbell.pressed"}}'
    async with serving({DEVICE: sim}):
        setup = Setup(tmp_path, driver, sim)  # the simulator serves: its URL is known
        async with setup.bridge() as process:
            await setup.wait_metric(f'bridge_device_up{{device="{DEVICE}",driver="{driver}"}}', 1)
            for _ in range(PRESSES):
                press(sim)
            await setup.wait_metric(presses, PRESSES)  # the bridge has them, in its outbox
            assert (await setup.metric("bridge_outbox_depth") or 0) >= PRESSES
            await setup.stop(process, how)
        if how == "sigterm":
            [incomplete] = setup.logged(1, "shutdown_flush_incomplete")
            assert incomplete["level"] == "warning"
            assert incomplete["replayable"] >= PRESSES  # the device replays them
            assert incomplete["kept"] == 0

        setup.broker.start()
        try:
            async with Consumer(setup.broker.url) as consumer:
                async with setup.bridge() as process:
                    await consumer.wait_for(
                        lambda _: len(events(consumer, "doorbell.pressed")) >= PRESSES
                    )
                    await setup.stop(process, "sigterm")
                assert setup.logged(2, "shutdown_flush_incomplete") == []
                await barrier(consumer)  # a duplicate would have arrived by now
                ids = events(consumer, "doorbell.pressed")
                assert len(ids) == PRESSES
                assert_once_in_order(ids)
        finally:
            setup.broker.stop()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_an_event_nobody_can_replay_waits_in_the_durable_outbox(
    tmp_path: Path, how: str
) -> None:
    clock = Clock()
    sim = TwoNSimulator(username="api", password="secret", clock=clock)
    device_up = f'bridge_device_up{{device="{DEVICE}",driver="2n"}}'
    started = f'bridge_events_total{{device="{DEVICE}",type="device.started"}}'
    async with serving({DEVICE: sim}):
        setup = Setup(tmp_path, "2n", sim)
        # A first run leaves a checkpoint; the device then reboots while the bridge is down,
        # longer ago than replay_max_age: its own startup record is too old to replay, so the
        # driver makes the device.started itself, and nothing but the bridge holds it.
        async with setup.bridge() as process:
            await setup.wait_metric(device_up, 1)
            await setup.stop(process, "sigterm")
        clock.offset += 600  # the device runs on for ten minutes,
        sim.reboot()  # restarts,
        clock.offset += 600  # and has been up for ten minutes when the bridge starts again
        async with setup.bridge() as process:
            await setup.wait_metric(started, 1)
            await setup.stop(process, how)
        if how == "sigterm":
            [incomplete] = setup.logged(2, "shutdown_flush_incomplete")
            assert incomplete["kept"] == 1
        assert (tmp_path / "outbox.sqlite3").exists()

        setup.broker.start()
        try:
            async with Consumer(setup.broker.url) as consumer:
                async with setup.bridge() as process:
                    await consumer.wait_for(lambda _: events(consumer, "device.started"))
                    await setup.stop(process, "sigterm")
                await barrier(consumer)
                [event_id] = events(consumer, "device.started")
                assert event_id.endswith("/start")  # the driver's own, kept for this start
                [restored] = setup.logged(3, "outbox_restored")
                assert restored["count"] == 1
        finally:
            setup.broker.stop()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_a_polled_driver_loses_nothing_at_a_stop(tmp_path: Path, how: str) -> None:
    """Onetouch: an input change (a polled transition: only the durable outbox has it) and a
    card (a door log record: the device replays it from the checkpointed record ID)."""
    sim = OnetouchSimulator(auth="none")

    def count(type_: str) -> str:
        return f'bridge_events_total{{device="{DEVICE}",type="{type_}"}}'

    async with serving({DEVICE: sim}):
        setup = Setup(tmp_path, "onetouch", sim)
        async with setup.bridge() as process:
            await setup.wait_metric(f'bridge_device_up{{device="{DEVICE}",driver="onetouch"}}', 1)
            reads = sim.hits["doorlog/get"]
            await wait_until(lambda: sim.hits["doorlog/get"] >= reads + 2)  # the logs' baseline
            sim.set_input(1, active=True)
            sim.swipe("00B4161D", name="Alice", door=0)
            for type_ in ("input.changed", "card.read", "access.granted"):
                await setup.wait_metric(count(type_), 1)
            await setup.stop(process, how)
        if how == "sigterm":
            [incomplete] = setup.logged(1, "shutdown_flush_incomplete")
            assert incomplete["kept"] >= 1  # the input change
            assert incomplete["replayable"] >= 2  # the card's two events

        setup.broker.start()
        try:
            async with Consumer(setup.broker.url) as consumer:
                async with setup.bridge() as process:
                    await consumer.wait_for(
                        lambda _: all(
                            events(consumer, t)
                            for t in ("input.changed", "card.read", "access.granted")
                        )
                    )
                    await setup.stop(process, "sigterm")
                await barrier(consumer)  # a duplicate would have arrived by now
                for type_ in ("input.changed", "card.read", "access.granted"):
                    assert len(events(consumer, type_)) == 1, type_
        finally:
            setup.broker.stop()
