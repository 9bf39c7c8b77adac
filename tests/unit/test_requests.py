"""DESIGN.md step 2: a pod's effective accelerator requests, as Kubernetes computes them."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from computegate.engine.asks import effective_requests, is_accelerator_resource
from computegate.engine.verdict import Code
from computegate.models import PodSpec
from tests.unit.conftest import (
    H100,
    TPP,
    StateFactory,
    container,
    node,
    pod,
    pod_with,
    profile,
    verdict_of,
)

GPU = "nvidia.com/gpu"
AMD_LABEL = "amd.com/gpu.product-name"


def requests_of(state: Any, body: dict[str, Any]) -> dict[str, Fraction]:
    return effective_requests(PodSpec.model_validate(body["spec"]), state)


def test_app_containers_add_up(licensed_state: StateFactory) -> None:
    body = pod_with([container("a", limits={GPU: 2}), container("b", limits={GPU: 3})])
    assert requests_of(licensed_state(), body) == {GPU: 5}


def test_a_regular_init_container_larger_than_the_app_containers_sets_the_request(
    licensed_state: StateFactory,
) -> None:
    body = pod_with([container("app", limits={GPU: 2})], init=[container("warm", limits={GPU: 8})])
    assert requests_of(licensed_state(), body) == {GPU: 8}


def test_a_smaller_init_container_does_not_add_to_the_app_containers(licensed_state: StateFactory) -> None:
    body = pod_with([container("app", limits={GPU: 4})], init=[container("warm", limits={GPU: 1})])
    assert requests_of(licensed_state(), body) == {GPU: 4}


def test_sidecars_count_alongside_the_app_containers(licensed_state: StateFactory) -> None:
    body = pod_with(
        [container("app", limits={GPU: 2})],
        init=[container("side", limits={GPU: 1}, restartPolicy="Always")],
    )
    assert requests_of(licensed_state(), body) == {GPU: 3}


def test_a_sidecar_started_before_an_init_container_adds_to_that_init_container(
    licensed_state: StateFactory,
) -> None:
    body = pod_with(
        [container("app", limits={GPU: 1})],
        init=[
            container("side", limits={GPU: 2}, restartPolicy="Always"),
            container("warm", limits={GPU: 4}),
        ],
    )
    # max(init 4 + sidecar 2 started before it, app 1 + sidecar 2)
    assert requests_of(licensed_state(), body) == {GPU: 6}


def test_a_sidecar_started_after_an_init_container_does_not_add_to_it(licensed_state: StateFactory) -> None:
    body = pod_with(
        [container("app", limits={GPU: 1})],
        init=[
            container("warm", limits={GPU: 4}),
            container("side", limits={GPU: 2}, restartPolicy="Always"),
        ],
    )
    assert requests_of(licensed_state(), body) == {GPU: 4}


def test_several_sidecars_accumulate_for_later_init_containers(licensed_state: StateFactory) -> None:
    body = pod_with(
        [container("app", limits={GPU: 0})],
        init=[
            container("s1", limits={GPU: 1}, restartPolicy="Always"),
            container("s2", limits={GPU: 1}, restartPolicy="Always"),
            container("warm", limits={GPU: 3}),
        ],
    )
    assert requests_of(licensed_state(), body) == {GPU: 5}


def test_a_limits_only_container_counts_its_limit(licensed_state: StateFactory) -> None:
    body = pod_with([container("app", limits={GPU: 3})])
    assert requests_of(licensed_state(), body) == {GPU: 3}


def test_a_request_counts_where_the_container_sets_both(licensed_state: StateFactory) -> None:
    body = pod_with([container("app", requests={GPU: 2}, limits={GPU: 2})])
    assert requests_of(licensed_state(), body) == {GPU: 2}


def test_a_request_without_a_limit_counts(licensed_state: StateFactory) -> None:
    body = pod_with([container("app", requests={GPU: 2})])
    assert requests_of(licensed_state(), body) == {GPU: 2}


def test_a_limits_only_init_container_counts(licensed_state: StateFactory) -> None:
    body = pod_with([container("app")], init=[container("warm", limits={GPU: 2})])
    assert requests_of(licensed_state(), body) == {GPU: 2}


def test_quantity_strings_and_numbers_are_the_same_request(licensed_state: StateFactory) -> None:
    state = licensed_state()
    assert requests_of(state, pod(gpus="8")) == requests_of(state, pod(gpus=8)) == {GPU: 8}


def test_cpu_and_memory_are_not_accelerators(licensed_state: StateFactory) -> None:
    body = pod_with([container("app", limits={"cpu": "4", "memory": "16Gi", GPU: 1})])
    assert requests_of(licensed_state(), body) == {GPU: 1}


ACCELERATOR_RESOURCES = [
    "nvidia.com/gpu",
    "nvidia.com/gpu.shared",
    "nvidia.com/mig-1g.10gb",
    "nvidia.com/mig-3g.40gb",
    "nvidia.com/GH100_H100_SXM5_80GB",  # a KubeVirt passthrough name
    "amd.com/gpu",
    "habana.ai/gaudi",
    "habana.ai/gaudi3",
    "gpu.intel.com/i915",
    "gpu.intel.com/xe",
    "huawei.com/Ascend910",
    "huawei.com/Ascend310P",
    "aws.amazon.com/neuron",
    "aws.amazon.com/neuroncore",
    "aws.amazon.com/neurondevice",
    "google.com/tpu",
    "deviceclass.resource.kubernetes.io/gpu.nvidia.com",
]

NOT_ACCELERATORS = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "hugepages-2Mi",
    "example.com/dongle",
    "amd.com/cpu",
    "huawei.com/npu-smi",
    "aws.amazon.com/efa",
    "google.com/cpu",
]


@pytest.mark.parametrize("resource", ACCELERATOR_RESOURCES)
def test_every_accelerator_resource_family_is_recognised(licensed_state: StateFactory, resource: str) -> None:
    assert is_accelerator_resource(resource, licensed_state())


@pytest.mark.parametrize("resource", ACCELERATOR_RESOURCES)
def test_a_pod_asking_for_any_accelerator_family_is_judged(make_state: StateFactory, resource: str) -> None:
    # Namespace "nowhere" has no tenant: judged (UnknownTenant), never waved through as NoAccelerator.
    state = make_state(node("n1", H100))
    verdict = verdict_of(state, pod(namespace="nowhere", resource=resource, gpus=1))
    assert verdict.code is Code.UNKNOWN_TENANT
    assert not verdict.allowed
    assert verdict.accelerators > 0


@pytest.mark.parametrize("resource", NOT_ACCELERATORS)
def test_other_extended_resources_are_not_accelerators(licensed_state: StateFactory, resource: str) -> None:
    state = licensed_state()
    assert not is_accelerator_resource(resource, state)
    verdict = verdict_of(state, pod(namespace="nowhere", resource=resource, gpus=1))
    assert verdict.code is Code.NO_ACCELERATOR
    assert verdict.allowed


def test_a_profile_resource_name_makes_any_resource_an_accelerator(make_state: StateFactory) -> None:
    npu = profile(
        "acme-npu",
        vendor="Acme",
        model="NPU 1",
        resourceNames=["example.com/npu"],
        productLabels={"example.com/npu.model": ["npu1"]},
        tpp=9000,
    )
    npu_node = node("npu-1", "npu1", resource="example.com/npu", label_key="example.com/npu.model")
    state = make_state(npu, npu_node)
    assert is_accelerator_resource("example.com/npu", state)
    verdict = verdict_of(state, pod(namespace="nowhere", resource="example.com/npu", gpus=2))
    assert verdict.code is Code.UNKNOWN_TENANT
    assert verdict.uses[0].profile == "acme-npu"
    assert verdict.tpp == 18000


def test_a_cpu_only_pod_is_never_blocked(make_state: StateFactory) -> None:
    from tests.unit.conftest import policy, tenant

    state = make_state(
        tenant("evil", "IR", namespaces=["team"], kyc="Failed"),
        policy(unknownTenant="Deny", unknownAccelerator="Deny"),
    )
    for namespace in ("team", "nowhere"):
        verdict = verdict_of(state, pod(namespace=namespace, resource="cpu", gpus=64))
        assert verdict.code is Code.NO_ACCELERATOR
        assert verdict.allowed
        assert verdict.tpp is None


def test_a_pod_with_no_containers_resources_is_no_accelerator(licensed_state: StateFactory) -> None:
    verdict = verdict_of(licensed_state(), pod_with([container("app")]))
    assert verdict.code is Code.NO_ACCELERATOR


def test_a_zero_accelerator_request_is_no_accelerator(licensed_state: StateFactory) -> None:
    verdict = verdict_of(licensed_state(), pod(gpus=0))
    assert verdict.code is Code.NO_ACCELERATOR


def test_shared_gpus_resolve_to_the_full_chip_model(make_state: StateFactory) -> None:
    shared_node = node("n1", H100 + "-SHARED", resource="nvidia.com/gpu.shared", gpus=32)
    state = make_state(shared_node)
    verdict = verdict_of(state, pod(namespace="nowhere", resource="nvidia.com/gpu.shared", gpus=2))
    assert verdict.uses[0].profile == "h100"
    assert verdict.tpp == 2 * TPP["h100"]


def test_a_mig_resource_counts_its_share_of_the_parent_chip(make_state: StateFactory) -> None:
    mig_node = node("n1", H100 + "-MIG-3g.40gb", resource="nvidia.com/mig-3g.40gb", gpus=14)
    state = make_state(mig_node)
    verdict = verdict_of(state, pod(namespace="nowhere", resource="nvidia.com/mig-3g.40gb", gpus=2))
    use = verdict.uses[0]
    assert use.profile == "h100"
    assert use.count == pytest.approx(6 / 7)
    assert verdict.tpp == pytest.approx(TPP["h100"] * 6 / 7)


def test_several_accelerator_resources_in_one_pod_are_all_counted(make_state: StateFactory) -> None:
    state = make_state(
        node("n1", H100),
        node("amd-1", "AMD_Instinct_MI300X_OAM", resource="amd.com/gpu", label_key=AMD_LABEL),
    )
    body = pod_with([container("a", limits={GPU: 1}), container("b", limits={"amd.com/gpu": 2})])
    verdict = verdict_of(state, body)
    assert {use.profile for use in verdict.uses} == {"h100", "mi300x"}
    assert verdict.accelerators == 3


def test_an_accelerator_request_below_its_limit_is_never_under_counted(licensed_state: StateFactory) -> None:
    # Invalid for Kubernetes (extended resources need request == limit); the larger counts.
    body = pod_with([container("app", requests={GPU: 0}, limits={GPU: 8})])
    assert requests_of(licensed_state(), body) == {GPU: 8}
    assert verdict_of(licensed_state(), body).code is Code.NO_LICENSE
