"""``python -m bench.scale``: see the package docstring."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import anyio

from bench.scale import polled, scenarios
from bench.scale.peers import MOSQUITTO, raw_ceiling, start_broker
from bench.scale.processes import ROOT, Children, raise_nofile
from bench.scale.report import machine, report, verdicts
from bench.scale.scenarios import Options
from bench.scale.simulators import POLLED


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"{what}: comma-separated numbers expected, got {text!r}") from None
    if not values or min(values) <= 0:
        raise SystemExit(f"{what}: every number must be above 0, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> tuple[Options, Path, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="Scale of one bridge process (see docs/performance.md)",
    )
    parser.add_argument("--quick", action="store_true", help="10 and 100 devices, short phases")
    parser.add_argument(
        "--devices", help="2N device counts, default 100,1000 (quick: 10,100); 'none' for none"
    )
    parser.add_argument("--sim-procs", type=int, default=1, help="simulator processes")
    parser.add_argument("--throughput-devices", type=int, help="where the rate ladder runs")
    parser.add_argument("--rates", help="events/s ladder, default 200,500,750,...,5000")
    parser.add_argument(
        "--load-rate",
        type=float,
        help="events/s at the other device counts (default 500, or 0.05 of the ceiling)",
    )
    parser.add_argument(
        "--polled",
        default=",".join(POLLED),
        help=f"polled drivers to run, default {','.join(POLLED)}; 'none' for none",
    )
    parser.add_argument("--polled-devices", help="polled device counts, default 100,1000")
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="record the bridge with py-spy, per phase"
    )
    parser.add_argument(
        "--refreeze",
        type=float,
        metavar="SECONDS",
        help="try a collector policy: gc.freeze() in the bridge every SECONDS",
    )
    parser.add_argument("--out", type=Path, help="JSON, default bench/results/scale-<date>.json")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    polled_kinds = [] if args.polled == "none" else args.polled.split(",")
    unknown = sorted(set(polled_kinds) - set(POLLED))
    if unknown:
        raise SystemExit(f"--polled: unknown {', '.join(unknown)}; known: {', '.join(POLLED)}")
    counts = args.devices or ("10,100" if quick else "100,1000")
    devices = [] if counts == "none" else [int(d) for d in _numbers(counts, "--devices")]
    polled_devices = args.polled_devices or ("10,100" if quick else "100,1000")
    ladder = args.rates or ("200,1000" if quick else "200,500,750,1000,1500,2000,3500,5000")
    opts = Options(
        devices=devices,
        sim_procs=args.sim_procs,
        throughput_devices=args.throughput_devices or min(devices, default=0),
        rates=_numbers(ladder, "--rates"),
        phase_s=3.0 if quick else 10.0,
        load_rate=args.load_rate,
        idle_s=5.0 if quick else 20.0,
        commands=50 if quick else 500,
        scrapes=5,
        raw_messages=2000 if quick else 20_000,
        online_deadline=60.0 if quick else 120.0,
        polled=polled_kinds,
        polled_devices=[int(d) for d in _numbers(polled_devices, "--polled-devices")],
        polled_window_s=5.0 if quick else 10.0,
        profile_dir=args.py_spy,
        refreeze=args.refreeze,
    )
    name = f"scale-{time.strftime('%Y-%m-%d-%H%M%S')}{'-quick' if quick else ''}.json"
    out = args.out or ROOT / "bench" / "results" / name
    return opts, out, quick


async def bench(children: Children, opts: Options) -> dict[str, Any]:
    broker = await start_broker(children)
    print(f"raw MQTT ceiling, {opts.raw_messages} messages", flush=True)
    raw = await raw_ceiling(broker.port, opts.raw_messages)
    print(f"  {raw}", flush=True)
    run = scenarios.Bench(children, broker, opts, float(raw["published_per_s"]))
    results: dict[str, Any] = {"raw_mqtt": raw, "scenarios": []}
    for n in opts.devices:
        print(f"{n} x 2n", flush=True)
        results["scenarios"].append(await scenarios.scenario(run, n))
    for kind in opts.polled:
        for n in opts.polled_devices:
            print(f"{n} x {kind}", flush=True)
            found = await polled.scenario(run, kind, n)
            results["scenarios"].append(found)
    return results


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=False, cwd=ROOT
    ).stdout.strip()


def on_sigterm(*_: object) -> NoReturn:
    raise SystemExit(143)  # runs the finally blocks: children are stopped


def main(argv: list[str] | None = None) -> int:
    opts, out, quick = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    nofile = raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="bridge-scale-"))
    if opts.profile_dir is not None:
        opts.profile_dir.mkdir(parents=True, exist_ok=True)
    children = Children(work)
    started = time.time()
    try:
        results = anyio.run(bench, children, opts)
    finally:
        children.stop_all()
    results |= {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python -m bench.scale", *sys.argv[1:]]),
        "quick": quick,
        "options": opts.__dict__,
        "machine": machine(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_modified": bool(git("status", "--porcelain", "--", "src")),
        "mosquitto": subprocess.run(
            [MOSQUITTO, "-h"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.split("\n", 1)[0],
        "open_files_limit": nofile,
        "duration_s": round(time.time() - started),
        "logs": str(work),
    }
    results["targets"] = [v.__dict__ for v in verdicts(results)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report(results))
    print(f"results: {out}; logs: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
