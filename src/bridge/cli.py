"""Command line: ``bridge run | check-config | demo | discover | schema``; returns an exit
status."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import anyio

from bridge import __version__
from bridge.errors import ConfigError, StartupError

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration file")
    _log_options(run)

    check = sub.add_parser("check-config", help="validate a configuration without connecting")
    check.add_argument("--config", "-c", type=Path, required=True)

    demo = sub.add_parser("demo", help="simulated devices + broker + bridge, showing what flows")
    demo.add_argument("--mqtt-url", help="use this broker instead of an embedded one")
    demo.add_argument(
        "--devices",
        type=int,
        default=5,
        help="simulated devices: a 2N intercom, an Onetouch door station, a Grandstream camera, "
        "an Ultra Stream encoder, then generic ones",
    )
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.add_argument("--interval", type=float, default=1.5, help="seconds between activities")
    _log_options(demo, default_level="warning")

    discover = sub.add_parser(
        "discover", help="listen for Ultra Stream encoders' multicast datagrams (best effort)"
    )
    discover.add_argument("--seconds", type=float, default=5.0, help="how long to listen")
    discover.add_argument("--port", type=int, default=2538, help="UDP port (the manual's: 2538)")

    schema = sub.add_parser("schema", help="write the JSON Schemas of the MQTT payloads")
    schema.add_argument("--out", type=Path, default=Path("docs/schema"))
    return parser


def _log_options(parser: argparse.ArgumentParser, default_level: str | None = None) -> None:
    parser.add_argument("--log-format", choices=["console", "json"], default=None)
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=default_level
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        from bridge.demo import run_demo  # noqa: PLC0415 - only the demo needs the simulators

        return run_demo(
            mqtt_url=args.mqtt_url,
            devices=args.devices,
            duration=args.duration,
            interval=args.interval,
            log_format=args.log_format or "console",
            log_level=args.log_level or "warning",
        )
    if args.command == "discover":
        return _discover(args.seconds, args.port)
    if args.command == "schema":
        from bridge.schema import write_schemas  # noqa: PLC0415

        for path in write_schemas(args.out):
            print(path)  # noqa: T201 - the command's output
        return 0
    return 1  # pragma: no cover - argparse enforces the choices


def _discover(seconds: float, port: int) -> int:
    """Print a ``devices:`` snippet per encoder heard; 1 when none answered."""
    from bridge.discover import GROUP, listen, snippet  # noqa: PLC0415

    if not 0 < port < 65536 or not 0 < seconds <= 3600:
        print("bridge discover: --port 1-65535 and --seconds up to 3600", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    try:
        found = anyio.run(partial(listen, seconds, port=port))
    except OSError as exc:
        print(f"bridge discover: cannot listen on UDP port {port}: {exc.strerror}", file=sys.stderr)  # noqa: T201
        return 1
    if not found:
        print(  # noqa: T201
            f"no Ultra Stream encoder answered within {seconds:g} s on {GROUP}:{port} "
            "(best effort: multicast must reach this host)",
            file=sys.stderr,
        )
        return 1
    print(snippet(found), end="")  # noqa: T201 - the command's output
    return 0


def _check_config(path: Path) -> int:
    from bridge.settings import load_settings  # noqa: PLC0415 - keep --version fast

    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    print(f"{path}: ok, {len(settings.devices)} device(s)")  # noqa: T201
    return 0


def _run(args: argparse.Namespace) -> int:
    from bridge import logs  # noqa: PLC0415
    from bridge.app import Bridge  # noqa: PLC0415
    from bridge.settings import load_settings  # noqa: PLC0415

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    logs.configure(
        format_=args.log_format or settings.log.format, level=args.log_level or settings.log.level
    )

    async def main_async() -> None:
        await Bridge(settings, handle_signals=True).run()

    try:
        anyio.run(main_async)
    except (StartupError, BaseExceptionGroup) as exc:
        errors = _startup_errors(exc)
        if not errors:
            raise
        for error in errors:
            print(f"bridge: {error}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def _startup_errors(exc: BaseException) -> list[StartupError]:
    """The StartupErrors in an exception (group), or none if anything else is in it."""
    if isinstance(exc, StartupError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [e for sub in exc.exceptions for e in _startup_errors(sub)]
        return found if len(found) == len(exc.exceptions) else []
    return []
