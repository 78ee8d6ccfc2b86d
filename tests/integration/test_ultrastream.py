"""The Ultra Stream driver end to end: simulator, real mosquitto, the bridge.

Commands from MQTT give one result each, after the device confirmed them; each transition is
one event; the retained state follows. "Within one poll" is checked by counting the
simulator's pings, never by a wall-clock bound.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.simulators.ultrastream import UltraStreamSimulator
from tests.helpers import Consumer, Mosquitto
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DEVICE = "encoder"
FAST = {"poll_interval": "100ms", "status_interval": "200ms", "settings_interval": "500ms"}


def config(mosquitto: Mosquitto, sim: UltraStreamSimulator, state_dir: Path) -> Any:
    options = {"username": "Admin", "password": "admin", **FAST}
    return bridge_config(mosquitto.url, {DEVICE: sim}, state_dir, driver="ultrastream", **options)


async def state_where(consumer: Consumer, check: Any) -> dict[str, Any]:
    def latest(_: object) -> dict[str, Any] | None:
        states = consumer.on(f"bridge/{DEVICE}/state")
        return states[-1].json() if states and check(states[-1].json()) else None

    found: dict[str, Any] = await consumer.wait_for(latest)
    return found


async def test_commands_events_and_state_through_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = UltraStreamSimulator()
    async with serving({DEVICE: sim}), Consumer(mosquitto.url) as consumer:
        async with running(config(mosquitto, sim, tmp_path)):
            await consumer.wait_for(
                lambda seen: any(
                    s.topic == f"bridge/{DEVICE}/availability" and s.payload == b"online"
                    for s in seen
                )
            )
            info = (await consumer.first(f"bridge/{DEVICE}/info")).json()
            assert (info["vendor"], info["serial"]) == ("Magewell", sim.serial)

            started = await consumer.command(DEVICE, "start_recording", "r1")
            assert started["status"] == "ok", started
            assert sim.recording
            await consumer.wait_for(lambda _: consumer.events(DEVICE, "recording.started"))
            await state_where(consumer, lambda s: s.get("recording") is True)

            live = await consumer.command(DEVICE, "start_streaming", "s1", server=1)
            assert live["status"] == "ok", live
            assert live["data"]["server"] == 1
            await consumer.wait_for(lambda _: consumer.events(DEVICE, "streaming.started"))
            await state_where(consumer, lambda s: s.get("streaming", {}).get("1") is True)

            pings = sim.hits["ping"]
            sim.set_signal(False)
            await consumer.wait_for(lambda _: consumer.events(DEVICE, "video_signal.lost"))
            assert sim.hits["ping"] <= pings + 3  # the status read follows within a poll or so

            stopped = await consumer.command(DEVICE, "stop_streaming", "s2")
            assert stopped["status"] == "ok", stopped
            await consumer.wait_for(lambda _: consumer.events(DEVICE, "streaming.stopped"))
            done = await consumer.command(DEVICE, "stop_recording", "r2")
            assert done["status"] == "ok", done
            await consumer.wait_for(lambda _: consumer.events(DEVICE, "recording.stopped"))
            final = await state_where(
                consumer,
                lambda s: s.get("recording") is False and s.get("streaming", {}).get("1") is False,
            )
            assert final["video_signal"] is False

            denied = await consumer.command(DEVICE, "reboot", "b1")
            assert denied["error"]["code"] == "denied"
            assert sim.hits["reboot"] == 0
            bad = await consumer.command(DEVICE, "start_streaming", "s3", server=True)
            assert bad["error"]["code"] == "invalid_args"

        for type_ in ("recording.started", "recording.stopped", "streaming.started"):
            assert len(consumer.events(DEVICE, type_)) == 1, type_
        assert len(consumer.events(DEVICE, "streaming.stopped")) == 1
        results = [s.json()["id"] for s in consumer.on(f"bridge/{DEVICE}/command/result")]
        assert not [i for i, n in Counter(results).items() if n > 1]
        ids = [s.json()["id"] for s in consumer.seen if "/event/" in s.topic]
        assert len(ids) == len(set(ids))
        everything = b"".join(s.payload for s in consumer.seen)
        for secret in (b"yt-key-5ecret", b"tw-key-5ecret", b"rtmp-pw-5ecret", b"ap-pw-5ecret"):
            assert secret not in everything
