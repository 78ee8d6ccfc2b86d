"""The Ultra Stream driver against its simulator, through the driver test kit (no broker).

Every check waits on a condition with a deadline; "nothing more happened" is checked after a
number of the simulator's reads, never after a sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.commands import CheckedCommand, NoArgs, StreamingArgs
from bridge.errors import AuthError, CommandError
from bridge.model import Event
from bridge.simulators.ultrastream import UltraStreamSimulator
from tests.kit import Driving, Recorder, driving, served

pytestmark = pytest.mark.anyio
FAST = {"poll_interval": "50ms", "status_interval": "100ms", "settings_interval": "200ms"}


def device(sim: UltraStreamSimulator, **options: Any) -> dict[str, Any]:
    return {
        "id": "encoder",
        "driver": "ultrastream",
        "url": sim.url,
        "username": "Admin",
        "password": "admin",
        **FAST,
        **options,
    }


def simulated(**options: Any) -> AbstractAsyncContextManager[UltraStreamSimulator]:
    return served(UltraStreamSimulator(**options))


@asynccontextmanager
async def online(
    sim: UltraStreamSimulator, state_dir: Path, recorder: Recorder | None = None, **options: Any
) -> AsyncIterator[Driving]:
    async with driving(device(sim, **options), state_dir, recorder) as run:
        pings = sim.hits["ping"]
        await run.recorder.wait_for(
            lambda: run.failure or (run.recorder.info is not None and sim.hits["ping"] > pings + 1)
        )
        assert not run.failure, run.failure
        yield run


async def quiet(run: Driving, sim: UltraStreamSimulator, reads: int = 3) -> None:
    """Let ``reads`` more get-status reads happen (what would have been published, was)."""
    seen = sim.hits["get-status"]
    await run.recorder.wait_for(lambda: sim.hits["get-status"] >= seen + reads)


def command(name: str, server: int | None = None) -> CheckedCommand:
    args = StreamingArgs(server=server) if name.endswith("_streaming") else NoArgs()
    return CheckedCommand(name, args, id="1")


def without(event: Event, *keys: str) -> dict[str, Any]:
    return {k: v for k, v in event.data.items() if k not in keys}


async def test_baseline_is_info_and_state_and_no_events(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        info = run.recorder.info
        assert info is not None
        assert (info.vendor, info.model, info.serial) == (
            "Magewell",
            "Ultra Stream HDMI",
            sim.serial,
        )
        state = run.recorder.state
        assert state["recording"] is False
        assert state["streaming"] == {"1": False, "2": False}
        assert state["video_signal"] is True
        assert state["storage"] == {"usb": "DiskValid", "sd": "DiskValid"}
        await quiet(run, sim)
        assert run.recorder.events == []
        assert sim.logins == 1


async def test_recording_start_and_stop(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        outcome = await run.driver.execute(command("start_recording"))
        assert sim.recording  # confirmed by the device before the result
        assert outcome.data == {"recording": True}
        [started] = await run.recorder.wait_for(lambda: run.recorder.of_type("recording.started"))
        assert started.data["rec_status"] == 2
        again = await run.driver.execute(command("start_recording"))  # result 1: already
        assert again.data == {"recording": True}
        await run.driver.execute(command("stop_recording"))
        await run.recorder.wait_for(lambda: run.recorder.of_type("recording.stopped"))
        await quiet(run, sim)
        assert [e.type for e in run.recorder.events] == ["recording.started", "recording.stopped"]
        assert run.recorder.state["recording"] is False
        assert sim.hits["start-rec"] == 2
        assert all(e in run.recorder.durable for e in run.recorder.events)


async def test_streaming_per_server_with_live_status(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        outcome = await run.driver.execute(command("start_streaming", 1))
        assert outcome.data["server"] == 1
        assert sim.living
        [started] = await run.recorder.wait_for(lambda: run.recorder.of_type("streaming.started"))
        assert started.data["server"] == 1
        assert started.data["status"] in {"resolving_dns", "connecting", "connected"}
        await run.recorder.wait_for(lambda: run.recorder.state["live_status"]["1"] == "connected")
        # Server 2 is not enabled, and servers cannot be changed while live.
        with pytest.raises(CommandError) as refused:
            await run.driver.execute(command("start_streaming", 2))
        assert refused.value.code == "rejected"
        with pytest.raises(CommandError) as unknown:
            await run.driver.execute(command("start_streaming", 9))
        assert unknown.value.code == "invalid_args"
        await run.driver.execute(command("stop_streaming", 1))
        assert not sim.living
        [stopped] = await run.recorder.wait_for(lambda: run.recorder.of_type("streaming.stopped"))
        assert stopped.data["server"] == 1
        # Now server 2 can be enabled: it streams together with server 1.
        await run.driver.execute(command("start_streaming", 2))
        assert sim.state()["servers"] == {"1": True, "2": True}
        await run.recorder.wait_for(lambda: len(run.recorder.of_type("streaming.started")) == 3)
        with pytest.raises(CommandError) as one_of_two:
            await run.driver.execute(command("stop_streaming", 2))
        assert one_of_two.value.code == "unsupported"
        await run.driver.execute(command("stop_streaming"))
        await run.recorder.wait_for(lambda: len(run.recorder.of_type("streaming.stopped")) == 3)
        await quiet(run, sim)
        types = [(e.type, e.data["server"]) for e in run.recorder.events]
        assert sorted(types) == sorted(
            [
                ("streaming.started", 1),
                ("streaming.stopped", 1),
                ("streaming.started", 1),
                ("streaming.started", 2),
                ("streaming.stopped", 1),
                ("streaming.stopped", 2),
            ]
        )
        assert run.recorder.state["streaming"] == {"1": False, "2": False}


async def test_session_expiry_is_one_login_and_no_duplicate(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        assert sim.logins == 1
        sim.expire_sessions()
        sim.set_signal(False)
        [lost] = await run.recorder.wait_for(lambda: run.recorder.of_type("video_signal.lost"))
        assert without(lost) == {"width": 0, "height": 0, "frame_rate": 0.0}
        await quiet(run, sim)
        assert sim.logins == 2
        assert len(run.recorder.events) == 1
        assert not run.failure


async def test_reboot_is_one_device_started_and_a_new_login(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        await run.driver.execute(command("start_recording"))
        await run.recorder.wait_for(lambda: run.recorder.of_type("recording.started"))
        logins = sim.logins
        sim.reboot(hold=True)
        pings = sim.hits["ping"]
        await run.recorder.wait_for(lambda: sim.hits["ping"] > pings + 1)  # the bit was seen
        sim.boot_up()
        [started] = await run.recorder.wait_for(lambda: run.recorder.of_type("device.started"))
        assert started.data == {"detected": "statusReboot cleared"}
        await run.recorder.wait_for(lambda: run.recorder.of_type("recording.stopped"))
        await quiet(run, sim)
        assert sim.logins == logins + 1
        assert len(run.recorder.of_type("device.started")) == 1
        assert not run.failure


async def test_reboot_through_an_outage_is_reported_by_the_next_run(tmp_path: Path) -> None:
    async with simulated(reboot_announce=0.2, reboot_downtime=0.3) as sim:
        async with online(sim, tmp_path) as run:
            sim.reboot()
            await run.recorder.wait_for(lambda: run.failure)  # the device dropped the line
        await sim.wait_until(lambda: sim.phase == "up")
        async with online(sim, tmp_path) as run:
            await run.recorder.wait_for(lambda: run.recorder.of_type("device.started"))
        async with online(sim, tmp_path) as run:
            await quiet(run, sim)
            assert run.recorder.of_type("device.started") == []


async def test_wrong_password_is_an_auth_error_with_one_login(tmp_path: Path) -> None:
    async with simulated() as sim, driving(device(sim, password="nope"), tmp_path) as run:
        await run.recorder.wait_for(lambda: run.failure)
        assert isinstance(run.failure[0], AuthError)
        assert "wrong user name or password" in str(run.failure[0])
        assert (sim.logins, sim.failed_logins) == (1, 1)


async def test_signal_storage_and_operations(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.set_signal(False)
        await run.recorder.wait_for(lambda: run.recorder.of_type("video_signal.lost"))
        sim.set_signal(True)
        [back] = await run.recorder.wait_for(lambda: run.recorder.of_type("video_signal.restored"))
        assert without(back) == {"width": 1920, "height": 1080, "frame_rate": 60.0}
        sim.set_disk("usb", 0)
        [removed] = await run.recorder.wait_for(lambda: run.recorder.of_type("storage.changed"))
        assert without(removed, "free_size", "usage") == {
            "medium": "usb",
            "status": "NotDisk",
            "status_code": 0,
        }
        sim.set_disk("sd", 3)
        await run.recorder.wait_for(lambda: len(run.recorder.of_type("storage.changed")) == 2)
        assert run.recorder.state["storage"] == {"usb": "NotDisk", "sd": "NotSpace"}
        sim.set_operation("upgrade-status", result=2, percent=40)
        [running] = await run.recorder.wait_for(lambda: run.recorder.of_type("vendor.upgrade"))
        assert running.data == {
            "operation": "upgrade",
            "state": "running",
            "result": 2,
            "result_name": "retRunning",
            "percent": 40,
        }
        sim.set_operation("upgrade-status", result=-34)
        await run.recorder.wait_for(lambda: len(run.recorder.of_type("vendor.upgrade")) == 2)
        assert run.recorder.of_type("vendor.upgrade")[1].data["result_name"] == "errMWFUnsupported"


async def test_no_secret_leaves_the_driver(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        await run.driver.execute(command("start_streaming"))
        await run.driver.execute(command("refresh"))
        await run.recorder.wait_for(lambda: run.recorder.of_type("streaming.started"))
        everything = repr(run.recorder.updates)
        for secret in ("admin", "yt-key-5ecret", "tw-key-5ecret", "rtmp-pw-5ecret", "ap-pw-5ecret"):
            assert secret not in everything


async def test_refused_start_is_a_typed_error_and_http_503_ends_the_run(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.set_disk("usb", 0)
        sim.set_disk("sd", 3)
        with pytest.raises(CommandError) as full:
            await run.driver.execute(command("start_recording"))
        assert full.value.code == "action_failed"
        assert "errNoSpace" in full.value.message
        sim.unavailable(1)
        await run.recorder.wait_for(lambda: run.failure)
        assert "HTTP 503" in str(run.failure[0])


async def test_logout_on_close(tmp_path: Path) -> None:
    async with simulated() as sim:
        async with online(sim, tmp_path):
            assert len(sim.sessions) == 1
        assert sim.hits["logout"] == 1
        assert sim.sessions == {}


async def test_snapshot_fetches_the_preview_get_info_names(tmp_path: Path) -> None:
    from bridge.commands import SnapshotArgs

    async with simulated() as sim, online(sim, tmp_path) as run:
        outcome = await run.driver.execute(CheckedCommand("snapshot", SnapshotArgs(), id="s"))
        assert outcome.image is not None
        assert outcome.image.startswith(b"\xff\xd8")
        assert sim.hits["preview"] == 1
