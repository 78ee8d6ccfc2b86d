"""Real parts for tests: a mosquitto broker, an MQTT consumer, deadlines instead of sleeps."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiomqtt
import anyio

from bridge.mosquitto import find_mosquitto
from bridge.mosquitto import free_port as free_port  # noqa: PLC0414 - re-exported for the tests
from bridge.process import listening, stop

DEADLINE = 10.0
POLL = 0.01  # how often a condition without an event to wait on is checked
RECONNECT_PACE = 0.05  # the consumer's pause between connection attempts


def mosquitto_binary() -> str:
    found = find_mosquitto()
    if found is None:
        msg = "mosquitto is not installed: run `make test`, which installs it"
        raise RuntimeError(msg)
    return found


@dataclass
class Mosquitto:
    """A real mosquitto on a loopback port, with persistence so sessions survive a restart."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_config: str = ""  # appended to the generated mosquitto.conf (one option per line)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "log_dest none\n" + self.extra_config
        )
        log = self.workdir / "mosquitto.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [mosquitto_binary(), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        if listening(self.port, self.process, DEADLINE):
            return
        if self.process.poll() is not None:
            msg = f"mosquitto exited: {log.read_text(errors='replace')}"
            raise RuntimeError(msg)
        msg = "mosquitto did not start listening"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, DEADLINE)
        self.process = None


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None = None

    def json(self) -> Any:
        return json.loads(self.payload)


class Consumer:
    """An MQTT client that records what it receives and waits for conditions with deadlines."""

    def __init__(
        self,
        url: str,
        topics: tuple[str, ...] = ("bridge/#",),
        *,
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.host, self.port = host, int(port)
        self.topics = topics
        self.client_id = client_id
        self.persistent = persistent
        self.seen: list[Seen] = []
        self.client: aiomqtt.Client | None = None
        self._changed = anyio.Event()
        self.connected = anyio.Event()
        self.connections = 0

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self._tg.start(self.run)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)

    def _new_client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False if self.persistent else True,  # noqa: SIM211
            properties=_session_expiry() if self.persistent else None,
        )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        started = False
        while True:
            try:
                async with self._new_client() as client:
                    self.client = client
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.connections += 1
                    self.connected.set()
                    if not started:
                        started = True
                        task_status.started()
                    async for message in client.messages:
                        payload = message.payload
                        props = message.properties
                        self.seen.append(
                            Seen(
                                message.topic.value,
                                payload if isinstance(payload, bytes) else b"",
                                message.retain,
                                getattr(props, "CorrelationData", None) if props else None,
                            )
                        )
                        self._changed.set()
                        self._changed = anyio.Event()
            except aiomqtt.MqttError:
                self.client = None
                self.connected = anyio.Event()
                await anyio.sleep(RECONNECT_PACE)

    async def wait_for(
        self, predicate: Callable[[list[Seen]], Any], timeout: float = DEADLINE
    ) -> Any:
        """Wait until ``predicate(seen)`` is truthy; return its value."""
        with anyio.fail_after(timeout):
            while True:
                value = predicate(self.seen)
                if value:
                    return value
                await self._changed.wait()

    async def first(self, topic: str, timeout: float = DEADLINE, **match: Any) -> Seen:
        def find(seen: list[Seen]) -> Seen | None:
            for item in seen:
                if item.topic == topic and _matches(item, match):
                    return item
            return None

        found: Seen = await self.wait_for(find, timeout)
        return found

    def on(self, topic: str) -> list[Seen]:
        return [s for s in self.seen if s.topic == topic]

    async def publish(self, topic: str, payload: bytes | str, **kwargs: Any) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1, **kwargs)

    def events(self, device: str, type_: str | None = None) -> list[dict[str, Any]]:
        """The events of ``device`` seen so far (of one type, or all), in order."""
        prefix = f"bridge/{device}/event/"
        return [
            s.json()
            for s in self.seen
            if s.topic.startswith(prefix) and (type_ is None or s.topic == prefix + type_)
        ]

    def event_data(self, device: str, type_: str) -> list[dict[str, Any]]:
        """The ``data`` of those events without ``raw``: what a table in the docs lists."""
        return [
            {k: v for k, v in e["data"].items() if k != "raw"} for e in self.events(device, type_)
        ]

    async def command(self, device: str, name: str, id_: str, **args: Any) -> dict[str, Any]:
        """Send a command to ``device`` and return its result."""
        body = {"command": name, "args": args, "id": id_}
        await self.publish(f"bridge/{device}/command", json.dumps(body))
        found = await self.first(f"bridge/{device}/command/result", id=id_)
        result: dict[str, Any] = found.json()
        return result


def _matches(item: Seen, match: dict[str, Any]) -> bool:
    if not match:
        return True
    try:
        body = item.json()
    except ValueError:
        return False
    return isinstance(body, dict) and all(body.get(k) == v for k, v in match.items())


def _session_expiry() -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    return props


async def wait_until(predicate: Callable[[], Any], timeout: float = DEADLINE) -> None:
    """Poll a condition that has no event to wait on, with a deadline."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - the bridge's state has no event to wait on
            await anyio.sleep(POLL)
