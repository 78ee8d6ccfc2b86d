"""Real parts for the MQTT security tests: mosquitto listeners with TLS (optionally requiring
client certificates, see ``tests.pki`` for the certificates) and websockets, and MQTT clients
that log in with a password, over TLS or websockets."""

from __future__ import annotations

import getpass
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiomqtt

from tests.helpers import DEADLINE, POLL, Consumer, Mosquitto, free_port
from tests.pki import Pair

ROOT = Path(__file__).parents[2]
ACL_FILE = ROOT / "deploy" / "mosquitto" / "acl"
DYNSEC_SCRIPT = ROOT / "deploy" / "mosquitto" / "dynsec.sh"
DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
# Where packages install the plugin (Debian/Ubuntu multiarch, Alpine and the official image).
PLUGIN_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib")


@dataclass(frozen=True)
class Listener:
    """A mosquitto listener beside the broker's plain one: TLS with ``server``'s certificate,
    asking for client certificates signed by ``ca`` when ``require_certificate``; websockets
    when ``websockets`` (with TLS when ``server`` is given)."""

    ca: Path | None = None
    server: Pair | None = None
    require_certificate: bool = False
    websockets: bool = False

    def config(self, port: int) -> str:
        lines = [f"listener {port} 127.0.0.1"]
        if self.websockets:
            lines.append("protocol websockets")
        if self.server is not None:
            assert self.ca is not None
            lines += [f"cafile {self.ca}", f"certfile {self.server.cert}"]
            lines += [f"keyfile {self.server.key}"]
        if self.require_certificate:
            lines.append("require_certificate true")
        return "\n".join(lines) + "\n"


@dataclass
class Broker(Mosquitto):
    """A Mosquitto whose start also waits for its further listeners (``ports``): mosquitto opens
    them one after the other, after the plain one the base class waits for."""

    ports: list[int] = field(default_factory=list)

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + DEADLINE
        for port in self.ports:
            while not _listening(port):
                if time.monotonic() > deadline:
                    msg = f"mosquitto did not open its listener on port {port}"
                    raise RuntimeError(msg)
                time.sleep(POLL)  # a subprocess's port has no event to wait on


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def broker(workdir: Path, *extra: str, listeners: tuple[Listener, ...] = ()) -> Broker:
    """A mosquitto in ``workdir`` with ``extra`` config lines and ``listeners`` beside its plain
    one (their ports in ``ports``, in order), not started. It keeps the test's user: started
    as root, mosquitto would change to its own user, which cannot read the test's files. It
    queues at most mosquitto's default 1000 messages per client: with no limit (the plain
    fixture's 0), mosquitto 2.0.11 drops a client right after refusing its QoS 1 publish."""
    workdir.mkdir(parents=True, exist_ok=True)
    # The kernel may hand out a port it just handed out: one port per listener.
    plain, *ports = distinct_ports(1 + len(listeners))
    config = [f"user {getpass.getuser()}\n", "max_queued_messages 1000\n"]
    config += [f"{line}\n" for line in extra]
    config += [listener.config(port) for listener, port in zip(listeners, ports, strict=True)]
    return Broker(workdir, port=plain, extra_config="".join(config), ports=ports)


def distinct_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (``free_port`` alone may repeat one)."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def dynsec_plugin() -> Path:
    for folder in PLUGIN_DIRS:
        if (path := Path(folder) / DYNSEC_PLUGIN).exists():
            return path
    msg = f"{DYNSEC_PLUGIN} not found (Debian package mosquitto): run `make test`"
    raise RuntimeError(msg)


class User(Consumer):
    """A Consumer that logs in with a password, and may speak TLS (``tls``) or websockets."""

    def __init__(  # noqa: PLR0913 - how one client connects
        self,
        port: int,
        topics: tuple[str, ...],
        *,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        transport: Literal["tcp", "websockets"] = "tcp",
    ) -> None:
        super().__init__(f"mqtt://127.0.0.1:{port}", topics)
        self.username, self.password = username, password
        self.tls, self.transport = tls, transport

    def _new_client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self.tls,
            transport=self.transport,
        )
