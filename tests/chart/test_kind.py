"""The kind path (`make kind-demo`) checked without Docker: config, scripts, demo outcomes, image.

What cannot run here (docker build, kind create cluster, pods) is listed in docs/install.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from computegate.devcluster import ControlPlane
from tests.chart.conftest import CHART, REPO, Tools, one, render

KIND_CONFIG = REPO / "kind-config.yaml"
DEMO = REPO / "hack" / "kind-demo"
SCRIPTS = [REPO / "hack" / "kind-fake-gpus.sh", REPO / "hack" / "kind-demo.sh"]

# kind's config API, v1alpha4 (sigs.k8s.io/kind pkg/apis/config/v1alpha4): the fields it reads.
_CLUSTER_FIELDS = {
    "kind",
    "apiVersion",
    "name",
    "nodes",
    "networking",
    "featureGates",
    "runtimeConfig",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
    "containerdConfigPatches",
    "containerdConfigPatchesJSON6902",
}
_NODE_FIELDS = {
    "role",
    "image",
    "labels",
    "extraMounts",
    "extraPortMappings",
    "gpus",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
}
# Labels a kubelet may set on its own Node (the NodeRestriction admission plugin).
_KUBELET_MAY_SET = {"topology.kubernetes.io/zone", "topology.kubernetes.io/region", "kubernetes.io/hostname"}


def _config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(KIND_CONFIG.read_text())
    return config


def _workers() -> list[dict[str, Any]]:
    return [node for node in _config()["nodes"] if node["role"] == "worker"]


def _kind_node_names() -> list[str]:
    """kind names worker containers (and so Nodes) <cluster>-worker, <cluster>-worker2, ..."""
    name = _config()["name"]
    return [f"{name}-worker{index + 1 if index else ''}" for index in range(len(_workers()))]


def test_kind_config_uses_only_fields_of_kinds_v1alpha4_cluster_api() -> None:
    config = _config()
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(config) <= _CLUSTER_FIELDS
    roles = [node["role"] for node in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    for node in config["nodes"]:
        assert set(node) <= _NODE_FIELDS
        labels = node.get("labels", {})
        assert all(isinstance(value, str) for value in labels.values()), "kind label values are strings"
        for key in labels:
            prefix = key.split("/", 1)[0] if "/" in key else ""
            if prefix.endswith("kubernetes.io") or prefix.endswith("k8s.io"):
                assert key in _KUBELET_MAY_SET, f"{key}: the kubelet may not set this label on itself"


def test_kind_workers_carry_gpu_labels_of_an_h100_and_a_t4_that_the_catalog_resolves() -> None:
    from computegate.catalog import builtin_catalog

    products = {node["labels"]["nvidia.com/gpu.product"]: node for node in _workers()}
    assert set(products) == {"NVIDIA-H100-80GB-HBM3", "Tesla-T4"}
    by_label = {
        value: name
        for name, spec in builtin_catalog().profiles.items()
        for value in spec.product_labels.get("nvidia.com/gpu.product", [])
    }
    assert by_label["NVIDIA-H100-80GB-HBM3"] == "nvidia-h100-sxm5-80gb"
    assert by_label["Tesla-T4"].startswith("nvidia-t4")
    for node in _workers():
        assert int(node["labels"]["nvidia.com/gpu.count"]) > 0
        assert node["labels"]["nvidia.com/gpu.present"] == "true"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_kind_scripts_parse_and_are_executable(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert script.stat().st_mode & 0o111
    assert "set -euo pipefail" in script.read_text()


def test_make_kind_demo_runs_the_kind_demo_script_and_every_file_it_uses_exists() -> None:
    from tests.chart import docs

    assert "make kind-demo" in docs.block("kind-demo")
    dry = subprocess.run(["make", "-n", "kind-demo"], capture_output=True, text=True, cwd=REPO)
    assert dry.returncode == 0, dry.stderr
    assert "bash hack/kind-demo.sh" in dry.stdout
    script = (REPO / "hack" / "kind-demo.sh").read_text()
    for used in re.findall(r"(?:hack|charts)/[A-Za-z0-9_./-]+|kind-config\.yaml|Dockerfile", script):
        target = REPO / used.rstrip("*").rstrip("/")
        if "*" in used:
            assert list(target.parent.glob(Path(used).name)), used
        else:
            assert target.exists(), f"hack/kind-demo.sh uses {used}, which does not exist"
    assert f"--name {_config()['name']}" in docs.block("kind-demo")


def test_kind_demo_builds_and_loads_the_image_the_chart_deploys_by_default(offline_tools: Tools) -> None:
    script = (REPO / "hack" / "kind-demo.sh").read_text()
    lines = [line for line in script.splitlines() if line.startswith(("VERSION=", "REPOSITORY=", "IMAGE="))]
    assert len(lines) == 3
    computed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join([*lines, 'printf %s "$IMAGE"'])],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    deployment = one(render(offline_tools), "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert computed.stdout == image
    assert deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_dockerfile_runs_computegate_webhook_as_the_chart_non_root_user(offline_tools: Tools) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert stages and all(stage.startswith("python:3.11-slim") for stage in stages)
    (user,) = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    uid, gid = (int(part) for part in user.split(":"))
    pod = one(render(offline_tools), "Deployment")["spec"]["template"]["spec"]
    assert (uid, gid) == (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"])
    assert uid != 0
    entrypoint = json.loads(re.findall(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE)[0])
    command = json.loads(re.findall(r"^CMD (.+)$", dockerfile, re.MULTILINE)[0])
    assert entrypoint + command == ["computegate", "webhook"]
    assert pod["containers"][0]["args"][0] == "webhook"
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which does not exist"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and {"!pyproject.toml", "!README.md", "!operator/"} <= set(ignored)


def test_the_package_the_image_installs_builds_with_its_data_and_entry_point(tmp_path: Path) -> None:
    """What the Dockerfile's `pip install .` builds (in an isolated build environment, as there):
    a wheel with the catalog data, the TLS code and the console script."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("computegate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "computegate/data/accelerators.yaml" in names
    assert "computegate/webhook/selftls.py" in names
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "computegate = computegate.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _demo_state(tmp_path: Path, *, enforcement: str | None = None) -> Path:
    """The kind cluster as the evaluator's state: the demo's objects and the kind GPU nodes."""
    state = tmp_path / f"state-{enforcement or 'default'}"
    state.mkdir()
    (state / "cluster.yaml").write_text((DEMO / "cluster.yaml").read_text())
    nodes = []
    for name, worker in zip(_kind_node_names(), _workers(), strict=True):
        count = worker["labels"]["nvidia.com/gpu.count"]
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": worker["labels"]},
                "status": {"capacity": {"nvidia.com/gpu": count}, "allocatable": {"nvidia.com/gpu": count}},
            }
        )
    (state / "nodes.yaml").write_text(yaml.safe_dump_all(nodes))
    if enforcement:
        policy = {
            "apiVersion": "computegate.io/v1alpha1",
            "kind": "CompliancePolicy",
            "metadata": {"name": "default"},
            "spec": {"enforcement": enforcement},
        }
        (state / "policy.yaml").write_text(yaml.safe_dump(policy))
    return state


def _evaluate(state: Path, *manifests: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "computegate", "evaluate", "--state", str(state), *map(str, manifests)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_kind_demo_workloads_get_the_verdicts_the_demo_announces(tmp_path: Path) -> None:
    manifests = sorted((DEMO / "workloads").glob("*.yaml"))
    assert len(manifests) == 4
    announced = []
    for manifest in manifests:
        first = manifest.read_text().splitlines()[0]
        match = re.match(r"# (Admitted|Refused) \((\w+)\)", first)
        assert match, f"{manifest.name}: first line must announce the outcome"
        announced.append((match.group(1) == "Admitted", match.group(2)))
    verdicts = _evaluate(_demo_state(tmp_path), *manifests)
    assert [(v["allowed"], v["code"]) for v in verdicts] == announced


def test_kind_demo_audit_step_admits_the_refused_pod_with_its_code(tmp_path: Path) -> None:
    (verdict,) = _evaluate(
        _demo_state(tmp_path, enforcement="Audit"), DEMO / "workloads" / "2-volga-h100-pod.yaml"
    )
    assert verdict["allowed"] is True and verdict["code"] == "NoLicense"
    assert "patch compliancepolicy default" in (REPO / "hack" / "kind-demo.sh").read_text()


@pytest.mark.e2e
def test_fake_gpu_script_gives_the_kind_workers_their_gpu_capacity_on_a_real_api_server(
    chart_plane: ControlPlane, admin: Any, tools: Tools
) -> None:
    core = client.CoreV1Api(admin)
    names = _kind_node_names()
    for name, worker in zip(names, _workers(), strict=True):
        core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name, labels=worker["labels"])))
    try:
        context = yaml.safe_load(chart_plane.kubeconfig_path.read_text())["current-context"]
        env = {**tools.env, "KUBECTL": str(tools.binaries.kubectl)}
        ran = subprocess.run(
            ["bash", str(REPO / "hack" / "kind-fake-gpus.sh"), context],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr
        for name, worker in zip(names, _workers(), strict=True):
            status = core.read_node_status(name).status
            expected = worker["labels"]["nvidia.com/gpu.count"]
            assert status.capacity["nvidia.com/gpu"] == expected
            assert status.allocatable["nvidia.com/gpu"] == expected
            assert f"{name} now offers nvidia.com/gpu: {expected}" in ran.stdout
    finally:
        for name in names:
            core.delete_node(name)


def test_chart_is_the_one_the_kind_demo_installs() -> None:
    script = (REPO / "hack" / "kind-demo.sh").read_text()
    assert "charts/computegate" in script and CHART.name == "computegate"
    assert "--wait" in script
