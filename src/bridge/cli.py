"""Command line: bridge run | check-config | demo | discover | schema; returns an exit status.

Every user error is one line on stderr, naming the argument or key: status 2 for a wrong
argument or configuration, 1 for a resource that is unavailable (a busy port, a broker that
cannot be reached, a missing mosquitto).
"""

from __future__ import annotations

import argparse
import math
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import anyio

from bridge import __version__
from bridge.errors import ConfigError, StartupError

if TYPE_CHECKING:
    from collections.abc import Callable

    from bridge.settings import Settings

EXIT_CONFIG = 2  # a wrong argument or configuration
EXIT_UNAVAILABLE = 1  # a resource is unavailable
MAX_DEVICES = 100  # of the demo: each is an HTTP server in the demo's process
MQTT_PORT = 1883  # the port of an mqtt:// URL without one, as MQTT clients have it

DESCRIPTION = (
    "Event-driven gateway from IP building devices (intercoms, encoders, cameras) to MQTT. "
    "Start with 'bridge demo'; run with 'bridge run --config FILE'."
)
DEMO_DEVICES = (
    "simulated devices, 1 to 100 (default 5): front-door (2N intercom), side-gate (Onetouch "
    "door station), yard-camera (Grandstream camera), stage-encoder (Ultra Stream encoder), "
    "then door-5, door-6, ... (generic)"
)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the full usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


# -- argument types: pure, each error a sentence argparse puts after "argument --NAME: " -------


def count(text: str) -> int:
    """``--devices``: a whole number from 1 to 100."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_DEVICES:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_DEVICES}, got {text!r}"
        )
    return value


def seconds(limit: float) -> Callable[[str], float]:
    """A duration in seconds above 0 and at most ``limit``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 < value <= limit:  # also refuses nan
            most = f" and at most {limit:g}" if limit < math.inf else ""
            raise argparse.ArgumentTypeError(f"expected seconds above 0{most}, got {text!r}")
        return value

    return parse


def port(text: str) -> int:
    """A TCP/UDP port, 1 to 65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def mqtt_url(text: str) -> tuple[str, int]:
    """``--mqtt-url``: ``mqtt://host[:port][/]`` to (host, port); the port defaults to 1883."""
    if "@" in text:  # before anything echoes the URL: it may hold a password
        raise argparse.ArgumentTypeError("the demo connects anonymously: no user or password")
    usage = f"expected mqtt://host[:port], got {text!r}"
    parts = urlsplit(text.strip())
    if parts.scheme != "mqtt" or not parts.netloc:
        raise argparse.ArgumentTypeError(
            f"{usage}; the demo speaks plain MQTT (no TLS, no websockets)"
        )
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"{usage}: an MQTT broker has no path or query")
    try:
        number = parts.port
    except ValueError:
        number = 0
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"{usage}: the host is missing")
    if number == 0:
        raise argparse.ArgumentTypeError(f"{usage}: the port must be from 1 to 65535")
    return parts.hostname, number or MQTT_PORT


# -- the parser ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bridge", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway", description="Run the gateway.")
    run.add_argument("--config", "-c", type=Path, required=True, help="the YAML configuration file")
    _log_options(run, "default: log.format of the configuration (console)")

    check = sub.add_parser(
        "check-config",
        help="validate a configuration without connecting",
        description="Validate a configuration (and its environment) without connecting.",
    )
    check.add_argument(
        "--config",
        "-c",
        type=Path,
        required=True,
        help="the YAML configuration file; BRIDGE_* variables and ${NAME} references are read "
        "from the environment, as bridge run does",
    )

    demo = sub.add_parser(
        "demo",
        help="simulated devices + a broker + the bridge, printing what flows",
        description="Simulated devices of every vendor, a mosquitto broker and the bridge, "
        "printing every MQTT message under bridge/#.",
    )
    where = demo.add_mutually_exclusive_group()
    where.add_argument(
        "--mqtt-url",
        type=mqtt_url,
        metavar="URL",
        help="your broker, mqtt://host[:port] (port 1883 if not given), instead of the "
        "mosquitto the demo starts; the demo's retained topics are removed from it at exit",
    )
    where.add_argument(
        "--broker-port",
        type=port,
        metavar="PORT",
        help="port of the demo's mosquitto on 127.0.0.1 (default: 1883 when free, else any "
        "free port; the first line printed says which)",
    )
    demo.add_argument("--devices", type=count, default=5, metavar="N", help=DEMO_DEVICES)
    demo.add_argument(
        "--duration", type=seconds(math.inf), metavar="S", help="stop after S seconds"
    )
    demo.add_argument(
        "--interval",
        type=seconds(3600),
        default=1.5,
        metavar="S",
        help="seconds between two activities at the devices (default 1.5)",
    )
    _log_options(demo, "default: warning", default_level="warning")

    discover = sub.add_parser(
        "discover",
        help="listen for Ultra Stream encoders' multicast datagrams (best effort)",
        description="Listen for Ultra Stream encoders' multicast datagrams and print a "
        "devices: snippet per encoder heard (best effort).",
    )
    discover.add_argument(
        "--seconds", type=seconds(3600), default=5.0, metavar="S", help="how long to listen"
    )
    discover.add_argument("--port", type=port, default=2538, help="UDP port (the manual's: 2538)")

    schema = sub.add_parser(
        "schema",
        help="write the JSON Schemas of the MQTT payloads",
        description="Write the JSON Schemas of the MQTT payloads, one file per payload.",
    )
    schema.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory to write them into (the project's: docs/schema)",
    )
    return parser


def _log_options(
    parser: argparse.ArgumentParser, level_default: str, default_level: str | None = None
) -> None:
    parser.add_argument(
        "--log-format",
        choices=["console", "json"],
        default=None,
        help="console for people, json (one object per line) for log collectors",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=default_level,
        help=f"the least severe level logged ({level_default})",
    )


def main(argv: list[str] | None = None) -> int:
    try:
        return _command(_parser().parse_args(argv))
    except KeyboardInterrupt:  # Ctrl-C before the command handles signals itself
        return 130


def _command(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "discover":
        return _discover(args.seconds, args.port)
    if args.command == "schema":
        return _schema(args.out)
    return 1  # pragma: no cover - argparse enforces the choices


def _demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo  # noqa: PLC0415 - only the demo needs the simulators

    try:
        return run_demo(
            mqtt=args.mqtt_url,
            broker_port=args.broker_port,
            devices=args.devices,
            duration=args.duration,
            interval=args.interval,
            log_format=args.log_format or "console",
            log_level=args.log_level or "warning",
        )
    except (ConfigError, StartupError, BaseExceptionGroup) as exc:
        # ConfigError: a BRIDGE_* variable of the environment, which the demo's bridge reads too
        return _failed("bridge demo", exc)


def _schema(out: Path) -> int:
    from bridge.schema import write_schemas  # noqa: PLC0415

    try:
        written = write_schemas(out)
    except OSError as exc:
        print(f"bridge schema: --out {out}: cannot write: {exc.strerror}", file=sys.stderr)  # noqa: T201
        return EXIT_UNAVAILABLE
    for path in written:
        print(path)  # noqa: T201 - the command's output
    return 0


def _discover(seconds: float, port: int) -> int:
    """Print a ``devices:`` snippet per encoder heard; 1 when none answered."""
    from bridge.discover import GROUP, listen, snippet  # noqa: PLC0415

    try:
        found = anyio.run(partial(listen, seconds, port=port))
    except OSError as exc:
        print(f"bridge discover: cannot listen on UDP port {port}: {exc.strerror}", file=sys.stderr)  # noqa: T201
        return EXIT_UNAVAILABLE
    if not found:
        print(  # noqa: T201
            f"no Ultra Stream encoder answered within {seconds:g} s on {GROUP}:{port} "
            "(best effort: multicast must reach this host)",
            file=sys.stderr,
        )
        return 1
    print(snippet(found), end="")  # noqa: T201 - the command's output
    return 0


def _load(path: Path) -> Settings | None:
    """The settings of ``path``, or its problems printed (one line each) and None."""
    from bridge.settings import load_settings  # noqa: PLC0415 - keep --version fast

    try:
        return load_settings(path)
    except ConfigError as exc:
        problems = exc.problems
    for problem in problems:
        print(problem, file=sys.stderr)  # noqa: T201
    return None


def _check_config(path: Path) -> int:
    settings = _load(path)
    if settings is None:
        return EXIT_CONFIG
    problems = _tls_files(settings)
    for problem in problems:
        print(problem, file=sys.stderr)  # noqa: T201
    if problems:
        return EXIT_CONFIG
    print(f"{path}: ok, {len(settings.devices)} device(s)")  # noqa: T201
    return 0


def _tls_files(settings: Settings) -> list[str]:
    """The TLS files the config names, loaded as ``run`` loads them: what ``run`` would refuse
    (the broker's) or fail on for a device (its ``tls.ca_file``), one line each."""
    import ssl  # noqa: PLC0415 - keep --version fast

    from bridge.http import build_verify  # noqa: PLC0415
    from bridge.mqtt.connection import TlsFileError, tls_context  # noqa: PLC0415

    problems = []
    try:
        tls_context(settings.mqtt)
    except TlsFileError as exc:
        problems.append(str(exc))
    for index, device in enumerate(settings.devices):
        if device.tls.ca_file is None:
            continue
        try:
            build_verify(device)
        except ssl.SSLError:  # an OSError too: first
            problems.append(
                f"devices[{index}].tls.ca_file {device.tls.ca_file}: not a PEM CA bundle"
            )
        except OSError as exc:
            problems.append(
                f"devices[{index}].tls.ca_file {device.tls.ca_file}: cannot read: {exc.strerror}"
            )
    return problems


def _run(args: argparse.Namespace) -> int:
    from bridge import logs  # noqa: PLC0415
    from bridge.app import Bridge  # noqa: PLC0415

    settings = _load(args.config)
    if settings is None:
        return EXIT_CONFIG
    logs.configure(
        format_=args.log_format or settings.log.format, level=args.log_level or settings.log.level
    )

    async def main_async() -> None:
        await Bridge(settings, handle_signals=True).run()

    try:
        anyio.run(main_async)
    except (StartupError, BaseExceptionGroup) as exc:
        return _failed("bridge", exc)
    return 0


def _failed(prog: str, exc: BaseException) -> int:
    """Print the ConfigErrors and StartupErrors in ``exc`` (one line each) and return 2 if any
    was a ConfigError, else 1; re-raise anything else, which is a bug to see whole."""
    errors = _user_errors(exc)
    if not errors:
        raise exc
    for error in errors:
        for line in error.problems if isinstance(error, ConfigError) else [str(error)]:
            print(f"{prog}: {line}", file=sys.stderr)  # noqa: T201
    config = any(isinstance(error, ConfigError) for error in errors)
    return EXIT_CONFIG if config else EXIT_UNAVAILABLE


def _user_errors(exc: BaseException) -> list[ConfigError | StartupError]:
    """The ConfigErrors and StartupErrors in an exception (group), or none if anything else is
    in it."""
    if isinstance(exc, ConfigError | StartupError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [e for sub in exc.exceptions for e in _user_errors(sub)]
        return found if len(found) == len(exc.exceptions) else []
    return []
