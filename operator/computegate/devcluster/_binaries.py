"""Where the control-plane binaries come from: the user's own first, then ours from the cache."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLUSTER_BINARIES",
    "ETCD_VERSION",
    "HELM_VERSION",
    "KUBERNETES_VERSION",
    "KWOK_VERSION",
    "Binaries",
    "BinariesNotFound",
    "default_assets_dir",
    "find_binaries",
]

# The pins of hack/install-k8s-binaries.sh (a unit test keeps the two in step).
KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"
KWOK_VERSION = "v0.8.0"

INSTALL_HINT = "run `make binaries` (it runs hack/install-k8s-binaries.sh and needs Go)"

# name -> environment variable holding an explicit path to that one binary
_EXPLICIT_ENV = {
    "etcd": "COMPUTEGATE_ETCD",
    "kube-apiserver": "COMPUTEGATE_KUBE_APISERVER",
    "kubectl": "COMPUTEGATE_KUBECTL",
    "helm": "COMPUTEGATE_HELM",
    "kube-controller-manager": "COMPUTEGATE_KUBE_CONTROLLER_MANAGER",
    "kube-scheduler": "COMPUTEGATE_KUBE_SCHEDULER",
    "kwok": "COMPUTEGATE_KWOK",
}
# What the full dev cluster runs beside the API server (``dev up`` without ``--bare``).
CLUSTER_BINARIES = ("kube-controller-manager", "kube-scheduler", "kwok")


class BinariesNotFound(RuntimeError):
    """A required binary is in none of the places we look; the message says where we looked."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the executables the dev cluster runs.

    helm is optional; kube-controller-manager, kube-scheduler and kwok are needed only by the
    full cluster (``dev up`` without ``--bare``), and envtest's folder does not have them.
    """

    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    helm: Path | None = None
    kube_controller_manager: Path | None = None
    kube_scheduler: Path | None = None
    kwok: Path | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "etcd": str(self.etcd),
            "kubeApiserver": str(self.kube_apiserver),
            "kubectl": str(self.kubectl),
            "helm": _text(self.helm),
            "kubeControllerManager": _text(self.kube_controller_manager),
            "kubeScheduler": _text(self.kube_scheduler),
            "kwok": _text(self.kwok),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, str | None]) -> Binaries:
        def optional(key: str) -> Path | None:
            value = data.get(key)
            return Path(value) if value else None

        return cls(
            etcd=Path(str(data["etcd"])),
            kube_apiserver=Path(str(data["kubeApiserver"])),
            kubectl=Path(str(data["kubectl"])),
            helm=optional("helm"),
            kube_controller_manager=optional("kubeControllerManager"),
            kube_scheduler=optional("kubeScheduler"),
            kwok=optional("kwok"),
        )


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def default_assets_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder the install script fills for the pinned versions."""
    env = os.environ if env is None else env
    if env.get("COMPUTEGATE_CACHE"):
        cache = Path(env["COMPUTEGATE_CACHE"])
    else:
        base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
        cache = base / "computegate"
    return cache / "bin" / f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-helm-{HELM_VERSION}"


def _candidates(name: str, env: Mapping[str, str]) -> list[tuple[str, Path | None]]:
    """Where ``name`` may be, in lookup order, each with how to describe that place."""
    places: list[tuple[str, Path | None]] = []
    for var in ("COMPUTEGATE_ASSETS", "KUBEBUILDER_ASSETS"):
        folder = env.get(var)
        places.append(
            (f"${var}" + (f" ({folder})" if folder else " (unset)"), Path(folder) / name if folder else None)
        )
    explicit = env.get(_EXPLICIT_ENV[name])
    places.append(
        (
            f"${_EXPLICIT_ENV[name]}" + (f" ({explicit})" if explicit else " (unset)"),
            Path(explicit) if explicit else None,
        )
    )
    default = default_assets_dir(env)
    places.append((f"the default cache {default}", default / name))
    return places


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find(name: str, env: Mapping[str, str]) -> tuple[Path | None, list[str]]:
    looked: list[str] = []
    for description, path in _candidates(name, env):
        if path is not None and _is_executable(path):
            return path.resolve(), looked
        looked.append(description)
    return None, looked


def find_binaries(
    env: Mapping[str, str] | None = None, *, require_helm: bool = False, require_cluster: bool = False
) -> Binaries:
    """Locate etcd, kube-apiserver, kubectl (and helm, kube-controller-manager, kube-scheduler
    and kwok if present) for each one separately.

    Order: ``$COMPUTEGATE_ASSETS/<name>``, ``$KUBEBUILDER_ASSETS/<name>`` (setup-envtest's
    folder), the explicit ``$COMPUTEGATE_ETCD`` / ``_KUBE_APISERVER`` / ``_KUBECTL`` / ``_HELM``
    / ``_KUBE_CONTROLLER_MANAGER`` / ``_KUBE_SCHEDULER`` / ``_KWOK`` path, then the default
    cache folder of the pinned versions. ``require_cluster`` makes the three binaries of the
    full cluster required. Raises ``BinariesNotFound`` naming every place looked at and the
    command that builds the binaries.
    """
    env = os.environ if env is None else env
    found: dict[str, Path] = {}
    problems: list[str] = []
    for name in _EXPLICIT_ENV:
        path, looked = _find(name, env)
        if path is not None:
            found[name] = path
        elif _required(name, require_helm=require_helm, require_cluster=require_cluster):
            problems.append(f"{name} not found (looked in {', '.join(looked)})")
    if problems:
        hint = INSTALL_HINT
        if require_cluster and any(name in problem for name in CLUSTER_BINARIES for problem in problems):
            hint += "; or run `computegate dev up --bare` (etcd and kube-apiserver only)"
        raise BinariesNotFound("; ".join(problems) + f": {hint}")
    return Binaries(
        etcd=found["etcd"],
        kube_apiserver=found["kube-apiserver"],
        kubectl=found["kubectl"],
        helm=found.get("helm"),
        kube_controller_manager=found.get("kube-controller-manager"),
        kube_scheduler=found.get("kube-scheduler"),
        kwok=found.get("kwok"),
    )


def _required(name: str, *, require_helm: bool, require_cluster: bool) -> bool:
    if name == "helm":
        return require_helm
    if name in CLUSTER_BINARIES:
        return require_cluster
    return True
