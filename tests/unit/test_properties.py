"""Invariants of the decision, checked over generated states and workloads (hypothesis)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from computegate.catalog import builtin_catalog
from computegate.engine import ClusterState, Verdict
from computegate.engine.policy import _STRICTNESS
from tests.unit.conftest import (
    A100,
    CATALOG,
    H100,
    L40,
    T4,
    container,
    controller,
    license_,
    node,
    obj,
    pod_with,
    policy,
    profile,
    running,
    tenant,
    verdict_of,
)

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PRODUCTS = [H100, A100, L40, T4, "Mystery-GPU"]
COUNTRIES = ["US", "SG", "CN", "MO", "VE", "IR", "KP"]
LICENSE_WINDOWS = [
    ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),  # valid
    ("2025-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),  # expired
    ("2026-09-01T00:00:00Z", "2027-01-01T00:00:00Z"),  # not yet valid
    ("2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z"),  # valid, expires sooner
]


@st.composite
def licenses(draw: st.DrawFn, index: int) -> dict[str, Any]:
    valid_from, valid_until = draw(st.sampled_from(LICENSE_WINDOWS))
    return license_(
        f"lic-{index}",
        "acme",
        max_tpp=draw(st.sampled_from([0, 5000, 20000, 100000, 1_000_000])),
        max_accelerators=draw(st.sampled_from([None, 1, 4, 16])),
        accelerators=draw(
            st.sampled_from([None, ["h100"], ["a100"], ["a100", "l40"], ["h100", "a100", "l40"]])
        ),
        valid_from=valid_from,
        valid_until=valid_until,
        revoked=draw(st.booleans()),
    )


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    """The state's ingredients, so that one ingredient can be varied while the others stay."""
    products = draw(st.lists(st.sampled_from(PRODUCTS), min_size=0, max_size=4, unique=True))
    return {
        "nodes": [node(f"n{i}", product) for i, product in enumerate(products)],
        "jurisdiction": draw(st.sampled_from(COUNTRIES)),
        "parent": draw(st.sampled_from([None, *COUNTRIES])),
        "kyc": draw(st.sampled_from(["Verified", "Verified", "Verified", "Pending"])),
        "namespace": draw(st.sampled_from(["team", "team", "team", "nowhere", "kube-system"])),
        "licenses": [draw(licenses(i)) for i in range(draw(st.integers(0, 3)))],
        "used": draw(st.sampled_from([0, 1, 4])),  # GPUs already running under lic-0
        "policy": policy(
            enforcement=draw(st.sampled_from(["Enforce", "Enforce", "Audit"])),
            unknownAccelerator=draw(st.sampled_from(["AssumeMostCapable", "Deny"])),
            unknownTenant=draw(st.sampled_from(["Deny", "Allow"])),
            requireKYC=draw(st.booleans()),
        ),
        "selector": draw(st.sampled_from([None, H100, A100, L40, T4, "Mystery-GPU"])),
    }


def build(world: dict[str, Any]) -> ClusterState:
    state = ClusterState(CATALOG)
    owner = tenant(
        "acme", world["jurisdiction"], namespaces=["team"], parent=world["parent"], kyc=world["kyc"]
    )
    for body in [*world["nodes"], owner, *world["licenses"], world["policy"]]:
        state.upsert(obj(body))
    if world["used"] and world["licenses"]:
        old = pod_with([container(limits={"nvidia.com/gpu": world["used"]})], name="old")
        state.upsert(obj(running(old, license_name="lic-0")))
    return state


def gpu_pod(world: dict[str, Any], containers: list[dict[str, Any]]) -> dict[str, Any]:
    selector = {"nodeSelector": {"nvidia.com/gpu.product": world["selector"]}} if world["selector"] else {}
    return pod_with(containers, namespace=world["namespace"], **selector)


def gpus(count: int, resource: str = "nvidia.com/gpu") -> dict[str, Any]:
    return container(f"c-{resource}-{count}", limits={resource: count})


EXTRA_RESOURCES = st.sampled_from(
    ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "amd.com/gpu", "habana.ai/gaudi"]
)


@PROPERTIES
@given(world=worlds(), count=st.integers(0, 8), more=st.integers(1, 8), extra=EXTRA_RESOURCES)
def test_adding_accelerators_never_turns_a_denial_into_an_admission(
    world: dict[str, Any], count: int, more: int, extra: str
) -> None:
    state = build(world)
    before = verdict_of(state, gpu_pod(world, [gpus(count)]))
    bigger = verdict_of(state, gpu_pod(world, [gpus(count + more)]))
    another = verdict_of(state, gpu_pod(world, [gpus(count), gpus(more, extra)]))
    if not before.allowed:
        assert not bigger.allowed, (before.code, bigger.code)
        assert not another.allowed, (before.code, another.code)


@PROPERTIES
@given(world=worlds(), count=st.integers(1, 4), replicas=st.integers(0, 4), more=st.integers(1, 4))
def test_adding_replicas_never_turns_a_denial_into_an_admission(
    world: dict[str, Any], count: int, replicas: int, more: int
) -> None:
    state = build(world)
    template = gpu_pod(world, [gpus(count)])["spec"]
    kind = "Deployment" if count % 2 else "StatefulSet"
    before = verdict_of(state, controller(kind, template, namespace=world["namespace"], replicas=replicas))
    after = verdict_of(
        state, controller(kind, template, namespace=world["namespace"], replicas=replicas + more)
    )
    if not before.allowed:
        assert not after.allowed, (before.code, after.code)


def _action(state: ClusterState, country: str | None) -> int:
    return -1 if country is None else _STRICTNESS[state.policy.action_for(country).action]


@PROPERTIES
@given(world=worlds(), stricter=st.sampled_from(COUNTRIES), parent=st.sampled_from([None, *COUNTRIES]))
def test_a_more_restrictive_jurisdiction_never_loosens_the_verdict(
    world: dict[str, Any], stricter: str, parent: str | None
) -> None:
    lax_state = build(world)
    strict_world = {**world, "jurisdiction": stricter, "parent": parent}
    strict_state = build(strict_world)
    lax = max(_action(lax_state, world["jurisdiction"]), _action(lax_state, world["parent"]))
    strict = max(_action(strict_state, stricter), _action(strict_state, parent))
    body = gpu_pod(world, [gpus(2)])
    if strict >= lax:
        lax_verdict, strict_verdict = verdict_of(lax_state, body), verdict_of(strict_state, body)
        if not lax_verdict.allowed:
            assert not strict_verdict.allowed, (lax_verdict.code, strict_verdict.code)
        if lax_verdict.would_deny:
            assert strict_verdict.would_deny, (lax_verdict.code, strict_verdict.code)


@PROPERTIES
@given(world=worlds(), parent=st.sampled_from(COUNTRIES))
def test_adding_a_parent_jurisdiction_never_loosens_the_verdict(world: dict[str, Any], parent: str) -> None:
    body = gpu_pod(world, [gpus(1)])
    without = verdict_of(build({**world, "parent": None}), body)
    with_parent = verdict_of(build({**world, "parent": parent}), body)
    if without.would_deny:
        assert with_parent.would_deny, (without.code, with_parent.code)


def _essence(verdict: Verdict) -> dict[str, Any]:
    return verdict.model_dump()


@PROPERTIES
@given(
    world=worlds(),
    asks=st.lists(
        st.tuples(
            st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-2g.20gb", "amd.com/gpu", "cpu"]),
            st.integers(0, 4),
        ),
        min_size=2,
        max_size=5,
    ),
    data=st.data(),
)
def test_the_order_of_app_containers_does_not_matter(
    world: dict[str, Any], asks: list[tuple[str, int]], data: st.DataObject
) -> None:
    containers = [container(f"c{i}", limits={resource: count}) for i, (resource, count) in enumerate(asks)]
    shuffled = data.draw(st.permutations(containers))
    state = build(world)
    first = verdict_of(state, gpu_pod(world, copy.deepcopy(containers)))
    second = verdict_of(state, gpu_pod(world, list(shuffled)))
    assert _essence(first) == _essence(second)


# ----- bandwidth controls (DESIGN.md steps 5 and 7) -----

H20 = "NVIDIA-H20"
WITH_CONTROLS = dataclasses.replace(CATALOG, bandwidth_controls=builtin_catalog().bandwidth_controls)
BANDWIDTHS = [None, 300, 1000, 1100, 1400, 4000]  # GB/s; around and on the built-in thresholds


def h20_like(dram: float | None, io: float | None) -> dict[str, Any]:
    """A cluster profile below the 3A090 bands, so only its bandwidth can make it controlled."""
    spec: dict[str, Any] = {
        "vendor": "NVIDIA",
        "model": "H20-like",
        "resourceNames": ["nvidia.com/gpu"],
        "productLabels": {"nvidia.com/gpu.product": [H20]},
        "tpp": 2368,
        "performanceDensity": 2.9,
    }
    if dram is not None:
        spec["memoryBandwidthGBps"] = dram
    if io is not None:
        spec["ioBandwidthGBps"] = io
    return profile("h20", **spec)


def build_with_h20(world: dict[str, Any], dram: float | None, io: float | None) -> ClusterState:
    state = ClusterState(WITH_CONTROLS)
    owner = tenant(
        "acme", world["jurisdiction"], namespaces=["team"], parent=world["parent"], kyc=world["kyc"]
    )
    bodies = [*world["nodes"], node("n-h20", H20), h20_like(dram, io), owner, *world["licenses"]]
    for body in [*bodies, world["policy"]]:
        state.upsert(obj(body))
    if world["used"] and world["licenses"]:
        old = pod_with([container(limits={"nvidia.com/gpu": world["used"]})], name="old")
        state.upsert(obj(running(old, license_name="lic-0")))
    return state


def _more(draw: st.DrawFn, value: float | None) -> float | None:
    """The same figure or a larger one; an unknown figure may become known."""
    return draw(st.sampled_from([b for b in BANDWIDTHS if b is not None and (value is None or b >= value)]))


@PROPERTIES
@given(
    world=worlds(),
    dram=st.sampled_from(BANDWIDTHS),
    io=st.sampled_from(BANDWIDTHS),
    selector=st.sampled_from([None, H20]),
    count=st.integers(1, 4),
    data=st.data(),
)
def test_more_bandwidth_never_loosens_the_verdict(
    world: dict[str, Any],
    dram: float | None,
    io: float | None,
    selector: str | None,
    count: int,
    data: st.DataObject,
) -> None:
    more_dram, more_io = _more(data.draw, dram), _more(data.draw, io)
    body = gpu_pod({**world, "selector": selector}, [gpus(count)])
    before = verdict_of(build_with_h20(world, dram, io), body)
    after = verdict_of(build_with_h20(world, more_dram, more_io), body)
    if not before.allowed:
        assert not after.allowed, (before.code, after.code)
    if before.would_deny:
        assert after.would_deny, (before.code, after.code)
    assert after.controlled_tpp >= before.controlled_tpp


@PROPERTIES
@given(world=worlds(), dram=st.sampled_from(BANDWIDTHS), io=st.sampled_from(BANDWIDTHS))
def test_bandwidth_controls_add_to_the_bands_and_never_remove(
    world: dict[str, Any], dram: float | None, io: float | None
) -> None:
    body = gpu_pod({**world, "selector": None}, [gpus(2)])
    state = build_with_h20(world, dram, io)
    without = verdict_of(state, body)
    state.upsert(obj({**world["policy"], "spec": {**world["policy"]["spec"], "bandwidthControls": []}}))
    off = verdict_of(state, body)
    # Turning the controls off can only loosen: what is denied with none is denied with them.
    if not off.allowed:
        assert not without.allowed, (off.code, without.code)
