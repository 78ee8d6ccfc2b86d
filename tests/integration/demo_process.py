"""`bridge demo` as a child process, started the way a user starts it and stopped with SIGTERM
(what the demo treats like Ctrl-C)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bridge.process import stop

STOP_DEADLINE = 15.0  # seconds for the demo to stop its bridge and broker after SIGTERM


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        """What the demo printed so far (the end of each stream), for failure messages."""
        out = self.stdout.read_text(errors="replace")[-2000:]
        err = self.stderr.read_text(errors="replace")[-2000:]
        return f"exit {self.process.poll()}\nstdout: {out}\nstderr: {err}"

    def printed(self, text: str) -> bool:
        """Whether ``text`` is in the demo's output; ``AssertionError`` if the demo exited."""
        assert self.process.poll() is None, self.output()
        return text in self.stdout.read_text(errors="replace")


@contextmanager
def demo(*args: str, log_dir: Path) -> Iterator[Demo]:
    """Run ``bridge demo <args>``; its output goes to files in ``log_dir``."""
    stdout, stderr = log_dir / "demo.out", log_dir / "demo.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "demo", *args],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield Demo(process, stdout, stderr)
    finally:
        stop(process, STOP_DEADLINE)
