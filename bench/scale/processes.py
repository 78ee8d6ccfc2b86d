"""The benchmark's child processes and what /proc says about them (CPU, RSS)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from bridge.process import stop

ROOT = Path(__file__).resolve().parents[2]  # the repository: ``python -m bench...`` runs here
TICKS = os.sysconf("SC_CLK_TCK")


class PhaseError(Exception):
    """A phase missed its deadline or a process died: reported, and the run goes on."""


@dataclass
class Children:
    """Every child process, each logging to ``<work>/<name>.log``; ``stop_all`` ends them in
    the reverse order of their start (bridge first, broker last)."""

    work: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # A session of their own: Ctrl-C reaches the benchmark only, which stops them in order.
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop(
        self, proc: subprocess.Popen[bytes], timeout: float = 15.0, sig: int = signal.SIGTERM
    ) -> int | None:
        """Signal ``proc`` and wait ``timeout`` seconds for it (then kill it); its exit status."""
        stop(proc, timeout, sig)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.stop(proc)


def raise_nofile() -> int:
    """Raise this process's open-file limit (children inherit it: 1,000 devices are ~1,000
    sockets on each side); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def alive(proc: subprocess.Popen[bytes], name: str) -> None:
    """PhaseError when ``proc`` has exited."""
    if proc.poll() is not None:
        raise PhaseError(f"{name} exited with status {proc.returncode}")


async def wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    """Until ``proc`` listens on ``port``; PhaseError when it exits or ``deadline`` (seconds)
    has passed."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        alive(proc, f"process {proc.pid}")
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            await anyio.sleep(0.01)
        else:
            await stream.aclose()
            return
    raise PhaseError(f"nothing listens on port {port} after {deadline:g} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process in seconds (its own threads, not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    """Resident set size (``VmRSS``) of a process in MiB."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8", errors="replace")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise PhaseError(f"no VmRSS for {pid}")


def all_processes() -> dict[int, float]:
    """CPU seconds of every process on the machine, by pid."""
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):  # gone, or a zombie
                seconds[int(entry.name)] = cpu_seconds(int(entry.name))
    return seconds


@dataclass
class CpuMeter:
    """CPU used by each named group of processes between construction and ``read``, and by
    every other process ("other": someone else's work on the machine, py-spy when profiling)."""

    pids: dict[str, list[int]]
    wall: float = field(default_factory=time.monotonic)
    start: dict[str, float] = field(default_factory=dict)
    others: dict[int, float] = field(default_factory=all_processes)

    def __post_init__(self) -> None:
        self.start = {name: self._cpu(pids) for name, pids in self.pids.items()}

    @staticmethod
    def _cpu(pids: list[int]) -> float:
        return sum(cpu_seconds(pid) for pid in pids)

    def seconds(self) -> dict[str, float]:
        """CPU seconds per group since construction, and ``"wall"``: the seconds elapsed."""
        used = {name: self._cpu(pids) - self.start[name] for name, pids in self.pids.items()}
        ours = {pid for pids in self.pids.values() for pid in pids}
        used["other"] = sum(
            cpu - self.others.get(pid, 0.0)
            for pid, cpu in all_processes().items()
            if pid not in ours
        )
        return used | {"wall": time.monotonic() - self.wall}

    def read(self) -> dict[str, float]:
        """% of one core per group since construction."""
        used = self.seconds()
        wall = used.pop("wall")
        return {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}
