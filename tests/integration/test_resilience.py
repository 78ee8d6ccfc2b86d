"""Broker outages, device failures and shutdown, against real mosquitto and the simulator."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
import yaml

from bridge.simulators.generic import GenericSimulator
from tests.helpers import Consumer, Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]

# The acceptance scenario: the broker is away for 30 s while events keep coming.
OUTAGE_SECONDS = float(os.environ.get("BRIDGE_TEST_OUTAGE", "30"))
EVENT_INTERVAL = 0.1  # the device's pace during the outage: two events per step


def event_seqs(consumer: Consumer, device: str) -> list[int]:
    """Vendor sequence numbers of the events received, in arrival order, duplicates removed."""
    out: list[int] = []
    seen: set[str] = set()
    for item in consumer.seen:
        if item.topic.startswith(f"bridge/{device}/event/"):
            event = item.json()
            if event["id"] not in seen:
                seen.add(event["id"])
                out.append(int(event["id"].rsplit("/", 1)[1]))
    return out


@pytest.mark.slow
async def test_broker_outage_loses_nothing_and_keeps_order(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator()}
    sim = sims["front-door"]
    consumer = Consumer(mosquitto.url, client_id="outage-consumer", persistent=True)
    async with serving(sims), consumer, running(bridge_config(mosquitto.url, sims, tmp_path)):
        await consumer.wait_for(lambda seen: any(s.payload == b"online" for s in seen))
        for _ in range(20):
            sim.press()
        await consumer.wait_for(lambda _: len(event_seqs(consumer, "front-door")) == 20)

        mosquitto.stop()  # saves sessions and retained messages, as a real restart does
        with anyio.move_on_after(OUTAGE_SECONDS):
            while True:  # the device keeps ringing while the broker is away
                sim.press()
                sim.set_input("1", not sim.inputs["1"])
                await anyio.sleep(EVENT_INTERVAL)
        produced = sim.seq
        assert produced > 20 + OUTAGE_SECONDS * 10
        connections, mark = consumer.connections, len(consumer.seen)
        mosquitto.start()
        await consumer.wait_for(
            lambda _: (
                consumer.connections > connections
                and len(event_seqs(consumer, "front-door")) >= produced
            ),
            timeout=60,
        )
        # Every event, once each after de-duplication by id, in the device's order.
        assert event_seqs(consumer, "front-door") == list(range(1, produced + 1))
        # Availability and state were published again after the reconnect.
        await consumer.wait_for(
            lambda seen: (
                {"bridge/front-door/availability", "bridge/front-door/state"}
                <= {s.topic for s in seen[mark:]}
            )
        )
        await consumer.wait_for(
            lambda seen: (
                [
                    s.json()["inputs"]["1"]["active"]
                    for s in seen[mark:]
                    if s.topic == "bridge/front-door/state"
                ][-1:]
                == [sim.inputs["1"]]
            )
        )


async def test_bridge_starts_with_the_broker_down(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sims = {"front-door": GenericSimulator()}
    mosquitto.stop()
    async with serving(sims), running(bridge_config(mosquitto.url, sims, tmp_path)) as bridge:
        await wait_until(lambda: bridge.workers["front-door"].online)
        sims["front-door"].press()  # happens while there is no broker at all
        assert not bridge.link.connected
        mosquitto.start()
        async with Consumer(mosquitto.url) as consumer:
            avail = await consumer.first("bridge/front-door/availability", timeout=40)
            assert avail.payload == b"online"
            assert (await consumer.first("bridge/bridge/state")).payload == b"online"


async def test_one_failing_device_does_not_touch_another(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"good": GenericSimulator(), "bad": GenericSimulator()}
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        config = bridge_config(mosquitto.url, sims, tmp_path)
        async with running(config) as bridge:
            await consumer.wait_for(
                lambda seen: (
                    {s.topic for s in seen if s.payload == b"online"}
                    >= {"bridge/good/availability", "bridge/bad/availability"}
                )
            )
            sims["bad"].set_fault("drop", count=-1)  # every request: connection dropped
            sims["bad"].reboot()  # wakes its long poll so the next request meets the fault
            offline = await consumer.first("bridge/bad/availability", timeout=30)
            while offline.payload != b"offline":
                offline = await consumer.wait_for(
                    lambda seen: next(
                        (
                            s
                            for s in seen
                            if s.topic == "bridge/bad/availability" and s.payload == b"offline"
                        ),
                        None,
                    ),
                    timeout=30,
                )
            info = (await consumer.first("bridge/bad/info", online=False)).json()
            assert "last_error" in info
            # The good device is unaffected.
            sims["good"].press()
            await consumer.first("bridge/good/event/doorbell.pressed")
            assert bridge.workers["good"].online
            # The bad one recovers on its own once the fault is gone.
            sims["bad"].clear_fault()
            await wait_until(lambda: bridge.workers["bad"].online, timeout=70)


async def test_a_device_whose_event_channel_fails_is_offline_even_if_it_answers(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator()}
    sims["front-door"].set_fault("http500", count=-1, path_prefix="/api/events")
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        async with running(bridge_config(mosquitto.url, sims, tmp_path)) as bridge:
            avail = await consumer.first("bridge/front-door/availability")
            assert avail.payload == b"offline"
            info = (await consumer.first("bridge/front-door/info")).json()
            assert "HTTP 500" in info["last_error"]
            worker = bridge.workers["front-door"]
            assert worker.failures >= worker.config.offline_after
        assert not any(
            s.topic == "bridge/front-door/availability" and s.payload == b"online"
            for s in consumer.seen
        )


async def test_a_malformed_record_is_skipped_and_the_rest_delivered(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator()}
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        async with running(bridge_config(mosquitto.url, sims, tmp_path)) as bridge:
            await wait_until(lambda: bridge.workers["front-door"].online)
            sim = sims["front-door"]
            first = sim.press(1)
            sim.push("switch", switch="not-a-number", active=True)
            last = sim.press(2)
            await wait_until(lambda: last["seq"] in event_seqs(consumer, "front-door"))
            assert event_seqs(consumer, "front-door") == [first["seq"], last["seq"]]
            rejected = bridge.metrics.registry.get_sample_value(
                "bridge_device_records_rejected_total", {"device": "front-door"}
            )
            assert rejected == 1
            assert bridge.workers["front-door"].online


async def test_wrong_password_is_one_clear_error_not_a_busy_loop(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator(username="api", password="right")}
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        config = bridge_config(
            mosquitto.url, sims, tmp_path, username="api", password="wrong-secret-123"
        )
        async with running(config) as bridge:
            avail = await consumer.first("bridge/front-door/availability")
            assert avail.payload == b"offline"
            info = (await consumer.first("bridge/front-door/info")).json()
            assert "credentials refused" in info["last_error"]
            requests = sims["front-door"].requests
            assert requests <= 2  # challenge + one attempt; the next try is a minute away
            assert bridge.workers["front-door"].failures == 1
        assert all(b"wrong-secret-123" not in s.payload for s in consumer.seen)


async def test_sigterm_publishes_offline_and_exits_zero(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator()}
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        config = bridge_config(mosquitto.url, sims, tmp_path)
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(config))
        async with await anyio.open_process(
            [sys.executable, "-m", "bridge", "run", "--config", str(path), "--log-format", "json"],
        ) as process:
            await consumer.first("bridge/front-door/availability")
            await consumer.wait_for(lambda seen: any(s.payload == b"online" for s in seen))
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                code = await process.wait()
            assert code == 0
            logs = b""
            if process.stderr is not None:
                logs = await process.stderr.receive()
        await consumer.wait_for(
            lambda seen: (
                [s.payload for s in seen if s.topic == "bridge/bridge/state"][-1:] == [b"offline"]
            )
        )
        assert consumer.on("bridge/front-door/availability")[-1].payload == b"offline"
        assert consumer.on("bridge/front-door/info")[-1].json()["online"] is False
        lines = [json.loads(line) for line in logs.decode().splitlines() if line.startswith("{")]
        assert any(line["event"] == "bridge_stopped" for line in lines)


async def test_outbox_overflow_drops_the_oldest_and_counts_them(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator()}
    sim = sims["front-door"]
    consumer = Consumer(mosquitto.url, ("bridge/+/event/#",), client_id="overflow", persistent=True)
    async with serving(sims), consumer:
        config = bridge_config(mosquitto.url, sims, tmp_path)
        config["mqtt"]["outbox_size"] = 50
        async with running(config) as bridge:
            await wait_until(lambda: bridge.link.connected and bridge.workers["front-door"].online)
            mosquitto.stop()
            await wait_until(lambda: not bridge.link.connected)
            for _ in range(80):
                sim.press()
            published = bridge.metrics.events.labels(device="front-door", type="doorbell.pressed")
            await wait_until(lambda: published._value.get() == 80)
            mosquitto.start()
            await consumer.wait_for(
                lambda _: event_seqs(consumer, "front-door")[-1:] == [80], timeout=40
            )
            # The 30 oldest were dropped and counted; the newest 50 arrived, in order.
            assert event_seqs(consumer, "front-door") == list(range(31, 81))
            assert bridge.metrics.outbox_dropped._value.get() == 30


async def test_a_device_faster_than_the_broker_is_slowed_down_not_dropped(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator()}
    sim = sims["front-door"]
    burst = 3000
    async with serving(sims), Consumer(mosquitto.url, ("bridge/+/event/#",)) as consumer:
        config = bridge_config(mosquitto.url, sims, tmp_path)
        config["mqtt"]["outbox_size"] = 400  # drivers stop reading at 200 queued
        async with running(config) as bridge:
            await wait_until(lambda: bridge.link.connected and bridge.workers["front-door"].online)
            for _ in range(burst):  # far faster than one MQTT connection publishes
                sim.press()
            await consumer.wait_for(lambda seen: len(seen) >= burst, timeout=60)
            assert event_seqs(consumer, "front-door") == list(range(1, burst + 1))
            assert bridge.metrics.outbox_dropped._value.get() == 0


async def test_a_generic_device_reboot_is_one_device_started(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator()}
    sim = sims["front-door"]
    async with serving(sims), Consumer(mosquitto.url, ("bridge/+/event/#",)) as consumer:
        async with running(bridge_config(mosquitto.url, sims, tmp_path)) as bridge:
            await wait_until(lambda: bridge.workers["front-door"].online)
            sim.reboot()
            sim.press()
            await consumer.first("bridge/front-door/event/doorbell.pressed")
        started = consumer.on("bridge/front-door/event/device.started")
        assert [s.json()["data"]["raw"]["seq"] for s in started] == [1]
