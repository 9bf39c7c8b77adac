"""DESIGN.md steps 5 and 7: license requirements that follow an accelerator's bandwidth.

Profiles with bandwidth figures are cluster AcceleratorProfiles made here, so these tests do not
depend on the figures of the built-in catalog (except the tests that say they use it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from computegate.catalog import builtin_catalog
from computegate.engine import Catalog, ClusterState, Code, consumption
from tests.unit.conftest import (
    CATALOG,
    L40,
    T4,
    StateFactory,
    controller,
    license_,
    node,
    obj,
    pod,
    policy,
    profile,
    running,
    tenant,
    verdict_of,
)

PRODUCT = "nvidia.com/gpu.product"
H20 = "NVIDIA-H20"
A10 = "NVIDIA-A10"
H20_TPP = 2368.0
MI300X_LABEL = "amd.com/gpu.product-name"
MI300X_TPP = 20919.0
BUILTIN_CONTROL = "US April 2025 H20-class license requirement"

# The test catalog's groups (D:5 = CN, RU, VE) with the built-in control as shipped.
WITH_CONTROLS = dataclasses.replace(CATALOG, bandwidth_controls=builtin_catalog().bandwidth_controls)


def gpu_profile(
    name: str, label: str, *, tpp: float, dram: float | None, io: float | None, pd: float = 2.9
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "vendor": "NVIDIA",
        "model": name.upper(),
        "resourceNames": ["nvidia.com/gpu"],
        "productLabels": {PRODUCT: [label]},
        "tpp": tpp,
        "performanceDensity": pd,
    }
    if dram is not None:
        spec["memoryBandwidthGBps"] = dram
    if io is not None:
        spec["ioBandwidthGBps"] = io
    return profile(name, **spec)


H20_PROFILE = gpu_profile("h20", H20, tpp=H20_TPP, dram=4000, io=1028)
H20_POD = pod(gpus=1, node_selector={PRODUCT: H20})


@pytest.fixture
def h20_state(make_state: StateFactory) -> StateFactory:
    """An H20 node (DRAM 4,000 GB/s, I/O 1,028 GB/s), the built-in control, and what you add."""

    def build(*bodies: dict[str, Any], catalog: Catalog = WITH_CONTROLS) -> ClusterState:
        return make_state(H20_PROFILE, node("h20-1", H20), *bodies, catalog=catalog)

    return build


# ----- who is covered -----


def test_an_h20_pod_of_a_tenant_in_china_needs_a_license(h20_state: StateFactory) -> None:
    verdict = verdict_of(h20_state(tenant("acme", "CN", namespaces=["team"])), H20_POD)
    assert verdict.code is Code.NO_LICENSE
    assert not verdict.allowed
    assert verdict.controlled_tpp == H20_TPP
    assert verdict.controlled_accelerators == 1
    (use,) = verdict.uses
    assert use.band is None
    assert use.controlled
    assert use.bandwidth_control == BUILTIN_CONTROL
    assert (
        f"NVIDIA H20: DRAM bandwidth 4,000 GB/s ≥ 1,400 GB/s under {BUILTIN_CONTROL}, "
        "for CN (its own jurisdiction)" in verdict.message
    )


def test_an_h20_pod_of_a_tenant_whose_parent_is_in_china_needs_a_license(h20_state: StateFactory) -> None:
    verdict = verdict_of(h20_state(tenant("acme", "US", namespaces=["team"], parent="CN")), H20_POD)
    assert verdict.code is Code.NO_LICENSE
    assert verdict.jurisdiction == "CN"
    assert verdict.jurisdiction_source == "parent"
    assert "for CN (its parent's jurisdiction)" in verdict.message


@pytest.mark.parametrize("country", ["HK", "MO", "RU"])
def test_hong_kong_macau_and_d5_are_covered(h20_state: StateFactory, country: str) -> None:
    assert (
        verdict_of(h20_state(tenant("acme", country, namespaces=["team"])), H20_POD).code is Code.NO_LICENSE
    )


def test_an_h20_pod_of_a_tenant_in_the_us_is_not_controlled(h20_state: StateFactory) -> None:
    verdict = verdict_of(h20_state(tenant("acme", "US", namespaces=["team"])), H20_POD)
    assert verdict.code is Code.NOT_CONTROLLED
    assert verdict.allowed
    assert verdict.controlled_tpp == 0
    assert verdict.uses[0].bandwidth_control is None
    assert "or covered by a bandwidth control" in verdict.message


@pytest.mark.parametrize(
    ("name", "label", "tpp", "dram", "io"),
    [
        ("t4", T4, 1042, 320, 32),
        ("a10", A10, 1000, 600, 64),
        ("l20", "NVIDIA-L20", 1912, 864, 64),  # below every threshold, also together (928 < 1,700)
    ],
)
def test_low_bandwidth_accelerators_are_not_affected(
    h20_state: StateFactory, name: str, label: str, tpp: float, dram: float, io: float
) -> None:
    state = h20_state(
        gpu_profile(name, label, tpp=tpp, dram=dram, io=io, pd=1.0),
        node(f"{name}-1", label),
        tenant("acme", "CN", namespaces=["team"]),
    )
    verdict = verdict_of(state, pod(node_selector={PRODUCT: label}))
    assert verdict.code is Code.NOT_CONTROLLED
    assert verdict.uses[0].profile == name


def test_an_l40_is_controlled_by_its_band_not_by_bandwidth(h20_state: StateFactory) -> None:
    state = h20_state(
        gpu_profile("l40", L40, tpp=2896, dram=864, io=64, pd=4.8),
        node("l40-1", L40),
        tenant("acme", "CN", namespaces=["team"]),
    )
    band = verdict_of(state, pod(node_selector={PRODUCT: L40}))
    assert band.code is Code.NO_LICENSE
    assert band.uses[0].band == "3A090.b"
    assert band.uses[0].bandwidth_control is None
    state.upsert(obj(policy(controlledBands=["3A090.a"])))
    assert verdict_of(state, pod(node_selector={PRODUCT: L40})).code is Code.NOT_CONTROLLED


def test_a_profile_with_unknown_bandwidth_is_not_covered(h20_state: StateFactory) -> None:
    state = h20_state(
        gpu_profile("h20", H20, tpp=H20_TPP, dram=None, io=None), tenant("acme", "CN", namespaces=["team"])
    )
    assert verdict_of(state, H20_POD).code is Code.NOT_CONTROLLED


def test_an_unknown_figure_never_reaches_the_combined_threshold(h20_state: StateFactory) -> None:
    # 1,300 GB/s of DRAM is below 1,400 on its own; with I/O unknown the sum is unknown too.
    state = h20_state(
        gpu_profile("h20", H20, tpp=H20_TPP, dram=1300, io=None), tenant("acme", "CN", namespaces=["team"])
    )
    assert verdict_of(state, H20_POD).code is Code.NOT_CONTROLLED


@pytest.mark.parametrize(
    ("dram", "io", "measure"),
    [
        (1400, None, "DRAM bandwidth 1,400 GB/s ≥ 1,400 GB/s"),
        (None, 1100, "I/O bandwidth 1,100 GB/s ≥ 1,100 GB/s"),
        (1000, 700, "DRAM plus I/O bandwidth 1,700 GB/s ≥ 1,700 GB/s"),
    ],
)
def test_each_threshold_covers_on_its_own_and_is_inclusive(
    h20_state: StateFactory, dram: float | None, io: float | None, measure: str
) -> None:
    state = h20_state(
        gpu_profile("h20", H20, tpp=H20_TPP, dram=dram, io=io), tenant("acme", "CN", namespaces=["team"])
    )
    verdict = verdict_of(state, H20_POD)
    assert verdict.code is Code.NO_LICENSE
    assert measure in verdict.message


def test_just_below_every_threshold_is_not_covered(h20_state: StateFactory) -> None:
    state = h20_state(
        gpu_profile("h20", H20, tpp=H20_TPP, dram=1399, io=300), tenant("acme", "CN", namespaces=["team"])
    )
    assert verdict_of(state, H20_POD).code is Code.NOT_CONTROLLED


# ----- the policy -----


def test_an_empty_bandwidth_control_list_in_the_policy_turns_them_off(h20_state: StateFactory) -> None:
    state = h20_state(tenant("acme", "CN", namespaces=["team"]), policy(bandwidthControls=[]))
    assert verdict_of(state, H20_POD).code is Code.NOT_CONTROLLED


def test_a_policy_without_bandwidth_controls_keeps_the_built_in_ones(h20_state: StateFactory) -> None:
    state = h20_state(tenant("acme", "CN", namespaces=["team"]), policy(enforcement="Enforce"))
    assert verdict_of(state, H20_POD).code is Code.NO_LICENSE


SINGAPORE_CONTROL = {
    "name": "Test I/O control",
    "source": "a test, 2026-06-01",
    "ioGBps": 1000,
    "jurisdictions": ["SG"],
}


def test_a_policy_control_with_only_jurisdictions_replaces_the_built_in_list(
    h20_state: StateFactory,
) -> None:
    state = h20_state(
        tenant("sg-co", "SG", namespaces=["team"]),
        tenant("cn-co", "CN", namespaces=["other"]),
        policy(bandwidthControls=[SINGAPORE_CONTROL]),
    )
    singapore = verdict_of(state, H20_POD)
    # SG matches no rule (Allow), but the control names it: at least RequireLicense.
    assert singapore.code is Code.NO_LICENSE
    assert singapore.jurisdiction == "SG"
    assert "I/O bandwidth 1,028 GB/s ≥ 1,000 GB/s under Test I/O control, for SG" in singapore.message
    assert "bandwidth control Test I/O control names it" in singapore.message
    china = verdict_of(state, pod(namespace="other", node_selector={PRODUCT: H20}))
    assert china.code is Code.NOT_CONTROLLED  # the built-in control no longer applies


def test_a_control_requires_a_license_whatever_the_rules_say(h20_state: StateFactory) -> None:
    state = h20_state(tenant("acme", "CN", namespaces=["team"]), policy(rules=[]))
    verdict = verdict_of(state, H20_POD)
    assert verdict.code is Code.NO_LICENSE
    assert "no CompliancePolicy rule matches it, but bandwidth control" in verdict.message


def test_a_prohibited_jurisdiction_stays_prohibited(h20_state: StateFactory) -> None:
    control = {**SINGAPORE_CONTROL, "jurisdictions": ["IR"]}
    state = h20_state(tenant("acme", "IR", namespaces=["team"]), policy(bandwidthControls=[control]))
    assert verdict_of(state, H20_POD).code is Code.PROHIBITED


def test_a_control_follows_a_group_the_policy_replaces(h20_state: StateFactory) -> None:
    control = {**SINGAPORE_CONTROL, "jurisdictions": [], "groups": ["Watched"]}
    state = h20_state(
        tenant("acme", "BR", namespaces=["team"]),
        policy(bandwidthControls=[control], countryGroups={"Watched": ["BR"]}),
    )
    assert verdict_of(state, H20_POD).code is Code.NO_LICENSE


def test_an_unverified_tenant_on_a_covered_accelerator_is_kyc_incomplete(h20_state: StateFactory) -> None:
    state = h20_state(tenant("acme", "CN", namespaces=["team"], kyc="Pending"))
    assert verdict_of(state, H20_POD).code is Code.KYC_INCOMPLETE


# ----- licenses: scope and caps count both kinds of controlled accelerators -----


def test_a_license_covering_the_h20_admits_and_counts_its_tpp_against_the_cap(
    h20_state: StateFactory,
) -> None:
    state = h20_state(
        tenant("acme", "CN", namespaces=["team"]),
        license_("lic", "acme", accelerators=["h20"], max_tpp=3 * H20_TPP),
        running(pod("old", gpus=2, node_selector={PRODUCT: H20}), license_name="lic"),
    )
    assert consumption.committed(state, "lic").tpp == 2 * H20_TPP
    assert consumption.committed(state, "lic").accelerators == 2
    one = verdict_of(state, H20_POD)
    assert one.code is Code.LICENSED
    assert one.license == "lic"
    assert verdict_of(state, pod(gpus=2, node_selector={PRODUCT: H20})).code is Code.LICENSE_CAP_EXCEEDED


def test_the_accelerator_cap_counts_bandwidth_controlled_accelerators(h20_state: StateFactory) -> None:
    state = h20_state(tenant("acme", "CN", namespaces=["team"]), license_("lic", "acme", max_accelerators=1))
    assert verdict_of(state, H20_POD).code is Code.LICENSED
    assert verdict_of(state, pod(gpus=2, node_selector={PRODUCT: H20})).code is Code.LICENSE_CAP_EXCEEDED


def test_a_license_scope_without_the_h20_does_not_cover_it(h20_state: StateFactory) -> None:
    state = h20_state(
        tenant("acme", "CN", namespaces=["team"]), license_("lic", "acme", accelerators=["h100"])
    )
    verdict = verdict_of(state, H20_POD)
    assert verdict.code is Code.LICENSE_SCOPE
    assert "not h20" in verdict.message


def test_a_workload_with_both_kinds_is_checked_against_both(h20_state: StateFactory) -> None:
    # One node with an H20 and an MI300X (3A090.a): a pod asking for one of each.
    mixed_node = {
        "kind": "Node",
        "metadata": {"name": "mixed", "labels": {PRODUCT: H20, MI300X_LABEL: "AMD_Instinct_MI300X_OAM"}},
        "status": {"capacity": {"nvidia.com/gpu": "8", "amd.com/gpu": "8"}},
    }
    both = {
        **H20_POD,
        "spec": {
            "nodeSelector": {PRODUCT: H20},
            "containers": [
                {"name": "a", "image": "x", "resources": {"limits": {"nvidia.com/gpu": 1, "amd.com/gpu": 1}}}
            ],
        },
    }
    narrow = h20_state(
        mixed_node, tenant("acme", "CN", namespaces=["team"]), license_("lic", "acme", accelerators=["h20"])
    )
    verdict = verdict_of(narrow, both)
    assert verdict.code is Code.LICENSE_SCOPE
    assert verdict.controlled_tpp == H20_TPP + MI300X_TPP
    wide = h20_state(
        mixed_node,
        tenant("acme", "CN", namespaces=["team"]),
        license_("lic", "acme", accelerators=["h20", "mi300x"], max_tpp=H20_TPP + MI300X_TPP),
    )
    assert verdict_of(wide, both).code is Code.LICENSED
    deployment = controller("Deployment", both["spec"], replicas=2)
    assert verdict_of(wide, deployment).code is Code.LICENSE_CAP_EXCEEDED


def test_consumption_follows_the_license_tenants_jurisdiction(h20_state: StateFactory) -> None:
    # The same H20 pods under a US tenant's license are not controlled, so they use none of it.
    state = h20_state(
        tenant("usco", "US", namespaces=["team"]),
        license_("lic", "usco"),
        running(pod("old", gpus=2, node_selector={PRODUCT: H20}), license_name="lic"),
    )
    assert consumption.committed(state, "lic").tpp == 0
    state.upsert(obj(tenant("usco", "US", namespaces=["team"], parent="CN")))
    assert consumption.committed(state, "lic").tpp == 2 * H20_TPP


def test_a_scale_up_of_an_h20_deployment_is_judged_on_its_growth(h20_state: StateFactory) -> None:
    from computegate.engine import decide_update
    from tests.unit.conftest import NOW, workload

    state = h20_state(tenant("acme", "CN", namespaces=["team"]), license_("lic", "acme", max_tpp=H20_TPP))
    old = workload(controller("Deployment", H20_POD["spec"], replicas=1))
    new = workload(controller("Deployment", H20_POD["spec"], replicas=3))
    assert decide_update(state, old, new, at=NOW).code is Code.LICENSE_CAP_EXCEEDED
    assert decide_update(state, new, old, at=NOW).allowed


# ----- the built-in data, end to end -----


def test_the_built_in_h20_is_covered_for_china_and_the_built_in_t4_is_not(make_state: StateFactory) -> None:
    catalog = builtin_catalog()
    state = make_state(
        node("h20", H20), node("t4", T4), tenant("acme", "CN", namespaces=["team"]), catalog=catalog
    )
    h20 = verdict_of(state, H20_POD)
    assert h20.code is Code.NO_LICENSE
    assert h20.uses[0].profile == "nvidia-h20-96gb"
    assert "DRAM bandwidth 4,000 GB/s ≥ 1,400 GB/s" in h20.message
    assert verdict_of(state, pod(node_selector={PRODUCT: T4})).code is Code.NOT_CONTROLLED


def test_the_built_in_control_names_china_hong_kong_macau_and_d5() -> None:
    (control,) = builtin_catalog().bandwidth_controls
    assert control.name == BUILTIN_CONTROL
    assert (control.dram_gbps, control.io_gbps, control.combined_gbps) == (1400, 1100, 1700)
    assert set(control.jurisdictions) == {"CN", "HK", "MO"}
    assert control.groups == ["D:5"]
    assert "2025" in control.source


# ----- the worst case among candidate models (step 3): controlled for the tenant first -----

RTX = "NVIDIA-GeForce-RTX-4090-D"
RTX_PROFILE = profile(
    "rtx-4090-d",
    vendor="NVIDIA",
    model="GeForce RTX 4090 D",
    resourceNames=["nvidia.com/gpu"],
    productLabels={PRODUCT: [RTX]},
    tpp=4708,
    datacenter=False,
    memoryBandwidthGBps=1008,
    ioBandwidthGBps=64,
)
ANY_GPU = pod(gpus=1)  # no selector: it may land on either model


def test_a_covered_h20_is_not_hidden_by_an_uncontrolled_chip_with_more_tpp(h20_state: StateFactory) -> None:
    state = h20_state(RTX_PROFILE, node("rtx-1", RTX), tenant("acme", "CN", namespaces=["team"]))
    verdict = verdict_of(state, ANY_GPU)
    assert verdict.code is Code.NO_LICENSE
    assert verdict.uses[0].profile == "h20"


def test_for_a_tenant_no_control_covers_the_highest_tpp_counts(h20_state: StateFactory) -> None:
    state = h20_state(RTX_PROFILE, node("rtx-1", RTX), tenant("acme", "US", namespaces=["team"]))
    verdict = verdict_of(state, ANY_GPU)
    assert verdict.code is Code.NOT_CONTROLLED
    assert verdict.uses[0].profile == "rtx-4090-d"


def test_an_unbound_licensed_pod_consumes_as_the_model_its_tenant_would_be_judged_on(
    h20_state: StateFactory,
) -> None:
    state = h20_state(
        RTX_PROFILE,
        node("rtx-1", RTX),
        license_("lic", "acme"),
        running(pod("old", gpus=1), license_name="lic"),
    )
    assert consumption.committed(state, "lic").tpp == 0  # counted before its tenant is known
    state.upsert(obj(tenant("acme", "CN", namespaces=["team"])))
    assert consumption.committed(state, "lic").tpp == H20_TPP
    state.upsert(obj(tenant("acme", "US", namespaces=["team"])))
    assert consumption.committed(state, "lic").tpp == 0


def test_a_band_controlled_model_counts_before_an_uncontrolled_one_with_more_tpp(
    make_state: StateFactory,
) -> None:
    dense = profile("dense", vendor="X", model="Dense", resourceNames=["nvidia.com/gpu"],
                    productLabels={PRODUCT: ["Dense"]}, tpp=2000, performanceDensity=6.0)  # fmt: skip
    wide = profile("wide", vendor="X", model="Wide", resourceNames=["nvidia.com/gpu"],
                   productLabels={PRODUCT: ["Wide"]}, tpp=3000, performanceDensity=1.0)  # fmt: skip
    state = make_state(
        dense, wide, node("d", "Dense"), node("w", "Wide"), tenant("acme", "CN", namespaces=["team"])
    )
    verdict = verdict_of(state, ANY_GPU)
    assert verdict.uses[0].profile == "dense"
    assert verdict.code is Code.NO_LICENSE


# ----- the CRDs carry the bandwidth fields in a form the API server accepts -----


def _exclusive_bounds(node: object) -> list[object]:
    if isinstance(node, dict):
        found = [node[k] for k in ("exclusiveMinimum", "exclusiveMaximum") if k in node]
        return found + [bound for value in node.values() for bound in _exclusive_bounds(value)]
    if isinstance(node, list):
        return [bound for item in node for bound in _exclusive_bounds(item)]
    return []


def test_the_crds_give_exclusive_bounds_as_openapi_v3_flags() -> None:
    from computegate.models.crds import crd_manifests, spec_schema
    from computegate.models.resources import AcceleratorProfileSpec

    bounds = _exclusive_bounds(crd_manifests())
    assert bounds, "the bandwidth fields are exclusive (> 0)"
    assert all(bound is True for bound in bounds), bounds
    dram = spec_schema(AcceleratorProfileSpec)["properties"]["memoryBandwidthGBps"]
    assert (dram["minimum"], dram["exclusiveMinimum"]) == (0, True)
