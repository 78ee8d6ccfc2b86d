"""systemd service notifications (sd_notify), in the few lines the protocol needs.

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET``; with ``WatchdogSec=`` it also passes
``WATCHDOG_USEC`` and expects ``WATCHDOG=1`` at least that often. Outside systemd every call is
a no-op.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import anyio
import structlog

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

log = structlog.get_logger("bridge.systemd")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=exc.strerror)

    async def watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping the watchdog while ``healthy()``; a stuck bridge stops pinging and is restarted."""
        if self.watchdog_interval is None:
            return
        while True:
            if healthy():
                self.notify("WATCHDOG=1")
            await anyio.sleep(self.watchdog_interval)
