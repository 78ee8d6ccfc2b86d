"""The 2N driver end to end: 2N simulator, real mosquitto, the bridge."""

from __future__ import annotations

import base64
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.simulators.base import FaultMode
from bridge.simulators.two_n import TwoNSimulator
from tests.helpers import Consumer, Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DEVICE = "front-door"
REBOOT_TAKES = 60.0  # seconds a real intercom needs to restart; the simulated clock skips them


class Clock:
    """The simulated device's wall clock, which a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def config(mosquitto: Mosquitto, sim: TwoNSimulator, state_dir: Path, **device: Any) -> Any:
    options = {"username": "api", "password": "secret"} | device
    return bridge_config(mosquitto.url, {DEVICE: sim}, state_dir, driver="2n", **options)


def presses(consumer: Consumer) -> list[str]:
    return [e["id"] for e in consumer.events(DEVICE, "doorbell.pressed")]


async def online(consumer: Consumer) -> None:
    await consumer.wait_for(
        lambda seen: any(
            s.topic == f"bridge/{DEVICE}/availability" and s.payload == b"online" for s in seen
        )
    )


def assert_no_duplicates_and_in_order(consumer: Consumer) -> None:
    ids = [e["id"] for e in consumer.events(DEVICE)]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates
    by_boot: dict[str, list[int]] = {}
    for event_id in ids:
        _, boot, sequence = event_id.split("/")
        by_boot.setdefault(boot, []).append(int(sequence.split("-")[0]))
    for sequences in by_boot.values():
        assert sequences == sorted(sequences)


async def test_doorbell_state_and_commands(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = TwoNSimulator(username="api", password="secret", serial="54-1234-5678")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer)
            info = (await consumer.first(f"bridge/{DEVICE}/info")).json()
            assert (info["vendor"], info["serial"]) == ("2N", "54-1234-5678")
            assert "reboot" not in info["commands"]  # denied unless allowed
            state = (await consumer.first(f"bridge/{DEVICE}/state")).json()
            assert state["switches"]["1"]["active"] is False
            assert state["call"]["state"] == "idle"

            sim.press("%1")
            ring = (await consumer.first(f"bridge/{DEVICE}/event/doorbell.pressed")).json()
            assert ring["data"]["button"] == "%1"
            assert ring["data"]["raw"]["event"] == "KeyPressed"

            opened = await consumer.command(DEVICE, "open_door", "o1")
            assert opened["status"] == "ok"
            await consumer.wait_for(
                lambda _: (
                    [e["data"]["active"] for e in consumer.events(DEVICE, "switch.changed")]
                    == [True, False]
                )
            )
            assert consumer.events(DEVICE, "switch.changed")[0]["data"]["originator"] == "api"

            locked = await consumer.command(DEVICE, "set_switch", "l1", switch=2, action="lock")
            assert locked["status"] == "ok"
            refused = await consumer.command(DEVICE, "set_switch", "l2", switch=2, on=True)
            assert refused["error"]["code"] == "action_failed"
            assert "14" in refused["error"]["message"]
            await consumer.wait_for(
                lambda _: any(
                    s.json().get("switches", {}).get("2", {}).get("locked")
                    for s in consumer.on(f"bridge/{DEVICE}/state")
                )
            )

            snapshot = await consumer.command(DEVICE, "snapshot", "s1")
            assert snapshot["status"] == "ok"
            image = await consumer.first(f"bridge/{DEVICE}/snapshot")
            assert image.payload.startswith(b"\xff\xd8")
            assert snapshot["data"]["size"] == len(image.payload)
            about = (await consumer.first(f"bridge/{DEVICE}/snapshot/info")).json()
            assert about == {
                "time": snapshot["data"]["time"],
                "size": len(image.payload),
                "content_type": "image/jpeg",
                "topic": f"bridge/{DEVICE}/snapshot",
            }

            no_call = await consumer.command(DEVICE, "answer", "a1")
            assert no_call["error"]["code"] == "no_call"
            denied = await consumer.command(DEVICE, "reboot", "r1")
            assert denied["error"]["code"] == "denied"
            bad = await consumer.command(DEVICE, "set_output", "p1", port="nope", on=True)
            assert bad["error"]["code"] == "invalid_args"

        assert not sim.channels  # unsubscribed on the way out
        assert all("response" not in params for _, _, params in sim.log)
        assert all(b"secret" not in s.payload for s in consumer.seen)
        assert_no_duplicates_and_in_order(consumer)


async def test_reboot_and_channel_expiry_lose_and_duplicate_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = Clock()
    sim = TwoNSimulator(username="api", password="secret", clock=clock)
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer)
            for _ in range(3):
                sim.press()
            await wait_until(lambda: len(presses(consumer)) == 3)

            # The channel expires; the next presses happen before the bridge has a new one.
            sim.close_channels()
            sim.press()
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 5)

            # The device restarts (which takes a real one about a minute) mid-stream.
            clock.offset += REBOOT_TAKES
            sim.reboot()
            sim.press()
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 7)
            started = (await consumer.first(f"bridge/{DEVICE}/event/device.started")).json()
            assert started["data"]["raw"]["id"] == 1

        assert len(consumer.events(DEVICE, "device.started")) == 1
        assert len(set(presses(consumer))) == 7
        assert_no_duplicates_and_in_order(consumer)


async def test_a_restarted_bridge_resumes_from_its_checkpoint(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = Clock()
    sim = TwoNSimulator(username="api", password="secret", clock=clock)
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        document = config(mosquitto, sim, tmp_path, replay_max_age="5m")
        async with running(document):
            await online(consumer)
            sim.press()
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 2)
        assert (tmp_path / f"{DEVICE}.2n.json").exists()

        # Pressed while the bridge is down: the restarted bridge replays exactly these.
        missed = [sim.press(), sim.press()]
        async with running(document):
            await wait_until(lambda: len(presses(consumer)) == 4)
            assert len(missed) == 2
        assert_no_duplicates_and_in_order(consumer)

        # Pressed while the bridge is down, then older than replay_max_age: never rings.
        sim.press("%1")
        stale = sim.history[-2]["id"]  # the KeyPressed of that press
        clock.offset += 600
        async with running(document):
            await online(consumer)
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 5)
        sequences = {int(i.rsplit("/", 1)[1]) for i in presses(consumer)}
        assert stale not in sequences
        assert_no_duplicates_and_in_order(consumer)


async def test_wrong_password_is_one_clear_error_not_a_busy_loop(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = TwoNSimulator(username="api", password="right")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        document = config(mosquitto, sim, tmp_path, password="wrong-secret-123")
        async with running(document) as bridge:
            avail = await consumer.first(f"bridge/{DEVICE}/availability")
            assert avail.payload == b"offline"
            info = (await consumer.first(f"bridge/{DEVICE}/info")).json()
            assert "credentials refused" in info["last_error"]
            assert sim.requests <= 2  # the challenge and one answer; the next try is a minute away
            assert bridge.workers[DEVICE].failures == 1
        assert all(b"wrong-secret-123" not in s.payload for s in consumer.seen)


async def test_helios_215_with_sha256_digest_and_an_open_logging_service(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = TwoNSimulator(
        firmware="2.15",
        username="api",
        password="secret",
        digest_algorithm="SHA-256",
        service_auth={"/api/log/": "none"},
    )
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await online(consumer)
            info = (await consumer.first(f"bridge/{DEVICE}/info")).json()
            assert info["firmware"].startswith("2.15")
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 1)
            unsupported = await consumer.command(
                DEVICE, "set_switch", "x1", switch=1, action="hold"
            )
            assert unsupported["error"]["code"] == "unsupported"
            switched = await consumer.command(DEVICE, "set_switch", "x2", switch=1, on=True)
            assert switched["status"] == "ok"
            changed = await consumer.first(f"bridge/{DEVICE}/event/switch.changed")
            assert changed.json()["data"]["active"] is True
        assert all(params.get("action") != "hold" for _, _, params in sim.log)


async def test_hidden_events_only_when_asked_for(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        extra = ["CapabilitiesChanged", "SomethingNew"]  # hidden by default; not in log/caps
        document = config(mosquitto, sim, tmp_path, extra_events=extra)
        async with running(document):
            await online(consumer)
            sim.emit("DisplayTouched", {"x": 1, "y": 2, "dx": 0, "dy": 0})
            sim.emit("CapabilitiesChanged", {})
            sim.emit("SomethingNew", {"answer": 42})
            await consumer.first(f"bridge/{DEVICE}/event/vendor.SomethingNew")
        types = {e["type"] for e in consumer.events(DEVICE)}
        assert "vendor.CapabilitiesChanged" in types
        assert "vendor.DisplayTouched" not in types


@pytest.mark.parametrize(
    "fault", ["garbage", "http500", "truncated", "drop", "vendor_error", "huge"]
)
async def test_a_failed_pull_loses_and_duplicates_nothing(
    mosquitto: Mosquitto, tmp_path: Path, fault: FaultMode
) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)) as bridge:
            await online(consumer)
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 1)
            await sim.wait_parked()
            sim.set_fault(fault, count=1, path_prefix="/api/log/pull")
            sim.press()  # answers the parked pull; the fault meets the next one
            sim.press()
            sim.press()
            await wait_until(lambda: len(presses(consumer)) == 4, timeout=20)
            assert sim.fault.count == 0  # the fault did meet a pull
            assert bridge.workers[DEVICE].online
        assert_no_duplicates_and_in_order(consumer)


async def test_doorbell_on_outgoing_calls_but_not_on_calls_the_bridge_places(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        document = config(mosquitto, sim, tmp_path, doorbell_on_call=True, doorbell_keys=[])
        async with running(document):
            await online(consumer)
            dialed = await consumer.command(DEVICE, "dial", "d1", number="sip:100@pbx")
            assert dialed["status"] == "ok"
            session = sim.press("%1", call=True)  # the visitor's button calls the flat
            await wait_until(lambda: len(presses(consumer)) == 1)
            await sim.wait_parked()
            ring = consumer.events(DEVICE, "doorbell.pressed")[0]
            assert (ring["data"]["button"], ring["data"]["session"]) == ("call", session)
            calls = consumer.events(DEVICE, "call.state_changed")
            assert {c["data"]["session"] for c in calls} == {dialed["data"]["session"], session}
        assert len(presses(consumer)) == 1


async def test_a_ring_takes_a_snapshot_with_its_base64_twin(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = TwoNSimulator(username="api", password="secret")
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        document = config(mosquitto, sim, tmp_path, snapshot_on_ring=True)
        document["mqtt"]["snapshot_base64"] = True
        async with running(document):
            await online(consumer)
            assert not consumer.on(f"bridge/{DEVICE}/snapshot")
            sim.press()
            await consumer.first(f"bridge/{DEVICE}/snapshot/base64")
        # Both retained: a consumer arriving later still gets the last picture.
        async with Consumer(mosquitto.url, (f"bridge/{DEVICE}/snapshot/#",)) as late:
            image = await late.first(f"bridge/{DEVICE}/snapshot")
            twin = await late.first(f"bridge/{DEVICE}/snapshot/base64")
        assert image.payload.startswith(b"\xff\xd8")
        assert (image.retain, twin.retain) == (True, True)
        assert base64.b64decode(twin.payload) == image.payload
        snapshots = [params for _, path, params in sim.log if path == "/api/camera/snapshot"]
        assert snapshots == [{"width": "640", "height": "480"}]
