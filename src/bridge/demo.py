"""``bridge demo``: simulated devices, an embedded broker, the bridge, and a view of what flows."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import sys
import tempfile
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiomqtt
import anyio

from bridge import logs
from bridge.app import Bridge
from bridge.settings import build_settings
from bridge.simulators.generic import GenericSimulator
from bridge.simulators.grandstream import GrandstreamSimulator
from bridge.simulators.onetouch import OnetouchSimulator
from bridge.simulators.two_n import TwoNSimulator
from bridge.simulators.ultrastream import UltraStreamSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from bridge.simulators.base import Simulator

DEMO_PASSWORD = "demo-secret"  # noqa: S105 - of the simulated intercoms; never printed
DEMO_CODE = "2468"  # a resident's PIN at the side gate; never printed either


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
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        await broker.shutdown()


def _show(topic: str, payload: bytes) -> None:
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        text = f"<{len(payload)} bytes>"
    if len(text) > 160:
        text = text[:157] + "..."
    print(f"{topic:<44} {text}", flush=True)  # noqa: T201 - the demo's output


def _client(url: str, protocol: str) -> aiomqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    return aiomqtt.Client(host, int(port), protocol=version)


async def _monitor(url: str, protocol: str, base: str, bridge_offline: anyio.Event) -> None:
    """Print everything under ``<base>/#``, as a consumer would see it."""
    while True:
        try:
            async with _client(url, protocol) as client:
                await client.subscribe(f"{base}/#")
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    _show(message.topic.value, payload)
                    if message.topic.value == f"{base}/bridge/state" and payload == b"offline":
                        bridge_offline.set()
        except aiomqtt.MqttError:
            await anyio.sleep(0.5)


async def _activity(url: str, protocol: str, sims: dict[str, Simulator], interval: float) -> None:
    """What happens at the doors: rings, cards, motion, and people pressing buttons in apps."""
    rng = random.Random(7)
    step = 0
    async with _client(url, protocol) as client:
        while True:
            await anyio.sleep(interval)
            step += 1
            device, sim = rng.choice(list(sims.items()))
            topic = f"bridge/{device}/command"
            if step % 5 == 0:
                command: dict[str, Any] = {"command": "open_door", "args": {"door": 1}, "id": step}
                await client.publish(topic, json.dumps(command), qos=1)
            elif step % 11 == 0:
                await client.publish(topic, b"{not json", qos=1)
            elif step % 7 == 0:
                await client.publish(topic, json.dumps({"command": "reboot", "id": step}), qos=1)
            elif isinstance(sim, TwoNSimulator):
                _intercom(sim, step)
            elif isinstance(sim, OnetouchSimulator):
                _door_station(sim, step)
            elif isinstance(sim, GrandstreamSimulator):
                _camera(sim, step)
            elif isinstance(sim, UltraStreamSimulator):
                await _encoder(client, device, sim, step)
            elif isinstance(sim, GenericSimulator):
                _generic(sim, step)


def _intercom(sim: TwoNSimulator, step: int) -> None:
    """A 2N intercom's day: visitors ring (and the call goes out), residents use cards."""
    if step % 3 == 0:
        sim.swipe("4BD9E903", valid=step % 2 == 0)
    elif step % 4 == 0:
        sim.motion(active=step % 8 == 0)
    elif step % 2 == 0:
        sim.door(opened=step % 4 == 2)
    else:
        session = sim.press("%1", call=True)
        sim.set_call_state(sim.calls[session], "terminated", "noanswer")


def _door_station(sim: OnetouchSimulator, step: int) -> None:
    """An Onetouch door station: cards and codes at the gate, the exit button, a visitor."""
    if step % 3 == 0:
        sim.swipe("00B4161D", name="Alice", valid=step % 2 == 0)
    elif step % 4 == 0:
        sim.set_input(1, active=not sim.input_active(1))  # the exit button
    elif step % 2 == 0:
        sim.enter_code(DEMO_CODE, name="Bob", valid=step % 8 != 2)
    elif sim.call is None:
        sim.incoming_call("101", name="Lobby")
    else:
        sim.end_call()


def _camera(sim: GrandstreamSimulator, step: int) -> None:
    """A Grandstream camera in the yard: someone walks by, the gate contact opens."""
    if step % 3 == 0:
        sim.set_input(1, active=step % 2 == 0)
    else:
        sim.set_motion(0, active=step % 2 == 0)


async def _encoder(
    client: aiomqtt.Client, device: str, sim: UltraStreamSimulator, step: int
) -> None:
    """An Ultra Stream encoder on stage: recording and streaming started from MQTT, the HDMI
    cable pulled and plugged back."""
    if step % 3 == 0:
        sim.set_signal(present=not sim.signal)
        return
    command = "start_recording" if not sim.recording else "stop_recording"
    body = {"command": command, "id": f"enc-{step}"}
    await client.publish(f"bridge/{device}/command", json.dumps(body), qos=1)


def _generic(sim: GenericSimulator, step: int) -> None:
    if step % 3 == 0:
        sim.push("motion", zone=1, active=step % 2 == 0)
    elif step % 2 == 0:
        sim.set_input("1", not sim.inputs["1"])
    else:
        sim.press(1)


async def _demo(mqtt_url: str | None, count: int, duration: float | None, interval: float) -> None:
    # One device of every vendor (the intercoms with digest authentication), then generic
    # devices up to ``count``.
    sims: dict[str, Simulator] = {
        "front-door": TwoNSimulator(username="demo", password=DEMO_PASSWORD, serial="54-0000-0042"),
        "side-gate": OnetouchSimulator(username="demo", password=DEMO_PASSWORD),
        "yard-camera": GrandstreamSimulator(username="demo", password=DEMO_PASSWORD),
        "stage-encoder": UltraStreamSimulator(username="demo", password=DEMO_PASSWORD),
    }
    sims = dict(list(sims.items())[: max(1, count)])
    sims |= {f"door-{i}": GenericSimulator(serial=f"SIM-{i:04d}") for i in range(5, count + 1)}
    async with anyio.create_task_group() as tg:
        for sim in sims.values():
            await tg.start(sim.serve)
        async with _broker(mqtt_url) as (url, protocol):
            settings = build_settings(
                {
                    "mqtt": {"url": url, "protocol": protocol, "client_id": "bridge-demo"},
                    "http": {"listen": f"127.0.0.1:{_free_port()}"},
                    "state_dir": tempfile.mkdtemp(prefix="bridge-demo-"),
                    "devices": [_device(name, sim) for name, sim in sims.items()],
                }
            )
            bridge = Bridge(settings, handle_signals=True)
            print(  # noqa: T201 - the demo's output
                f"demo: broker {url}, {len(sims)} simulated devices, metrics on "
                f"http://{settings.http.listen}/metrics; Ctrl-C stops",
                flush=True,
            )
            bridge_offline = anyio.Event()
            async with anyio.create_task_group() as inner:
                inner.start_soon(_monitor, url, protocol, "bridge", bridge_offline)
                inner.start_soon(_activity, url, protocol, sims, interval)
                if duration is not None:
                    inner.start_soon(_stop_after, bridge, duration)
                await bridge.run()
                with anyio.move_on_after(2):  # let the monitor show the final offline
                    await bridge_offline.wait()
                inner.cancel_scope.cancel()
        tg.cancel_scope.cancel()


def _device(name: str, sim: Simulator) -> dict[str, Any]:
    if isinstance(sim, TwoNSimulator):
        return {
            "id": name,
            "driver": "2n",
            "url": sim.url,
            "name": "Front door intercom",
            "username": "demo",
            "password": DEMO_PASSWORD,
            "pull_timeout": "5s",
        }
    if isinstance(sim, OnetouchSimulator):
        return {
            "id": name,
            "driver": "onetouch",
            "url": sim.url,
            "name": "Side gate door station",
            "username": "demo",
            "password": DEMO_PASSWORD,
            "poll_interval": "500ms",
            "log_interval": "1s",
        }
    vendor = {GrandstreamSimulator: "grandstream", UltraStreamSimulator: "ultrastream"}
    for kind, driver in vendor.items():
        if isinstance(sim, kind):
            return {
                "id": name,
                "driver": driver,
                "url": sim.url,
                "name": name.replace("-", " ").capitalize(),
                "username": "demo",
                "password": DEMO_PASSWORD,
                "poll_interval": "500ms",
            }
    return {"id": name, "driver": "generic", "url": sim.url, "name": name}


async def _stop_after(bridge: Bridge, seconds: float) -> None:
    await anyio.sleep(seconds)
    bridge.stop.set()


@asynccontextmanager
async def _broker(mqtt_url: str | None) -> AsyncIterator[tuple[str, str]]:
    if mqtt_url:
        yield mqtt_url, "5"
        return
    async with embedded_broker() as url:
        yield url, "3.1.1"


def run_demo(  # noqa: PLR0913 - the demo's command-line options
    *,
    mqtt_url: str | None,
    devices: int,
    duration: float | None,
    interval: float = 1.5,
    log_format: str,
    log_level: str,
) -> int:
    logs.configure(format_="json" if log_format == "json" else "console", level=log_level)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_demo, mqtt_url, devices, duration, interval)
    return 0
