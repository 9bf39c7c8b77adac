"""Builders for engine tests: a small catalog of our own, and state made from wire-shaped dicts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from computegate.engine import Catalog, ClusterState
from computegate.models import AcceleratorProfileSpec, PolicyRule
from computegate.statefiles import Document, parse_state_object, parse_workload

NOW = datetime(2026, 6, 1, tzinfo=UTC)

PROFILES = {
    "h100": {
        "vendor": "NVIDIA",
        "model": "H100",
        "resourceNames": ["nvidia.com/gpu"],
        "productLabels": {"nvidia.com/gpu.product": ["NVIDIA-H100-80GB-HBM3"]},
        "deviceClassNames": ["gpu.nvidia.com"],
        "tpp": 15832,
        "performanceDensity": 19.4,
        "migComputeSlices": 7,
    },
    "a100": {
        "vendor": "NVIDIA",
        "model": "A100",
        "resourceNames": ["nvidia.com/gpu"],
        "productLabels": {"nvidia.com/gpu.product": ["NVIDIA-A100-SXM4-80GB"]},
        "deviceClassNames": ["gpu.nvidia.com"],
        "tpp": 4992,
        "performanceDensity": 6.04,
        "migComputeSlices": 7,
    },
    "l40": {
        "vendor": "NVIDIA",
        "model": "L40",
        "resourceNames": ["nvidia.com/gpu"],
        "productLabels": {"nvidia.com/gpu.product": ["NVIDIA-L40"]},
        "tpp": 2896,
        "performanceDensity": 4.8,
    },
    "t4": {
        "vendor": "NVIDIA",
        "model": "T4",
        "resourceNames": ["nvidia.com/gpu"],
        "productLabels": {"nvidia.com/gpu.product": ["Tesla-T4"]},
        "tpp": 1042,
        "performanceDensity": 1.9,
    },
    "mi300x": {
        "vendor": "AMD",
        "model": "MI300X",
        "resourceNames": ["amd.com/gpu"],
        "productLabels": {"amd.com/gpu.product-name": ["AMD_Instinct_MI300X_OAM"]},
        "tpp": 20919,
    },
    "gaudi2": {
        "vendor": "Intel",
        "model": "Gaudi 2",
        "resourceNames": ["habana.ai/gaudi"],
        "productLabels": {"habana.ai/device.type": ["gaudi2"]},
        "tpp": 6912,
    },
}

CATALOG = Catalog(
    profiles={name: AcceleratorProfileSpec.model_validate(spec) for name, spec in PROFILES.items()},
    country_groups={
        "D:5": frozenset({"CN", "RU", "VE"}),
        "E:1": frozenset({"IR", "KP", "SY"}),
        "Macau": frozenset({"MO"}),
    },
    rules=(
        PolicyRule.model_validate({"groups": ["E:1"], "action": "Prohibit"}),
        PolicyRule.model_validate({"groups": ["D:5", "Macau"], "action": "RequireLicense"}),
    ),
)


def obj(body: dict[str, Any]) -> Any:
    return parse_state_object(Document(path=_PATH, index=1, body=body))


def workload(body: dict[str, Any]) -> Any:
    return parse_workload(Document(path=_PATH, index=1, body=body))


from pathlib import Path  # noqa: E402

_PATH = Path("test.yaml")


def node(
    name: str,
    product: str | None,
    gpus: int = 8,
    resource: str = "nvidia.com/gpu",
    label_key: str = "nvidia.com/gpu.product",
    **labels: str,
) -> dict[str, Any]:
    all_labels = dict(labels)
    if product is not None:
        all_labels[label_key] = product
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "status": {"capacity": {resource: str(gpus)}},
    }


def tenant(
    name: str, jurisdiction: str, *, namespaces: list[str], parent: str | None = None, kyc: str = "Verified"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"jurisdiction": jurisdiction, "kyc": {"status": kyc}, "namespaces": namespaces}
    if parent:
        spec["parentJurisdiction"] = parent
    return {
        "apiVersion": "computegate.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": spec,
    }


def license_(
    name: str,
    tenant_name: str,
    *,
    max_tpp: float = 1_000_000,
    accelerators: list[str] | None = None,
    valid_from: str = "2026-01-01T00:00:00Z",
    valid_until: str = "2027-01-01T00:00:00Z",
    revoked: bool = False,
    max_accelerators: float | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tenant": tenant_name,
        "licenseNumber": f"L-{name}",
        "authority": "US-BIS",
        "validFrom": valid_from,
        "validUntil": valid_until,
        "maxTPP": max_tpp,
        "revoked": revoked,
    }
    if accelerators is not None:
        spec["accelerators"] = accelerators
    if max_accelerators is not None:
        spec["maxAccelerators"] = max_accelerators
    return {
        "apiVersion": "computegate.io/v1alpha1",
        "kind": "ExportLicense",
        "metadata": {"name": name},
        "spec": spec,
    }


def pod(
    name: str = "p",
    namespace: str = "team",
    *,
    gpus: int | str = 1,
    resource: str = "nvidia.com/gpu",
    node_selector: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "x", "resources": {"limits": {resource: gpus}}}],
        **spec,
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": pod_spec,
    }


StateFactory = Callable[..., ClusterState]


@pytest.fixture
def make_state() -> StateFactory:
    def build(*bodies: dict[str, Any], catalog: Catalog = CATALOG) -> ClusterState:
        state = ClusterState(catalog)
        for body in bodies:
            state.upsert(obj(body))
        return state

    return build


# ----- helpers for the feature tests (appended; the builders above are unchanged) -----

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
L40 = "NVIDIA-L40"
T4 = "Tesla-T4"
TPP = {name: float(spec["tpp"]) for name, spec in PROFILES.items()}


def verdict_of(state: ClusterState, body: dict[str, Any], *, at: datetime = NOW) -> Any:
    """Judge a workload body (a wire-shaped dict) as a CREATE."""
    from computegate.engine import decide

    return decide(state, workload(body), at=at)


def container(
    name: str = "c",
    *,
    requests: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": name, "image": "x", "resources": resources, **extra}


def pod_with(
    containers: list[dict[str, Any]],
    *,
    init: list[dict[str, Any]] | None = None,
    name: str = "p",
    namespace: str = "team",
    **spec: Any,
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": containers, **spec}
    if init is not None:
        pod_spec["initContainers"] = init
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": pod_spec,
    }


def controller(
    kind: str, template_spec: dict[str, Any], *, name: str = "c", namespace: str = "team", **spec: Any
) -> dict[str, Any]:
    body_spec: dict[str, Any] = dict(spec)
    template = {"metadata": {"labels": {"app": name}}, "spec": template_spec}
    if kind == "CronJob":
        job_spec = {"template": template, **body_spec.pop("job", {})}
        body_spec["jobTemplate"] = {"spec": job_spec}
    else:
        body_spec["template"] = template
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": body_spec,
    }


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "computegate.io/v1alpha1",
        "kind": "CompliancePolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def profile(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "computegate.io/v1alpha1",
        "kind": "AcceleratorProfile",
        "metadata": {"name": name},
        "spec": spec,
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def running(
    body: dict[str, Any],
    *,
    license_name: str | None = None,
    phase: str = "Running",
    node_name: str | None = None,
) -> dict[str, Any]:
    """A pod already in the cluster, optionally admitted under a license (the annotation)."""
    metadata = dict(body["metadata"])
    if license_name is not None:
        metadata["annotations"] = {"computegate.io/license": license_name}
    spec = dict(body["spec"])
    if node_name is not None:
        spec["nodeName"] = node_name
    return {**body, "metadata": metadata, "spec": spec, "status": {"phase": phase}}


@pytest.fixture
def licensed_state(make_state: StateFactory) -> StateFactory:
    """A CN tenant (RequireLicense) owning namespace ``team``, one H100 node, and what you add."""

    def build(*bodies: dict[str, Any], catalog: Catalog = CATALOG) -> ClusterState:
        return make_state(
            node("h100-1", H100),
            tenant("acme", "CN", namespaces=["team"]),
            *bodies,
            catalog=catalog,
        )

    return build
