"""The side doors of issue 12 in the engine: device access without a request, GPU-sharing
resource names, ``firstAvailable`` claims, and bounded caches."""

from __future__ import annotations

from typing import Any

import pytest

from computegate.engine import consumption
from computegate.engine.footprint import considered_models
from computegate.engine.verdict import Code
from tests.unit.conftest import (
    H100,
    T4,
    TPP,
    StateFactory,
    container,
    license_,
    namespace,
    node,
    obj,
    pod,
    pod_with,
    policy,
    tenant,
    verdict_of,
    workload,
)

PRODUCT = "nvidia.com/gpu.product"
CN = tenant("acme", "CN", namespaces=["team"])


def gpu_nodes() -> tuple[dict[str, Any], ...]:
    return node("h100-1", H100, gpus=8), node("t4-1", T4, gpus=4), node("cpu-1", None, gpus=0, resource="cpu")


DOORS: dict[str, dict[str, Any]] = {
    "env": pod_with([container(env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}])]),
    "amd-env": pod_with([container(env=[{"name": "AMD_VISIBLE_DEVICES", "value": "0"}])]),
    "runtime-class": pod_with([container()], runtimeClassName="nvidia"),
    "privileged": pod_with([container(securityContext={"privileged": True})]),
    "hostpath-dev-file": pod_with(
        [container()], volumes=[{"name": "d", "hostPath": {"path": "/dev/nvidia0"}}]
    ),
    "hostpath-root": pod_with([container()], volumes=[{"name": "d", "hostPath": {"path": "//"}}]),
    "hostpath-dev-dotdot": pod_with(
        [container()], volumes=[{"name": "d", "hostPath": {"path": "/var/../dev"}}]
    ),
    "init-container": pod_with(
        [container()], init=[container("i", env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}])]
    ),
    "ephemeral": pod_with(
        [container()],
        ephemeralContainers=[container("debugger", env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}])],
    ),
}
DOORS["cdi-annotation"] = pod_with([container()])
DOORS["cdi-annotation"]["metadata"]["annotations"] = {"cdi.k8s.io/gpu": "nvidia.com/gpu=all"}


@pytest.mark.parametrize("door", sorted(DOORS))
def test_each_door_to_devices_without_a_request_asks_for_every_accelerator_of_the_node(
    make_state: StateFactory, door: str
) -> None:
    state = make_state(*gpu_nodes(), CN, namespace("team"))
    verdict = verdict_of(state, DOORS[door])
    assert verdict.code is Code.NO_LICENSE
    (use,) = verdict.uses
    assert (use.profile, use.count) == ("h100", 8)  # the worst case over the nodes it may land on


@pytest.mark.parametrize("door", sorted(DOORS))
def test_deny_refuses_each_door_right_after_exempt(make_state: StateFactory, door: str) -> None:
    state = make_state(*gpu_nodes(), CN, policy(deviceAccessWithoutRequest="Deny"))
    verdict = verdict_of(state, DOORS[door])
    assert verdict.code is Code.DEVICE_ACCESS_WITHOUT_REQUEST and not verdict.allowed
    assert "deviceAccessWithoutRequest" in verdict.message


def test_deny_refuses_even_where_no_node_has_accelerators(make_state: StateFactory) -> None:
    state = make_state(CN, policy(deviceAccessWithoutRequest="Deny"))
    assert verdict_of(state, DOORS["privileged"]).code is Code.DEVICE_ACCESS_WITHOUT_REQUEST


def test_exempt_namespaces_keep_their_privileged_pods(make_state: StateFactory) -> None:
    state = make_state(*gpu_nodes(), policy(deviceAccessWithoutRequest="Deny"))
    body = pod_with([container(securityContext={"privileged": True})], namespace="kube-system")
    assert verdict_of(state, body).code is Code.EXEMPT


def test_allow_ignores_device_access(make_state: StateFactory) -> None:
    state = make_state(*gpu_nodes(), CN, policy(deviceAccessWithoutRequest="Allow"))
    assert verdict_of(state, DOORS["privileged"]).code is Code.NO_ACCELERATOR


@pytest.mark.parametrize("value", ["void", "none", ""])
def test_a_device_variable_that_selects_no_device_is_no_access(make_state: StateFactory, value: str) -> None:
    state = make_state(*gpu_nodes(), CN)
    body = pod_with([container(env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": value}])])
    assert verdict_of(state, body).code is Code.NO_ACCELERATOR


def test_a_pod_that_may_land_only_on_cpu_nodes_reaches_no_accelerator(make_state: StateFactory) -> None:
    state = make_state(*gpu_nodes(), CN)
    body = pod_with([container(securityContext={"privileged": True})], nodeName="cpu-1")
    assert verdict_of(state, body).code is Code.NO_ACCELERATOR


def test_a_pod_with_a_request_and_device_access_counts_the_whole_node_once(make_state: StateFactory) -> None:
    state = make_state(*gpu_nodes(), CN)
    body = pod_with(
        [container(limits={"nvidia.com/gpu": 2}, securityContext={"privileged": True})],
        nodeSelector={PRODUCT: H100},
    )
    verdict = verdict_of(state, body)
    assert verdict.accelerators == 8


def test_a_daemonset_with_device_access_runs_on_every_accelerator_node(make_state: StateFactory) -> None:
    state = make_state(*gpu_nodes(), CN)
    template = {"containers": [container(env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}])]}
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "team"},
        "spec": {"selector": {}, "template": {"metadata": {}, "spec": template}},
    }
    verdict = verdict_of(state, body)
    assert sorted((u.profile, u.count) for u in verdict.uses) == [("h100", 8), ("t4", 4)]


def test_a_licensed_pod_with_device_access_consumes_the_whole_node(make_state: StateFactory) -> None:
    state = make_state(*gpu_nodes(), CN, license_("lic", "acme"))
    body = pod_with([container(securityContext={"privileged": True})], nodeName="h100-1")
    body["metadata"]["annotations"] = {"computegate.io/license": "lic"}
    state.upsert(obj(body))
    assert consumption.live(state, "lic").accelerators == 8


# ----- GPU-sharing resource names -----


@pytest.mark.parametrize(
    ("limits", "chips"),
    [
        ({"nvidia.com/gpu": 2, "nvidia.com/gpucores": 50, "nvidia.com/gpumem": 3000}, 2),  # HAMi
        ({"nvidia.com/gpumem": 3000}, 1),  # memory does not cap compute: a whole chip
        ({"nvidia.com/gpucores": 30}, 0.3),  # a compute share: its share of the chip
        ({"volcano.sh/vgpu-number": 2, "volcano.sh/vgpu-memory": 10240, "volcano.sh/vgpu-cores": 50}, 2),
        ({"aliyun.com/gpu-mem": 4}, 1),
        ({"aliyun.com/gpu-mem": 4, "aliyun.com/gpu-core.percentage": 30}, 1),
        ({"tencent.com/vcuda-core": 150, "tencent.com/vcuda-memory": 40}, 1.5),
    ],
)
def test_a_sharing_unit_never_counts_for_less_than_its_share_of_a_chip(
    make_state: StateFactory, limits: dict[str, Any], chips: float
) -> None:
    state = make_state(node("h100-1", H100), CN)
    verdict = verdict_of(state, pod_with([container(limits=limits)], nodeSelector={PRODUCT: H100}))
    assert verdict.code is Code.NO_LICENSE
    assert verdict.accelerators == pytest.approx(chips)
    assert verdict.tpp == pytest.approx(chips * TPP["h100"])


def test_a_sharing_resource_resolves_its_model_from_the_nodes_that_offer_it(make_state: StateFactory) -> None:
    state = make_state(node("t4-1", T4, gpus=40, resource="volcano.sh/vgpu-number"), node("h100-1", H100), CN)
    verdict = verdict_of(state, pod_with([container(limits={"volcano.sh/vgpu-number": 1})]))
    assert [u.profile for u in verdict.uses] == ["t4"]


# ----- DRA -----


def _first_available_claim(*alternatives: tuple[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "pick", "namespace": "team"},
        "spec": {"devices": {"requests": [{"name": "r", "firstAvailable": [
            {"name": f"alt{i}", "deviceClassName": c, "count": n} for i, (c, n) in enumerate(alternatives)
        ]}]}},
    }  # fmt: skip


def test_first_available_counts_its_most_capable_alternative(make_state: StateFactory) -> None:
    state = make_state(
        node("h100-1", H100),
        CN,
        _first_available_claim(("small.example.com", 1), ("gpu.nvidia.com", 8)),
    )
    body = pod_with([container()], resourceClaims=[{"name": "g", "resourceClaimName": "pick"}])
    verdict = verdict_of(state, body)
    assert verdict.accelerators == 8 and verdict.uses[0].profile == "h100"


def test_consumption_is_recounted_when_a_claim_appears(make_state: StateFactory) -> None:
    state = make_state(node("h100-1", H100), CN, license_("lic", "acme"))
    body = pod_with(
        [container()], resourceClaims=[{"name": "g", "resourceClaimName": "late"}], nodeName="h100-1"
    )
    body["metadata"]["annotations"] = {"computegate.io/license": "lic"}
    state.upsert(obj(body))
    assert consumption.live(state, "lic").accelerators == 1  # not seen yet: one device
    claim = _first_available_claim(("gpu.nvidia.com", 8))
    claim["metadata"]["name"] = "late"
    state.upsert(obj(claim))
    assert consumption.live(state, "lic").accelerators == 8


def test_a_view_with_a_claim_counts_it_and_leaves_the_state_as_it_was(make_state: StateFactory) -> None:
    state = make_state(node("h100-1", H100), CN, license_("lic", "acme"))
    body = pod_with(
        [container()], resourceClaims=[{"name": "g", "resourceClaimName": "late"}], nodeName="h100-1"
    )
    body["metadata"]["annotations"] = {"computegate.io/license": "lic"}
    state.upsert(obj(body))
    assert consumption.live(state, "lic").accelerators == 1
    claim = _first_available_claim(("gpu.nvidia.com", 8))
    claim["metadata"]["name"] = "late"
    view = state.with_claim(obj(claim))
    assert consumption.live(view, "lic").accelerators == 8  # the pod that names it, counted again
    assert consumption.live(state, "lic").accelerators == 1
    assert ("team", "late") in view.claims and ("team", "late") not in state.claims


# ----- pinned placement -----


def test_the_models_considered_are_those_of_the_candidate_nodes(make_state: StateFactory) -> None:
    state = make_state(*gpu_nodes())
    spec = workload(pod(gpus=1)).spec
    assert sorted(p.name for p in considered_models(state, spec, "team") or ()) == ["h100", "t4"]


def test_no_models_are_pinned_when_a_candidate_node_has_no_recognised_label(make_state: StateFactory) -> None:
    state = make_state(*gpu_nodes(), node("mystery-1", "Mystery-GPU"))
    assert considered_models(state, workload(pod(gpus=1)).spec, "team") is None
