"""Child processes (the demo's mosquitto; the tests' and benchmarks' brokers, bridges, Node-RED):
stopping one the way a service manager would."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from typing import Any

POLL = 0.02  # seconds between connection attempts


def stop(process: subprocess.Popen[Any], deadline: float, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` (SIGTERM), then SIGKILL if ``process`` has not exited ``deadline`` seconds
    later; its exit status (negative: the signal that ended it)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=deadline)


def listening(
    port: int, process: subprocess.Popen[Any], deadline: float, host: str = "127.0.0.1"
) -> bool:
    """Wait until something accepts TCP connections on ``host:port`` (True), or ``process`` has
    exited or ``deadline`` seconds have passed (False). Polls: a child's port has no event."""
    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            if process.poll() is not None or time.monotonic() > end:
                return False
            time.sleep(POLL)
