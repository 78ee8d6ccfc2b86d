"""Child processes of tests and benchmarks: stopping one the way a service manager would."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen[bytes], deadline: float) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited ``deadline`` seconds later."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=deadline)
