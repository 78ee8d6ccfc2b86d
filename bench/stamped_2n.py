"""The project's 2N simulator, with each event's creation time as an extra parameter ``t``.

A 2N device stamps events in whole seconds (``utcTime``), too coarse for latency, so the
benchmarks' simulator adds ``t`` (``time.time()`` when the event was created); the bridge
passes it through in the event's ``data.raw.params``.

    python bench/stamped_2n.py PORT [USERNAME PASSWORD]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio

from bridge.simulators.two_n import Event, TwoNSimulator


class Stamped(TwoNSimulator):
    def emit(self, name: str, params: dict[str, Any] | None = None) -> Event:
        return super().emit(name, {**(params or {}), "t": time.time()})


async def serve(port: int, username: str | None, password: str | None) -> None:
    await Stamped(username=username, password=password).serve("127.0.0.1", port)


def main() -> None:
    port = int(sys.argv[1])
    username, password = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else (None, None)
    anyio.run(serve, port, username, password)


if __name__ == "__main__":
    main()
