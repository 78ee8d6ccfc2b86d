"""READY / WATCHDOG / STOPPING reach a NOTIFY_SOCKET, as systemd's Type=notify expects."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from bridge.simulators.generic import GenericSimulator
from bridge.systemd import Notifier
from tests.helpers import Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]


async def test_notifications(mosquitto: Mosquitto, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    received: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)

        def drain() -> list[str]:
            while True:
                try:
                    received.extend(sock.recv(4096).decode().split("\n"))
                except BlockingIOError:
                    return received

        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
        sims = {"front-door": GenericSimulator()}
        async with serving(sims):
            config = bridge_config(mosquitto.url, sims, tmp_path)
            async with running(config, notifier=notifier):
                await wait_until(lambda: "READY=1" in drain())
                await wait_until(lambda: drain().count("WATCHDOG=1") >= 2)
            await wait_until(lambda: "STOPPING=1" in drain())
    assert any(line.startswith("STATUS=serving 1 devices") for line in received)


async def test_watchdog_pings_stop_while_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000"})
        healthy, checks = True, 0

        def check() -> bool:
            nonlocal checks
            checks += 1
            return healthy

        def pings() -> int:
            count = 0
            while True:
                try:
                    count += sock.recv(64) == b"WATCHDOG=1"
                except BlockingIOError:
                    return count

        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.watchdog, check)
            await wait_until(lambda: checks >= 3)
            assert pings() >= 3
            healthy = False  # the supervisor is stuck
            seen = checks
            await wait_until(lambda: checks >= seen + 3)
            assert pings() <= 1  # at most the one in flight when it got stuck
            tg.cancel_scope.cancel()


def test_outside_systemd_it_is_silent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.notify("READY=1")  # no socket, no error
    assert (
        Notifier(
            {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}
        ).watchdog_interval
        is None
    )
