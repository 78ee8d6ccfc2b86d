"""The bridge under a garbage-collector watch: ``python -m bench.scale.gcwatch STATS -- ARGS``
runs ``bridge ARGS`` (``run --config ...``) in this process, unchanged, and times every
collection with ``gc.callbacks``.

On ``SIGUSR1`` it writes ``STATS`` (JSON): every collection so far of generation 1 and 2, and
those of generation 0 that took 1 ms or more, as ``[monotonic start, generation, seconds,
collected]`` (``time.monotonic`` is the machine's clock, so the benchmark can cut them into its
phases), collections per generation, the objects the collector tracks (``gc.get_objects()``:
what a full collection walks; ``gc.freeze()`` leaves the frozen heap out) and how many are frozen.
On ``SIGUSR2`` it adds a census of those tracked objects by type, with the types of what refers
to a sample of the most common ones, to find what keeps them alive; when ``STATS.reclaim``
exists, also how much of the frozen heap was garbage (``gc.unfreeze()``, a full collection,
``gc.freeze()``): what freezing kept from ever being collected.

``--refreeze SECONDS`` (before ``--``) tries a collector policy without changing the bridge: a
thread calls ``gc.freeze()`` every SECONDS, so that objects older than that stay out of every
collection.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from bench.scale.processes import alive
from bridge.cli import main as bridge_main

if TYPE_CHECKING:
    import subprocess

    from bench.scale.processes import Children

SLOW_YOUNG = 0.001  # seconds: generation-0 collections at least this long are kept one by one


def type_name(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


@dataclass
class Watch:
    """The collector's pauses, recorded by ``gc.callbacks``."""

    path: Path
    pauses: list[tuple[float, int, float, int]] = field(default_factory=list)
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    young_seconds: float = 0.0
    _started: float = 0.0

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.monotonic()
            return
        took = time.monotonic() - self._started
        generation = info["generation"]
        self.counts[generation] += 1
        if generation == 0:
            self.young_seconds += took
        if generation > 0 or took >= SLOW_YOUNG:
            self.pauses.append((self._started, generation, took, info["collected"]))

    def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "at": time.monotonic(),
            "collections": self.counts,
            "young_seconds": self.young_seconds,
            "pauses": self.pauses,
            "tracked": len(gc.get_objects()),
            "frozen": gc.get_freeze_count(),
            "thresholds": gc.get_threshold(),
        }

    def census(self, top: int = 40, sample: int = 200) -> dict[str, Any]:
        """Tracked objects by type; for the ``top`` types, who refers to a sample of them."""
        objects = gc.get_objects()
        by_type = Counter(type_name(obj) for obj in objects)
        common = [name for name, _ in by_type.most_common(12)]
        referrers: dict[str, dict[str, int]] = {}
        for name in common:
            picked = [obj for obj in objects if type_name(obj) == name][:sample]
            found = Counter(
                type_name(ref)
                for ref in gc.get_referrers(*picked)
                if ref is not picked and ref is not objects
            )
            referrers[name] = dict(found.most_common(6))
            del picked
        del objects
        return {"by_type": dict(by_type.most_common(top)), "referrers": referrers}

    def reclaim(self) -> dict[str, Any]:
        """Collect what is not frozen, then what is: the second count is frozen garbage, which
        only a collection could free (reference cycles), by type."""
        young = gc.collect()
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what it finds in gc.garbage, to count it
        try:
            leaked = gc.collect()
            kinds = Counter(type_name(obj) for obj in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        gc.collect()
        gc.freeze()
        return {
            "collected_unfrozen": young,
            "frozen_before": frozen,
            "frozen_garbage": leaked,
            "frozen_garbage_by_type": dict(kinds.most_common(20)),
        }

    def write(self, *, census: bool) -> None:
        stats = self.stats() | ({"census": self.census()} if census else {})
        request = self.path.with_suffix(".reclaim")
        if census and request.exists():
            request.unlink()
            stats["reclaim"] = self.reclaim()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        tmp.replace(self.path)


# -- the parent side ------------------------------------------------------------------------


@dataclass
class Watched:
    """A bridge process started by :func:`start_bridge`."""

    proc: subprocess.Popen[bytes]
    stats_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stats(
        self, *, census: bool = False, reclaim: bool = False, deadline: float = 120.0
    ) -> dict[str, Any]:
        """What the bridge's collector did so far (see the module docstring)."""
        asked = time.monotonic()
        if reclaim:
            self.stats_path.with_suffix(".reclaim").touch()
        os.kill(self.proc.pid, signal.SIGUSR2 if census else signal.SIGUSR1)
        with anyio.fail_after(deadline):
            while True:
                alive(self.proc, "the bridge")
                try:
                    stats: dict[str, Any] = json.loads(self.stats_path.read_bytes())
                except (FileNotFoundError, ValueError):
                    stats = {}
                if stats.get("at", 0.0) >= asked:
                    return stats
                await anyio.sleep(0.05)


def start_bridge(
    children: Children, name: str, config: Path, refreeze: float | None = None
) -> Watched:
    """``bridge run --config config`` under the watch, logging to ``<work>/<name>.log``."""
    stats = children.work / f"{name}-gc.json"
    policy = [] if refreeze is None else ["--refreeze", str(refreeze)]
    argv = [sys.executable, "-m", "bench.scale.gcwatch", str(stats), *policy, "--"]
    proc = children.start(name, [*argv, "run", "--config", str(config)])
    return Watched(proc, stats)


def pauses(stats: dict[str, Any], since: float, until: float) -> dict[str, Any]:
    """The collections of generation 1 and 2 that started between ``since`` and ``until``
    (monotonic seconds): how many, the longest and the sum, in milliseconds."""
    summary: dict[str, Any] = {}
    for generation in (1, 2):
        took = [
            1000 * seconds
            for started, gen, seconds, _ in stats.get("pauses", [])
            if gen == generation and since <= started <= until
        ]
        summary[f"gen{generation}"] = {
            "count": len(took),
            "max_ms": round(max(took), 1) if took else None,
            "total_ms": round(sum(took), 1),
        }
    return summary


def refreeze(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        gc.freeze()


def main(argv: list[str]) -> int:
    stats, *rest = argv or [""]
    refreezing = None
    if rest[:1] == ["--refreeze"] and len(rest) > 1:
        refreezing, rest = float(rest[1]), rest[2:]
    if not stats or rest[:1] != ["--"]:
        print(
            "usage: python -m bench.scale.gcwatch STATS [--refreeze SECONDS] -- run --config FILE",
            file=sys.stderr,
        )
        return 2
    watch = Watch(Path(stats))
    if refreezing:
        threading.Thread(target=refreeze, args=(refreezing,), daemon=True).start()
    gc.callbacks.append(watch.callback)
    signal.signal(signal.SIGUSR1, lambda *_: watch.write(census=False))
    signal.signal(signal.SIGUSR2, lambda *_: watch.write(census=True))
    return bridge_main(rest[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
