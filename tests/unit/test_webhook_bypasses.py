"""Issue 12 in the pure review: subresources, namespace creations, pinned placement, complexity."""

from __future__ import annotations

from typing import Any

from computegate.webhook.admission import affinity_patch
from computegate.webhook.outcome import NAMESPACE_RESERVED, PROTECTED_STAMPS, TOO_COMPLEX, Request
from computegate.webhook.review import Reviewer
from tests.unit.conftest import NOW, T4, StateFactory, license_, node, pod, policy, tenant

H100 = "NVIDIA-H100-80GB-HBM3"
PRODUCT = "nvidia.com/gpu.product"


def reviewer(state: Any, **fields: Any) -> Reviewer:
    return Reviewer(state, admin_groups=frozenset({"system:masters"}), clock=lambda: NOW, **fields)


def req(body: dict[str, Any], **fields: Any) -> Request:
    values: dict[str, Any] = {
        "webhook": "w",
        "plural": "pods",
        "operation": "CREATE",
        "body": body,
        "user": "eve",
    }
    values.update(fields)
    return Request(**values)


def stamped_pod(license_name: str = "lic") -> dict[str, Any]:
    body = pod(node_selector={PRODUCT: H100}, nodeName="h100-1")
    body["metadata"]["annotations"] = {
        "computegate.io/license": license_name,
        "computegate.io/code": "Licensed",
    }
    return body


def test_a_status_write_that_drops_the_license_stamp_is_refused(make_state: StateFactory) -> None:
    review = reviewer(make_state(node("h100-1", H100)))
    old = stamped_pod()
    new = {**old, "metadata": {**old["metadata"], "annotations": {"computegate.io/code": "Licensed"}}}
    outcome = review.validate_subresource(req(new, old=old, operation="UPDATE", subresource="status"))
    assert not outcome.allowed and outcome.code == PROTECTED_STAMPS
    same = review.validate_subresource(req(old, old=old, operation="UPDATE", subresource="status"))
    assert same.allowed


def _debugged(body: dict[str, Any]) -> dict[str, Any]:
    debugger = {
        "name": "debugger",
        "image": "busybox",
        "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}],
    }
    return {**body, "spec": {**body["spec"], "ephemeralContainers": [debugger]}}


def test_an_ephemeral_container_with_device_access_is_judged(make_state: StateFactory) -> None:
    state = make_state(node("h100-1", H100), tenant("acme", "CN", namespaces=["team"]))
    base = pod(resource="cpu", nodeName="h100-1")
    outcome = reviewer(state).validate_subresource(
        req(_debugged(base), old=base, operation="UPDATE", subresource="ephemeralcontainers")
    )
    assert not outcome.allowed and outcome.code == "NoLicense"


def test_a_licensed_pod_cannot_grow_through_an_ephemeral_container(make_state: StateFactory) -> None:
    state = make_state(
        node("h100-1", H100), tenant("acme", "CN", namespaces=["team"]), license_("lic", "acme")
    )
    base = stamped_pod()
    outcome = reviewer(state).validate_subresource(
        req(_debugged(base), old=base, operation="UPDATE", subresource="ephemeralcontainers")
    )
    assert not outcome.allowed and outcome.code == "DeviceAccessWithoutRequest"


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def test_a_non_admin_cannot_create_a_listed_or_exempt_namespace(make_state: StateFactory) -> None:
    state = make_state(
        tenant("acme", "SA", namespaces=["acme-ml"]), policy(exemptNamespaces=["kube-system", "gpu-ops"])
    )
    review = reviewer(state, exempt_namespaces=frozenset({"computegate-system"}))
    for name in ("acme-ml", "gpu-ops", "computegate-system"):
        outcome = review.validate_namespace(req(_namespace(name), plural="namespaces"))
        assert not outcome.allowed and outcome.code == NAMESPACE_RESERVED, name
        admin = req(_namespace(name), plural="namespaces", groups=("system:masters",))
        assert review.validate_namespace(admin).allowed
    assert review.validate_namespace(req(_namespace("scratch"), plural="namespaces")).allowed


def test_an_admitted_pod_is_pinned_to_the_models_considered(make_state: StateFactory) -> None:
    us = tenant("acme", "US", namespaces=["team"])
    state = make_state(node("h100-1", H100), node("t4-1", T4), node("t4-2", f"{T4}-SHARED"), us)
    outcome = reviewer(state).mutate_workload(req(pod()))
    assert outcome.code == "JurisdictionAllowed"
    assert outcome.pin == (PRODUCT, (H100, T4, f"{T4}-SHARED"))
    assert reviewer(state).mutate_workload(req(pod(namespace="kube-system"))).pin is None  # exempt


def test_an_assumed_model_is_not_pinned(make_state: StateFactory) -> None:
    state = make_state(
        node("h100-1", H100), node("odd-1", "Mystery-GPU"), tenant("acme", "US", namespaces=["team"])
    )
    assert reviewer(state).mutate_workload(req(pod())).pin is None


def test_the_pin_is_anded_into_every_term_and_added_once() -> None:
    pinned = {"key": PRODUCT, "operator": "In", "values": [H100]}
    required = {"nodeSelectorTerms": [{"matchExpressions": [pinned]}]}
    value = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    assert affinity_patch({"spec": {}}, PRODUCT, [H100]) == [
        {"op": "add", "path": "/spec/affinity", "value": value}
    ]
    terms = [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]},
             {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]},
             {"matchExpressions": [pinned]}]  # fmt: skip
    body = {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}}}  # fmt: skip
    at = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"
    assert affinity_patch(body, PRODUCT, [H100]) == [
        {"op": "add", "path": f"{at}/0/matchExpressions", "value": [pinned]},
        {"op": "add", "path": f"{at}/1/matchExpressions/-", "value": pinned},
    ]


def test_a_placement_beyond_the_complexity_limit_is_refused_not_judged(make_state: StateFactory) -> None:
    values = [f"v{i}" for i in range(5_000)]
    term = {"matchExpressions": [{"key": "k", "operator": "NotIn", "values": values}]}
    required = {"nodeSelectorTerms": [term]}
    body = pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}})
    state = make_state(node("h100-1", H100))
    outcome = reviewer(state).validate_workload(req(body))
    assert not outcome.allowed and outcome.code == TOO_COMPLEX and outcome.http_code == 400
    assert len(state.selection_cache) == 0
