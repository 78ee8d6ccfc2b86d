"""The Grandstream driver against its simulator, through the driver test kit (no broker).

Every check waits on a condition with a deadline; "nothing more happened" is checked after a
counted number of further simulator reads, never after a sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.commands import (
    CheckedCommand,
    MotionDetectionArgs,
    NoArgs,
    PtzArgs,
    SetOutputArgs,
    SnapshotArgs,
)
from bridge.errors import AuthError, CommandError
from bridge.model import Event
from bridge.simulators.grandstream import GrandstreamSimulator
from tests.kit import Driving, Recorder, driving, served

pytestmark = pytest.mark.anyio
FAST = {"poll_interval": "50ms", "slow_interval": "100ms"}
STATUS = "motiondetect?get_md_statu"
IDLE: dict[str, Any] = {
    "poll_interval": "1h",
    "slow_interval": "1h",
}  # the poller stays quiet after the start


def device(sim: GrandstreamSimulator, **options: Any) -> dict[str, Any]:
    return {
        "id": "cam",
        "driver": "grandstream",
        "url": sim.url,
        "username": "admin",
        "password": "admin",
        **FAST,
        **options,
    }


def simulated(**options: Any) -> AbstractAsyncContextManager[GrandstreamSimulator]:
    return served(GrandstreamSimulator(**options))


@asynccontextmanager
async def online(
    sim: GrandstreamSimulator, state_dir: Path, *, recorder: Recorder | None = None, **options: Any
) -> AsyncIterator[Driving]:
    async with driving(device(sim, **options), state_dir, recorder) as run:
        await run.recorder.wait_for(lambda: run.failure or run.recorder.info is not None)
        assert not run.failure, run.failure
        yield run


async def more_polls(run: Driving, sim: GrandstreamSimulator, count: int = 3) -> None:
    polls = sim.hits[STATUS]
    await run.recorder.wait_for(lambda: run.failure or sim.hits[STATUS] >= polls + count)
    assert not run.failure, run.failure


def without_raw(event: Event) -> dict[str, Any]:
    return {k: v for k, v in event.data.items() if k != "raw"}


def command(name: str, args: Any = None) -> CheckedCommand:
    return CheckedCommand(name, args if args is not None else NoArgs(), id="1")


async def test_baseline_is_info_and_state_and_no_events(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        info = run.recorder.info
        assert info is not None
        assert (info.vendor, info.model, info.serial) == ("Grandstream", "GXV3610_HD", sim.mac)
        assert info.capabilities["channels"] == [0]
        assert info.capabilities["ptz"] is False
        assert "ptz" not in info.commands
        assert "start_recording" in info.commands
        state = run.recorder.state
        assert state["inputs"] == {"1": {"active": False}}
        assert state["outputs"] == {"1": {"active": False}}
        assert state["motion"] is False
        assert state["recording"] is False
        assert state["motion_detection"] is True
        assert state["day_night"] == "day"
        await more_polls(run, sim)
        assert run.recorder.events == []


async def test_alarm_input_follows_status_xor_type(tmp_path: Path) -> None:
    async with simulated() as sim:
        sim.channels[0].input_type = 1  # normally closed: idle while the contact is closed
        sim.channels[0].input_closed = True
        async with online(sim, tmp_path) as run:
            assert run.recorder.state["inputs"]["1"] == {"active": False}
            sim.set_input(1, active=True)
            [event] = await run.recorder.wait_for(lambda: run.recorder.of_type("input.changed"))
            assert without_raw(event) == {"port": 1, "active": True}
            assert sim.channels[0].input_closed is False  # NC opened: the alarm
            sim.set_input(1, active=False)
            await run.recorder.wait_for(lambda: len(run.recorder.of_type("input.changed")) == 2)
            assert run.recorder.state["inputs"]["1"] == {"active": False}
            assert all(e in run.recorder.durable for e in run.recorder.events)


async def test_motion_starts_and_stops(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.set_motion(0, active=True)
        await run.recorder.wait_for(lambda: run.recorder.of_type("motion.started"))
        sim.set_motion(0, active=False)
        await run.recorder.wait_for(lambda: run.recorder.of_type("motion.stopped"))
        assert [e.type for e in run.recorder.events] == ["motion.started", "motion.stopped"]
        assert without_raw(run.recorder.events[0]) == {}
        assert run.recorder.state["motion"] is False


async def test_motion_on_channel_3_of_the_encoder(tmp_path: Path) -> None:
    async with simulated(model="GXV3504") as sim, online(sim, tmp_path) as run:
        info = run.recorder.info
        assert info is not None
        assert info.capabilities["channels"] == [0, 1, 2, 3]
        assert info.capabilities["inputs"] == 4
        assert run.recorder.state["channels"]["3"] == {
            "motion": False,
            "recording": False,
            "record_mode": None,
        }
        sim.set_motion(3, active=True)
        [event] = await run.recorder.wait_for(lambda: run.recorder.of_type("motion.started"))
        assert without_raw(event) == {"channel": 3}
        sim.set_input(2, active=True)
        [alarm] = await run.recorder.wait_for(lambda: run.recorder.of_type("input.changed"))
        assert without_raw(alarm) == {"port": 2, "active": True}
        sim.set_recording(1, "alarm")
        [recording] = await run.recorder.wait_for(lambda: run.recorder.of_type("recording.started"))
        assert without_raw(recording) == {"channel": 1}
        assert run.recorder.state["channels"]["1"]["record_mode"] == "alarm"
        assert run.recorder.state["channels"]["3"]["motion"] is True


async def test_busy_reads_are_retried_without_duplicates(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.set_motion(0, active=True)
        sim.busy(2)  # two 503s: the poll's own retries get through
        await run.recorder.wait_for(lambda: run.recorder.of_type("motion.started"))
        await more_polls(run, sim)
        assert sim.busy_left == 0
        assert len(run.recorder.of_type("motion.started")) == 1
        assert run.failure == []


async def test_busy_for_longer_ends_the_run(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.busy(10)
        await run.recorder.wait_for(lambda: run.failure)
        assert "HTTP 503" in str(run.failure[0])


async def test_device_reboot_is_one_device_started(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.advance(600)  # up ten minutes (read by the slow cadence), then a reboot
        reads = sim.hits["systeminfo?get"]
        await run.recorder.wait_for(lambda: sim.hits["systeminfo?get"] >= reads + 2)
        sim.set_motion(0, active=True)
        await run.recorder.wait_for(lambda: run.recorder.of_type("motion.started"))
        outcome = await run.driver.execute(command("reboot"))
        assert outcome.data == {}
        assert sim.boot == 2
        [started] = await run.recorder.wait_for(lambda: run.recorder.of_type("device.started"))
        assert started.data["uptime"] < 600
        await run.recorder.wait_for(lambda: run.recorder.of_type("motion.stopped"))
        reads = sim.hits["systeminfo?get"]
        await run.recorder.wait_for(lambda: sim.hits["systeminfo?get"] >= reads + 3)
        assert len(run.recorder.of_type("device.started")) == 1
    async with simulated() as other:  # the checkpoint: a bridge restart is not a reboot
        other.boot_epoch = sim.boot_epoch
        other._skew = sim._skew
        async with online(other, tmp_path) as run:
            await more_polls(run, other)
            assert run.recorder.of_type("device.started") == []


async def test_snapshot_is_a_jpeg_per_channel(tmp_path: Path) -> None:
    async with simulated(model="GXV3504") as sim, online(sim, tmp_path) as run:
        outcome = await run.driver.execute(command("snapshot", SnapshotArgs(channel=2)))
        assert outcome.image is not None
        assert outcome.image.startswith(b"\xff\xd8")
        assert outcome.image.endswith(b"\xff\xd9")
        assert b"view2" in outcome.image
        assert sim.hits["snapshot/view2.jpg"] == 1
        default = await run.driver.execute(command("snapshot", SnapshotArgs()))
        assert default.data == {"channel": 0}
        with pytest.raises(CommandError) as caught:
            await run.driver.execute(command("snapshot", SnapshotArgs(channel=4)))
        assert caught.value.code == "invalid_args"
        assert sim.hits["snapshot/view4.jpg"] == 0


async def test_ptz_reaches_the_encoder(tmp_path: Path) -> None:
    async with simulated(model="GXV3504") as sim, online(sim, tmp_path) as run:
        outcome = await run.driver.execute(command("ptz", PtzArgs(action="left", speed=10)))
        assert outcome.data == {"ptzcontrol": 3, "ptzparam": 63}
        assert sim.sets[-1] == ("ptz", {"ptzcontrol": "3", "ptzparam": "63"})
        await run.driver.execute(command("ptz", PtzArgs(action="stop")))
        assert sim.channels[0].ptz == (0, 0)
        await run.driver.execute(command("ptz", PtzArgs(action="home")))
        assert sim.channels[0].ptz == (15, 1)


async def test_ptz_on_the_camera_is_unsupported_without_a_request(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path, **IDLE) as run:
        before = sim.requests
        with pytest.raises(CommandError) as caught:
            await run.driver.execute(command("ptz", PtzArgs(action="up")))
        assert caught.value.code == "unsupported"
        assert sim.requests == before


async def test_motion_detection_output_and_recording_commands(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        outcome = await run.driver.execute(
            command("motion_detection", MotionDetectionArgs(enabled=False))
        )
        assert sim.channels[0].md_enabled is False
        assert outcome.updates[0].values == {"motion_detection": False}  # type: ignore[union-attr]

        sim.set_output(1, active=True)  # an alarm action drove it
        await run.recorder.wait_for(lambda: run.recorder.of_type("output.changed"))
        await run.driver.execute(command("set_output", SetOutputArgs(port=1, on=False)))
        assert sim.sets[-1] == ("alarmio", {"alarmout.stop": "yes"})
        await run.recorder.wait_for(lambda: len(run.recorder.of_type("output.changed")) == 2)
        with pytest.raises(CommandError) as caught:
            await run.driver.execute(command("set_output", SetOutputArgs(port=1, on=True)))
        assert caught.value.code == "unsupported"

        await run.driver.execute(command("start_recording"))
        assert sim.channels[0].record == 1
        await run.recorder.wait_for(lambda: run.recorder.of_type("recording.started"))
        sim.set_recording(0, "alarm")
        with pytest.raises(CommandError) as refused:
            await run.driver.execute(command("stop_recording"))
        assert refused.value.code == "invalid_args"
        assert "record_start Invalid" in refused.value.message


async def test_a_busy_command_is_reported_not_repeated(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path, **IDLE) as run:
        sim.busy(1)
        with pytest.raises(CommandError) as caught:
            await run.driver.execute(
                command("motion_detection", MotionDetectionArgs(enabled=False))
            )
        assert caught.value.code == "device_error"
        assert "busy" in caught.value.message
        assert sim.hits["motiondetect?set"] == 1
        assert sim.channels[0].md_enabled is True


async def test_learns_the_devices_spelling(tmp_path: Path) -> None:
    async with simulated(spelling="underscores") as sim, online(sim, tmp_path) as run:
        sim.set_motion(0, active=True)
        await run.recorder.wait_for(lambda: run.recorder.of_type("motion.started"))
        await run.driver.execute(command("motion_detection", MotionDetectionArgs(enabled=False)))
        assert sim.sets[-1] == ("motiondetect", {"md_active_enable": "0"})


async def test_day_night_is_a_vendor_event(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.set_day_night(night=True)
        [event] = await run.recorder.wait_for(lambda: run.recorder.of_type("vendor.DayNight"))
        assert event.data["mode"] == "night"
        assert run.recorder.state["day_night"] == "night"


async def test_the_password_is_nowhere_in_what_is_emitted(tmp_path: Path) -> None:
    secret = "cam-secret-4711"
    async with simulated(password=secret) as sim, online(sim, tmp_path, password=secret) as run:
        sim.set_motion(0, active=True)
        sim.set_input(1, active=True)
        await run.recorder.wait_for(lambda: len(run.recorder.events) >= 2)
        await run.driver.execute(command("refresh"))
        assert secret not in repr(run.recorder.updates)


async def test_wrong_password_is_an_auth_error(tmp_path: Path) -> None:
    async with simulated() as sim, driving(device(sim, password="nope"), tmp_path) as run:
        await run.recorder.wait_for(lambda: run.failure)
        assert isinstance(run.failure[0], AuthError)


async def test_a_push_reads_the_status_at_once(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path, poll_interval="1h") as run:
        polls = sim.hits[STATUS]
        sim.set_motion(0, active=True)
        run.context.wakeup.set()
        await run.recorder.wait_for(lambda: run.recorder.of_type("motion.started"))
        assert sim.hits[STATUS] == polls + 1
