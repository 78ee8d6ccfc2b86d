"""``bridge demo``: simulated devices, an embedded broker, the bridge, and a view of what flows."""

from __future__ import annotations

import json
import random
import socket
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import anyio

from bridge import logs
from bridge.app import Bridge
from bridge.settings import build_settings
from bridge.simulators.generic import GenericSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def embedded_broker() -> AsyncIterator[str]:
    """An amqtt broker on a free loopback port (MQTT 3.1.1 only)."""
    try:
        from amqtt.broker import Broker  # noqa: PLC0415 - optional dependency
    except ImportError:
        sys.exit("the embedded broker needs amqtt: pip install 'bridge[demo]', or pass --mqtt-url")
    port = _free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        await broker.shutdown()


def _show(topic: str, payload: bytes) -> None:
    text: str
    try:
        text = payload.decode()
        if text.startswith("{"):
            text = json.dumps(json.loads(text), separators=(",", ":"))
    except UnicodeDecodeError:
        text = f"<{len(payload)} bytes>"
    if len(text) > 160:
        text = text[:157] + "..."
    print(f"{topic:<44} {text}", flush=True)  # noqa: T201 - the demo's output


async def _monitor(url: str, protocol: str, base: str) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    while True:
        try:
            async with aiomqtt.Client(host, int(port), protocol=version) as client:
                await client.subscribe(f"{base}/#")
                async for message in client.messages:
                    payload = message.payload
                    _show(message.topic.value, payload if isinstance(payload, bytes) else b"")
        except aiomqtt.MqttError:
            await anyio.sleep(0.5)


async def _activity(url: str, protocol: str, sims: dict[str, GenericSimulator]) -> None:
    """What happens in front of the doors: rings, motion, and people pressing buttons in apps."""
    host, port = url.removeprefix("mqtt://").split(":")
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    rng = random.Random(7)
    step = 0
    async with aiomqtt.Client(host, int(port), protocol=version) as client:
        while True:
            await anyio.sleep(1.5)
            step += 1
            device, sim = rng.choice(list(sims.items()))
            if step % 5 == 0:
                command: dict[str, Any] = {"command": "open_door", "args": {"door": 1}, "id": step}
                await client.publish(f"bridge/{device}/command", json.dumps(command), qos=1)
            elif step % 11 == 0:
                await client.publish(f"bridge/{device}/command", b"{not json", qos=1)
            elif step % 7 == 0:
                await client.publish(
                    f"bridge/{device}/command", json.dumps({"command": "reboot", "id": step})
                )
            else:
                rng.choice(
                    [
                        lambda: sim.press(1),
                        lambda: sim.push("motion", zone=1, active=True),
                        lambda: sim.set_input("1", not sim.inputs["1"]),
                    ]
                )()


async def _demo(mqtt_url: str | None, count: int, duration: float | None) -> None:
    sims = {f"door-{i}": GenericSimulator(serial=f"SIM-{i:04d}") for i in range(1, count + 1)}
    async with anyio.create_task_group() as tg:
        for sim in sims.values():
            await tg.start(sim.serve)
        async with _broker(mqtt_url) as (url, protocol):
            settings = build_settings(
                {
                    "mqtt": {"url": url, "protocol": protocol, "client_id": "bridge-demo"},
                    "http": {"listen": f"127.0.0.1:{_free_port()}"},
                    "state_dir": str(Path(tempfile.gettempdir()) / "bridge-demo"),
                    "devices": [
                        {"id": name, "driver": "generic", "url": sim.url, "name": name}
                        for name, sim in sims.items()
                    ],
                }
            )
            bridge = Bridge(settings, handle_signals=True)
            print(f"demo: broker {url}, {count} simulated devices; Ctrl-C stops", flush=True)  # noqa: T201
            async with anyio.create_task_group() as inner:
                inner.start_soon(_monitor, url, protocol, "bridge")
                inner.start_soon(bridge.run)
                inner.start_soon(_activity, url, protocol, sims)
                if duration is not None:
                    await anyio.sleep(duration)
                    bridge.stop.set()
                await bridge.stop.wait()
                with anyio.move_on_after(6):
                    while bridge.link.pending:  # let the offline messages reach the monitor
                        await anyio.sleep(0.05)
                    await anyio.sleep(0.2)
                inner.cancel_scope.cancel()
        tg.cancel_scope.cancel()


@asynccontextmanager
async def _broker(mqtt_url: str | None) -> AsyncIterator[tuple[str, str]]:
    if mqtt_url:
        yield mqtt_url, "5"
        return
    async with embedded_broker() as url:
        yield url, "3.1.1"


def run_demo(
    *, mqtt_url: str | None, devices: int, duration: float | None, log_format: str, log_level: str
) -> int:
    logs.configure(format_="json" if log_format == "json" else "console", level=log_level)
    try:
        anyio.run(_demo, mqtt_url, devices, duration)
    except KeyboardInterrupt:
        pass
    return 0
