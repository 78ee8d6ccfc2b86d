"""A mosquitto broker as a child process: the broker of ``bridge demo``.

The broker gets a generated configuration in a temporary directory (one listener on
127.0.0.1, anonymous clients, ``set_tcp_nodelay``, no persistence) and runs in its own process
group, so the Ctrl-C meant for the demo does not take the broker away before the bridge has
said goodbye on it; the demo stops it when it ends. On Linux it also gets SIGTERM when the demo
dies without cleaning up (a closed terminal, SIGKILL), unless it changes user at start (mosquitto
started as root runs as the ``mosquitto`` user, and Linux then forgets the parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

from bridge.errors import StartupError
from bridge.process import listening, stop

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

DEFAULT_PORT = 1883
LOOPBACK = "127.0.0.1"
#: Where packages put the binary outside a user's PATH (Debian's /usr/sbin is root's only).
SBIN = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
INSTALL_HINT = (
    "install it (Debian/Ubuntu: sudo apt-get install mosquitto, as `make demo` does; "
    "macOS: brew install mosquitto) or give --mqtt-url of a broker you have"
)
START_DEADLINE = 10.0  # seconds for mosquitto to accept a connection
STOP_DEADLINE = 5.0  # seconds between SIGTERM and SIGKILL
_PR_SET_PDEATHSIG = 1


def find_mosquitto(search_path: str | None = None, sbin: Sequence[str] = SBIN) -> str | None:
    """The mosquitto binary: on ``search_path`` (default: ``$PATH``), else the first of ``sbin``
    that is an executable file; None when there is none."""
    found = shutil.which("mosquitto", path=search_path)
    if found is not None:
        return found
    for candidate in sbin:
        if shutil.which(candidate) is not None:  # an executable file, as the PATH lookup wants
            return candidate
    return None


def require_mosquitto(search_path: str | None = None, sbin: Sequence[str] = SBIN) -> str:
    """:func:`find_mosquitto`, or StartupError saying how to install it."""
    found = find_mosquitto(search_path, sbin)
    if found is None:
        raise StartupError(
            f"the demo's broker is mosquitto, which is not installed: {INSTALL_HINT}"
        )
    return found


def choose_port(forced: int | None, default_is_free: bool) -> int:
    """The demo broker's port: ``forced`` if given, else 1883 when free, else 0 (any free
    port, which :func:`free_port` picks)."""
    if forced is not None:
        return forced
    return DEFAULT_PORT if default_is_free else 0


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a listener could bind ``host:port`` now (as mosquitto does: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def config_text(port: int, host: str = LOOPBACK) -> str:
    """The broker's configuration: one listener, anonymous, Nagle off, nothing kept on disk,
    only warnings and errors logged (to stderr, without timestamps)."""
    return (
        f"listener {port} {host}\n"
        "allow_anonymous true\n"
        "set_tcp_nodelay true\n"
        "persistence false\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n"
        "log_timestamp false\n"
    )


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies; None elsewhere.
    Bound before the fork, so the child only calls into libc."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    term = int(signal.SIGTERM)
    return lambda: prctl(_PR_SET_PDEATHSIG, term)


@dataclass
class MosquittoProcess:
    """A mosquitto on ``127.0.0.1:port`` for as long as the ``with`` block runs.

    ``port`` 0 means a free port, chosen at start. Entering raises StartupError (one line:
    the binary is missing, or mosquitto exited or did not listen within 10 s, with its last log
    line, e.g. ``Error: Address already in use``); leaving stops the broker (SIGTERM, SIGKILL
    after 5 s) and removes its directory.
    """

    binary: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def __enter__(self) -> Self:
        self._workdir = tempfile.TemporaryDirectory(prefix="bridge-demo-broker-")
        workdir = Path(self._workdir.name)
        if self.port == 0:
            self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(config_text(self.port), encoding="utf-8")
        log = workdir / "mosquitto.log"
        try:
            with log.open("wb") as out:
                self.process = subprocess.Popen(  # noqa: S603 - our binary, our config
                    [self.binary, "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                    preexec_fn=_die_with_parent(),  # noqa: PLW1509 - no threads run yet
                )
        except OSError as exc:
            self._cleanup()
            raise StartupError(f"cannot run mosquitto ({self.binary}): {exc.strerror}") from None
        try:
            self._wait_listening(log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_listening(self, log: Path) -> None:
        assert self.process is not None  # noqa: S101 - set by __enter__
        if listening(self.port, self.process, START_DEADLINE, LOOPBACK):
            return
        if self.process.poll() is not None:
            raise StartupError(
                f"mosquitto could not listen on {LOOPBACK}:{self.port}: {_last_line(log)}"
            )
        raise StartupError(f"mosquitto did not listen on {LOOPBACK}:{self.port} within 10 s")

    def __exit__(self, *exc_info: object) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop(process, STOP_DEADLINE)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._workdir is not None:
            with contextlib.suppress(OSError):
                self._workdir.cleanup()
            self._workdir = None


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    found = [line for line in lines if line]
    return found[-1] if found else "it exited without a word"
