"""Runs simulators and a bridge inside a test's task group."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from bridge.app import Bridge
from bridge.settings import build_settings
from bridge.simulators.base import Simulator
from tests.helpers import free_port

# Short long polls, so a stopping bridge never waits long on one.
POLL: dict[str, dict[str, str]] = {
    "generic": {"poll_timeout": "5s"},
    "2n": {"pull_timeout": "5s"},
    "onetouch": {},
    "ultrastream": {},
    "grandstream": {},
}


def bridge_config(
    url: str,
    sims: Mapping[str, Simulator],
    state_dir: Path,
    *,
    driver: str = "generic",
    **device: Any,
) -> dict[str, Any]:
    """A config for ``sims`` (which must be serving already)."""
    return {
        "mqtt": {"url": url, "client_id": f"bridge-test-{free_port()}"},
        "http": {"listen": "127.0.0.1:0"},
        "state_dir": str(state_dir),
        "devices": [
            {"id": name, "driver": driver, "url": sim.url, **POLL[driver], **device}
            for name, sim in sims.items()
        ],
    }


@asynccontextmanager
async def serving(sims: Mapping[str, Simulator]) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for sim in sims.values():
            await tg.start(sim.serve)
        yield
        tg.cancel_scope.cancel()


@asynccontextmanager
async def running(config: dict[str, Any], **bridge_options: Any) -> AsyncIterator[Bridge]:
    """Run a bridge and stop it cleanly (SIGTERM path) at the end."""
    bridge = Bridge(build_settings(config), **bridge_options)
    done = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def run_bridge() -> None:
            try:
                await bridge.run()
            finally:
                done.set()

        tg.start_soon(run_bridge)
        with anyio.fail_after(10):
            await bridge.started.wait()
        try:
            yield bridge
        finally:
            bridge.stop.set()
            with anyio.fail_after(10):
                await done.wait()
