"""The Onetouch driver against its simulator, through the driver test kit (no broker).

Every check waits on a condition with a deadline; the simulator's clock is advanced instead of
waiting for relay hold times.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bridge.commands import CheckedCommand, DialArgs, NoArgs, OpenDoorArgs
from bridge.errors import AuthError, CommandError, DeviceProtocolError
from bridge.model import Event
from bridge.simulators.onetouch import OnetouchSimulator
from tests.kit import Driving, Recorder, driving, served

pytestmark = pytest.mark.anyio
FAST = {"poll_interval": "50ms", "log_interval": "50ms", "slow_interval": "100ms"}


def device(sim: OnetouchSimulator, **options: Any) -> dict[str, Any]:
    return {
        "id": "gate",
        "driver": "onetouch",
        "url": sim.url,
        "username": "admin",
        "password": "httpapi",
        **FAST,
        **options,
    }


def simulated(**options: Any) -> AbstractAsyncContextManager[OnetouchSimulator]:
    return served(OnetouchSimulator(**options))


@asynccontextmanager
async def online(
    sim: OnetouchSimulator, state_dir: Path, recorder: Recorder | None = None, **options: Any
) -> AsyncIterator[Driving]:
    async with driving(device(sim, **options), state_dir, recorder) as run:
        # Online, and the logs read once: what happens from here on is new.
        logs = ("doorlog/get", "callog/get", "calllog/get")
        before = sum(sim.hits[p] for p in logs)
        await run.recorder.wait_for(
            lambda: (
                run.failure
                or (run.recorder.info is not None and sum(sim.hits[p] for p in logs) >= before + 2)
            )
        )
        assert not run.failure, run.failure
        yield run


def types(recorder: Recorder) -> list[str]:
    return [e.type for e in recorder.events]


def without_raw(event: Event) -> dict[str, Any]:
    return {k: v for k, v in event.data.items() if k != "raw"}


async def test_baseline_is_state_and_info_and_no_events(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        info = run.recorder.info
        assert info is not None
        assert (info.vendor, info.model, info.serial) == ("Onetouch", "OT-IP-LP-C9", sim.mac)
        assert info.capabilities["switch_names"] == {"1": "RelayA", "2": "RelayB", "3": "RelayC"}
        state = run.recorder.state
        assert state["switches"] == {n: {"active": False} for n in ("1", "2", "3")}
        assert state["inputs"] == {n: {"active": False} for n in ("1", "2", "3")}
        assert state["call"] == {"state": "idle", "status": "READY"}
        assert state["sip"] == {"1": "registered", "2": "disabled"}
        polls = sim.hits["relay/status"]
        await run.recorder.wait_for(lambda: sim.hits["relay/status"] > polls + 3)
        assert run.recorder.events == []


async def test_open_door_is_one_trig_and_a_relay_pulse(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        command = CheckedCommand("open_door", OpenDoorArgs(door=2), id="1")
        outcome = await run.driver.execute(command)
        assert outcome.data == {"door": 2}
        assert sim.hits["relay/trig"] == 1
        await run.recorder.wait_for(lambda: run.recorder.of_type("switch.changed"))
        sim.advance(sim.hold_delay(2))  # the relay's hold time passes: it drops back
        changes = await run.recorder.wait_for(
            lambda: (
                len(run.recorder.of_type("switch.changed")) >= 2
                and run.recorder.of_type("switch.changed")
            )
        )
        assert [without_raw(e) for e in changes] == [
            {"switch": 2, "active": True},
            {"switch": 2, "active": False},
        ]
        assert sim.hits["relay/trig"] == 1  # the door opened once
        assert run.recorder.state["switches"]["2"] == {"active": False}


async def test_repeated_identical_transitions_get_their_own_ids(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        for expected in range(1, 7):
            sim.trig(1, mode=1, level=expected % 2)  # on, off, on, off, on, off
            await run.recorder.wait_for(
                partial(lambda n: len(run.recorder.of_type("switch.changed")) >= n, expected)
            )
        changes = run.recorder.of_type("switch.changed")
        assert [e.data["active"] for e in changes] == [True, False] * 3
        assert len({e.id for e in changes}) == 6  # none would be dropped as a duplicate
        assert all(e in run.recorder.durable for e in changes)  # polled: nothing can replay them


async def test_inputs_follow_their_trigger_level(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.set_input(3, active=True)
        [event] = await run.recorder.wait_for(lambda: run.recorder.of_type("input.changed"))
        assert without_raw(event) == {"port": 3, "active": True}
        assert event.data["raw"]["input"]["InputC"] == 0  # low trigger: active at level 0
        sim.set_input(3, active=False)
        await run.recorder.wait_for(lambda: len(run.recorder.of_type("input.changed")) == 2)
        assert run.recorder.state["inputs"]["3"] == {"active": False}


async def test_cards_codes_and_faces(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.swipe("00B4161D", name="Alice", valid=True, door=0)
        sim.swipe("DEADBEEF", valid=False, door=0)
        sim.enter_code("4711", valid=True, name="Bob", door=0)
        sim.enter_code("0815", valid=False, public=True, door=0)
        sim.face("Carol", door=0)
        wanted = ["card.read", "access.granted", "card.read", "access.denied"]
        wanted += ["access.granted", "access.denied", "access.granted"]
        await run.recorder.wait_for(
            lambda: [t for t in types(run.recorder) if t != "switch.changed"] == wanted
        )
        access = [e for e in run.recorder.events if e.type.startswith(("card", "access"))]
        assert [without_raw(e) for e in access] == [
            {"uid": "00B4161D", "valid": True},
            {"method": "card", "user": "Alice"},
            {"uid": "DEADBEEF", "valid": False},
            {"method": "card", "reason": "refused by the device"},
            {"method": "code", "user": "Bob"},
            {"method": "public_code", "reason": "refused by the device"},
            {"method": "face", "user": "Carol"},
        ]
        everything = repr(run.recorder.updates)
        assert "4711" not in everything
        assert "0815" not in everything
        assert len({e.id for e in access}) == len(access)
        # Ids of log records come from the log's own record IDs, not from the device's clock
        # (its boot epoch wobbles by a second): a replay keeps its id.
        assert [e.id for e in access][:2] == ["gate/doorlog/1.0", "gate/doorlog/1.1"]
        assert all(e not in run.recorder.durable for e in access)  # the log can replay them


async def test_a_call_and_its_log_record(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.incoming_call("101", name="Lobby")

        def calls() -> list[dict[str, Any]]:
            return [without_raw(e) for e in run.recorder.of_type("call.state_changed")]

        await run.recorder.wait_for(calls)
        sim.answer_call()
        await run.recorder.wait_for(lambda: len(calls()) >= 2)
        sim.end_call()
        await run.recorder.wait_for(lambda: len(calls()) >= 4)
        live = [c for c in calls() if "source" not in c]
        assert live == [
            {"state": "ringing", "status": "RINGING"},
            {"state": "connected", "status": "TALKING"},
            {"state": "idle", "status": "READY"},
        ]
        # The call log's record of it comes from another cadence: before or after "idle".
        logged = {"state": "ended", "direction": "incoming", "peer": "101", "name": "Lobby"}
        assert [c for c in calls() if "source" in c] == [{**logged, "source": "log"}]


async def test_dial_and_hangup(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        await run.driver.execute(CheckedCommand("dial", DialArgs(number="102"), id=None))
        assert sim.call is not None
        assert sim.call.number == "102"
        await run.recorder.wait_for(lambda: run.recorder.state["call"]["state"] == "calling")
        await run.driver.execute(CheckedCommand("hangup", NoArgs(), id=None))
        assert sim.call is None
        with pytest.raises(CommandError, match="door: this device has doors 1 to 3"):
            await run.driver.execute(CheckedCommand("open_door", OpenDoorArgs(door=4), id=None))
        assert sim.hits["relay/trig"] == 0


async def test_sip_registration(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.set_registration(1, 3)
        [event] = await run.recorder.wait_for(
            lambda: run.recorder.of_type("sip.registration_changed")
        )
        assert without_raw(event) == {"account": 1, "state": "failed"}
        assert "sip-secret" not in repr(run.recorder.updates)


async def test_device_reboot_is_one_device_started_and_no_record_twice(tmp_path: Path) -> None:
    async with simulated() as sim, online(sim, tmp_path) as run:
        sim.swipe(valid=True, door=0)
        await run.recorder.wait_for(lambda: run.recorder.of_type("access.granted"))
        sim.advance(600)  # up ten minutes, then a reboot
        sim.reboot()
        [started] = await run.recorder.wait_for(lambda: run.recorder.of_type("device.started"))
        assert started.data["uptime"] < 600
        sim.swipe(valid=False, door=0)
        await run.recorder.wait_for(lambda: run.recorder.of_type("access.denied"))
        polls = sim.hits["doorlog/get"]
        await run.recorder.wait_for(lambda: sim.hits["doorlog/get"] > polls + 3)
        assert len(run.recorder.of_type("access.granted")) == 1
        assert len(run.recorder.of_type("device.started")) == 1


async def test_restart_publishes_what_was_missed_once(tmp_path: Path) -> None:
    async with simulated() as sim:
        async with online(sim, tmp_path) as run:
            sim.swipe("00000001", door=0)
            await run.recorder.wait_for(lambda: run.recorder.of_type("card.read"))
        # The bridge is down: two more records, and the call log gains one.
        sim.swipe("00000002", door=0)
        sim.enter_code("1111", door=0)
        sim.incoming_call("103")
        sim.end_call()
        async with online(sim, tmp_path) as run:
            await run.recorder.wait_for(
                lambda: (
                    len(run.recorder.of_type("access.granted")) >= 2
                    and run.recorder.of_type("call.state_changed")
                )
            )
            polls = sim.hits["doorlog/get"]
            await run.recorder.wait_for(lambda: sim.hits["doorlog/get"] > polls + 3)
            assert [e.data["uid"] for e in run.recorder.of_type("card.read")] == ["00000002"]
            assert [e.data["method"] for e in run.recorder.of_type("access.granted")] == [
                "card",
                "code",
            ]
            [missed] = run.recorder.of_type("call.state_changed")
            assert missed.data["state"] == "missed"


async def test_restart_after_the_broker_never_acknowledged_replays(tmp_path: Path) -> None:
    async with simulated() as sim:
        async with online(sim, tmp_path, Recorder(broker_away=True)) as run:
            sim.swipe("0000000A", door=0)
            sim.swipe("0000000B", door=0)
            await run.recorder.wait_for(lambda: len(run.recorder.of_type("card.read")) == 2)
            first_ids = [e.id for e in run.recorder.of_type("card.read")]
        # Stopped before the broker acknowledged: the checkpoint did not move past them.
        async with online(sim, tmp_path) as run:
            await run.recorder.wait_for(lambda: len(run.recorder.of_type("card.read")) == 2)
            assert [e.id for e in run.recorder.of_type("card.read")] == first_ids  # same ids
        async with online(sim, tmp_path) as run:  # acknowledged now: nothing again
            polls = sim.hits["doorlog/get"]
            await run.recorder.wait_for(lambda: sim.hits["doorlog/get"] > polls + 3)
            assert run.recorder.of_type("card.read") == []


async def test_old_records_are_not_replayed(tmp_path: Path) -> None:
    async with simulated() as sim:
        async with online(sim, tmp_path) as run:
            pass
        sim.swipe("000000AA", door=0)
        sim.advance(3600)  # the bridge stays down for an hour
        sim.swipe("000000BB", door=0)
        async with online(sim, tmp_path, replay_max_age="5m") as run:
            await run.recorder.wait_for(lambda: run.recorder.of_type("card.read"))
            polls = sim.hits["doorlog/get"]
            await run.recorder.wait_for(lambda: sim.hits["doorlog/get"] > polls + 3)
            assert [e.data["uid"] for e in run.recorder.of_type("card.read")] == ["000000BB"]


async def test_call_log_spelling_is_learnt(tmp_path: Path) -> None:
    async with simulated(calllog_path="calllog") as sim, online(sim, tmp_path) as run:
        sim.incoming_call("104")
        sim.end_call()
        await run.recorder.wait_for(
            lambda: any(
                e.data.get("source") == "log" for e in run.recorder.of_type("call.state_changed")
            )
        )
        polls = sim.hits["calllog/get"]
        await run.recorder.wait_for(lambda: sim.hits["calllog/get"] > polls + 2)
        assert sim.hits["callog/get"] == 1  # tried once, then remembered


@pytest.mark.parametrize("style", ["get", "post"])
@pytest.mark.parametrize("auth", ["digest", "basic", "none"])
async def test_request_styles_and_auth_modes(tmp_path: Path, style: str, auth: str) -> None:
    async with simulated(auth=auth) as sim, online(sim, tmp_path, request_style=style) as run:
        sim.set_input(1, active=True)
        await run.recorder.wait_for(lambda: run.recorder.of_type("input.changed"))


async def test_api_disabled_says_so(tmp_path: Path) -> None:
    async with simulated(api_enabled=False) as sim, driving(device(sim), tmp_path) as run:
        await run.recorder.wait_for(lambda: run.failure)
        [error] = run.failure
        assert isinstance(error, AuthError)
        assert "HTTP API is disabled" in str(error)


async def test_wrong_password_is_an_auth_error(tmp_path: Path) -> None:
    async with simulated() as sim, driving(device(sim, password="nope"), tmp_path) as run:
        await run.recorder.wait_for(lambda: run.failure)
        assert isinstance(run.failure[0], AuthError)


async def test_a_garbled_reply_ends_the_run_and_the_next_run_works(tmp_path: Path) -> None:
    async with simulated() as sim:
        async with online(sim, tmp_path) as run:
            sim.set_fault("garbage", count=1, path_prefix="/api/relay/status")
            await run.recorder.wait_for(lambda: run.failure)
            assert isinstance(run.failure[0], DeviceProtocolError)
        async with online(sim, tmp_path) as run:
            sim.set_input(2, active=True)
            await run.recorder.wait_for(lambda: run.recorder.of_type("input.changed"))


async def test_a_push_reads_the_status_at_once(tmp_path: Path) -> None:
    async with (
        simulated() as sim,
        online(sim, tmp_path, poll_interval="1h", log_interval="1h") as run,
    ):
        polls = sim.hits["input/status"]
        sim.set_input(1, active=True)
        run.context.wakeup.set()
        await run.recorder.wait_for(lambda: run.recorder.of_type("input.changed"))
        assert sim.hits["input/status"] == polls + 1
