"""The docs' commands, run: every command in a shell block of README.md, docs/*.md and
deploy/*/README.md (read by tests/doctext.py) is either

- run here (``RUN_HERE``): against one ``bridge demo`` shared by the module, a standalone
  simulator, or the example configurations, with its documented output or effect checked;
- run by another test (``ELSEWHERE``: the test's node id); or
- not runnable here (``CANNOT``: the reason).

A command in none of them fails ``test_every_documented_command_is_accounted_for``, and an entry
for a command the docs no longer have fails too, so the docs cannot drift from what runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest
import yaml

import bridge
from bridge.process import listening, stop
from tests.doctext import Block, Command, blocks, file_commands
from tests.helpers import Consumer, Mosquitto, free_port
from tests.integration.harness import running

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
DEADLINE = 30.0  # seconds for anything a command waits for (a doorbell at the demo, a reply)
STOP_DEADLINE = 15.0
# The demo's devices, in the order it lists them; the docs' examples use these ids.
DEMO_DEVICES = ("front-door", "side-gate", "yard-camera", "stage-encoder", "door-5")
MQTT_API = "docs/mqtt-api.md"

T = TypeVar("T")


def doc_files() -> list[str]:
    """The documents whose commands must run: found anew each time, so new docs count too."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found += sorted((ROOT / "deploy").glob("*/README.md"))
    return [str(path.relative_to(ROOT)) for path in found]


def documented() -> dict[str, list[Command]]:
    """Every documented command by its text (one line), with where it is written."""
    found: dict[str, list[Command]] = {}
    for path in doc_files():
        for command in file_commands(ROOT, path):
            found.setdefault(command.text, []).append(command)
    return found


def block_before(path: str, text: str, lang: str) -> Block:
    """The last ``lang`` block before the block that holds ``text``."""
    found = blocks((ROOT / path).read_text(encoding="utf-8"))
    (index,) = (i for i, block in enumerate(found) if any(text in line for line in block.lines))
    return next(block for block in reversed(found[:index]) if block.lang == lang)


def section_blocks(path: str, section: str) -> list[Block]:
    text = (ROOT / path).read_text(encoding="utf-8")
    return [block for block in blocks(text) if block.section == section]


def environment() -> dict[str, str]:
    """This environment without ``BRIDGE_*`` overrides, this venv's ``bridge`` and ``python``
    first on PATH."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command`` in bash as a user types it, to its end."""
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Watched:
    """A child process whose output lines are read as they come, to wait on with a deadline."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.command = command
        self.process = subprocess.Popen(
            # stdbuf: each line as it is printed, as on a terminal (not a pipe's 4 KiB blocks)
            ["bash", "-c", f"exec stdbuf -oL {command}"],
            cwd=cwd,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], T | None], timeout: float = DEADLINE) -> T:
        """Wait until ``predicate(stdout lines)`` is truthy; return it. Fails at the deadline
        or when the process has ended without it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = predicate(self.out)
                if found:
                    return found
                left = deadline - time.monotonic()
                ended = not any(reader.is_alive() for reader in self._readers)
                if left <= 0 or ended:
                    pytest.fail(f"`{self.command}` did not print it:\n{self.tail()}")
                self._changed.wait(left)

    def tail(self) -> str:
        return "\n".join(["stdout:", *self.out[-20:], "stderr:", *self.err[-20:]])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        code = stop(self.process, STOP_DEADLINE, sig)
        for reader in self._readers:
            reader.join(timeout=STOP_DEADLINE)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def line_with(text: str) -> Callable[[list[str]], str | None]:
    return lambda lines: next((line for line in lines if text in line), None)


def for_demo(command: str, broker_port: int, http: str) -> str:
    """A documented command pointed at the demo: ``mosquitto_*`` at its broker (the docs' ``-h
    broker``, or no ``-h`` for the demo on 1883), ``127.0.0.1:9880`` at its HTTP server."""
    command = command.replace("127.0.0.1:9880", http)
    at = f"-h 127.0.0.1 -p {broker_port}"
    command = re.sub(r"-h broker(?=\s|$)", at, command)
    program, _, rest = command.partition(" ")
    if program in {"mosquitto_sub", "mosquitto_pub"} and not re.search(r"(^|\s)-h\s", rest):
        command = f"{program} {at} {rest}"
    return command


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "mosquitto_sub -h broker -t 'bridge/#' -v",
            "mosquitto_sub -h 127.0.0.1 -p 7 -t 'bridge/#' -v",
        ),
        ("mosquitto_pub -t a -m '{}'", "mosquitto_pub -h 127.0.0.1 -p 7 -t a -m '{}'"),
        (
            "mosquitto_pub -h broker -V mqttv5 -t a",
            "mosquitto_pub -h 127.0.0.1 -p 7 -V mqttv5 -t a",
        ),
        ("curl -s http://127.0.0.1:9880/healthz", "curl -s http://127.0.0.1:5/healthz"),
        ("bridge --version", "bridge --version"),
    ],
)
def test_for_demo(command: str, expected: str) -> None:
    assert for_demo(command, 7, "127.0.0.1:5") == expected


# -- the demo -----------------------------------------------------------------------------------


@dataclass
class Demo:
    watched: Watched
    broker_port: int
    http: str
    scratch: Path

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return shell(for_demo(command, self.broker_port, self.http), self.scratch)

    def watch(self, command: str) -> Watched:
        """A documented command that runs until stopped (``&`` or a subscription)."""
        command = command.removesuffix("&").strip()
        return Watched(for_demo(command, self.broker_port, self.http), self.scratch)

    def subscribed(self, command: str) -> Watched:
        """A documented ``mosquitto_sub ... &``, once it has subscribed: what is published
        after this returns reaches it. ``-d`` shows the broker's SUBACK among the lines."""
        watched = self.watch(f"{command.removesuffix('&').strip()} -d")
        watched.wait_for(line_with("Subscribed (mid: "))
        return watched


def printed(topic: str, value: str) -> Callable[[list[str]], bool]:
    """Whether the demo printed ``topic`` with ``value`` (it aligns them with spaces)."""
    return lambda lines: any(line.split() == [topic, value] for line in lines)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``bridge demo`` as the README starts it, on a broker port of its own."""
    port = free_port()
    command = f"bridge demo --broker-port {port} --interval 0.3"
    with Watched(command, ROOT) as watched:
        first = watched.wait_for(lambda lines: lines[0] if lines else None)
        assert f"mqtt://127.0.0.1:{port}" in first, watched.tail()
        assert f"mosquitto_sub -p {port} -t 'bridge/#' -v" in first
        metrics = watched.wait_for(line_with("/metrics"))
        http = re.search(r"http://([\d.]+:\d+)/metrics", metrics)
        assert http is not None, metrics
        for device in DEMO_DEVICES:
            watched.wait_for(printed(f"bridge/{device}/availability", "online"))
        yield Demo(watched, port, http.group(1), tmp_path_factory.mktemp("docs"))
        assert watched.stop(signal.SIGINT) == 0, watched.tail()  # Ctrl-C


def test_the_demo_has_the_devices_the_docs_use(demo: Demo) -> None:
    line = demo.watched.wait_for(line_with("demo: devices "))
    listed = re.findall(r"([a-z0-9-]+) \(", line.removeprefix("demo: devices "))
    assert tuple(listed) == DEMO_DEVICES


DEVICE_TOPIC = re.compile(
    r"(?<![\w./-])bridge/([a-z0-9][a-z0-9_-]*)/(?:availability|info|state|event|command|snapshot)"
)


def topic_devices(text: str) -> set[str]:
    """The device ids of the device topics (``bridge/<id>/availability``...) a text names."""
    return set(DEVICE_TOPIC.findall(text)) - {"bridge"}


def test_docs_topics_name_the_demo_devices() -> None:
    """A topic in the docs names a device the demo has, so it can be tried on the demo."""
    foreign = {
        path: sorted(topic_devices((ROOT / path).read_text(encoding="utf-8")) - set(DEMO_DEVICES))
        for path in doc_files()
    }
    assert {path: ids for path, ids in foreign.items() if ids} == {}


# -- the checks of RUN_HERE ---------------------------------------------------------------------


@dataclass
class Context:
    demo: Demo
    docs: dict[str, list[Command]]

    def output(self, text: str) -> tuple[str, ...]:
        """The documented output of a command (the first place that documents one)."""
        return next((c.output for c in self.docs[text] if c.output), ())


def payload(line: str) -> Any:
    """The JSON of a ``topic payload`` line as ``mosquitto_sub -v`` prints it."""
    return json.loads(line.partition(" ")[2])


def check_config_examples(context: Context, commands: tuple[str, ...]) -> None:
    for command in commands:
        result = shell(command, ROOT)
        assert result.returncode == 0, result.stderr
        expected = context.output(command)
        if expected:
            assert tuple(result.stdout.splitlines()) == expected


def check_bad_config(context: Context, commands: tuple[str, ...]) -> None:
    (command,) = commands
    bad = block_before("docs/configuration.md", command, "yaml")
    (context.demo.scratch / "bad.yaml").write_text("\n".join(bad.lines), encoding="utf-8")
    result = shell(f"exec 2>&1\n{command}", context.demo.scratch)  # stderr as on a terminal
    assert tuple(result.stdout.splitlines()) == context.output(command)


def check_environment_overrides(context: Context, commands: tuple[str, ...]) -> None:
    secret = context.demo.scratch / "mqtt-secret"
    secret.write_text("from-a-file\n", encoding="utf-8")
    (context.demo.scratch / "empty.yaml").write_text("", encoding="utf-8")
    exports = [command.replace("/run/secrets/mqtt", str(secret)) for command in commands]
    show = (
        "from bridge.settings import load_settings; s = load_settings(None); "
        "print(s.mqtt.url, s.mqtt.qos, s.mqtt.password.get_secret_value(), s.http.listen, "
        "s.log.format, s.shard.index, s.shard.count)"
    )
    script = [*exports, "bridge check-config --config empty.yaml", f'python -c "{show}"']
    result = shell("set -e\n" + "\n".join(script), context.demo.scratch)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "empty.yaml: ok, 0 device(s)",
        "mqtts://broker:8883 0 from-a-file 0.0.0.0:9880 json 2 3",
    ]


def check_metrics_head(context: Context, commands: tuple[str, ...]) -> None:
    (command,) = commands
    lines = context.demo.run(command).stdout.splitlines()
    assert len(lines) == 10
    assert all(line.startswith(("# HELP ", "# TYPE ", "bridge_", "python_")) for line in lines)


def check_health(context: Context, commands: tuple[str, ...]) -> None:
    (command,) = commands
    text = context.demo.run(command).stdout
    decoder = json.JSONDecoder()
    health, end = decoder.raw_decode(text)
    ready, _ = decoder.raw_decode(text[end:])
    assert health == {
        "healthy": True,
        "mqtt_connected": True,
        "devices": dict.fromkeys(DEMO_DEVICES, True),
    }
    assert ready == {"ready": True}


def check_metrics_grep(context: Context, commands: tuple[str, ...]) -> None:
    (command,) = commands
    lines = context.demo.run(command).stdout.splitlines()
    assert "bridge_mqtt_connected 1.0" in lines
    assert any(line.startswith("bridge_outbox_depth ") for line in lines)
    up = [line for line in lines if line.startswith("bridge_device_up{")]
    assert sorted(re.findall(r'device="([^"]+)"', "\n".join(up))) == sorted(DEMO_DEVICES)
    assert all(line.endswith(" 1.0") for line in up)


def check_subscriptions(context: Context, commands: tuple[str, ...]) -> None:
    """Each subscription shows what its comment says, the demo's retained topics first."""
    everything, events, doorbells, availability, infos = commands
    expectations: dict[str, Callable[[list[str]], bool]] = {
        everything: lambda lines: (
            "bridge/bridge/state online" in lines
            and all(f"bridge/{d}/availability online" in lines for d in DEMO_DEVICES)
        ),
        events: lambda lines: any(
            re.match(r"bridge/[a-z0-9-]+/event/\S+ \{\"specversion\":\"1.0\"", line)
            for line in lines
        ),
        doorbells: lambda lines: any(
            json.loads(line)["type"] == "doorbell.pressed" for line in lines
        ),
        availability: lambda lines: all(
            f"bridge/{d}/availability online" in lines
            and any(line.startswith(f"bridge/{d}/info ") for line in lines)
            for d in DEMO_DEVICES
        ),
        infos: lambda lines: all(
            any(line.startswith(f"bridge/{d}/info ") for line in lines) for d in DEMO_DEVICES
        ),
    }
    for command, expected in expectations.items():
        with context.demo.watch(command) as watched:
            watched.wait_for(expected)
            published = [payload(line) for line in watched.out if "/info " in line]
        # The default policy denies reboot: no device lists it (docs/mqtt-api.md's example).
        assert not any("reboot" in info.get("commands", []) for info in published)


def check_snapshot(context: Context, commands: tuple[str, ...]) -> None:
    take, save = commands
    assert context.demo.run(take).returncode == 0
    result = context.demo.run(save)
    assert result.returncode == 0, result.stderr
    picture = (context.demo.scratch / "front-door.jpg").read_bytes()
    assert picture.startswith(b"\xff\xd8")  # a JPEG, byte for byte (-N: no newline added)
    assert len(picture) == retained(context.demo, "bridge/front-door/snapshot/info")["size"]


def line_starting(prefix: str, id_: object = None) -> Callable[[list[str]], str | None]:
    """The first line that starts with ``prefix`` (and, given ``id_``, whose JSON after the
    topic has that ``id``)."""

    def matches(line: str) -> bool:
        if not line.startswith(prefix):
            return False
        if id_ is None:
            return True
        try:
            body = payload(line)
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("id") == id_

    return lambda lines: next((line for line in lines if matches(line)), None)


def after(count: int, find: Callable[[list[str]], T | None]) -> Callable[[list[str]], T | None]:
    """``find`` over the lines after the first ``count``."""
    return lambda lines: find(lines[count:])


def check_reply(context: Context, commands: tuple[str, ...]) -> None:
    """``mosquitto_sub ... &`` then ``mosquitto_pub``: the subscription prints the documented
    answer (the payload, or for ``-F``, the whole line)."""
    watch, publish = commands
    (expected,) = context.output(publish)
    with context.demo.subscribed(watch) as watched:
        assert context.demo.run(publish).returncode == 0
        if " -F " in watch:
            topic = expected.partition(" ")[0]
            assert watched.wait_for(line_starting(f"{topic} ")) == expected
        else:
            topic = watch.split(" -t ")[1].split()[0]
            body = json.loads(expected)
            line = watched.wait_for(line_starting(f"{topic} ", body["id"]))
            assert payload(line) == body


def check_bridge_requests(context: Context, commands: tuple[str, ...]) -> None:
    """The console of mqtt-api.md (and troubleshooting's health_check): each answer as shown."""
    watch, *publishes = commands
    with context.demo.subscribed(watch) as watched:
        for publish in publishes:
            before = len(watched.out)
            assert context.demo.run(publish).returncode == 0
            request = json.loads(re.findall(r"-m '([^']*)'", publish)[-1])
            topic = publish.split(" -t ")[1].split()[0].replace("/request/", "/response/")
            line = watched.wait_for(after(before, line_starting(f"{topic} ", request["id"])))
            for expected in context.output(publish):
                assert line.partition(" ")[0] == expected.partition(" ")[0]
                assert payload(line) == payload(expected)


def write_bridge_yaml(directory: Path, broker_port: int) -> None:
    """The ``bridge.yaml`` operations.md's commands use: the demo's broker, its own topics."""
    config = {
        "mqtt": {
            "url": f"mqtt://127.0.0.1:{broker_port}",
            "base_topic": "docs-test",
            "client_id": "docs-test",
        },
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "state_dir": str(directory / "state"),
    }
    (directory / "bridge.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def check_running(context: Context, commands: tuple[str, ...]) -> None:
    """check-config, then each way of running, until SIGTERM: exit 0 after a clean stop."""
    write_bridge_yaml(context.demo.scratch, context.demo.broker_port)
    check, *runs = commands
    result = shell(check, context.demo.scratch)
    assert result.stdout == "bridge.yaml: ok, 0 device(s)\n", result.stderr
    for command in runs:
        with Watched(command, context.demo.scratch) as watched:
            with Watched(
                f"mosquitto_sub -p {context.demo.broker_port} -t docs-test/bridge/state",
                context.demo.scratch,
            ) as state:
                state.wait_for(line_with("online"))
            assert watched.stop() == 0, watched.tail()
        assert any("bridge_started" in line for line in watched.err)
        assert any("bridge_stopped" in line for line in watched.err)
        if "--log-format json" in command:
            logged = [json.loads(line) for line in watched.err]
            assert {"bridge_started", "bridge_stopped"} <= {line["event"] for line in logged}
            assert "debug" in {line["level"] for line in logged}


def check_version(context: Context, commands: tuple[str, ...]) -> None:
    (command,) = commands
    assert shell(command, context.demo.scratch).stdout == f"bridge {bridge.__version__}\n"


def check_shard(context: Context, commands: tuple[str, ...]) -> None:
    (command,) = commands
    result = shell(command, context.demo.scratch)
    assert tuple(result.stdout.splitlines()) == context.output(command)


def wait_listening(port: int, process: Watched) -> None:
    """Until something accepts connections on ``port``."""
    if not listening(port, process.process, DEADLINE):
        pytest.fail(f"nothing listens on {port}:\n{process.tail()}")


def check_simulator(context: Context, commands: tuple[str, ...]) -> None:
    """drivers.md's standalone 2N simulator, started from its Python block, and its curls."""
    info, press, fault, slow, clear = commands
    port = free_port()

    def at(text: str) -> str:
        return text.replace("18082", str(port))

    code = block_before("docs/drivers.md", info, "python").lines
    script = context.demo.scratch / "sim.py"
    script.write_text(at("\n".join(code)), encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    status = (
        f"curl -s -o /dev/null -w '%{{http_code}}' --digest -u api:secret {url}/api/system/info"
    )
    with Watched(f"python {script}", context.demo.scratch) as sim:
        wait_listening(port, sim)
        answer = json.loads(shell(at(info), context.demo.scratch).stdout)
        assert answer["success"] is True
        assert answer["result"]["serialNumber"]
        pressed = json.loads(shell(at(press), context.demo.scratch).stdout)
        documented_events = re.findall(r'"event":"(\w+)"', context.output(press)[0])
        assert [e["event"] for e in pressed["events"]] == documented_events
        assert pressed["boot"] == 1
        assert pressed["events"][0]["params"] == {"key": "%1"}
        for command in (fault, slow, clear):
            assert json.loads(shell(at(command), context.demo.scratch).stdout) == {"ok": True}
            if command == fault:
                assert shell(status, context.demo.scratch).stdout == "500"
        assert shell(status, context.demo.scratch).stdout == "200"
        # drivers.md: an unknown port or session in the body answers HTTP 400
        unknown = f"""curl -s -w ' %{{http_code}}' -X POST {url}/_sim/call -d '{{"session":99}}'"""
        refused = '{"error":"call: bad or unknown 99"}'
        assert f"answers HTTP 400 (`{refused}`)" in (ROOT / "docs/drivers.md").read_text("utf-8")
        assert shell(unknown, context.demo.scratch).stdout == f"{refused} 400"
        assert sim.process.poll() is None


@dataclass(frozen=True)
class Run:
    """Documented commands run here together, by ``check``."""

    commands: tuple[str, ...]
    check: Callable[[Context, tuple[str, ...]], None]
    name: str = ""

    @property
    def id(self) -> str:
        return self.name or self.check.__name__.removeprefix("check_")


RUN_HERE = (
    Run(
        (
            "MQTT_PASSWORD=x FRONT_DOOR_PASSWORD=y bridge check-config --config config/container.yaml",
        ),
        check_config_examples,
    ),
    Run(("bridge check-config --config bad.yaml; echo $?",), check_bad_config),
    Run(
        (
            "export BRIDGE_MQTT__URL=mqtts://broker:8883",
            "export BRIDGE_MQTT__PASSWORD_FILE=/run/secrets/mqtt",
            "export BRIDGE_HTTP__LISTEN=0.0.0.0:9880",
            "export BRIDGE_LOG__FORMAT=json",
            "export BRIDGE_SHARD__INDEX=2",
            "export BRIDGE_SHARD__COUNT=3",
            """export BRIDGE_MQTT='{"qos": 0}'""",
        ),
        check_environment_overrides,
    ),
    Run(("curl -s http://127.0.0.1:9880/metrics | head",), check_metrics_head),
    Run(
        ("curl -s http://127.0.0.1:9880/healthz; curl -s http://127.0.0.1:9880/readyz",),
        check_health,
    ),
    Run(
        (
            "curl -s http://127.0.0.1:9880/metrics | grep -E 'bridge_(device_up|mqtt_connected|outbox)'",
        ),
        check_metrics_grep,
    ),
    Run(
        (
            "mosquitto_sub -h broker -t 'bridge/#' -v",
            "mosquitto_sub -h broker -t 'bridge/+/event/#' -v",
            "mosquitto_sub -h broker -t 'bridge/+/event/doorbell.pressed'",
            "mosquitto_sub -h broker -t 'bridge/+/availability' -t 'bridge/+/info' -v",
            "mosquitto_sub -h broker -t 'bridge/+/info' -v",
        ),
        check_subscriptions,
    ),
    Run(
        (
            """mosquitto_pub -h broker -t bridge/front-door/command -m '{"command":"snapshot","id":"s1"}'""",
            "mosquitto_sub -h broker -t bridge/front-door/snapshot -C 1 -N > front-door.jpg",
        ),
        check_snapshot,
    ),
    Run(
        (
            "mosquitto_sub -h broker -t bridge/front-door/command/result -v &",
            """mosquitto_pub -h broker -t bridge/front-door/command -m '{"command":"open_door","args":{"door":1},"id":"42"}'""",
        ),
        check_reply,
        "open_door",
    ),
    Run(
        (
            "mosquitto_sub -h broker -V mqttv5 -t replies/app1 -F '%t %p %D' &",
            'mosquitto_pub -h broker -V mqttv5 -t bridge/front-door/command -D publish response-topic replies/app1 -D publish correlation-data abc123 -m \'{"command":"refresh","id":"r1"}\'',
        ),
        check_reply,
        "response_topic",
    ),
    Run(
        (
            "mosquitto_sub -t 'bridge/bridge/response/#' -v &",
            """mosquitto_pub -t bridge/bridge/request/health_check -m '{"id":1}'""",
            """mosquitto_pub -t bridge/bridge/request/restart -m '{"id":2}'""",
            """mosquitto_pub -h broker -t bridge/bridge/request/health_check -m '{"id":1}'""",
        ),
        check_bridge_requests,
    ),
    Run(
        (
            "bridge check-config --config bridge.yaml",
            "bridge run --config bridge.yaml",
            "bridge run -c bridge.yaml --log-format json --log-level debug",
            "python -m bridge run --config bridge.yaml",
        ),
        check_running,
    ),
    Run(("bridge --version",), check_version),
    Run(
        ("""python -c "from bridge.shard import shard_of; print(shard_of('front-door', 3))\"""",),
        check_shard,
    ),
    Run(
        (
            "curl -s --digest -u api:secret http://127.0.0.1:18082/api/system/info",
            """curl -s -X POST http://127.0.0.1:18082/_sim/press -d '{"key":"%1"}'""",
            """curl -X POST http://127.0.0.1:18082/_sim/fault -d '{"mode":"http500","count":-1}'""",
            """curl -X POST http://127.0.0.1:18082/_sim/fault -d '{"count":2,"delay":2,"path_prefix":"/api/command"}'""",
            "curl -X POST http://127.0.0.1:18082/_sim/clear",
        ),
        check_simulator,
    ),
)

SYSTEMD_INSTALL = (
    "tests/integration/test_systemd.py::test_the_documented_installation_works_for_the_units_user"
)
HOME_ASSISTANT = (
    "tests/integration/test_homeassistant.py::"
    "test_the_documented_commands_show_the_demo_in_home_assistant"
)
NODE_RED = "tests/integration/test_nodered.py::test_the_flow_opens_the_door_of_bridge_demo"
OPENHAB = "tests/integration/test_openhab_demo.py::test_the_things_file_works_with_bridge_demo"
MQTT_ACL = "tests/integration/test_mqtt_security.py::test_each_user_reaches_what_its_entry_allows"
CONTAINER = "tests/integration/test_container.py::test_bridge_runs_in_the_image_as_its_user"
# Commands another test runs: the test's node id. The systemd installation runs into a root of
# its own, and its check-config as the unit's unprivileged user.
ELSEWHERE = {
    "make demo": "tests/integration/test_demo.py::test_demo_shows_events_and_answers_commands",
    "bridge run --config /etc/bridge/bridge.yaml": (
        "tests/integration/test_security.py::test_secrets_appear_nowhere"
    ),
    "make schema": "tests/unit/test_model.py::test_published_schemas_are_current",
    "bridge discover --seconds 3": (
        "tests/unit/test_discover.py::test_bridge_discover_prints_a_config_snippet"
    ),
    "install -d -m 0755 /etc/bridge": SYSTEMD_INSTALL,
    "install -m 0644 config/systemd.yaml /etc/bridge/bridge.yaml": SYSTEMD_INSTALL,
    "install -d -m 0700 /etc/bridge/credentials": SYSTEMD_INSTALL,
    (
        "for name in mqtt-password front-door-password side-gate-password side-gate-push-token "
        "yard-camera-password yard-camera-push-token stage-encoder-password; do "
        'read -rsp "$name: " secret; echo; printf \'%s\' "$secret" | '
        'install -m 0600 /dev/stdin "/etc/bridge/credentials/$name"; done'
    ): SYSTEMD_INSTALL,
    (
        "CREDENTIALS_DIRECTORY=/etc/bridge/credentials /opt/bridge/venv/bin/bridge check-config "
        "--config /etc/bridge/bridge.yaml"
    ): SYSTEMD_INSTALL,
    "BRIDGE_HOMEASSISTANT__ENABLED=true bridge demo --mqtt-url mqtt://127.0.0.1:1883": (
        HOME_ASSISTANT
    ),
    "mosquitto_sub -h 127.0.0.1 -t 'homeassistant/device/+/config' -v -C 5": HOME_ASSISTANT,
    "mosquitto_pub -h 127.0.0.1 -r -n -t homeassistant/device/bridge_front-door/config": (
        HOME_ASSISTANT
    ),
    "bridge demo --devices 1 --interval 1": NODE_RED,
    (
        "BRIDGE_MQTT_HOST=127.0.0.1 BRIDGE_MQTT_PORT=1883 node-red "
        "docs/examples/node-red-doorbell.json"
    ): NODE_RED,
    "bridge demo": OPENHAB,
    'mosquitto_passwd -c -b passwd bridge "$BRIDGE_PASSWORD"': MQTT_ACL,
    'mosquitto_passwd -b passwd automation "$AUTOMATION_PASSWORD"': MQTT_ACL,
    'mosquitto_passwd -b passwd dashboard "$DASHBOARD_PASSWORD"': MQTT_ACL,
    'mosquitto_passwd -b passwd homeassistant "$HOMEASSISTANT_PASSWORD"': MQTT_ACL,
    'mosquitto_ctrl dynsec init dynamic-security.json admin "$ADMIN_PASSWORD"': MQTT_ACL,
    "sh deploy/mosquitto/dynsec.sh": MQTT_ACL,
    (
        "mmdebstrap --variant=minbase --include=passwd,python-is-python3,python3,python3-pip,"
        "python3-venv --format=tar bookworm /tmp/debian-python.tar "
        '"deb http://deb.debian.org/debian bookworm main" '
        '"deb http://deb.debian.org/debian-security bookworm-security main"'
    ): CONTAINER,
    "ctr=$(buildah from scratch)": CONTAINER,
    'buildah add --quiet "$ctr" /tmp/debian-python.tar /': CONTAINER,
    'buildah commit --quiet --rm "$ctr" localhost/debian-python:bookworm': CONTAINER,
    (
        "buildah bud --isolation chroot --format docker --pull=never "
        "--build-arg PYTHON_IMAGE=localhost/debian-python:bookworm "
        "--secret id=ca-certificates.crt,src=/etc/ssl/certs/ca-certificates.crt "
        "--secret id=pip.conf,src=/etc/pip.conf -f deploy/container/Containerfile "
        "-t localhost/bridge:0.1.0 ."
    ): CONTAINER,
    "ctr=$(buildah from --pull=never --quiet localhost/bridge:0.1.0)": CONTAINER,
    (
        'buildah run --isolation chroot -v "$PWD/bridge.yaml:/etc/bridge/bridge.yaml:ro" '
        '"$ctr" -- bridge run --config /etc/bridge/bridge.yaml'
    ): CONTAINER,
}

# Commands that cannot run in the test suite, and why.
SUITE = "it runs the test suite, which this test is part of"
BENCHMARK = "a benchmark: minutes of full CPU, not a test; its figures are in docs/performance.md"
SYSTEMD = (
    "needs systemd as PID 1 (the unit is checked by systemd-analyze verify in "
    "tests/unit/test_deploy.py, its installation by tests/integration/test_systemd.py)"
)
PODMAN = "no podman or docker engine here: the suite builds and runs the image with buildah"
CANNOT = {
    "podman build --format docker -f deploy/container/Containerfile -t bridge:0.1.0 .": PODMAN,
    "docker build -f deploy/container/Containerfile -t bridge:0.1.0 .": PODMAN,
    "podman volume create bridge-state": PODMAN,
    (
        "podman run -d --name bridge --read-only --tmpfs /tmp --cap-drop ALL --security-opt "
        'no-new-privileges -v "$PWD/config/container.yaml:/etc/bridge/bridge.yaml:ro,Z" '
        "-v bridge-state:/var/lib/bridge:Z -e MQTT_PASSWORD -e FRONT_DOOR_PASSWORD "
        "-p 127.0.0.1:9880:9880 --stop-timeout 15 bridge:0.1.0"
    ): PODMAN,
    "podman logs -f bridge": PODMAN,
    "curl -s http://127.0.0.1:9880/readyz": PODMAN,
    "podman healthcheck run bridge": PODMAN,
    (
        'podman run --rm -v "$PWD/config/container.yaml:/etc/bridge/bridge.yaml:ro,Z" '
        "-e MQTT_PASSWORD=x -e FRONT_DOOR_PASSWORD=y bridge:0.1.0 check-config "
        "--config /etc/bridge/bridge.yaml"
    ): PODMAN,
    "make test": SUITE,
    "make lint": "part of make test (ruff, mypy), which runs the suite",
    ".venv/bin/pytest tests/unit": SUITE,
    "BRIDGE_TEST_OUTAGE=3 .venv/bin/pytest": SUITE,
    "pip install .": (
        "installs into the current Python; make test installs the same package into .venv"
    ),
    ("python3 -m venv /opt/bridge/venv && /opt/bridge/venv/bin/pip install /path/to/bridge"): (
        "installs system-wide from the network; test_systemd.py makes the same venv with "
        "this checkout's packages"
    ),
    "make bench": BENCHMARK,
    ".venv/bin/python bench/latency.py --driver generic --events 1000 --rate 50": BENCHMARK,
    ".venv/bin/python -m bench.scale": BENCHMARK,
    ".venv/bin/python -m bench.scale --quick": BENCHMARK,
    ".venv/bin/python -m bench.scale --py-spy bench/results/py-spy": BENCHMARK,
    ".venv/bin/python -m bench.http_clients": BENCHMARK,
    ".venv/bin/python bench/sidebyside.py --device plain --events 300": BENCHMARK,
    ".venv/bin/python bench/sidebyside.py --device simulator --events 300": BENCHMARK,
    (
        "openssl s_client -connect 192.0.2.10:443 </dev/null | "
        "openssl x509 -noout -fingerprint -sha256"
    ): "needs the real device at 192.0.2.10",
    "cp deploy/systemd/bridge.service /etc/systemd/system/": SYSTEMD,
    "systemctl daemon-reload && systemctl enable --now bridge": SYSTEMD,
    "systemctl status bridge": SYSTEMD,
    "journalctl -u bridge -f": SYSTEMD,
    "kubectl apply -k deploy/kubernetes/": (
        "needs a Kubernetes cluster; tests/unit/test_deploy.py validates the manifests against "
        "the 1.28 and 1.30 schemas and loads their configuration"
    ),
    "kubectl get pods -l app.kubernetes.io/name=bridge": "needs a Kubernetes cluster",
}


def here() -> dict[str, str]:
    return {command: run.id for run in RUN_HERE for command in run.commands}


def test_every_documented_command_is_accounted_for() -> None:
    docs = documented()
    known = here() | ELSEWHERE | CANNOT
    missing = {
        text: [c.where for c in occurrences]
        for text, occurrences in docs.items()
        if text not in known
    }
    assert missing == {}, "run each here, or add it to ELSEWHERE or CANNOT"
    stale = sorted(set(known) - set(docs))
    assert stale == [], "no longer in the docs"
    twice = sorted(set(here()) & (set(ELSEWHERE) | set(CANNOT)) | set(ELSEWHERE) & set(CANNOT))
    assert twice == []


@pytest.mark.parametrize("node", sorted(set(ELSEWHERE.values())))
def test_the_tests_run_elsewhere_exist(node: str) -> None:
    path, _, name = node.partition("::")
    assert re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text("utf-8"), re.MULTILINE)


@pytest.mark.parametrize("run", RUN_HERE, ids=lambda run: run.id)
def test_documented_commands_run(run: Run, demo: Demo) -> None:
    run.check(Context(demo, documented()), run.commands)


# -- what the docs show, against what runs ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "outside_its_platform"),
    [
        ("container.yaml", ""),
        (
            "kubernetes.yaml",
            "mqtt.tls.ca_file /etc/bridge/tls/ca.crt: cannot read: No such file or directory\n",
        ),
    ],
)
def test_example_configs_need_exactly_what_the_readme_says(
    name: str, outside_its_platform: str
) -> None:
    command = f"bridge check-config --config config/{name}"
    passes = shell(f"MQTT_PASSWORD=x FRONT_DOOR_PASSWORD=y {command}", ROOT)
    assert passes.stderr == outside_its_platform
    assert passes.returncode == (2 if outside_its_platform else 0)
    readme = (ROOT / "README.md").read_text("utf-8")
    assert outside_its_platform.strip() in " ".join(readme.replace("`", "").split())
    fails = shell(command, ROOT)
    assert fails.returncode == 2
    assert "mqtt.password: environment variable MQTT_PASSWORD is not set" in fails.stderr


def json_example(lines: tuple[str, ...]) -> Any:
    return json.loads("\n".join(lines))


def retained(demo: Demo, topic: str) -> Any:
    with Watched(f"mosquitto_sub -p {demo.broker_port} -t {topic} -C 1", demo.scratch) as sub:
        return json.loads(sub.wait_for(lambda lines: lines[0] if lines else None))


def shape(value: Any) -> Any:
    """A JSON value's keys and types, not its values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def test_the_bridge_info_example_is_the_demos(demo: Demo) -> None:
    (block,) = section_blocks(MQTT_API, "### `<base>/bridge/info`")
    example, actual = json_example(block.lines), retained(demo, "bridge/bridge/info")
    for info in (example, actual):
        info.pop("started_at")
        info["config"]["mqtt"].pop("broker")
    assert example == actual


def test_the_device_info_example_is_the_demos(demo: Demo) -> None:
    section = "### `<base>/<device>/availability` and `<base>/<device>/info`"
    (published, _never) = section_blocks(MQTT_API, section)
    for line in published.lines:
        topic, _, value = line.partition(" ")
        if topic.endswith("/info"):
            assert json.loads(value) == retained(demo, topic)


def test_the_state_example_has_the_demos_shape(demo: Demo) -> None:
    (block,) = section_blocks(MQTT_API, "### `<base>/<device>/state`")
    assert shape(json_example(block.lines)) == shape(retained(demo, "bridge/side-gate/state"))


@pytest.mark.anyio
@pytest.mark.broker
async def test_the_never_reached_example_is_what_the_bridge_publishes(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    section = "### `<base>/<device>/availability` and `<base>/<device>/info`"
    (_published, never) = section_blocks(MQTT_API, section)
    example = json_example(never.lines)
    assert example["driver"] == "2n"
    config = {
        "mqtt": {"url": mosquitto.url, "client_id": f"docs-{free_port()}"},
        "http": {"listen": "127.0.0.1:0"},
        "state_dir": str(tmp_path),
        "devices": [
            {
                "id": example["id"],
                "driver": example["driver"],
                "url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
                "username": "api",
                "password": "secret",
            }
        ],
    }
    async with Consumer(mosquitto.url) as consumer, running(config):
        info = await consumer.first(f"bridge/{example['id']}/info", timeout=DEADLINE)
    assert info.json() == example
