"""systemd: READY / WATCHDOG / STOPPING reach a NOTIFY_SOCKET, as Type=notify expects, and the
installation docs/deployment.md describes works for the unit's unprivileged user."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import yaml

from bridge.settings import load_settings
from bridge.simulators.generic import GenericSimulator
from bridge.systemd import Notifier
from tests.doctext import file_commands
from tests.helpers import Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving


@pytest.mark.anyio
@pytest.mark.broker
async def test_notifications(mosquitto: Mosquitto, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    received: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)

        def drain() -> list[str]:
            while True:
                try:
                    received.extend(sock.recv(4096).decode().split("\n"))
                except BlockingIOError:
                    return received

        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
        sims = {"front-door": GenericSimulator()}
        async with serving(sims):
            config = bridge_config(mosquitto.url, sims, tmp_path)
            async with running(config, notifier=notifier):
                await wait_until(lambda: "READY=1" in drain())
                await wait_until(lambda: drain().count("WATCHDOG=1") >= 2)
            await wait_until(lambda: "STOPPING=1" in drain())
    assert any(line.startswith("STATUS=serving 1 devices") for line in received)


@pytest.mark.anyio
async def test_watchdog_pings_stop_while_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000"})
        healthy, checks = True, 0

        def check() -> bool:
            nonlocal checks
            checks += 1
            return healthy

        def pings() -> int:
            count = 0
            while True:
                try:
                    count += sock.recv(64) == b"WATCHDOG=1"
                except BlockingIOError:
                    return count

        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.watchdog, check)
            await wait_until(lambda: checks >= 3)
            assert pings() >= 3
            healthy = False  # the supervisor is stuck
            seen = checks
            await wait_until(lambda: checks >= seen + 3)
            assert pings() <= 1  # at most the one in flight when it got stuck
            tg.cancel_scope.cancel()


def test_outside_systemd_it_is_silent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.notify("READY=1")  # no socket, no error
    assert (
        Notifier(
            {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}
        ).watchdog_interval
        is None
    )


# -- the documented installation, as the unit's user sees it -----------------------------------

ROOT = Path(__file__).parents[2]
DEPLOYMENT = "docs/deployment.md"
UNIT = ROOT / "deploy" / "systemd" / "bridge.service"
EXAMPLE = ROOT / "config" / "systemd.yaml"
# A uid that owns nothing, like the DynamicUser systemd allocates for the unit.
SERVICE_UID = 65534
# What docs/deployment.md said before the service could read its config.
OLD_INSTALL = "install -m 0640 config/systemd.yaml /etc/bridge/bridge.yaml"


def install_steps() -> list[str]:
    """The systemd section's commands from the first ``install`` to the ``check-config``."""
    texts = [c.text for c in file_commands(ROOT, DEPLOYMENT) if c.section == "## systemd"]
    first = next(i for i, text in enumerate(texts) if text.startswith("install "))
    last = next(i for i, text in enumerate(texts) if " check-config " in text)
    return texts[first : last + 1]


def relocate(text: str, root: Path) -> str:
    """A documented command or unit value with ``/etc/bridge`` and ``/opt/bridge`` under ``root``."""
    return re.sub(r"(?<![\w/.])/(?:etc|opt)/bridge(?=/|\s|$|\")", lambda m: f"{root}{m[0]}", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("install -d -m 0755 /etc/bridge", "install -d -m 0755 /r/etc/bridge"),
        ('x > "/etc/bridge/credentials/$name"', 'x > "/r/etc/bridge/credentials/$name"'),
        ("/opt/bridge/venv/bin/bridge run", "/r/opt/bridge/venv/bin/bridge run"),
        ("/usr/etc/bridge /etc/bridges ./etc/bridge", "/usr/etc/bridge /etc/bridges ./etc/bridge"),
    ],
)
def test_relocate(text: str, expected: str) -> None:
    assert relocate(text, Path("/r")) == expected


def unit_values(key: str) -> list[str]:
    """Every value of ``key=`` in the unit, in order."""
    lines = UNIT.read_text(encoding="utf-8").splitlines()
    return [line.partition("=")[2] for line in lines if line.startswith(f"{key}=")]


def prompted_names(steps: list[str]) -> list[str]:
    """The secrets the documented loop asks for, in the order it asks."""
    (loop,) = (step for step in steps if step.startswith("for name in "))
    return loop.removeprefix("for name in ").partition(";")[0].split()


def as_service(command: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` as the service's uid and group, no supplementary groups, only ``environ``."""
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={SERVICE_UID}",
            f"--regid={SERVICE_UID}",
            "--clear-groups",
            "env",
            "-i",
            *(f"{name}={value}" for name, value in environ.items()),
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )


def service_python() -> str:
    """A Python of this version the service's uid can run (this one may live in root's home,
    as pyenv's does)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version), f"/usr/bin/{version}"):
        if candidate and as_service([candidate, "-c", "pass"], {}).returncode == 0:
            return candidate
    pytest.fail(
        f"no {version} that uid {SERVICE_UID} can run: install one (apt-get install python3)"
    )


def make_service_venv(root: Path) -> None:
    """``/opt/bridge/venv`` as the first documented step makes it, with this checkout's packages
    linked in instead of downloaded, and the ``bridge`` script pip would write."""
    venv = root / "opt" / "bridge" / "venv"
    subprocess.run(
        [service_python(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    (site_packages,) = (venv / "lib").glob("python3*/site-packages")
    ours = sysconfig.get_paths()["purelib"]
    (site_packages / "checkout.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    script = venv / "bin" / "bridge"
    script.write_text(
        f"#!{venv}/bin/python\nimport sys\nfrom bridge.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)


def hand_over(credentials: dict[str, Path], directory: Path) -> None:
    """What systemd does for ``LoadCredential=`` at start: it reads each file as root and gives
    the service a private copy only the service's user can read."""
    directory.mkdir(parents=True)
    for name, source in credentials.items():
        target = directory / name
        shutil.copyfile(source, target)
        os.chown(target, SERVICE_UID, SERVICE_UID)
        target.chmod(0o400)
    os.chown(directory, SERVICE_UID, SERVICE_UID)
    directory.chmod(0o500)


class Installation:
    """The documented steps run into a root of their own, as root, with secrets typed in."""

    def __init__(self, root: Path, steps: list[str]) -> None:
        self.root = root
        self.steps = steps
        self.secrets = {name: f"{name}-{secrets.token_hex(12)}" for name in prompted_names(steps)}
        self.config = Path(relocate("/etc/bridge/bridge.yaml", root))
        self.credentials = Path(relocate("/etc/bridge/credentials", root))
        self.run_dir = root / "run" / "credentials" / UNIT.name

    def install(self) -> subprocess.CompletedProcess[str]:
        make_service_venv(self.root)
        script = "set -eu\n" + "".join(f"{relocate(step, self.root)}\n" for step in self.steps)
        return subprocess.run(
            ["bash", "-c", script],
            input="".join(f"{value}\n" for value in self.secrets.values()),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )

    def start_check(self, credentials_directory: Path) -> subprocess.CompletedProcess[str]:
        """``check-config`` on what the unit's ExecStart runs, as the unit's user."""
        (exec_start,) = unit_values("ExecStart")
        program, command, *options = relocate(exec_start, self.root).split()
        assert command == "run"
        return as_service(
            [program, "check-config", *options],
            {"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": str(credentials_directory)},
        )


@pytest.fixture
def root() -> Iterator[Path]:
    """A root the service's uid can enter (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0:
        pytest.skip("switching to the service's unprivileged uid needs root")
    path = Path(tempfile.mkdtemp(prefix="bridge-install-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_the_documented_installation_works_for_the_units_user(root: Path) -> None:
    installation = Installation(root, install_steps())
    installed = installation.install()
    devices = len(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["devices"])
    assert installed.returncode == 0, installed.stderr
    # The documented check, as root, reading the credentials where they are kept.
    assert installed.stdout.splitlines()[-1] == f"{installation.config}: ok, {devices} device(s)"

    config = installation.config.stat()
    assert (config.st_uid, stat.S_IMODE(config.st_mode)) == (0, 0o644)
    assert stat.S_IMODE(installation.credentials.stat().st_mode) == 0o700
    for name, value in installation.secrets.items():
        path = installation.credentials / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text(encoding="utf-8") == value
        assert value not in installation.config.read_text(encoding="utf-8")

    # The unit hands over exactly the secrets the docs store, and the config reads them all.
    credentials = {}
    for line in unit_values("LoadCredential"):
        name, _, source = line.partition(":")
        credentials[name] = Path(relocate(source, root))
    assert sorted(credentials) == sorted(installation.secrets)
    assert credentials == {name: installation.credentials / name for name in credentials}
    referenced = re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/([\w-]+)", EXAMPLE.read_text("utf-8"))
    assert sorted(referenced) == sorted(credentials)

    hand_over(credentials, installation.run_dir)
    started = installation.start_check(installation.run_dir)
    assert started.returncode == 0, started.stderr
    assert started.stdout == f"{installation.config}: ok, {devices} device(s)\n"

    # Each key reads the credential named after it.
    settings = load_settings(
        installation.config, {"CREDENTIALS_DIRECTORY": str(installation.run_dir)}
    )
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == installation.secrets["mqtt-password"]
    for device in settings.devices:
        assert device.password is not None
        assert device.password.get_secret_value() == installation.secrets[f"{device.id}-password"]
        token = getattr(device, "push_token", None)
        if token is not None:
            expected = installation.secrets[f"{device.id}-push-token"]
            assert token.get_secret_value() == expected


def test_a_config_installed_0640_for_root_is_unreadable_to_the_units_user(root: Path) -> None:
    """What docs/deployment.md said before: the same check fails, so the test above can fail."""
    steps = install_steps()
    (index,) = (i for i, step in enumerate(steps) if "config/systemd.yaml" in step)
    steps[index] = OLD_INSTALL
    installation = Installation(root, steps)
    assert installation.install().returncode == 0  # root itself can read it
    credentials = {name: installation.credentials / name for name in installation.secrets}
    hand_over(credentials, installation.run_dir)
    started = installation.start_check(installation.run_dir)
    assert started.returncode == 2
    assert started.stderr == f"{installation.config}: cannot read: Permission denied\n"


def test_secrets_not_handed_over_by_systemd_are_unreadable_to_the_units_user(root: Path) -> None:
    installation = Installation(root, install_steps())
    assert installation.install().returncode == 0
    started = installation.start_check(installation.credentials)
    assert started.returncode == 2
    problems = started.stderr.splitlines()
    assert problems[0] == (
        f"mqtt.password_file: cannot read '{installation.credentials}/mqtt-password': "
        "Permission denied"
    )
    # One line for the broker and one per device (its first unreadable file).
    devices = len(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["devices"])
    assert len(problems) == 1 + devices
    assert all(problem.endswith("': Permission denied") for problem in problems)
    assert not any(value in started.stderr for value in installation.secrets.values())
