"""DESIGN.md step 1: a workload becomes pods, with a multiplier per controller kind."""

from __future__ import annotations

from typing import Any

import pytest

from computegate.engine.verdict import Code
from tests.unit.conftest import (
    A100,
    H100,
    L40,
    T4,
    TPP,
    StateFactory,
    controller,
    license_,
    node,
    pod,
    verdict_of,
)

PRODUCT = "nvidia.com/gpu.product"


def gpu_spec(gpus: int = 2, **extra: Any) -> dict[str, Any]:
    return {**pod(gpus=gpus, node_selector={PRODUCT: A100})["spec"], **extra}


@pytest.fixture
def state(licensed_state: StateFactory) -> Any:
    return licensed_state(node("a100-1", A100), license_("lic", "acme"))


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet"])
def test_replicas_multiply_the_pod(state: Any, kind: str) -> None:
    verdict = verdict_of(state, controller(kind, gpu_spec(2), replicas=3))
    assert verdict.code is Code.LICENSED
    assert verdict.accelerators == 6
    assert verdict.controlled_tpp == 6 * TPP["a100"]


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet"])
def test_replicas_default_to_one(state: Any, kind: str) -> None:
    verdict = verdict_of(state, controller(kind, gpu_spec(2)))
    assert verdict.accelerators == 2


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet"])
def test_zero_replicas_is_no_accelerator(state: Any, kind: str) -> None:
    verdict = verdict_of(state, controller(kind, gpu_spec(8), replicas=0))
    assert verdict.code is Code.NO_ACCELERATOR
    assert verdict.allowed


def test_zero_replicas_is_admitted_even_without_a_tenant(state: Any) -> None:
    verdict = verdict_of(state, controller("Deployment", gpu_spec(8), namespace="nowhere", replicas=0))
    assert verdict.code is Code.NO_ACCELERATOR


def test_job_parallelism_multiplies_the_pod(state: Any) -> None:
    verdict = verdict_of(state, controller("Job", gpu_spec(1), parallelism=4, completions=100))
    assert verdict.accelerators == 4


def test_job_parallelism_defaults_to_one(state: Any) -> None:
    assert verdict_of(state, controller("Job", gpu_spec(3))).accelerators == 3


def test_job_with_zero_parallelism_is_no_accelerator(state: Any) -> None:
    assert verdict_of(state, controller("Job", gpu_spec(3), parallelism=0)).code is Code.NO_ACCELERATOR


def test_cronjob_counts_its_job_template_parallelism(state: Any) -> None:
    body = controller("CronJob", gpu_spec(2), schedule="0 * * * *", job={"parallelism": 5})
    verdict = verdict_of(state, body)
    assert verdict.accelerators == 10
    assert verdict.code is Code.LICENSED


def test_cronjob_parallelism_defaults_to_one(state: Any) -> None:
    body = controller("CronJob", gpu_spec(2), schedule="0 * * * *")
    assert verdict_of(state, body).accelerators == 2


def test_a_controller_over_the_cap_is_denied_as_a_whole(licensed_state: StateFactory) -> None:
    state = licensed_state(node("a100-1", A100), license_("lic", "acme", max_tpp=TPP["a100"] * 8))
    assert verdict_of(state, controller("Deployment", gpu_spec(4), replicas=2)).code is Code.LICENSED
    verdict = verdict_of(state, controller("Deployment", gpu_spec(4), replicas=3))
    assert verdict.code is Code.LICENSE_CAP_EXCEEDED


def test_a_cpu_only_controller_is_no_accelerator(state: Any) -> None:
    spec = pod(resource="cpu", gpus=4)["spec"]
    assert verdict_of(state, controller("Deployment", spec, replicas=50)).code is Code.NO_ACCELERATOR


# ----- DaemonSet: one pod per admitted node that offers the resource, each with its node's model -----


@pytest.fixture
def fleet(make_state: StateFactory) -> StateFactory:
    def build(*bodies: dict[str, Any]) -> Any:
        return make_state(
            node("h100-1", H100, pool="big"),
            node("a100-1", A100, pool="train"),
            node("a100-2", A100, pool="train"),
            node("l40-1", L40, pool="infer"),
            node("t4-1", T4, pool="infer"),
            node("cpu-1", None, resource="cpu", gpus=64, pool="infer"),
            *bodies,
        )

    return build


def daemonset(**spec: Any) -> dict[str, Any]:
    return controller("DaemonSet", {**pod(gpus=1)["spec"], **spec}, namespace="nowhere")


def test_a_daemonset_makes_one_pod_per_node_offering_the_resource_with_its_model(fleet: StateFactory) -> None:
    verdict = verdict_of(fleet(), daemonset())
    assert verdict.accelerators == 5
    assert verdict.tpp == TPP["h100"] + 2 * TPP["a100"] + TPP["l40"] + TPP["t4"]
    assert verdict.controlled_tpp == TPP["h100"] + 2 * TPP["a100"] + TPP["l40"]
    assert sorted(use.profile for use in verdict.uses) == ["a100", "a100", "h100", "l40", "t4"]


def test_a_daemonset_node_selector_limits_its_nodes(fleet: StateFactory) -> None:
    verdict = verdict_of(fleet(), daemonset(nodeSelector={"pool": "infer"}))
    assert verdict.accelerators == 2  # l40 and t4; the CPU node offers no GPU
    assert verdict.controlled_tpp == TPP["l40"]


def test_a_daemonset_required_affinity_limits_its_nodes(fleet: StateFactory) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["train"]}]}
                ]
            }
        }
    }
    verdict = verdict_of(fleet(), daemonset(affinity=affinity))
    assert verdict.accelerators == 2
    assert {use.profile for use in verdict.uses} == {"a100"}


def test_a_daemonset_on_only_uncontrolled_nodes_is_not_controlled(fleet: StateFactory) -> None:
    from tests.unit.conftest import tenant

    state = fleet(tenant("acme", "CN", namespaces=["nowhere"]))
    verdict = verdict_of(state, daemonset(nodeSelector={PRODUCT: T4}))
    assert verdict.code is Code.NOT_CONTROLLED
    assert verdict.accelerators == 1


def test_a_daemonset_that_no_node_admits_is_no_accelerator(fleet: StateFactory) -> None:
    verdict = verdict_of(fleet(), daemonset(nodeSelector={"pool": "none"}))
    assert verdict.code is Code.NO_ACCELERATOR


def test_a_daemonset_scales_with_each_node_pod_count(fleet: StateFactory) -> None:
    verdict = verdict_of(
        fleet(), daemonset(nodeSelector={"pool": "train"}, containers=pod(gpus=8)["spec"]["containers"])
    )
    assert verdict.accelerators == 16


def test_a_daemonset_with_a_resource_claim_runs_only_on_nodes_of_the_claims_class(
    make_state: StateFactory,
) -> None:
    from tests.unit.test_models_resolution import claim_template

    state = make_state(
        node("a100-1", A100),
        node("cpu-1", None, resource="cpu", gpus=64),
        node("cpu-2", None, resource="cpu", gpus=64),
        claim_template("tmpl", "gpu.nvidia.com", 1),
    )
    spec = pod(resource="cpu", gpus=1)["spec"]
    spec["resourceClaims"] = [{"name": "g", "resourceClaimTemplateName": "tmpl"}]
    verdict = verdict_of(state, controller("DaemonSet", spec))
    assert verdict.accelerators == 1
    assert [(use.profile, use.resolved) for use in verdict.uses] == [("a100", True)]


def test_a_daemonset_with_a_claim_not_seen_yet_counts_every_admitted_node(make_state: StateFactory) -> None:
    state = make_state(node("a100-1", A100), node("cpu-1", None, resource="cpu", gpus=64))
    spec = pod(resource="cpu", gpus=1)["spec"]
    spec["resourceClaims"] = [{"name": "g", "resourceClaimTemplateName": "missing"}]
    verdict = verdict_of(state, controller("DaemonSet", spec))
    assert verdict.accelerators == 2
    assert not all(use.resolved for use in verdict.uses)
