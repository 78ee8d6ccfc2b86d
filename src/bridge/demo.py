"""``bridge demo``: simulated devices, a broker, the bridge, and a view of what flows.

Devices, with ids that stay the same from run to run (docs and scripts use them): front-door (a
2N intercom), side-gate (an Onetouch door station), yard-camera (a Grandstream camera),
stage-encoder (an Ultra Stream encoder), then door-5, door-6, ... (generic JSON devices).

The broker is a mosquitto the demo starts (:mod:`bridge.mosquitto`) on 127.0.0.1:1883 when that
port is free, else on a free port (``--broker-port`` forces one), or the user's (``--mqtt-url``),
from which the demo removes the retained messages of its bridge when it ends (``bridge/bridge/*``,
its devices' topics, their Home Assistant discovery configs if ``BRIDGE_HOMEASSISTANT__ENABLED``).
MQTT 5 either way, so retained commands are refused and response topics answered as in
production. The first line printed names the broker and the ``mosquitto_sub`` command that shows
what the demo shows; the next two list the devices and the metrics URL; then one line per MQTT
message under ``bridge/#``: the topic, padded to 44 characters, and :func:`summary` of the payload.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiomqtt
import anyio
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge import logs
from bridge.app import Bridge
from bridge.errors import StartupError
from bridge.mosquitto import (
    DEFAULT_PORT,
    LOOPBACK,
    MosquittoProcess,
    choose_port,
    free_port,
    port_is_free,
    require_mosquitto,
)
from bridge.mqtt.discovery import discovery_topic
from bridge.settings import Settings, build_settings
from bridge.simulators.generic import GenericSimulator
from bridge.simulators.grandstream import GrandstreamSimulator
from bridge.simulators.onetouch import OnetouchSimulator
from bridge.simulators.two_n import TwoNSimulator
from bridge.simulators.ultrastream import UltraStreamSimulator

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from bridge.simulators.base import Simulator

DEMO_PASSWORD = "demo-secret"  # noqa: S105 - of the simulated intercoms; never printed
DEMO_CODE = "2468"  # a resident's PIN at the side gate; never printed either
BASE = "bridge"
#: The devices of every vendor, in the order ``--devices`` takes them; generic ones follow.
DEVICES: tuple[tuple[str, str], ...] = (
    ("front-door", "2N intercom"),
    ("side-gate", "Onetouch door station"),
    ("yard-camera", "Grandstream camera"),
    ("stage-encoder", "Ultra Stream encoder"),
)
DOOR_RELEASE = 3.0  # seconds the front door's lock (a monostable switch) stays released
RECONNECT_PAUSE = 0.5  # seconds between the demo's own attempts to reach the broker


@dataclass(frozen=True)
class Broker:
    """Where the demo's MQTT goes; ``own`` when the demo started it (and stops it)."""

    host: str
    port: int
    own: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"


def device_ids(count: int) -> list[str]:
    """The ids of ``count`` demo devices: the vendors' first, then ``door-5``, ``door-6``..."""
    vendors = [device for device, _ in DEVICES[:count]]
    return vendors + [f"door-{n}" for n in range(len(DEVICES) + 1, count + 1)]


def watch_command(broker: Broker) -> str:
    """The ``mosquitto_sub`` command that shows what the demo shows, shortest form."""
    words = ["mosquitto_sub"]
    if broker.host not in {LOOPBACK, "localhost"}:
        words += ["-h", broker.host]
    if broker.port != DEFAULT_PORT:
        words += ["-p", str(broker.port)]
    return " ".join([*words, "-t", f"'{BASE}/#'", "-v"])


def broker_line(broker: Broker) -> str:
    """The demo's first line: where the broker is, and how to watch it."""
    whose = "mosquitto started by the demo" if broker.own else "yours"
    return f"demo: broker {broker.url} ({whose}); watch it with: {watch_command(broker)}"


def devices_line(count: int) -> str:
    kinds = dict(DEVICES)
    named = [f"{device} ({kinds.get(device, 'generic')})" for device in device_ids(count)]
    return f"demo: devices {', '.join(named)}"


def summary(topic: str, payload: bytes) -> str:
    """What the demo prints of a message: an event's ``data`` without ``raw`` (the vendor's
    record; the type is in the topic), anything else whole; binary as its size."""
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return f"<{len(payload)} bytes>"
    if "/event/" not in topic:
        return text
    try:
        event = json.loads(text)
    except ValueError:
        return text
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        return text
    data = {key: value for key, value in event["data"].items() if key != "raw"}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def in_demo(topic: str, devices: list[str]) -> bool:
    """Whether ``topic`` is one the demo's bridge owns: ``bridge/bridge/...`` or a demo
    device's (``bridge/front-door/...``)."""
    base, _, rest = topic.partition("/")
    owner = rest.partition("/")[0]
    return base == BASE and (owner == "bridge" or owner in devices)


def _client(broker: Broker) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5, timeout=5)


@dataclass
class Output:
    """The demo's stdout. When its reader goes away (``bridge demo | head -20``) the demo stops
    as after Ctrl-C, and what it would still print goes nowhere."""

    gone: anyio.Event = field(default_factory=anyio.Event)

    def say(self, line: str) -> None:
        if self.gone.is_set():
            return
        try:
            print(line, flush=True)  # noqa: T201 - the demo's output
        except BrokenPipeError:
            # Python flushes stdout once more at exit: let that go to /dev/null, not a traceback.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.gone.set()


@dataclass
class Monitor:
    """Prints everything under ``bridge/#`` as a consumer sees it, and remembers which of the
    demo's topics hold a retained message (retain-as-published), to clear them at the end."""

    broker: Broker
    devices: list[str]
    out: Output
    retained: set[str] = field(default_factory=set)
    bridge_offline: anyio.Event = field(default_factory=anyio.Event)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            try:
                async with _client(self.broker) as client:
                    options = SubscribeOptions(qos=1, retainAsPublished=True)
                    await client.subscribe(f"{BASE}/#", options=options)
                    if not started:
                        started = True
                        task_status.started()
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        self.seen(message.topic.value, payload, retain=message.retain)
            except aiomqtt.MqttError:
                await anyio.sleep(RECONNECT_PAUSE)

    def seen(self, topic: str, payload: bytes, *, retain: bool) -> None:
        if retain and in_demo(topic, self.devices):
            if payload:
                self.retained.add(topic)
            else:
                self.retained.discard(topic)
        if payload or not retain:  # an empty retained message is a deletion, not news
            self.out.say(f"{topic:<44} {summary(topic, payload)}")
        if topic == f"{BASE}/bridge/state" and payload == b"offline":
            self.bridge_offline.set()


async def _activity(
    broker: Broker, sims: dict[str, Simulator], interval: float, bridge: Bridge
) -> None:
    """What happens at the doors: rings, cards, motion, and people pressing buttons in apps;
    from when the bridge has started (a command before it subscribed would go unanswered)."""
    rng = random.Random(7)
    step = 0
    await bridge.started.wait()
    while True:
        try:
            async with _client(broker) as client:
                while True:
                    await anyio.sleep(interval)
                    step += 1
                    device = rng.choice(list(sims))
                    await _act(client, device, sims[device], step)
        except aiomqtt.MqttError:
            await anyio.sleep(RECONNECT_PAUSE)


async def _act(client: aiomqtt.Client, device: str, sim: Simulator, step: int) -> None:
    topic = f"{BASE}/{device}/command"
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
    """A 2N intercom's day: visitors ring (and the call goes out), residents use cards (a valid
    one releases the lock, and :func:`_door_contact` walks them through)."""
    if step % 3 == 0:
        sim.swipe("4BD9E903", valid=step % 2 == 0)
    elif step % 4 == 0:
        sim.motion(active=step % 8 == 0)
    else:
        session = sim.press("%1", call=True)
        sim.set_call_state(sim.calls[session], "terminated", "noanswer")


async def _door_contact(sim: TwoNSimulator) -> None:
    """The front door's contact: whenever the lock is released (a card, ``open_door``) someone
    pushes the door open, and it swings shut after the lock closes again."""
    lock = sim.switches[1]
    while True:
        await sim.wait_until(lambda: lock.active)
        await anyio.sleep(0.5)  # the visitor reaches the door
        sim.door(opened=True)
        await sim.wait_until(lambda: not lock.active)
        await anyio.sleep(1.0)  # the door closer
        sim.door(opened=False)


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
    await client.publish(f"{BASE}/{device}/command", json.dumps(body), qos=1)


def _generic(sim: GenericSimulator, step: int) -> None:
    if step % 3 == 0:
        sim.push("motion", zone=1, active=step % 2 == 0)
    elif step % 2 == 0:
        sim.set_input("1", not sim.inputs["1"])
    else:
        sim.press(1)


def _simulators(count: int) -> dict[str, Simulator]:
    """One device of every vendor (the intercoms with digest authentication), then generic
    devices up to ``count``."""
    vendors: list[Simulator] = [
        TwoNSimulator(
            username="demo",
            password=DEMO_PASSWORD,
            serial="54-0000-0042",
            switch_on_duration=DOOR_RELEASE,
        ),
        OnetouchSimulator(username="demo", password=DEMO_PASSWORD),
        GrandstreamSimulator(username="demo", password=DEMO_PASSWORD),
        UltraStreamSimulator(username="demo", password=DEMO_PASSWORD),
    ]
    ids = device_ids(count)
    generic = [GenericSimulator(serial=f"SIM-{n:04d}") for n in range(len(DEVICES) + 1, count + 1)]
    return dict(zip(ids, [*vendors[:count], *generic], strict=True))


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


async def _probe(broker: Broker) -> None:
    """Connect once, so a wrong ``--mqtt-url`` is one line before anything starts."""
    try:
        async with _client(broker):
            pass
    except aiomqtt.MqttError as exc:
        raise StartupError(f"cannot connect to the broker at {broker.url}: {exc}") from None


def _discovery(settings: Settings) -> set[str]:
    """The Home Assistant discovery topics of the demo's devices, when discovery is on
    (``BRIDGE_HOMEASSISTANT__ENABLED=true``): retained, outside ``bridge/#``."""
    ha = settings.homeassistant
    if not ha.enabled:
        return set()
    return {discovery_topic(ha.prefix, device.id) for device in settings.devices}


async def _clear_retained(broker: Broker, topics: set[str], out: Output) -> None:
    """Delete the retained messages the demo left on a broker that outlives it."""
    try:
        async with _client(broker) as client:
            for topic in sorted(topics):
                await client.publish(topic, b"", qos=1, retain=True)
    except aiomqtt.MqttError as exc:
        print(f"demo: could not clear {len(topics)} retained topics: {exc}", file=sys.stderr)  # noqa: T201
        return
    out.say(f"demo: cleared the {len(topics)} retained topics it left on {broker.url}")


async def _demo(
    broker: Broker, count: int, duration: float | None, interval: float, state_dir: str
) -> None:
    if not broker.own:
        await _probe(broker)
    out = Output()
    out.say(broker_line(broker))
    sims = _simulators(count)
    async with anyio.create_task_group() as tg:
        for sim in sims.values():
            await tg.start(sim.serve)
        settings = build_settings(
            {
                "mqtt": {"url": broker.url, "client_id": "bridge-demo"},
                "http": {"listen": f"{LOOPBACK}:{free_port()}"},
                "state_dir": state_dir,
                "devices": [_device(name, sim) for name, sim in sims.items()],
            }
        )
        bridge = Bridge(settings, handle_signals=True)
        out.say(devices_line(count))
        out.say(
            "demo: events show their data (the CloudEvents on the broker also carry the "
            f"vendor's raw record); metrics on http://{settings.http.listen}/metrics; "
            "Ctrl-C stops"
        )
        monitor = Monitor(broker, list(sims), out)
        async with anyio.create_task_group() as inner:
            await inner.start(monitor.run)
            inner.start_soon(_activity, broker, sims, interval, bridge)
            front_door = sims.get(DEVICES[0][0])
            if isinstance(front_door, TwoNSimulator):
                inner.start_soon(_door_contact, front_door)
            inner.start_soon(_stop_when, bridge, out.gone)
            if duration is not None:
                inner.start_soon(_stop_after, bridge, duration)
            await bridge.run()
            with anyio.move_on_after(2):  # let the monitor show the final offline
                await monitor.bridge_offline.wait()
            inner.cancel_scope.cancel()
        owned = monitor.retained | _discovery(settings)
        if not broker.own and owned:
            await _clear_retained(broker, owned, out)
        tg.cancel_scope.cancel()


async def _stop_when(bridge: Bridge, event: anyio.Event) -> None:
    await event.wait()
    bridge.stop.set()


async def _stop_after(bridge: Bridge, seconds: float) -> None:
    await anyio.sleep(seconds)
    bridge.stop.set()


def run_demo(  # noqa: PLR0913 - the demo's command-line options
    *,
    mqtt: tuple[str, int] | None,
    broker_port: int | None = None,
    devices: int,
    duration: float | None,
    interval: float = 1.5,
    log_format: str,
    log_level: str,
) -> int:
    """Run the demo until Ctrl-C, SIGTERM or ``duration`` seconds; 0 then. ``mqtt`` is the
    user's broker (host, port), else the demo starts mosquitto (on ``broker_port`` if given).

    Raises StartupError (one line) when mosquitto is missing or cannot listen, or the user's
    broker cannot be reached; ConfigError when a ``BRIDGE_*`` environment variable (which
    applies to the demo's bridge too) is wrong.
    """
    logs.configure(format_="json" if log_format == "json" else "console", level=log_level)
    with contextlib.suppress(KeyboardInterrupt), contextlib.ExitStack() as stack:
        if mqtt is not None:
            broker = Broker(*mqtt, own=False)
        else:
            if broker_port is not None and not port_is_free(broker_port):
                # Checked first: mosquitto's own failure could come after another listener on
                # that port had answered for it.
                raise StartupError(
                    f"--broker-port {broker_port}: {LOOPBACK}:{broker_port} is in use"
                )
            port = choose_port(broker_port, port_is_free(DEFAULT_PORT))
            process = stack.enter_context(MosquittoProcess(require_mosquitto(), port))
            broker = Broker(LOOPBACK, process.port, own=True)
        state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bridge-demo-"))
        anyio.run(_demo, broker, devices, duration, interval, state_dir)
    return 0
