"""Fixtures for the chart, manifests, kind files and self-managed TLS.

The API-server tests here run against their own control planes (etcd + kube-apiserver, the
pinned binaries), apart from tests/e2e's: they install and uninstall cluster-scoped objects
with fixed names (the two webhook configurations) that the webhook tests register too.
A missing binary fails these tests; it never skips them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.devcluster import Binaries, BinariesNotFound, ControlPlane, ControlPlaneError, find_binaries

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "computegate"
MANIFESTS = REPO / "manifests"
RELEASE = "computegate"
# `helm template` renders for this Kubernetes version (a source-built helm defaults to v1.20,
# below the chart's kubeVersion); the chart's minimum, as manifests/ is rendered.
KUBE_VERSION = ("--kube-version", "1.30.0")
NAMESPACE = "computegate-system"


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    try:
        found = find_binaries(require_helm=True)
    except BinariesNotFound as error:
        pytest.fail(f"chart tests need helm, kubectl and the control plane: {error}", pytrace=False)
    assert found.helm is not None
    return found


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's cache, config and data folders in a temporary place, not the user's home."""
    home = tmp_path_factory.mktemp("helm-home")
    return {
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


@dataclass
class Tools:
    """helm and kubectl, pinned, with a kubeconfig; ``sh`` runs a documented command verbatim."""

    binaries: Binaries
    env: dict[str, str]

    def run(
        self, argv: Sequence[str], *, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, env=self.env, timeout=300, cwd=REPO
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {completed.returncode}\n"
                f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
            )
        return completed

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([str(self.binaries.helm), *args], check=check)

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run([str(self.binaries.kubectl), *args], check=check, stdin=stdin)

    def sh(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run shell commands as a user would type them, with the pinned helm/kubectl first on PATH."""
        return self.run(["bash", "-euo", "pipefail", "-c", script], check=check)


def _tools(binaries: Binaries, helm_home: dict[str, str], kubeconfig: Path | None) -> Tools:
    assert binaries.helm is not None
    path = os.pathsep.join(
        dict.fromkeys([str(binaries.helm.parent), str(binaries.kubectl.parent), str(REPO / ".venv" / "bin")])
    )
    env = {**os.environ, **helm_home, "PATH": path + os.pathsep + os.environ.get("PATH", "")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    else:
        env["KUBECONFIG"] = os.devnull
    return Tools(binaries=binaries, env=env)


@pytest.fixture(scope="session")
def offline_tools(binaries: Binaries, helm_home: dict[str, str]) -> Tools:
    """helm without any cluster (lint, template)."""
    return _tools(binaries, helm_home, None)


def _start_plane(binaries: Binaries, directory: Path) -> ControlPlane:
    try:
        return ControlPlane.start(directory, binaries=binaries)
    except ControlPlaneError as error:
        pytest.fail(f"the control plane did not start: {error}", pytrace=False)


@pytest.fixture(scope="session")
def chart_plane(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane for the Helm release (install, dry-runs, RBAC, TLS)."""
    plane = _start_plane(binaries, tmp_path_factory.mktemp("chart-plane"))
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def tools(chart_plane: ControlPlane, binaries: Binaries, helm_home: dict[str, str]) -> Tools:
    return _tools(binaries, helm_home, chart_plane.kubeconfig_path)


@pytest.fixture(scope="session")
def admin(chart_plane: ControlPlane) -> Iterator[Any]:
    api = chart_plane.api_client()
    yield api
    api.close()


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str


@pytest.fixture(scope="session")
def release(tools: Tools) -> Release:
    """The chart installed with default values, exactly as docs/install.md says (hooks included:
    the CompliancePolicy is a post-install hook; nothing runs a pod here)."""
    from tests.chart import docs

    tools.sh(docs.block("helm-install"))
    return Release(RELEASE, NAMESPACE)


def render(
    tools: Tools, *args: str, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """``helm template`` -> the non-empty documents."""
    out = tools.helm("template", release, str(CHART), "--namespace", namespace, *KUBE_VERSION, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(documents: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc.get("kind") == kind]


def one(documents: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for doc in by_kind(documents, kind) if name is None or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
