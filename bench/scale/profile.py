"""py-spy on the bridge, one recording per phase (``--py-spy DIR``), summarised by the parts of
the bridge a sample passes through."""

from __future__ import annotations

import re
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

    from bench.scale.processes import Children

# Where the bridge's time goes, by the frames a sample passes through (a sample counts once
# per part). The httpx and httpcore parts are those of the profiles in docs/performance.md made
# before the switch to aiohttp; an event published inside ``emit`` counts under MQTT publish too.
PROFILE_PARTS = {
    "SSL context per device client (httpx)": ("create_ssl_context (httpx/_config.py)",),
    "device HTTP requests (DeviceHttp)": ("DeviceHttp.request (bridge/http.py)",),
    "failed 'import sniffio' in httpcore": (
        "current_async_library (httpcore/_synchronization.py)",
    ),
    "checkpoint writes": ("Checkpoint.save (bridge/checkpoint.py)",),
    "normalize + supervisor": ("DeviceWorker.emit (bridge/supervisor.py)",),
    "MQTT publish (link, aiomqtt, paho)": (
        "MqttLink._publish_one (bridge/mqtt/link.py)",
        "MqttLink._send (bridge/mqtt/link.py)",
        "Client.loop_read (paho/mqtt/client.py)",
        "Client.loop_write (paho/mqtt/client.py)",
    ),
    "poll scheduling (Poller)": ("Poller.run (bridge/drivers/polling.py)",),
    "/metrics exposition": ("Metrics.exposition (bridge/metrics.py)",),
    "waiting in epoll": ("EpollSelector.select (selectors.py)",),
}
IDLE_THREAD_FRAMES = {
    "_worker (concurrent/futures/thread.py)",  # asyncio's default executor
    "Condition.wait (threading.py)",  # anyio's worker threads (to_thread.run_sync)
}


@dataclass
class Profiler:
    """py-spy attached to the bridge for one phase at a time; without ``directory``, nothing."""

    children: Children
    directory: Path | None
    recording: tuple[subprocess.Popen[bytes], Path] | None = None
    summaries: dict[str, Any] = field(default_factory=dict)

    def start(self, pid: int, label: str) -> None:
        if self.directory is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = self.directory / f"{label}.folded"
        argv = [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
        self.recording = (self.children.start(f"py-spy-{label}", [*argv, "-o", str(out)]), out)

    def stop(self) -> None:
        if self.recording is None:
            return
        proc, out = self.recording
        self.recording = None
        self.children.stop(proc, timeout=30, sig=signal.SIGINT)  # py-spy writes on SIGINT
        if out.exists():
            self.summaries[out.stem] = top_functions(out)


def top_functions(folded: Path, count: int = 15) -> dict[str, Any]:
    """Share of the samples per function (%): in the function itself, and with its callees."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    parts = dict.fromkeys(PROFILE_PARTS, 0)
    samples = workers = 0
    for line in folded.read_text(encoding="utf-8").splitlines():
        stack, _, weight = line.rpartition(" ")
        if not weight.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if frames[-1] in IDLE_THREAD_FRAMES:
            continue  # a worker thread waiting for work, which py-spy counts as busy
        samples += int(weight)
        workers += int(weight) if frames[0] == "Thread._bootstrap (threading.py)" else 0
        own[frames[-1]] = own.get(frames[-1], 0) + int(weight)
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + int(weight)
        for part, marks in PROFILE_PARTS.items():
            if any(mark in frames for mark in marks):
                parts[part] += int(weight)

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda item: -item[1])[:count]
        return [(name, round(100 * hits / max(1, samples), 1)) for name, hits in best]

    return {
        "samples": samples,
        "worker_threads_pct": round(100 * workers / max(1, samples), 1),  # the rest: event loop
        "parts_pct": dict(ranked(parts)),
        "self_pct": ranked(own),
        "total_pct": ranked(total),
    }
