"""A real Node-RED for tests and benchmarks, without pytest.

``install()`` puts a pinned Node-RED from the npm registry into a cache outside the repository
(``${XDG_CACHE_HOME:-~/.cache}/bridge-tests/node-red-<version>``) and reuses it on later runs.
``running(flow, env)`` starts it on a free loopback port with that flow file and a throw-away
user directory (removed afterwards), waits until its HTTP server answers, and stops it
(SIGTERM, then kill).

A flow records what it receives through a ``file`` node appending one JSON object per line;
``read_records`` reads those lines back (the docs' example flow does this when
``BRIDGE_FLOW_LOG`` is set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.process import stop
from tests.helpers import free_port

NODE_RED_VERSION = "4.1.8"  # the last 4.x: Node-RED 5 needs Node.js 22, Debian 12 has 20
NODE_MINIMUM = (18, 5)  # Node-RED 4's "engines"
INSTALL_TIMEOUT = 900.0  # seconds for `npm install` on a slow registry
START_DEADLINE = 60.0  # seconds until Node-RED's HTTP server answers
STOP_DEADLINE = 10.0  # seconds between SIGTERM and kill
POLL = 0.05  # seconds between readiness checks; a child process has no event to wait on

# Settings for a test run: the admin API (no editor) on loopback only, no telemetry or update
# checks, nothing installed from the network, the flow file never written back (read-only),
# credentials unencrypted (the example flow has none; no generated key is written), and the
# log on stdout.
SETTINGS = """\
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: %(port)d,
    readOnly: true,
    credentialSecret: false,
    disableEditor: true,
    httpNodeRoot: false,
    diagnostics: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    runtimeState: { enabled: false, ui: false },
    externalModules: {
        autoInstall: false,
        palette: { allowInstall: false, allowUpload: false },
        modules: { allowInstall: false },
    },
    functionExternalModules: false,
    logging: { console: { level: "info", metrics: false, audit: false } },
};
"""

# The user dir's package.json, which Node-RED reads at start and creates only when writable.
PROJECT = '{"name": "bridge-tests", "version": "0.0.0", "private": true}\n'


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/bridge-tests``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bridge-tests"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        msg = f"{name} is not installed: Node-RED needs Node.js 18.5+ with npm (apt-get install nodejs npm)"
        raise RuntimeError(msg)
    return found


def _check_node(node: str) -> None:
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
    if (major, minor) < NODE_MINIMUM:
        msg = f"node {version} is too old: Node-RED {NODE_RED_VERSION} needs Node.js 18.5+"
        raise RuntimeError(msg)


def installed(version: str = NODE_RED_VERSION, cache: Path | None = None) -> Path:
    """Where ``red.js`` of ``version`` is (or would be) in the cache."""
    root = cache or cache_root()
    return root / f"node-red-{version}" / "node_modules" / "node-red" / "red.js"


def install(version: str = NODE_RED_VERSION, cache: Path | None = None) -> Path:
    """Return the path of Node-RED's ``red.js``, running ``npm install`` on first use.

    The install goes to a staging directory renamed into place when complete, so an
    interrupted or concurrent install never leaves a half-filled cache behind.
    Raises ``RuntimeError`` when node/npm are missing or npm fails (with the tail of its log).
    """
    red = installed(version, cache)
    if red.exists():
        return red
    _check_node(_tool("node"))
    npm = _tool("npm")
    target = red.parents[2]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    log = staging / "npm-install.log"
    try:
        with log.open("wb") as out:
            done = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(staging),
                    "--omit=dev",
                    "--no-audit",
                    "--no-fund",
                    "--no-update-notifier",
                    f"node-red@{version}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:]
            msg = f"npm install node-red@{version} failed ({done.returncode}): {tail}"
            raise RuntimeError(msg)
        try:
            staging.rename(target)
        except OSError:
            if not red.exists():  # not a concurrent install that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return red


@dataclass
class NodeRed:
    """A running Node-RED: its admin URL (``http://127.0.0.1:<port>``), user dir and log."""

    url: str
    user_dir: Path
    log: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback http
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running(
    flow: Path,
    env: Mapping[str, str],
    *,
    version: str = NODE_RED_VERSION,
) -> Iterator[NodeRed]:
    """Run Node-RED ``version`` as ``node-red <flow>`` would (the file is used in place and
    never written: read-only mode), with the environment variables ``env`` added (for the
    flow's ``${NAME}`` fields and ``env.get``). Yields the running instance; its log is
    readable while it runs (``log_text()``).

    Ready means its admin API (``GET /settings``) answers. Node-RED starts its flows right
    after that and connects their brokers in the background, so a caller that needs a flow's
    MQTT subscriptions checks them itself (for example with a retained message the flow
    records, see ``read_records``). Raises ``RuntimeError`` with the log if Node-RED exits or
    does not answer within ``START_DEADLINE`` seconds.
    """
    red = install(version)
    node = _tool("node")
    with tempfile.TemporaryDirectory(prefix="bridge-node-red-") as user_dir:
        home = Path(user_dir)
        port = free_port()
        settings = home / "settings.js"
        settings.write_text(SETTINGS % {"port": port})
        (home / "package.json").write_text(PROJECT)  # read-only mode does not create it
        log = home / "node-red.log"
        child_env = {**os.environ, **env}
        with log.open("wb") as out:
            process = subprocess.Popen(
                # As `node-red <flow file>` runs it, with this user dir and settings.
                [node, str(red), "--userDir", str(home), "--settings", str(settings), str(flow)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env,
            )
        instance = NodeRed(f"http://127.0.0.1:{port}", home, log, process)
        try:
            _wait_ready(instance)
            yield instance
        finally:
            stop(process, STOP_DEADLINE)


def _wait_ready(instance: NodeRed) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            msg = f"Node-RED exited ({instance.process.returncode}): {instance.log_text()[-3000:]}"
            raise RuntimeError(msg)
        if _answers(f"{instance.url}/settings"):
            return
        time.sleep(POLL)
    msg = f"Node-RED did not answer within {START_DEADLINE:g} s: {instance.log_text()[-3000:]}"
    raise RuntimeError(msg)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a flow appended to ``path`` so far; a line still being written (no
    newline yet) is left for the next read. No file yet: ``[]``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
