"""Child processes (the demo's mosquitto; the tests' and benchmarks' brokers, bridges, Node-RED):
stopping one the way a service manager would."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


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
