"""Fault injection against 2N devices: every scenario ends with nothing lost, nothing duplicated,
order kept per device, and the bridge still up (docs/reliability.md lists them all)."""

from __future__ import annotations

import json
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import yaml

from bridge.simulators.two_n import TwoNSimulator
from tests.helpers import Consumer, Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving
from tests.integration.test_two_n import assert_no_duplicates_and_in_order, online, presses

if TYPE_CHECKING:
    from anyio.abc import Process

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DEVICE = "front-door"


def two_n(
    mosquitto: Mosquitto, sims: dict[str, TwoNSimulator], state_dir: Path, **device: Any
) -> Any:
    options = {"username": "api", "password": "secret"} | device
    return bridge_config(mosquitto.url, sims, state_dir, driver="2n", **options)


def arrived(consumer: Consumer, device: str, count: int) -> bool:
    topic = f"bridge/{device}/event/doorbell.pressed"
    return sum(s.topic == topic for s in consumer.seen) == count


async def test_broker_restart_mid_stream(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    consumer = Consumer(mosquitto.url, client_id="restart-consumer", persistent=True)
    async with serving({DEVICE: sim}), consumer:
        async with running(two_n(mosquitto, {DEVICE: sim}, tmp_path)) as bridge:
            await online(consumer)
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 1)
            mosquitto.stop()
            await wait_until(lambda: not bridge.link.connected)
            for _ in range(20):
                sim.press()  # KeyPressed + KeyReleased each: 40 events wait in the outbox
            await wait_until(lambda: bridge.link.pending >= 40)
            mosquitto.start()
            await wait_until(lambda: len(presses(consumer)) == 21, timeout=40)
        assert_no_duplicates_and_in_order(consumer)


async def test_a_slow_device_times_out_and_recovers(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        document = two_n(mosquitto, {DEVICE: sim}, tmp_path, timeout="0.5s", pull_timeout="1s")
        async with running(document) as bridge:
            await online(consumer)
            await sim.wait_parked()
            sim.set_fault(None, count=2, delay=5.0, path_prefix="/api/log/pull")
            sim.close_channels()  # the parked pull fails; the next two are too slow
            await wait_until(lambda: sim.fault.count == 1)  # the first slow pull is on
            sim.press()  # the slow pull may even consume it after the bridge gave up
            await wait_until(lambda: len(presses(consumer)) == 1, timeout=30)
            assert sim.fault.count == 0
            worker = bridge.workers[DEVICE]
            await wait_until(lambda: worker.online and worker.failures == 0)
        assert_no_duplicates_and_in_order(consumer)


async def test_a_hanging_device_does_not_slow_the_others(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {name: TwoNSimulator(username="api", password="secret") for name in ("hung", "well")}
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        document = two_n(mosquitto, sims, tmp_path, timeout="20s", command_timeout="20s")
        async with running(document) as bridge:
            await wait_until(lambda: all(w.online for w in bridge.workers.values()))
            await sims["hung"].wait_parked()
            sims["hung"].set_fault(None, count=-1, delay=3600)  # every request from now on
            sims["hung"].press()  # answers the parked pull; the next one hangs

            async def ask(device: str, id_: str) -> dict[str, Any]:
                body = json.dumps({"command": "open_door", "id": id_})
                await consumer.publish(f"bridge/{device}/command", body)
                found = await consumer.first(f"bridge/{device}/command/result", id=id_)
                result: dict[str, Any] = found.json()
                return result

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "hung", "h1")  # hangs for its full 20 s timeout
                hung = bridge.workers["hung"]
                await wait_until(hung._command_lock.locked)  # it is with the device now
                for n in range(1, 21):
                    sims["well"].press()
                    await wait_until(partial(arrived, consumer, "well", n))
                assert (await ask("well", "w1"))["status"] == "ok"
                # Counted, not timed: all of that happened while the hung command still waited.
                assert consumer.on("bridge/hung/command/result") == []
                tg.cancel_scope.cancel()
            sims["hung"].clear_fault()


async def test_a_flood_of_malformed_commands(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    bad: list[bytes] = [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"command": 42}',
        b'{"command": "fly", "id": "x"}',
        b'{"command": "open_door", "args": {"door": -1}}',
        b'{"command": "set_switch", "args": {"switch": 1}}',
        b'{"command": "dial", "args": {"number": "' + b"9" * 10_000 + b'"}}',
        b'{"command": "reboot"}',
    ]
    rounds = 50
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(two_n(mosquitto, {DEVICE: sim}, tmp_path)) as bridge:
            await online(consumer)
            for _ in range(rounds):
                for payload in bad:
                    await consumer.publish(f"bridge/{DEVICE}/command", payload)
            results = f"bridge/{DEVICE}/command/result"
            await wait_until(lambda: len(consumer.on(results)) == rounds * len(bad), timeout=30)
            codes = {s.json()["error"]["code"] for s in consumer.on(results)}
            assert codes == {"bad_request", "unknown_command", "invalid_args", "denied"}
            requests_before = len(sim.log)
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 1)
            await consumer.publish(
                f"bridge/{DEVICE}/command", b'{"command": "open_door", "id": "ok"}'
            )
            assert (await consumer.first(results, id="ok")).json()["status"] == "ok"
            assert bridge.workers[DEVICE].online
        # No malformed command reached the device: only the pull loop and the one open_door.
        paths = {path for _, path, _ in sim.log[requests_before:]}
        assert paths <= {"/api/log/pull", "/api/switch/ctrl", "/api/log/unsubscribe"}, paths


def checkpoint_id(path: Path) -> int | None:
    """The event id a 2N checkpoint holds (None while there is none)."""
    try:
        value = json.loads(path.read_text())["id"]
    except (OSError, ValueError, KeyError):
        return None
    return int(value)


async def start_bridge(config_path: Path) -> Process:
    command = [sys.executable, "-m", "bridge", "run", "--config", str(config_path)]
    return await anyio.open_process([*command, "--log-format", "json"])


async def test_sigkill_and_restart_resume_from_the_checkpoint(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(two_n(mosquitto, {DEVICE: sim}, tmp_path)))
        async with await start_bridge(path) as process:
            await online(consumer)
            sim.press()
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 2)
            # The checkpoint moves once the bridge has the broker's PUBACKs; killed before, the
            # restarted bridge would publish them again (at least once).
            last = sim.history[-1]["id"]
            await wait_until(lambda: checkpoint_id(tmp_path / f"{DEVICE}.2n.json") == last)
            process.kill()
            with anyio.fail_after(10):
                assert await process.wait() == -signal.SIGKILL
        # The broker fires the last will; the device keeps ringing while nobody listens.
        await wait_until(
            lambda: [s.payload for s in consumer.on("bridge/bridge/state")][-1:] == [b"offline"]
        )
        sim.press()
        sim.press()
        async with await start_bridge(path) as process:
            await wait_until(lambda: len(presses(consumer)) == 4, timeout=20)
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                assert await process.wait() == 0
        assert_no_duplicates_and_in_order(consumer)
