"""DESIGN.md step 6: an UPDATE is judged on the growth of the workload's footprint only."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from computegate.engine import Code, decide_update
from tests.unit.conftest import (
    H100,
    NOW,
    TPP,
    StateFactory,
    controller,
    license_,
    pod,
    running,
    workload,
)

PRODUCT = "nvidia.com/gpu.product"


def update(state: Any, old: dict[str, Any], new: dict[str, Any]) -> Any:
    return decide_update(state, workload(old), workload(new), at=NOW)


def deployment(replicas: int, image: str = "trainer:1", gpus: int = 2) -> dict[str, Any]:
    spec = pod(gpus=gpus, node_selector={PRODUCT: H100})["spec"]
    spec["containers"][0]["image"] = image
    return controller("Deployment", spec, replicas=replicas)


@pytest.fixture
def full(licensed_state: StateFactory) -> Any:
    """A license whose cap is fully used by the deployment's four running pods (2 GPUs each)."""
    state = licensed_state(license_("lic", "acme", max_tpp=8 * TPP["h100"]))
    for index in range(4):
        state.upsert(_obj(running(pod(f"trainer-{index}", gpus=2), license_name="lic", node_name="h100-1")))
    return state


def _obj(body: dict[str, Any]) -> Any:
    from tests.unit.conftest import obj

    return obj(body)


def test_the_license_is_full(full: Any) -> None:
    from tests.unit.conftest import verdict_of

    assert verdict_of(full, deployment(1)).code is Code.LICENSE_CAP_EXCEEDED


def test_an_image_bump_under_a_full_license_is_admitted(full: Any) -> None:
    verdict = update(full, deployment(4, "trainer:1"), deployment(4, "trainer:2"))
    assert verdict.allowed


def test_a_scale_down_under_a_full_license_is_admitted(full: Any) -> None:
    assert update(full, deployment(4), deployment(2)).allowed


def test_a_scale_up_over_the_cap_is_denied(full: Any) -> None:
    verdict = update(full, deployment(4), deployment(5))
    assert verdict.code is Code.LICENSE_CAP_EXCEEDED
    assert not verdict.allowed


def test_a_scale_up_is_judged_on_the_growth_only(licensed_state: StateFactory) -> None:
    # Headroom for 2 more GPUs: growing 4 -> 5 replicas (2 GPUs) fits, 4 -> 6 does not,
    # although the whole new deployment (10 or 12 GPUs) would not fit.
    state = licensed_state(license_("lic", "acme", max_tpp=2 * TPP["h100"]))
    assert update(state, deployment(4), deployment(5)).code is Code.LICENSED
    assert update(state, deployment(4), deployment(6)).code is Code.LICENSE_CAP_EXCEEDED


def test_a_scale_up_without_any_license_is_denied(licensed_state: StateFactory) -> None:
    verdict = update(licensed_state(), deployment(1), deployment(2))
    assert verdict.code is Code.NO_LICENSE
    assert not verdict.allowed


def test_more_accelerators_per_pod_is_growth(full: Any) -> None:
    assert not update(full, deployment(4, gpus=2), deployment(4, gpus=3)).allowed


def test_scaling_from_zero_is_growth(licensed_state: StateFactory) -> None:
    assert update(licensed_state(), deployment(0), deployment(1)).code is Code.NO_LICENSE


def test_a_pod_update_is_never_denied_for_accounting(full: Any) -> None:
    old = running(pod("trainer-0", gpus=2), license_name="lic", node_name="h100-1")
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"batch.kubernetes.io/job-completion-index": "0"}
    verdict = update(full, old, new)
    assert verdict.allowed


def test_a_pod_update_is_admitted_even_when_its_license_was_revoked(licensed_state: StateFactory) -> None:
    state = licensed_state(license_("lic", "acme", revoked=True))
    old = running(pod("trainer-0", gpus=2), license_name="lic")
    verdict = update(state, old, copy.deepcopy(old))
    assert verdict.allowed


def test_a_pod_update_of_an_unlicensed_tenant_is_admitted(licensed_state: StateFactory) -> None:
    old = pod("p", gpus=8)
    assert update(licensed_state(), old, copy.deepcopy(old)).allowed


def test_a_cpu_only_controller_update_is_admitted(licensed_state: StateFactory) -> None:
    spec = pod(resource="cpu", gpus=4)["spec"]
    verdict = update(
        licensed_state(),
        controller("Deployment", spec, replicas=1),
        controller("Deployment", spec, replicas=9),
    )
    assert verdict.code is Code.NO_ACCELERATOR
