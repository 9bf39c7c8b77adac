"""DESIGN.md step 3 (which model counts) and the MIG and resource-claim parts of step 2."""

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
    license_,
    node,
    pod,
    policy,
    profile,
    tenant,
    verdict_of,
)

GPU = "nvidia.com/gpu"
PRODUCT = "nvidia.com/gpu.product"


def affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}
    }


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    requirement: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        requirement["values"] = list(values)
    return requirement


def model_of(state: Any, body: dict[str, Any]) -> str:
    verdict = verdict_of(state, body)
    (use,) = verdict.uses
    return str(use.profile)


@pytest.fixture
def mixed(make_state: StateFactory) -> StateFactory:
    """An H100, an A100, an L40 and a T4 node, with labels to select them by."""

    def build(*bodies: dict[str, Any]) -> Any:
        return make_state(
            node("h100-1", H100, pool="big", gen="9"),
            node("a100-1", A100, pool="train", gen="8"),
            node("l40-1", L40, pool="infer", gen="7"),
            node("t4-1", T4, pool="infer", gen="4", spot="true"),
            tenant("acme", "CN", namespaces=["team"]),
            *bodies,
        )

    return build


# ----- bound pods and node selection -----


def test_a_bound_pod_uses_its_node_model(mixed: StateFactory) -> None:
    assert model_of(mixed(), pod(nodeName="a100-1")) == "a100"


def test_a_bound_pod_ignores_its_selector(mixed: StateFactory) -> None:
    body = pod(nodeName="t4-1", node_selector={PRODUCT: H100})
    assert model_of(mixed(), body) == "t4"


def test_a_pod_bound_to_an_unknown_node_is_unresolved(mixed: StateFactory) -> None:
    verdict = verdict_of(mixed(), pod(nodeName="ghost"))
    assert not verdict.uses[0].resolved
    assert verdict.uses[0].profile == "h100"  # the most capable nvidia.com/gpu profile
    assert verdict.tpp is None


def test_a_pod_without_selector_counts_the_worst_case_over_all_nodes(mixed: StateFactory) -> None:
    assert model_of(mixed(), pod()) == "h100"


def test_a_node_selector_limits_the_candidate_nodes(mixed: StateFactory) -> None:
    assert model_of(mixed(), pod(node_selector={"pool": "train"})) == "a100"


def test_a_node_selector_on_the_product_label_picks_that_model(mixed: StateFactory) -> None:
    assert model_of(mixed(), pod(node_selector={PRODUCT: L40})) == "l40"


def test_the_worst_of_several_admitted_nodes_counts(mixed: StateFactory) -> None:
    assert model_of(mixed(), pod(node_selector={"pool": "infer"})) == "l40"


def test_affinity_terms_are_ored_and_the_worst_case_counts(mixed: StateFactory) -> None:
    body = pod(
        affinity=affinity(
            {"matchExpressions": [expr("pool", "In", "infer")]},
            {"matchExpressions": [expr("pool", "In", "train")]},
        )
    )
    assert model_of(mixed(), body) == "a100"


def test_requirements_within_a_term_are_anded(mixed: StateFactory) -> None:
    body = pod(affinity=affinity({"matchExpressions": [expr("pool", "In", "infer"), expr("spot", "Exists")]}))
    assert model_of(mixed(), body) == "t4"


def test_node_selector_and_affinity_must_both_admit_the_node(mixed: StateFactory) -> None:
    body = pod(
        node_selector={"pool": "infer"},
        affinity=affinity({"matchExpressions": [expr("gen", "Lt", "5")]}),
    )
    assert model_of(mixed(), body) == "t4"


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (expr("pool", "In", "train", "nowhere"), "a100"),
        (expr("pool", "NotIn", "big"), "a100"),  # a100, l40, t4 remain; worst is a100
        (expr("spot", "Exists"), "t4"),
        (expr("spot", "DoesNotExist"), "h100"),
        (expr("gen", "Gt", "8"), "h100"),
        (expr("gen", "Lt", "8"), "l40"),
        (expr("gen", "Gt", "4"), "h100"),
        (expr("gen", "Lt", "5"), "t4"),
    ],
)
def test_every_selector_operator(mixed: StateFactory, requirement: dict[str, Any], expected: str) -> None:
    body = pod(affinity=affinity({"matchExpressions": [requirement]}))
    assert model_of(mixed(), body) == expected


def test_not_in_also_admits_nodes_without_the_label(make_state: StateFactory) -> None:
    state = make_state(node("a100-1", A100), node("h100-1", H100, pool="big"))
    body = pod(affinity=affinity({"matchExpressions": [expr("pool", "NotIn", "big")]}))
    assert model_of(state, body) == "a100"


def test_gt_and_lt_never_match_a_non_integer_label(make_state: StateFactory) -> None:
    state = make_state(node("a100-1", A100, gen="8"), node("h100-1", H100, gen="nine"))
    body = pod(affinity=affinity({"matchExpressions": [expr("gen", "Gt", "1")]}))
    assert model_of(state, body) == "a100"


def test_match_fields_select_a_node_by_name(mixed: StateFactory) -> None:
    body = pod(affinity=affinity({"matchFields": [expr("metadata.name", "In", "l40-1")]}))
    assert model_of(mixed(), body) == "l40"


def test_match_fields_not_in_excludes_a_node_by_name(mixed: StateFactory) -> None:
    body = pod(affinity=affinity({"matchFields": [expr("metadata.name", "NotIn", "h100-1")]}))
    assert model_of(mixed(), body) == "a100"


def test_a_node_that_does_not_offer_the_resource_is_not_a_candidate(make_state: StateFactory) -> None:
    state = make_state(node("a100-1", A100), node("h100-cpu", H100, resource="cpu", gpus=64))
    assert model_of(state, pod()) == "a100"


def test_free_capacity_does_not_matter_only_capacity(make_state: StateFactory) -> None:
    busy = pod(name="busy", gpus=8, nodeName="h100-1")
    busy["status"] = {"phase": "Running"}
    state = make_state(node("h100-1", H100), node("a100-1", A100), busy)
    assert model_of(state, pod()) == "h100"


def test_taints_are_ignored(make_state: StateFactory) -> None:
    tainted = node("h100-1", H100)
    tainted["spec"] = {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}
    state = make_state(tainted, node("a100-1", A100))
    assert model_of(state, pod()) == "h100"


# ----- product-label values named in the selector -----


def test_a_product_label_value_named_in_the_selector_counts_without_such_a_node(
    make_state: StateFactory,
) -> None:
    state = make_state(node("a100-1", A100))
    verdict = verdict_of(state, pod(node_selector={PRODUCT: H100}))
    assert verdict.uses[0].profile == "h100"
    assert verdict.uses[0].resolved


def test_product_label_values_named_in_affinity_count_and_the_worst_wins(make_state: StateFactory) -> None:
    state = make_state(node("l40-1", L40))
    body = pod(affinity=affinity({"matchExpressions": [expr(PRODUCT, "In", T4, A100)]}))
    assert model_of(state, body) == "a100"


def test_a_named_product_label_value_no_profile_knows_is_unresolved(make_state: StateFactory) -> None:
    state = make_state(node("a100-1", A100))
    verdict = verdict_of(state, pod(namespace="nowhere", node_selector={PRODUCT: "NVIDIA-B200"}))
    assert not verdict.uses[0].resolved
    assert verdict.uses[0].profile == "h100"


def test_a_named_label_value_with_a_gfd_suffix_resolves(make_state: StateFactory) -> None:
    state = make_state()
    assert model_of(state, pod(node_selector={PRODUCT: A100 + "-SHARED"})) == "a100"


# ----- GPU Feature Discovery suffixes on node labels -----


@pytest.mark.parametrize(
    "suffix",
    ["-SHARED", "-MIG-1g.10gb", "-MIG-3g.40gb", "-MIG-INVALID", "-MIG-1g.10gb-SHARED", "-SHARED-MIG-2g.20gb"],
)
def test_gfd_suffixes_on_a_node_label_still_identify_the_model(make_state: StateFactory, suffix: str) -> None:
    state = make_state(node("a100-1", A100 + suffix))
    verdict = verdict_of(state, pod())
    assert verdict.uses[0].profile == "a100"
    assert verdict.uses[0].resolved


# ----- unresolved models -----


def test_a_candidate_node_whose_labels_match_no_profile_makes_the_model_unresolved(
    make_state: StateFactory,
) -> None:
    state = make_state(node("a100-1", A100), node("mystery", "NVIDIA-Future-GPU"))
    verdict = verdict_of(state, pod())
    assert not verdict.uses[0].resolved
    assert verdict.uses[0].profile == "h100"


def test_no_candidate_node_makes_the_model_unresolved(make_state: StateFactory) -> None:
    verdict = verdict_of(make_state(), pod())
    assert not verdict.uses[0].resolved


def test_assume_most_capable_takes_the_highest_tpp_profile_for_the_resource(make_state: StateFactory) -> None:
    state = make_state(tenant("acme", "CN", namespaces=["team"]), license_("lic", "acme"))
    verdict = verdict_of(state, pod(gpus=2))
    assert verdict.code is Code.LICENSED
    assert verdict.uses[0].profile == "h100"
    assert verdict.controlled_tpp == 2 * TPP["h100"]
    assert verdict.tpp is None  # the model was assumed, so no total is claimed
    assert "assumed" in verdict.message


def test_unknown_accelerator_deny_rejects_an_unresolved_model(make_state: StateFactory) -> None:
    state = make_state(
        node("mystery", "NVIDIA-Future-GPU"),
        tenant("acme", "CN", namespaces=["team"]),
        license_("lic", "acme"),
        policy(unknownAccelerator="Deny"),
    )
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.UNKNOWN_ACCELERATOR
    assert not verdict.allowed
    assert "AcceleratorProfile" in verdict.message


def test_unknown_accelerator_deny_does_not_touch_a_resolved_model(make_state: StateFactory) -> None:
    state = make_state(
        node("a100-1", A100),
        tenant("acme", "CN", namespaces=["team"]),
        license_("lic", "acme"),
        policy(unknownAccelerator="Deny"),
    )
    assert verdict_of(state, pod()).code is Code.LICENSED


def test_an_uncontrolled_node_among_unknown_ones_is_assumed_controlled(make_state: StateFactory) -> None:
    state = make_state(
        node("t4-1", T4), node("mystery", "NVIDIA-Future-GPU"), tenant("acme", "CN", namespaces=["team"])
    )
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.NO_LICENSE


# ----- MIG -----


def test_a_mig_slice_is_its_parent_chip_scaled_by_g_over_slices(make_state: StateFactory) -> None:
    state = make_state(node("a100-1", A100 + "-MIG-1g.10gb", resource="nvidia.com/mig-1g.10gb", gpus=56))
    verdict = verdict_of(state, pod(resource="nvidia.com/mig-1g.10gb", gpus=1))
    use = verdict.uses[0]
    assert use.profile == "a100"
    assert use.count == pytest.approx(1 / 7)
    assert verdict.tpp == pytest.approx(TPP["a100"] / 7)
    assert use.band == "3A090.a"  # a slice has its parent chip's band


def test_a_mig_slice_without_a_known_node_assumes_the_most_capable_mig_chip(make_state: StateFactory) -> None:
    verdict = verdict_of(make_state(), pod(resource="nvidia.com/mig-2g.20gb", gpus=1))
    use = verdict.uses[0]
    assert use.profile == "h100"
    assert use.count == pytest.approx(2 / 7)


def test_max_accelerators_counts_a_mig_slice_as_g_over_slices(make_state: StateFactory) -> None:
    base = (
        node("a100-1", A100 + "-MIG-1g.10gb", resource="nvidia.com/mig-1g.10gb", gpus=56),
        tenant("acme", "CN", namespaces=["team"]),
        license_("lic", "acme", max_accelerators=1),
    )
    state = make_state(*base)
    assert verdict_of(state, pod(resource="nvidia.com/mig-1g.10gb", gpus=7)).code is Code.LICENSED
    assert verdict_of(state, pod(resource="nvidia.com/mig-1g.10gb", gpus=8)).code is Code.LICENSE_CAP_EXCEEDED


def test_a_cap_exactly_met_by_fractional_slices_is_not_exceeded(make_state: StateFactory) -> None:
    state = make_state(
        node("a100-1", A100 + "-MIG-3g.40gb", resource="nvidia.com/mig-3g.40gb", gpus=14),
        tenant("acme", "CN", namespaces=["team"]),
        license_("lic", "acme", max_tpp=TPP["a100"] * 3 / 7 * 3),
    )
    assert verdict_of(state, pod(resource="nvidia.com/mig-3g.40gb", gpus=3)).code is Code.LICENSED


# ----- Dynamic Resource Allocation -----


def claim(name: str, device_class: str, count: int = 1, *, v1: bool = False) -> dict[str, Any]:
    request: dict[str, Any] = (
        {"name": "gpus", "exactly": {"deviceClassName": device_class, "count": count}}
        if v1
        else {"name": "gpus", "deviceClassName": device_class, "count": count}
    )
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"devices": {"requests": [request]}},
    }


def claim_template(name: str, device_class: str, count: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [{"name": "g", "exactly": {"deviceClassName": device_class, "count": count}}]
                }
            }
        },
    }


def device_class(name: str) -> dict[str, Any]:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": name}}


def claim_pod(**reference: str) -> dict[str, Any]:
    body = pod(resource="cpu", gpus=1)
    body["spec"]["resourceClaims"] = [{"name": "gpus", **reference}]
    return body


@pytest.mark.parametrize("v1", [False, True])
def test_a_resource_claim_asks_for_its_device_count_of_its_class(make_state: StateFactory, v1: bool) -> None:
    state = make_state(
        node("a100-1", A100), device_class("gpu.nvidia.com"), claim("two", "gpu.nvidia.com", 2, v1=v1)
    )
    verdict = verdict_of(state, claim_pod(resourceClaimName="two"))
    (use,) = verdict.uses
    assert use.profile == "a100"
    assert use.count == 2
    assert verdict.tpp == 2 * TPP["a100"]


def test_a_resource_claim_template_asks_for_its_device_count(make_state: StateFactory) -> None:
    state = make_state(node("h100-1", H100), claim_template("tmpl", "gpu.nvidia.com", 4))
    verdict = verdict_of(state, claim_pod(resourceClaimTemplateName="tmpl"))
    (use,) = verdict.uses
    assert use.profile == "h100"
    assert use.count == 4


def test_a_device_class_without_a_known_node_counts_its_worst_model(make_state: StateFactory) -> None:
    state = make_state(claim("one", "gpu.nvidia.com"))
    verdict = verdict_of(state, claim_pod(resourceClaimName="one"))
    assert verdict.uses[0].profile == "h100"


def test_a_claim_that_does_not_exist_yet_is_an_unresolved_device(make_state: StateFactory) -> None:
    state = make_state(
        node("a100-1", A100), tenant("acme", "CN", namespaces=["team"]), policy(unknownAccelerator="Deny")
    )
    verdict = verdict_of(state, claim_pod(resourceClaimName="missing"))
    assert verdict.code is Code.UNKNOWN_ACCELERATOR


def test_a_device_class_no_profile_names_is_unresolved(make_state: StateFactory) -> None:
    state = make_state(
        node("a100-1", A100),
        claim("x", "fpga.example.com"),
        tenant("acme", "CN", namespaces=["team"]),
        policy(unknownAccelerator="Deny"),
    )
    verdict = verdict_of(state, claim_pod(resourceClaimName="x"))
    assert verdict.code is Code.UNKNOWN_ACCELERATOR


def test_a_cluster_profile_device_class_name_resolves_claims(make_state: StateFactory) -> None:
    npu = profile(
        "acme-npu",
        vendor="Acme",
        model="NPU",
        resourceNames=["example.com/npu"],
        productLabels={"example.com/npu.model": ["npu1"]},
        deviceClassNames=["npu.example.com"],
        tpp=7000,
    )
    state = make_state(
        npu,
        node("npu-1", "npu1", resource="example.com/npu", label_key="example.com/npu.model"),
        device_class("npu.example.com"),
        claim("n", "npu.example.com", 3),
    )
    verdict = verdict_of(state, claim_pod(resourceClaimName="n"))
    assert verdict.uses[0].profile == "acme-npu"
    assert verdict.tpp == 21000


def test_the_device_class_extended_resource_resolves_through_device_class_names(
    make_state: StateFactory,
) -> None:
    resource = "deviceclass.resource.kubernetes.io/gpu.nvidia.com"
    state = make_state(node("a100-1", A100, resource=resource))
    verdict = verdict_of(state, pod(resource=resource, gpus=2))
    assert verdict.uses[0].profile == "a100"
    assert verdict.tpp == 2 * TPP["a100"]


# ----- cluster AcceleratorProfiles over the built-in catalog -----

A100_SPEC = {
    "vendor": "NVIDIA",
    "model": "A100 (site)",
    "resourceNames": ["nvidia.com/gpu"],
    "productLabels": {PRODUCT: [A100]},
    "migComputeSlices": 7,
}


def test_a_cluster_profile_with_a_builtin_name_replaces_it(make_state: StateFactory) -> None:
    state = make_state(
        node("a100-1", A100),
        tenant("acme", "CN", namespaces=["team"]),
        profile("a100", **A100_SPEC, tpp=1000, performanceDensity=1.0),
    )
    verdict = verdict_of(state, pod(node_selector={PRODUCT: A100}))
    assert verdict.code is Code.NOT_CONTROLLED
    assert verdict.uses[0].tpp_per_chip == 1000


def test_a_cluster_profile_with_another_name_takes_precedence_for_a_shared_label(
    make_state: StateFactory,
) -> None:
    state = make_state(
        node("a100-1", A100),
        tenant("acme", "CN", namespaces=["team"]),
        profile("site-a100", **A100_SPEC, tpp=6000, performanceDensity=7.0),
    )
    verdict = verdict_of(state, pod(node_selector={PRODUCT: A100}))
    assert verdict.uses[0].profile == "site-a100"
    assert verdict.uses[0].tpp_per_chip == 6000


@pytest.mark.parametrize(
    ("covers", "expected"),
    [(["a100"], Code.LICENSED), (["site-a100"], Code.LICENSED), (["h100"], Code.LICENSE_SCOPE)],
)
def test_a_license_naming_either_the_shadowed_or_the_shadowing_profile_covers_it(
    make_state: StateFactory, covers: list[str], expected: Code
) -> None:
    state = make_state(
        node("a100-1", A100),
        tenant("acme", "CN", namespaces=["team"]),
        profile("site-a100", **A100_SPEC, tpp=6000, performanceDensity=7.0),
        license_("lic", "acme", accelerators=covers),
    )
    assert verdict_of(state, pod(node_selector={PRODUCT: A100})).code is expected


def test_license_scope_is_checked_against_the_worst_case_model(mixed: StateFactory) -> None:
    state = mixed(license_("lic", "acme", accelerators=["a100"]))
    assert verdict_of(state, pod(node_selector={"pool": "train"})).code is Code.LICENSED
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.LICENSE_SCOPE
    assert "h100" in verdict.message


def test_the_candidate_cache_stays_bounded_in_bytes_and_answers_stay_right(mixed: StateFactory) -> None:
    from computegate.engine.indexes import BoundedCache

    state = mixed()
    state.selection_cache = BoundedCache(max_bytes=16 * 1024)
    for index in range(200):
        assert (
            model_of(state, pod(node_selector={"pool": "train", "n": str(index)}, nodeName="a100-1"))
            == "a100"
        )
        assert state.selection_cache.bytes <= 16 * 1024
    assert model_of(state, pod(node_selector={"pool": "infer"})) == "l40"


def test_a_selector_too_large_for_the_cache_is_answered_but_never_kept(mixed: StateFactory) -> None:
    from computegate.engine.indexes import BoundedCache

    state = mixed()
    state.selection_cache = BoundedCache(max_bytes=64 * 1024)
    values = [f"value-{index:05d}" for index in range(2_000)]
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["infer", *values]}]}
    ]}}}  # fmt: skip
    assert model_of(state, pod(affinity=affinity)) == "l40"
    assert len(state.selection_cache) == 0


def test_a_claim_for_all_devices_of_a_class_counts_the_largest_node(make_state: StateFactory) -> None:
    body = claim("all", "gpu.nvidia.com", v1=True)
    body["spec"]["devices"]["requests"][0]["exactly"] = {
        "deviceClassName": "gpu.nvidia.com",
        "allocationMode": "All",
    }
    state = make_state(node("a100-1", A100, gpus=4), node("h100-1", H100, gpus=8), body)
    verdict = verdict_of(state, claim_pod(resourceClaimName="all"))
    (use,) = verdict.uses
    assert use.count == 8
    assert use.profile == "h100"


def test_claims_and_extended_resources_in_one_pod_are_both_counted(make_state: StateFactory) -> None:
    state = make_state(node("h100-1", H100), claim("one", "gpu.nvidia.com"))
    body = pod(gpus=2)
    body["spec"]["resourceClaims"] = [{"name": "gpus", "resourceClaimName": "one"}]
    verdict = verdict_of(state, body)
    assert verdict.accelerators == 3


def _undescribed(schema: dict[str, Any], where: str) -> list[str]:
    missing = [] if schema.get("description") else [where]
    for name, sub in (schema.get("properties") or {}).items():
        missing += _undescribed(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict) and (
            schema[key].get("properties") or schema[key].get("type") == "object"
        ):
            missing += [m for m in _undescribed(schema[key], f"{where}[]") if m != f"{where}[]"]
    return missing


def test_kubectl_explain_has_a_description_for_every_field_of_every_crd() -> None:
    from computegate.models.crds import crd_manifests

    for crd in crd_manifests():
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        kind = crd["spec"]["names"]["kind"]
        assert _undescribed(root["properties"]["spec"], f"{kind}.spec") == []
        assert root["description"]
