"""The container image: linted, built with buildah on a Debian base, run against a real broker.

The image is built once per run of this module from ``deploy/container/Containerfile``
(see tests/container.py for the base and the cache), then ``bridge run`` runs in it with the
image's own user while a generic simulator and mosquitto serve on the host's loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import yaml
from anyio.abc import Process

from bridge.simulators.generic import GenericSimulator
from tests.container import (
    BUILDING_TAKES,
    CONTAINERFILE,
    PACKAGES,
    Proc,
    base_image,
    base_key,
    build_command,
    build_image,
    cache_dir,
    command_line,
    descendants,
    image_config,
    lent_files,
    mounted,
    process_table,
    remove_image,
    root_of,
    run_command,
    uids,
    working_container,
)
from tests.helpers import Consumer, Mosquitto, Seen, wait_until
from tests.integration.harness import bridge_config, serving

DEVICE = "front-door"
UID = 10001  # the Containerfile's USER
STATE_DIR = Path("/var/lib/bridge")  # the image's volume
# The process of `bridge run` in the image (buildah's exec helper above it has the same tail).
BRIDGE_RUN = ["/opt/bridge/venv/bin/python", "/opt/bridge/venv/bin/bridge", "run"]
# Generous deadlines: the interpreter in the image starts cold, on a machine running other tests.
STARTS = 60.0
STOPS = 30.0  # the image's contract: allow 15 s


@dataclass(frozen=True)
class Built:
    base: str
    image: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    base = base_image(cache_dir(os.environ))
    image = f"localhost/bridge:test-{os.getpid()}"
    build_image(base, image, tmp_path_factory.mktemp("build") / "build.log")
    try:
        yield Built(base, image)
    finally:
        remove_image(image)


# -- the Containerfile and the pure parts of the helpers ---------------------------------------


def test_containerfile_passes_hadolint() -> None:
    hadolint = Path(sysconfig.get_path("scripts")) / "hadolint"
    assert hadolint.exists(), "hadolint is not installed: run `make test` (dev extras)"
    result = subprocess.run(
        [str(hadolint), str(CONTAINERFILE)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("changed", "same"),
    [
        ({"packages": tuple(reversed(PACKAGES))}, True),
        ({"packages": PACKAGES[:-1]}, False),
        ({"packages": ("curl", *PACKAGES)}, False),
        ({"suite": "trixie"}, False),
        ({"variant": "apt"}, False),
        ({"mirrors": ("deb http://mirror.example/debian bookworm main",)}, False),
    ],
)
def test_the_base_cache_key_follows_the_recipe(changed: dict[str, object], same: bool) -> None:
    assert (base_key(**changed) == base_key()) is same  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"XDG_CACHE_HOME": "/srv/cache"}, Path("/srv/cache/bridge-tests")),
        ({"XDG_CACHE_HOME": ""}, Path.home() / ".cache" / "bridge-tests"),
        ({}, Path.home() / ".cache" / "bridge-tests"),
    ],
)
def test_the_cache_lives_outside_the_repository(environ: dict[str, str], expected: Path) -> None:
    assert cache_dir(environ) == expected


@pytest.mark.parametrize(
    ("root", "table", "expected"),
    [
        (1, [], []),
        (10, [Proc(11, 10), Proc(12, 11), Proc(13, 12)], [11, 12, 13]),
        (10, [Proc(12, 11), Proc(11, 10), Proc(20, 1), Proc(14, 10)], [11, 14, 12]),
        (10, [Proc(11, 1), Proc(12, 11)], []),
    ],
)
def test_descendants_are_found_below_the_root_only(
    root: int, table: list[Proc], expected: list[int]
) -> None:
    assert descendants(root, table) == expected


def test_the_build_lends_the_secrets_by_id() -> None:
    command = build_command("base:1", "bridge:1", {"pip.conf": Path("/etc/pip.conf")})
    assert command[command.index("--secret") + 1] == "id=pip.conf,src=/etc/pip.conf"
    assert command[command.index("--build-arg") + 1] == "PYTHON_IMAGE=base:1"
    assert command[-3:] == ["-t", "bridge:1", "."]


# -- the built image ---------------------------------------------------------------------------


def certificates(bundle: bytes) -> set[bytes]:
    """The PEM blocks of a CA bundle."""
    end = b"-----END CERTIFICATE-----"
    return {
        block[block.index(b"-----BEGIN") :] + end
        for block in bundle.split(end)
        if b"-----BEGIN CERTIFICATE-----" in block
    }


def regular_files(root: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path


@pytest.mark.timeout(BUILDING_TAKES)
def test_the_image_holds_nothing_the_build_borrowed(built: Built) -> None:
    lent = {name: path.read_bytes() for name, path in lent_files().items()}
    assert lent, "nothing to lend: this machine has neither a CA bundle nor a pip.conf"
    with working_container(built.base) as base, mounted(base) as root:
        in_base = {pem for path in regular_files(root) for pem in certificates(path.read_bytes())}
    # The certificates no file of the base holds: a proxy's CA, when there is one.
    host_only = certificates(lent.get("ca-certificates.crt", b"")) - in_base
    with working_container(built.image) as container, mounted(container) as root:
        files = list(regular_files(root))
        assert len(files) > 1000  # the whole image, not an empty mount
        pip_configs = [f for f in files if f.name in {"pip.conf", "pip.ini"}]
        assert pip_configs == []
        leaked = []
        for path in files:
            content = path.read_bytes()
            copied = any(content == borrowed for borrowed in lent.values())
            if copied or any(pem in content for pem in host_only):
                leaked.append(path)
        assert leaked == []


async def bridge_process(runner: Process) -> int:
    """The pid of ``bridge run`` below the ``buildah run`` process ``runner``."""
    found: list[int] = []

    def look() -> bool:
        found[:] = [
            pid
            for pid in descendants(runner.pid, process_table())
            if command_line(pid)[:3] == BRIDGE_RUN
        ]
        return bool(found) or runner.returncode is not None

    await wait_until(look, STARTS)
    assert runner.returncode is None, f"buildah run exited with status {runner.returncode}"
    (pid,) = found
    return pid


def owners(directory: Path) -> set[int]:
    """The uids owning the files below ``directory``."""
    return {path.stat().st_uid for path in directory.rglob("*") if path.is_file()}


def state(payload: bytes) -> Callable[[list[Seen]], bool]:
    def seen(messages: list[Seen]) -> bool:
        return any(m.topic == "bridge/bridge/state" and m.payload == payload for m in messages)

    return seen


@pytest.mark.anyio
@pytest.mark.broker
@pytest.mark.timeout(BUILDING_TAKES)
async def test_bridge_runs_in_the_image_as_its_user(
    built: Built, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = image_config(built.image)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["bridge"]
    assert config.get("Healthcheck"), "--format docker keeps the HEALTHCHECK"

    sims = {DEVICE: GenericSimulator()}
    config_path = tmp_path / "bridge.yaml"
    log = tmp_path / "bridge.log"
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        settings = bridge_config(mosquitto.url, sims, STATE_DIR)  # the simulator has its port
        config_path.write_text(yaml.safe_dump(settings))
        config_path.chmod(0o644)  # read by uid 10001 in the container
        with working_container(built.image) as container:
            with log.open("wb") as out:
                runner = await anyio.open_process(
                    run_command(container, config_path), stdout=out, stderr=out
                )
            try:
                pid = await bridge_process(runner)
                assert uids(pid) == (UID, UID, UID, UID)  # the image's USER, not root
                assert root_of(pid) != Path("/")  # chrooted into the image's filesystem

                await consumer.wait_for(state(b"online"), STARTS)
                sims[DEVICE].press()
                pressed = await consumer.first(f"bridge/{DEVICE}/event/doorbell.pressed")
                assert pressed.json()["data"]["button"] == 1
                # Its checkpoint lands in the image's volume, which its user may write.
                state_dir = Path(f"/proc/{pid}/root") / STATE_DIR.relative_to("/")
                await wait_until(lambda: owners(state_dir) == {UID})

                # What a container runtime sends to stop it; buildah run forwards no signal.
                os.kill(pid, signal.SIGTERM)
                with anyio.fail_after(STOPS):
                    assert await runner.wait() == 0
                await consumer.wait_for(state(b"offline"))
            except BaseException as error:
                error.add_note(f"bridge log:\n{log.read_text(errors='replace')}")
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    if runner.returncode is None:
                        runner.terminate()  # buildah kills what it runs and unmounts
                        with anyio.move_on_after(STOPS):
                            await runner.wait()
                    await runner.aclose()
