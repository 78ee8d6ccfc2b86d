"""The deployment files: Kubernetes manifests, the container image and the systemd unit."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from bridge.app import SHUTDOWN_FLUSH
from bridge.settings import load_settings
from bridge.shard import shard_of

ROOT = Path(__file__).parents[2]
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
SYSTEMD_UNIT = ROOT / "deploy" / "systemd" / "bridge.service"

# The schemas the manifests are checked against: the version we target, and 1.28, the first
# with the pod-index label the shard index comes from.
KUBERNETES_VERSIONS = ("1.28.0", "1.30.0")
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
SECRETS = {"MQTT_PASSWORD", "FRONT_DOOR_PASSWORD"}


# -- Kubernetes ---------------------------------------------------------------------------------


def manifest_paths() -> list[Path]:
    return sorted(p for p in KUBERNETES_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert all(isinstance(d, dict) for d in docs), f"{path.name}: every document is a mapping"
    return docs


@functools.cache
def resources() -> tuple[dict[str, Any], ...]:
    return tuple(doc for path in manifest_paths() for doc in documents(path))


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        r
        for r in resources()
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def bridge_container(statefulset: dict[str, Any]) -> dict[str, Any]:
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == "bridge")
    return dict(container)


def env_var(container: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (v for v in container["env"] if v["name"] == name)
    return dict(found)


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by the name of a container port."""
    if isinstance(port, int):
        return port
    (found,) = (p["containerPort"] for p in container["ports"] if p["name"] == port)
    return int(found)


def schema_problem(doc: dict[str, Any], version: str) -> str | None:
    """Why ``doc`` is not a valid resource for Kubernetes ``version`` (strict: no unknown keys)."""
    try:
        checked = kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        return f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}"
    # The library falls back to the newest schema not newer than asked: insist on the one asked.
    assert checked == version.rpartition(".")[0]
    return None


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_paths(), ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schema(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{path.name} holds no resource"
    problems = [p for doc in docs if (p := schema_problem(doc, version)) is not None]
    assert problems == []


def test_schema_check_rejects_a_misspelt_field() -> None:
    statefulset = copy.deepcopy(resource("StatefulSet"))
    for container in statefulset["spec"]["template"]["spec"]["containers"]:
        container["securityContext"] = {"readOnlyRootFileSystem": True}
    problem = schema_problem(statefulset, KUBERNETES_VERSIONS[-1])
    assert problem is not None
    assert "readOnlyRootFileSystem" in problem


def test_kustomization_lists_every_manifest_and_no_namespace() -> None:
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text("utf-8"))
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_paths()]
    assert "namespace" not in kustomization
    assert [r["metadata"].get("namespace") for r in resources()] == [None] * len(resources())
    images = {i["name"] for i in kustomization.get("images", [])}
    image = bridge_container(resource("StatefulSet"))["image"]
    assert not images or image.rpartition(":")[0] in images


def pod_environment(ordinal: int) -> dict[str, str]:
    """The environment the kubelet gives the bridge container of replica ``ordinal``."""
    statefulset, secret = resource("StatefulSet"), resource("Secret")
    container = bridge_container(statefulset)
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["secretRef"]["name"] == secret["metadata"]["name"]
        environ.update(secret["stringData"])
    fields = {
        "metadata.name": f"{statefulset['metadata']['name']}-{ordinal}",
        "metadata.namespace": "default",
        POD_INDEX: str(ordinal),
    }
    for var in container["env"]:  # env wins over envFrom, as in Kubernetes
        if "value" in var:
            environ[var["name"]] = var["value"]
        else:
            environ[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return environ


def test_config_loads_and_every_device_has_exactly_one_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statefulset = resource("StatefulSet")
    container = bridge_container(statefulset)
    config = tmp_path / "bridge.yaml"
    config.write_text(resource("ConfigMap")["data"]["bridge.yaml"], encoding="utf-8")
    replicas = statefulset["spec"]["replicas"]
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)

    owners: dict[str, list[int]] = {}
    device_ids: set[str] = set()
    for ordinal in range(replicas):
        environ = pod_environment(ordinal)
        assert set(environ) >= SECRETS
        with monkeypatch.context() as patch:
            for name, value in environ.items():
                if name.startswith("BRIDGE_"):
                    patch.setenv(name, value)
            settings = load_settings(config, environ)
        assert (settings.shard.index, settings.shard.count) == (ordinal, replicas)
        assert settings.mqtt.client_id == f"bridge-{ordinal}"
        assert settings.mqtt.password is not None
        assert settings.mqtt.password.get_secret_value() == environ["MQTT_PASSWORD"]
        assert settings.http.port == container_port(container, "metrics")
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert str(settings.state_dir) == mounts["state"]
        device_ids = {d.id for d in settings.devices}
        for device in settings.devices:  # the selection Bridge makes (src/bridge/app.py)
            if device.enabled and shard_of(device.id, settings.shard.count) == ordinal:
                owners.setdefault(device.id, []).append(ordinal)

    assert len(device_ids) >= 9
    assert {d: o for d, o in owners.items() if len(o) != 1} == {}, "owned by several replicas"
    assert device_ids - set(owners) == set(), "owned by no replica"
    assert {o for (o,) in owners.values()} == set(range(replicas)), "a replica with no device"


def test_statefulset_takes_the_shard_from_the_pod() -> None:
    statefulset = resource("StatefulSet")
    spec = statefulset["spec"]
    container = bridge_container(statefulset)
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert env_var(container, "BRIDGE_SHARD__INDEX")["valueFrom"]["fieldRef"] == {
        "fieldPath": POD_INDEX
    }
    assert env_var(container, "BRIDGE_SHARD__COUNT")["value"] == str(spec["replicas"])
    assert env_var(container, "BRIDGE_MQTT__CLIENT_ID")["valueFrom"]["fieldRef"] == {
        "fieldPath": "metadata.name"
    }
    assert {s["secretRef"]["name"] for s in container["envFrom"]} == {
        resource("Secret")["metadata"]["name"]
    }
    assert set(resource("Secret")["stringData"]) == SECRETS
    # Service links would add <SERVICE>_PORT variables, and BRIDGE_* ones are configuration.
    assert spec["template"]["spec"]["enableServiceLinks"] is False


def test_statefulset_runs_the_config_from_the_configmap() -> None:
    statefulset = resource("StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    container = bridge_container(statefulset)
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = (m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent))
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["configMap"]["name"] == resource("ConfigMap")["metadata"]["name"]
    assert config_path.name in resource("ConfigMap")["data"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    (state,) = (m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert state["mountPath"] == "/var/lib/bridge"
    assert state.get("readOnly", False) is False
    assert claim["spec"]["resources"]["requests"]["storage"] == "64Mi"


def test_statefulset_probes_health_and_readiness_on_the_metrics_port() -> None:
    statefulset = resource("StatefulSet")
    container = bridge_container(statefulset)
    probes = {
        kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")
    }
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startup": "/healthz",
        "liveness": "/healthz",
        "readiness": "/readyz",
    }
    assert {container_port(container, p["port"]) for p in probes.values()} == {9880}
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9880"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_pod_is_locked_down_and_has_time_to_flush() -> None:
    statefulset = resource("StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    container = bridge_container(statefulset)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] == 15
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_FLUSH + 5
    resources_ = container["resources"]
    assert resources_["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert resources_["limits"]["memory"] == "256Mi"


def test_services_and_budget_select_the_pods() -> None:
    statefulset = resource("StatefulSet")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    headless = resource("Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    services = [r for r in resources() if r["kind"] == "Service"]
    assert len(services) == 2
    container = bridge_container(statefulset)
    for service in services:
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {container_port(container, p["targetPort"]) for p in service["spec"]["ports"]}
        assert ports == {9880}
    budget = resource("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


# -- systemd ------------------------------------------------------------------------------------


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or (
        "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
    )
    if found is None:
        pytest.fail(
            "systemd-analyze is not installed: install systemd (apt-get install systemd) "
            "to verify deploy/systemd/bridge.service"
        )
    return found


def verify_unit(unit: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about ``unit`` itself (warnings exit 0 too)."""
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    output = (result.stdout + result.stderr).splitlines()
    problems = [line for line in output if unit.name in line]
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}: {output}")
    return problems


def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's bridge instead of /opt/bridge/venv."""
    bridge = Path(sys.executable).with_name("bridge")
    assert bridge.exists(), f"{bridge}: install the package into the venv running the tests"
    text = SYSTEMD_UNIT.read_text(encoding="utf-8")
    original = "ExecStart=/opt/bridge/venv/bin/bridge "
    assert text.count(original) == 1
    unit = tmp_path / SYSTEMD_UNIT.name
    unit.write_text(text.replace(original, f"ExecStart={bridge} "), encoding="utf-8")
    return unit


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = unit_copy(tmp_path)
    assert verify_unit(unit) == []


def test_systemd_verification_catches_mistakes(tmp_path: Path) -> None:
    unit = unit_copy(tmp_path)
    text = unit.read_text(encoding="utf-8")
    unit.write_text(
        text.replace("RestartSec=5s", "RestartSec=soon\nRestartSecs=5s"), encoding="utf-8"
    )
    problems = verify_unit(unit)
    assert any("RestartSecs" in p for p in problems)
    assert any("soon" in p for p in problems)


# -- container image ----------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            found.append((keyword.upper(), arguments.strip()))
            pending = ""
    assert not pending, "the last instruction ends with a continuation"
    return found


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_containerfile_builds_in_stages_from_the_repository() -> None:
    steps = instructions(CONTAINERFILE)
    stages = [arguments for keyword, arguments in steps if keyword == "FROM"]
    assert len(stages) == 2
    assert stages[0].endswith(" AS builder")
    assert any(k == "ARG" and "python:3.11-slim" in a for k, a in steps)
    copied = [a.split()[:-1] for k, a in steps if k == "COPY" and not a.startswith("--from")]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    runtime = final_stage(CONTAINERFILE)
    assert ("COPY", "--from=builder /opt/bridge/venv /opt/bridge/venv") in runtime


def test_container_runs_bridge_as_non_root_with_a_health_check() -> None:
    runtime = dict(final_stage(CONTAINERFILE))  # the last of each instruction counts
    user = runtime["USER"].partition(":")[0]
    assert user.isdigit(), "a numeric USER lets Kubernetes check runAsNonRoot"
    assert int(user) != 0
    pod = resource("StatefulSet")["spec"]["template"]["spec"]
    assert int(user) == pod["securityContext"]["runAsUser"]
    healthcheck = runtime["HEALTHCHECK"]
    assert "urllib" in healthcheck
    assert "http://127.0.0.1:9880/healthz" in healthcheck
    assert "curl" not in healthcheck
    assert json.loads(runtime["ENTRYPOINT"]) == ["bridge"]
    command = json.loads(runtime["CMD"])
    assert command == ["run", "--config", "/etc/bridge/bridge.yaml"]
    assert command == bridge_container(resource("StatefulSet"))["args"]
    assert runtime["EXPOSE"] == "9880"
    assert "/var/lib/bridge" in json.loads(runtime["VOLUME"])
