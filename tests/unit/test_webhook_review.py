"""The webhook's rules around the engine, without a server: stamps, updates, scale, claims,
the tenant-label guard and license status. (Over HTTP: tests/wire; through the API server:
tests/e2e/test_webhook_*.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from computegate.engine import ClusterState, consumption, decide
from computegate.engine.ledger import Ledger, ReserveRequest, exact, reserve
from computegate.models import Pod
from computegate.vocabulary import (
    CODE_ANNOTATION,
    DECISION_ANNOTATION,
    DECISION_ID_ANNOTATION,
    LICENSE_ANNOTATION,
)
from computegate.webhook import guards
from computegate.webhook.licenses import license_status, with_transition_times
from computegate.webhook.outcome import Request
from computegate.webhook.review import Reviewer
from tests.unit.conftest import NOW, StateFactory, license_, node, pod, running, tenant

H100 = "NVIDIA-H100-80GB-HBM3"


def reviewer(state: ClusterState) -> Reviewer:
    ids = iter(f"id-{n}" for n in range(1000))
    return Reviewer(state, admin_groups=frozenset({"system:masters", "cg-admins"}), clock=lambda: NOW,
                    new_id=lambda: next(ids))  # fmt: skip


def licensed_state(make_state: StateFactory, max_tpp: float = 40_000) -> ClusterState:
    return make_state(node("n1", H100), tenant("globex", "CN", namespaces=["team"]),
                      license_("lic", "globex", max_tpp=max_tpp))  # fmt: skip


def request(
    body: dict[str, Any],
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    plural: str = "pods",
    webhook: str = "validate-workloads",
) -> Request:
    return Request(webhook=webhook, plural=plural, operation=operation, body=body, old=old, user="alice")


def with_annotations(body: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "annotations": annotations}}


def apply(body: dict[str, Any], patch: dict[str, str | None]) -> dict[str, Any]:
    annotations = dict(body["metadata"].get("annotations") or {})
    for key, value in patch.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    return with_annotations(body, annotations)


def test_an_admitted_pod_is_stamped_with_code_license_tpp_and_decision_id(make_state: StateFactory) -> None:
    outcome = reviewer(licensed_state(make_state)).mutate_workload(request(pod()))
    assert outcome.annotations == {
        DECISION_ANNOTATION: "Admitted",
        CODE_ANNOTATION: "Licensed",
        "computegate.io/tpp": "15832",
        DECISION_ID_ANNOTATION: "id-0",
        LICENSE_ANNOTATION: "lic",
    }


def test_hand_set_stamps_are_replaced_on_create_and_the_validator_then_admits(
    make_state: StateFactory,
) -> None:
    review = reviewer(licensed_state(make_state))
    forged = with_annotations(pod(), {LICENSE_ANNOTATION: "other", CODE_ANNOTATION: "Exempt", "team": "ml"})
    patch = review.mutate_workload(request(forged)).annotations
    assert patch[LICENSE_ANNOTATION] == "lic" and patch[CODE_ANNOTATION] == "Licensed"
    assert "team" not in patch
    assert review.validate_workload(request(apply(forged, patch))).allowed


def test_the_validator_refuses_stamps_changed_after_the_mutating_webhook(make_state: StateFactory) -> None:
    review = reviewer(licensed_state(make_state))
    stamped = apply(pod(), review.mutate_workload(request(pod())).annotations)
    tampered = apply(stamped, {LICENSE_ANNOTATION: "someone-elses"})
    outcome = review.validate_workload(request(tampered))
    assert not outcome.allowed and outcome.code == "ProtectedAnnotations"
    assert LICENSE_ANNOTATION in outcome.message
    unstamped = review.validate_workload(request(pod()))
    assert not unstamped.allowed and unstamped.code == "ProtectedAnnotations"


def test_a_pod_the_mutating_webhook_would_refuse_is_only_marked_and_the_validator_refuses_it(
    make_state: StateFactory,
) -> None:
    review = reviewer(licensed_state(make_state, max_tpp=1000))
    mark = review.mutate_workload(request(pod())).annotations
    assert mark == {DECISION_ANNOTATION: "Denied", CODE_ANNOTATION: "LicenseCapExceeded"}
    outcome = review.validate_workload(request(apply(pod(), mark)))
    assert not outcome.allowed and outcome.http_code == 403
    assert outcome.message.startswith("[LicenseCapExceeded]")


def test_a_pod_update_keeps_the_stamps_it_was_created_with(make_state: StateFactory) -> None:
    review = reviewer(licensed_state(make_state))
    old = apply(pod(), review.mutate_workload(request(pod())).annotations)
    changed = apply(old, {LICENSE_ANNOTATION: None, CODE_ANNOTATION: "Exempt"})
    patch = review.mutate_workload(request(changed, operation="UPDATE", old=old)).annotations
    assert patch == {LICENSE_ANNOTATION: "lic", CODE_ANNOTATION: "Licensed"}
    assert review.validate_workload(request(apply(changed, patch), operation="UPDATE", old=old)).allowed


def test_a_pod_update_is_admitted_when_its_license_is_full(make_state: StateFactory) -> None:
    state = licensed_state(make_state, max_tpp=15_832)
    review = reviewer(state)
    old = apply(pod(), review.mutate_workload(request(pod())).annotations)
    state.upsert(Pod.model_validate(old))
    relabelled = {**old, "metadata": {**old["metadata"], "labels": {"done": "yes"}}}
    assert review.validate_workload(request(relabelled, operation="UPDATE", old=old)).allowed


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "team"},
        "spec": {"replicas": replicas, "template": {"metadata": {"annotations": {LICENSE_ANNOTATION: "x"}},
                                                    "spec": pod()["spec"]}},
    }  # fmt: skip


def test_a_controller_create_drops_forged_template_stamps(make_state: StateFactory) -> None:
    outcome = reviewer(licensed_state(make_state)).mutate_workload(
        request(deployment(1), plural="deployments")
    )
    assert outcome.template_annotations == {LICENSE_ANNOTATION: None}


def test_a_scale_up_is_judged_on_growth_and_a_scale_down_is_admitted(make_state: StateFactory) -> None:
    state = licensed_state(make_state, max_tpp=15_832)
    review = reviewer(state)
    state.upsert(
        Pod.model_validate(apply(pod("running"), review.mutate_workload(request(pod("running"))).annotations))
    )
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "d", "namespace": "team"}}

    def scaled(old: int, new: int) -> Any:
        body = {**scale, "spec": {"replicas": new}}
        before = {**scale, "spec": {"replicas": old}}
        req = request(body, operation="UPDATE", old=before, plural="deployments", webhook="validate-scale")
        return review.validate_scale(req, deployment(old))

    assert scaled(2, 1).allowed
    assert scaled(3, 3).allowed
    grown = scaled(1, 2)
    assert not grown.allowed and grown.code == "LicenseCapExceeded"


def test_a_claim_made_for_a_pod_from_its_template_is_not_judged_again(make_state: StateFactory) -> None:
    review = reviewer(licensed_state(make_state))
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "team", "ownerReferences": [{"kind": "Pod", "name": "p"}]},
    }
    assert review.validate_claim(request(claim, plural="resourceclaims")).allowed


def test_a_claim_is_judged_against_a_view_and_the_live_state_is_never_written(
    make_state: StateFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "late", "namespace": "team"},
        "spec": {"devices": {"requests": [{"name": "g", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                                                    "count": 2}}]}},
    }  # fmt: skip
    # A licensed pod that names the claim before it exists: the view counts it again with the claim.
    waiting = running(pod("w", resource="cpu", resourceClaims=[{"name": "g", "resourceClaimName": "late"}]),
                      license_name="lic", node_name="n1")  # fmt: skip
    bodies = (
        node("n1", H100),
        tenant("globex", "CN", namespaces=["team"]),
        license_("lic", "globex"),
        waiting,
    )
    state = make_state(*bodies)
    used = consumption.live(state, "lic")
    claims, templates = dict(state.claims), dict(state.claim_templates)

    def written(*_: object) -> None:
        raise AssertionError("a review wrote the live state")

    monkeypatch.setattr(state, "upsert", written)
    monkeypatch.setattr(state, "remove", written)
    judged: list[ClusterState] = []

    def spy(view: ClusterState, *args: Any, **kwargs: Any) -> Any:
        judged.append(view)
        return decide(view, *args, **kwargs)

    monkeypatch.setattr(guards, "decide", spy)
    outcome = reviewer(state).validate_claim(request(claim, plural="resourceclaims"))
    # As judged with the claim stored, where the waiting pod is counted with its two devices.
    stored = reviewer(make_state(*bodies, claim)).validate_claim(request(claim, plural="resourceclaims"))
    assert (outcome.allowed, outcome.code, outcome.message) == (stored.allowed, stored.code, stored.message)
    assert judged[0] is not state and ("team", "late") in judged[0].claims
    assert consumption.live(judged[0], "lic").accelerators == used.accelerators + 1
    assert (state.claims, state.claim_templates, consumption.live(state, "lic")) == (claims, templates, used)

    def fails(*_: object, **__: object) -> Any:
        raise RuntimeError("the decision failed")

    monkeypatch.setattr(guards, "decide", fails)
    with pytest.raises(RuntimeError):
        reviewer(state).validate_claim(request(claim, plural="resourceclaims"))
    assert (state.claims, state.claim_templates, consumption.live(state, "lic")) == (claims, templates, used)


def test_only_admins_may_set_change_or_remove_a_namespace_tenant_label(make_state: StateFactory) -> None:
    review = reviewer(make_state())
    old = {"kind": "Namespace", "metadata": {"name": "team", "labels": {"computegate.io/tenant": "a"}}}
    new = {"kind": "Namespace", "metadata": {"name": "team", "labels": {"computegate.io/tenant": "b"}}}
    removed = {"kind": "Namespace", "metadata": {"name": "team"}}
    for body in (new, removed):
        tenant_request = Request("validate-namespaces", "namespaces", "UPDATE", body, old, user="bob",
                                 groups=("tenants",))  # fmt: skip
        outcome = review.validate_namespace(tenant_request)
        assert not outcome.allowed and outcome.message.startswith("[TenantLabelProtected]")
        assert "b" not in outcome.message.split("label of namespace team")[0][-3:]
    admin = Request(
        "validate-namespaces", "namespaces", "UPDATE", new, old, user="carol", groups=("cg-admins",)
    )
    assert review.validate_namespace(admin).allowed


def test_license_status_shows_the_ledger_and_keeps_transition_times(make_state: StateFactory) -> None:
    state = licensed_state(make_state, max_tpp=2 * 15_832)
    ledger, _ = reserve(
        Ledger(exact(15_832), exact(1)),
        [ReserveRequest("uid", "ns/p", exact(15_832 / 7), exact(1 / 7))],
        max_tpp=exact(2 * 15_832),
        max_accelerators=None,
        at=NOW,
    )
    status = license_status(state.licenses["lic"], ledger, NOW)
    assert status["consumedTPP"] == round(15832 * 8 / 7, 6) and status["reservedTPP"] == round(15832 / 7, 6)
    assert status["headroomTPP"] == round(15832 * 6 / 7, 6) and status["reservations"] == 1
    assert status["state"] == "Active"
    assert [c["status"] for c in status["conditions"]] == [
        "True",
        "False",
        "False",
    ]  # Valid, Exhausted, Violations
    assert status["violations"] == 0
    first = with_transition_times(status, None, NOW)
    later = with_transition_times(status, first, datetime(2026, 7, 1, tzinfo=UTC))
    assert later["conditions"] == first["conditions"]


def test_a_replica_that_would_admit_what_the_mutating_replica_refused_refuses_it_with_that_code(
    make_state: StateFactory,
) -> None:
    full = reviewer(licensed_state(make_state, max_tpp=1000))  # the mutating replica's view
    mark = full.mutate_workload(request(pod())).annotations
    roomy = reviewer(licensed_state(make_state))  # the validating replica's view, a moment behind
    outcome = roomy.validate_workload(request(apply(pod(), mark)))
    assert not outcome.allowed and outcome.code == "LicenseCapExceeded"
    assert "mutating webhook" in outcome.message and "Retry" in outcome.message


def test_a_license_the_mutating_replica_chose_that_is_full_here_is_a_cap_refusal_not_a_forgery(
    make_state: StateFactory,
) -> None:
    state = make_state(
        node("n1", H100),
        tenant("globex", "CN", namespaces=["team"]),
        license_("early", "globex", max_tpp=40_000),
        license_("late", "globex", max_tpp=40_000, valid_until="2028-01-01T00:00:00Z"),
    )
    stamps = reviewer(state).mutate_workload(request(pod())).annotations
    assert stamps[LICENSE_ANNOTATION] == "early"
    state.ledgers["early"] = Ledger(exact(40_000), exact(3))  # other replicas filled it meanwhile
    outcome = reviewer(state).validate_workload(request(apply(pod(), stamps)))
    assert not outcome.allowed and outcome.code == "LicenseCapExceeded"
    assert "ExportLicense early" in outcome.message
