"""The container image built and run with buildah, on a base made from Debian packages.

No registry image can be pulled where the tests run, so ``PYTHON_IMAGE`` is a Debian root
filesystem made by mmdebstrap. Its tarball is cached in ``$XDG_CACHE_HOME/bridge-tests``
(``~/.cache/bridge-tests``) under a key of everything that went into it, so a change of the
package list makes a new one, and it is imported into buildah's storage once, as
``localhost/bridge-test-base:<key>``. Everything runs with ``--isolation chroot``: the build's
RUN steps and the bridge share the host's network, so the bridge reaches a broker and a
simulator on the host's loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"

SUITE = "bookworm"
VARIANT = "minbase"
# What the Containerfile needs of PYTHON_IMAGE: python (3.11 in bookworm) with venv and pip,
# `python` on PATH, and useradd/groupadd.
PACKAGES = ("passwd", "python-is-python3", "python3", "python3-pip", "python3-venv")
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
BASE_REPOSITORY = "localhost/bridge-test-base"

# Host files the build borrows for its downloads (the secret ids the Containerfile mounts):
# the CA bundle that trusts the proxy's CA, and the site-wide pip configuration.
LENT = {
    "ca-certificates.crt": Path("/etc/ssl/certs/ca-certificates.crt"),
    "pip.conf": Path("/etc/pip.conf"),
}

# Bounds on a hung step, in seconds, far above what was measured (2 busy cores: mmdebstrap
# 18-50 s, the build 7-19 s, importing the base 8 s).
MAKE_BASE_TAKES = 300.0  # a first mmdebstrap downloads about 60 MB of packages
BUILD_TAKES = 300.0  # pip downloads bridge's dependencies
QUICK = 60.0  # a buildah command that only touches local storage
# pytest's bound for a test that builds: on a fresh machine it makes the base too.
BUILDING_TAKES = MAKE_BASE_TAKES + BUILD_TAKES + 3 * QUICK


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/bridge-tests``, or ``~/.cache/bridge-tests``."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bridge-tests"


def base_key(
    suite: str = SUITE,
    variant: str = VARIANT,
    packages: tuple[str, ...] = PACKAGES,
    mirrors: tuple[str, ...] = MIRRORS,
) -> str:
    """16 hex digits naming a base made from exactly these inputs (package order is moot)."""
    recipe = {"suite": suite, "variant": variant, "packages": sorted(packages), "mirrors": mirrors}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def mmdebstrap_command(target: Path) -> list[str]:
    return [
        "mmdebstrap",
        f"--variant={VARIANT}",
        f"--include={','.join(PACKAGES)}",
        "--format=tar",
        SUITE,
        str(target),
        *MIRRORS,
    ]


def build_command(base: str, tag: str, lent: Mapping[str, Path]) -> list[str]:
    """``buildah bud`` of the Containerfile on ``base``, lending ``lent`` as build secrets."""
    secrets = [
        arg for name, path in sorted(lent.items()) for arg in ("--secret", f"id={name},src={path}")
    ]
    return [
        "buildah",
        "bud",
        "--isolation",
        "chroot",
        "--format",
        "docker",  # keeps the HEALTHCHECK
        "--pull=never",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        *secrets,
        "-f",
        str(CONTAINERFILE.relative_to(ROOT)),
        "-t",
        tag,
        ".",
    ]


def run_command(container: str, config: Path) -> list[str]:
    """``bridge run`` in ``container`` with ``config`` mounted where the image expects it."""
    return [
        "buildah",
        "run",
        "--isolation",
        "chroot",
        "-v",
        f"{config}:/etc/bridge/bridge.yaml:ro",
        container,
        "--",
        "bridge",
        "run",
        "--config",
        "/etc/bridge/bridge.yaml",
    ]


def require(tool: str) -> None:
    if shutil.which(tool) is None:
        msg = f"{tool} is not installed: run `make test`, which installs it"
        raise RuntimeError(msg)


def _run(command: list[str], timeout: float, log: Path | None = None) -> str:
    """Run ``command``; its output, or a RuntimeError with the end of it."""
    done = subprocess.run(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    if log is not None:
        log.write_text(output)
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        msg = f"{' '.join(command[:2])} failed with status {done.returncode}:\n{tail}"
        raise RuntimeError(msg)
    return done.stdout.strip()


def base_tarball(cache: Path) -> Path:
    """The mmdebstrap tarball of the current recipe, made if the cache has none."""
    tarball = cache / f"base-{base_key()}.tar"
    if tarball.exists():
        return tarball
    require("mmdebstrap")
    cache.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(f".{os.getpid()}.partial")
    try:
        _run(mmdebstrap_command(partial), MAKE_BASE_TAKES, cache / "mmdebstrap.log")
        partial.rename(tarball)  # atomic: a run that dies leaves no half tarball under the name
    finally:
        partial.unlink(missing_ok=True)
    return tarball


def image_exists(name: str) -> bool:
    found = subprocess.run(
        ["buildah", "inspect", "--type=image", name],
        capture_output=True,
        timeout=QUICK,
        check=False,
    )
    return found.returncode == 0


def base_image(cache: Path) -> str:
    """The base in buildah's storage, imported from the cached tarball if it is not there."""
    require("buildah")
    name = f"{BASE_REPOSITORY}:{base_key()}"
    if not image_exists(name):
        tarball = base_tarball(cache)
        container = _run(["buildah", "from", "scratch"], QUICK)
        try:
            _run(["buildah", "add", "--quiet", container, str(tarball), "/"], QUICK)
            _run(["buildah", "commit", "--quiet", "--rm", container, name], QUICK)
        except BaseException:
            subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
            raise
    return name


def lent_files() -> dict[str, Path]:
    """The host files of ``LENT`` that exist here."""
    return {name: path for name, path in LENT.items() if path.is_file()}


def build_image(base: str, tag: str, log: Path) -> None:
    _run(build_command(base, tag, lent_files()), BUILD_TAKES, log)


def remove_image(name: str) -> None:
    _run(["buildah", "rmi", name], QUICK)


@contextmanager
def working_container(image: str) -> Iterator[str]:
    """A buildah working container of ``image``, removed afterwards."""
    name = _run(["buildah", "from", "--pull=never", "--quiet", image], QUICK)
    try:
        yield name
    finally:
        _run(["buildah", "rm", name], QUICK)


@contextmanager
def mounted(container: str) -> Iterator[Path]:
    """The root filesystem of ``container``, as a host directory."""
    path = Path(_run(["buildah", "mount", container], QUICK))
    try:
        yield path
    finally:
        _run(["buildah", "umount", container], QUICK)


def image_config(image: str) -> dict[str, object]:
    """The Docker-format config of ``image``: User, Healthcheck, Entrypoint, Cmd, ..."""
    found = _run(["buildah", "inspect", "--type=image", image], QUICK)
    config: dict[str, object] = json.loads(found)["Docker"]["config"]
    return config


# -- processes: buildah run forwards no signal, so the test signals the process it started ----


@dataclass(frozen=True)
class Proc:
    pid: int
    parent: int


def descendants(root: int, table: list[Proc]) -> list[int]:
    """The pids below ``root`` in ``table``, parents before children."""
    found: list[int] = []
    frontier = [root]
    while frontier:
        children = [p.pid for p in table if p.parent in frontier]
        found.extend(children)
        frontier = children
    return found


def process_table(proc: Path = Path("/proc")) -> list[Proc]:
    table = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after it.
        fields = stat.rpartition(")")[2].split()
        table.append(Proc(int(entry.name), int(fields[1])))
    return table


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and filesystem uid of ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(field) for field in line.split()[1:])
    msg = f"/proc/{pid}/status has no Uid line"
    raise RuntimeError(msg)


def root_of(pid: int) -> Path:
    """The root directory ``pid`` sees (``/`` unless it runs chrooted)."""
    return Path(f"/proc/{pid}/root").readlink()
