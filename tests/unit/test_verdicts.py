"""DESIGN.md step 4 and 5: the verdict, first match wins, and license consumption."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from computegate.catalog import builtin_catalog
from computegate.engine import Code
from computegate.engine.ledger import Ledger, exact
from tests.unit.conftest import (
    A100,
    H100,
    NOW,
    T4,
    TPP,
    StateFactory,
    license_,
    namespace,
    node,
    pod,
    policy,
    running,
    tenant,
    verdict_of,
)

PRODUCT = "nvidia.com/gpu.product"
H100_POD = pod(gpus=1, node_selector={PRODUCT: H100})


def test_the_reason_codes_are_the_stable_api() -> None:
    assert {code.value for code in Code} == {
        "NoAccelerator",
        "Exempt",
        "NotControlled",
        "JurisdictionAllowed",
        "Licensed",
        "UnknownTenant",
        "UnknownAccelerator",
        "KYCIncomplete",
        "Prohibited",
        "NoLicense",
        "LicenseNotYetValid",
        "LicenseExpired",
        "LicenseRevoked",
        "LicenseScope",
        "LicenseCapExceeded",
        "DeviceAccessWithoutRequest",
    }
    assert {code.value for code in Code if code.admits} == {
        "NoAccelerator",
        "Exempt",
        "NotControlled",
        "JurisdictionAllowed",
        "Licensed",
    }


# ----- each code, and the order in which they are tried -----


def test_no_accelerator_comes_before_everything(make_state: StateFactory) -> None:
    state = make_state(policy(exemptNamespaces=["team"]))
    assert verdict_of(state, pod(resource="cpu")).code is Code.NO_ACCELERATOR


def test_an_exempt_namespace_is_admitted_without_a_tenant(make_state: StateFactory) -> None:
    verdict = verdict_of(make_state(node("h", H100)), pod(namespace="kube-system", gpus=8))
    assert verdict.code is Code.EXEMPT
    assert verdict.allowed


def test_exempt_namespaces_come_from_the_policy_when_it_sets_them(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), policy(exemptNamespaces=["gpu-operator"]))
    assert verdict_of(state, pod(namespace="gpu-operator")).code is Code.EXEMPT
    assert verdict_of(state, pod(namespace="kube-system")).code is Code.UNKNOWN_TENANT


def test_exempt_comes_before_the_tenant_check(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("evil", "IR", namespaces=["kube-system"]))
    assert verdict_of(state, pod(namespace="kube-system")).code is Code.EXEMPT


def test_a_namespace_without_a_tenant_is_denied_by_default(make_state: StateFactory) -> None:
    verdict = verdict_of(make_state(node("h", H100)), pod(namespace="nowhere"))
    assert verdict.code is Code.UNKNOWN_TENANT
    assert not verdict.allowed
    assert "belongs to no Tenant" in verdict.message


def test_unknown_tenant_allow_admits_with_the_code(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), policy(unknownTenant="Allow"))
    verdict = verdict_of(state, pod(namespace="nowhere"))
    assert verdict.code is Code.UNKNOWN_TENANT
    assert verdict.allowed


def test_a_namespace_label_assigns_the_tenant(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("acme", "US", namespaces=[]),
        namespace("labelled", **{"computegate.io/tenant": "acme"}),
    )
    verdict = verdict_of(state, pod(namespace="labelled"))
    assert verdict.code is Code.JURISDICTION_ALLOWED
    assert verdict.tenant == "acme"


def test_a_label_naming_a_tenant_that_does_not_exist_is_unknown_tenant(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), namespace("labelled", **{"computegate.io/tenant": "ghost"}))
    verdict = verdict_of(state, pod(namespace="labelled"))
    assert verdict.code is Code.UNKNOWN_TENANT
    assert "no Tenant of that name" in verdict.message


def test_a_tenant_listing_and_labelling_the_same_namespace_is_no_conflict(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("acme", "US", namespaces=["team"]),
        namespace("team", **{"computegate.io/tenant": "acme"}),
    )
    assert verdict_of(state, pod()).tenant == "acme"


def test_a_namespace_claimed_by_list_and_by_another_tenants_label_has_no_tenant(
    make_state: StateFactory,
) -> None:
    state = make_state(
        node("h", H100),
        tenant("acme", "US", namespaces=["team"]),
        tenant("rival-corp", "US", namespaces=[]),
        namespace("team", **{"computegate.io/tenant": "rival-corp"}),
    )
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.UNKNOWN_TENANT
    assert not verdict.allowed
    assert verdict.tenant is None
    assert "more than one tenant" in verdict.message
    assert "rival-corp" not in verdict.message
    assert "acme" not in verdict.message


def test_a_namespace_listed_by_two_tenants_has_no_tenant(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("acme", "US", namespaces=["team"]),
        tenant("rival-corp", "US", namespaces=["team"]),
    )
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.UNKNOWN_TENANT
    assert "rival-corp" not in verdict.message


def test_a_conflict_is_unknown_tenant_even_under_unknown_tenant_allow_it_is_admitted(
    make_state: StateFactory,
) -> None:
    state = make_state(
        node("h", H100),
        tenant("acme", "CN", namespaces=["team"]),
        tenant("rival-corp", "CN", namespaces=["team"]),
        policy(unknownTenant="Allow"),
    )
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.UNKNOWN_TENANT
    assert verdict.allowed


def test_unknown_tenant_comes_before_unknown_accelerator(make_state: StateFactory) -> None:
    state = make_state(policy(unknownAccelerator="Deny"))
    assert verdict_of(state, pod(namespace="nowhere")).code is Code.UNKNOWN_TENANT


def test_unknown_accelerator_comes_before_not_controlled(make_state: StateFactory) -> None:
    state = make_state(
        node("t4", T4),
        node("x", "Mystery-GPU"),
        tenant("acme", "US", namespaces=["team"]),
        policy(unknownAccelerator="Deny"),
    )
    assert verdict_of(state, pod()).code is Code.UNKNOWN_ACCELERATOR


def test_an_uncontrolled_accelerator_is_admitted_as_not_controlled(make_state: StateFactory) -> None:
    state = make_state(node("t4", T4), tenant("acme", "IR", namespaces=["team"], kyc="Failed"))
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.NOT_CONTROLLED
    assert verdict.allowed
    assert verdict.controlled_tpp == 0


def test_controlled_bands_in_the_policy_decide_what_is_controlled(make_state: StateFactory) -> None:
    from tests.unit.conftest import L40

    state = make_state(node("l40", L40), tenant("acme", "CN", namespaces=["team"]))
    assert verdict_of(state, pod()).code is Code.NO_LICENSE  # L40 is 3A090.b
    state.upsert(_obj(policy(controlledBands=["3A090.a"])))
    assert verdict_of(state, pod()).code is Code.NOT_CONTROLLED


def _obj(body: dict[str, Any]) -> Any:
    from tests.unit.conftest import obj

    return obj(body)


@pytest.mark.parametrize("status", ["Pending", "Failed"])
def test_an_unverified_tenant_is_kyc_incomplete(make_state: StateFactory, status: str) -> None:
    state = make_state(
        node("h", H100), tenant("acme", "US", namespaces=["team"], kyc=status), license_("l", "acme")
    )
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.KYC_INCOMPLETE
    assert not verdict.allowed
    assert status in verdict.message


def test_kyc_comes_before_the_jurisdiction(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("acme", "IR", namespaces=["team"], kyc="Pending"))
    assert verdict_of(state, pod()).code is Code.KYC_INCOMPLETE


def test_require_kyc_false_skips_the_kyc_check(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100), tenant("acme", "US", namespaces=["team"], kyc="Pending"), policy(requireKYC=False)
    )
    assert verdict_of(state, pod()).code is Code.JURISDICTION_ALLOWED


def test_an_allowed_jurisdiction_is_admitted(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("acme", "US", namespaces=["team"]))
    verdict = verdict_of(state, pod(gpus=2))
    assert verdict.code is Code.JURISDICTION_ALLOWED
    assert verdict.jurisdiction == "US"
    assert verdict.tenant == "acme"
    assert verdict.license is None
    assert verdict.controlled_tpp == 2 * TPP["h100"]


def test_a_prohibited_jurisdiction_is_denied_even_with_a_license(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("acme", "IR", namespaces=["team"]), license_("l", "acme"))
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.PROHIBITED
    assert not verdict.allowed
    assert verdict.license is None
    assert "cannot be delivered" in verdict.message


def test_a_stricter_parent_jurisdiction_applies_and_the_message_says_parent(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("acme", "SG", namespaces=["team"], parent="CN"))
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.NO_LICENSE
    assert verdict.jurisdiction == "CN"
    assert verdict.jurisdiction_source == "parent"
    assert "parent" in verdict.message


def test_a_prohibited_parent_jurisdiction_prohibits(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100), tenant("acme", "CN", namespaces=["team"], parent="KP"), license_("l", "acme")
    )
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.PROHIBITED
    assert verdict.jurisdiction == "KP"
    assert "parent" in verdict.message


def test_a_laxer_parent_does_not_loosen_the_own_jurisdiction(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("acme", "CN", namespaces=["team"], parent="US"))
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.NO_LICENSE
    assert verdict.jurisdiction == "CN"
    assert verdict.jurisdiction_source == "own"


def test_no_license_names_what_to_request(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("acme", "CN", namespaces=["team"]))
    verdict = verdict_of(state, pod(gpus=2))
    assert verdict.code is Code.NO_LICENSE
    assert not verdict.allowed
    assert "h100" in verdict.message
    assert "31,664" in verdict.message


def test_a_license_of_another_tenant_does_not_count(licensed_state: StateFactory) -> None:
    state = licensed_state(tenant("other", "CN", namespaces=["o"]), license_("theirs", "other"))
    assert verdict_of(state, pod()).code is Code.NO_LICENSE


def test_a_usable_license_admits_and_is_named(licensed_state: StateFactory) -> None:
    verdict = verdict_of(licensed_state(license_("lic", "acme")), pod())
    assert verdict.code is Code.LICENSED
    assert verdict.allowed
    assert verdict.license == "lic"
    assert "lic" in verdict.message


# ----- each license state -----

LICENSE_STATES = [
    ({"revoked": True}, Code.LICENSE_REVOKED),
    ({"valid_until": "2026-05-01T00:00:00Z"}, Code.LICENSE_EXPIRED),
    ({"valid_from": "2026-07-01T00:00:00Z"}, Code.LICENSE_NOT_YET_VALID),
    ({"accelerators": ["a100"]}, Code.LICENSE_SCOPE),
    ({"max_tpp": 100}, Code.LICENSE_CAP_EXCEEDED),
    ({"max_accelerators": 0.5}, Code.LICENSE_CAP_EXCEEDED),
]


@pytest.mark.parametrize(("fields", "code"), LICENSE_STATES)
def test_every_license_failure_denies_with_its_code(
    licensed_state: StateFactory, fields: dict[str, Any], code: Code
) -> None:
    verdict = verdict_of(licensed_state(license_("lic", "acme", **fields)), H100_POD)
    assert verdict.code is code
    assert not verdict.allowed
    assert verdict.license == "lic"
    assert "lic" in verdict.message


def test_a_revoked_license_says_why(licensed_state: StateFactory) -> None:
    body = license_("lic", "acme", revoked=True)
    body["spec"]["revokedReason"] = "end-use check failed"
    verdict = verdict_of(licensed_state(body), pod())
    assert "end-use check failed" in verdict.message


def test_a_license_is_valid_from_its_first_instant(licensed_state: StateFactory) -> None:
    state = licensed_state(license_("lic", "acme", valid_from="2026-06-01T00:00:00Z"))
    assert verdict_of(state, pod(), at=NOW).code is Code.LICENSED
    assert verdict_of(state, pod(), at=NOW - timedelta(microseconds=1)).code is Code.LICENSE_NOT_YET_VALID


def test_a_license_is_expired_at_its_valid_until(licensed_state: StateFactory) -> None:
    state = licensed_state(license_("lic", "acme", valid_until="2026-06-01T00:00:00Z"))
    assert verdict_of(state, pod(), at=NOW).code is Code.LICENSE_EXPIRED
    assert verdict_of(state, pod(), at=NOW - timedelta(microseconds=1)).code is Code.LICENSED


def test_validity_compares_instants_across_offsets(licensed_state: StateFactory) -> None:
    # 02:00+02:00 is midnight UTC: the license is valid from NOW exactly.
    state = licensed_state(license_("lic", "acme", valid_from="2026-06-01T02:00:00+02:00"))
    assert verdict_of(state, pod(), at=NOW).code is Code.LICENSED


def test_a_cap_exactly_met_is_not_exceeded(licensed_state: StateFactory) -> None:
    state = licensed_state(license_("lic", "acme", max_tpp=2 * TPP["h100"], max_accelerators=2))
    assert verdict_of(state, pod(gpus=2)).code is Code.LICENSED
    assert verdict_of(state, pod(gpus=3)).code is Code.LICENSE_CAP_EXCEEDED


def test_scope_names_the_models_the_license_covers(licensed_state: StateFactory) -> None:
    verdict = verdict_of(licensed_state(license_("lic", "acme", accelerators=["a100", "h100"])), H100_POD)
    assert verdict.code is Code.LICENSED


def test_an_empty_accelerator_list_covers_any_model(licensed_state: StateFactory) -> None:
    assert (
        verdict_of(licensed_state(license_("lic", "acme", accelerators=[])), H100_POD).code is Code.LICENSED
    )


def test_a_license_fails_its_first_check_in_order(licensed_state: StateFactory) -> None:
    # Revoked, expired, out of scope and over the cap: revoked is its first failure.
    body = license_(
        "lic", "acme", revoked=True, valid_until="2026-02-01T00:00:00Z", accelerators=["a100"], max_tpp=1
    )
    assert verdict_of(licensed_state(body), H100_POD).code is Code.LICENSE_REVOKED
    body = license_("lic", "acme", valid_from="2026-07-01T00:00:00Z", accelerators=["a100"], max_tpp=1)
    assert verdict_of(licensed_state(body), H100_POD).code is Code.LICENSE_NOT_YET_VALID
    body = license_("lic", "acme", accelerators=["a100"], max_tpp=1)
    assert verdict_of(licensed_state(body), H100_POD).code is Code.LICENSE_SCOPE


CLOSEST_ORDER = [
    (Code.LICENSE_CAP_EXCEEDED, {"max_tpp": 1}),
    (Code.LICENSE_SCOPE, {"accelerators": ["a100"]}),
    (Code.LICENSE_REVOKED, {"revoked": True}),
    (Code.LICENSE_EXPIRED, {"valid_until": "2026-02-01T00:00:00Z"}),
    (Code.LICENSE_NOT_YET_VALID, {"valid_from": "2026-09-01T00:00:00Z"}),
]


@pytest.mark.parametrize("closer", range(len(CLOSEST_ORDER) - 1))
def test_the_verdict_takes_the_closest_failure(licensed_state: StateFactory, closer: int) -> None:
    for farther in range(closer + 1, len(CLOSEST_ORDER)):
        near_code, near = CLOSEST_ORDER[closer]
        _, far = CLOSEST_ORDER[farther]
        # Name the farther one first alphabetically so that name order cannot explain the result.
        state = licensed_state(license_("a-far", "acme", **far), license_("z-near", "acme", **near))
        verdict = verdict_of(state, H100_POD)
        assert verdict.code is near_code
        assert verdict.license == "z-near"


def test_equally_close_failures_are_broken_by_license_name(licensed_state: StateFactory) -> None:
    state = licensed_state(
        license_("beta", "acme", revoked=True, valid_until="2026-08-01T00:00:00Z"),
        license_("alpha", "acme", revoked=True, valid_until="2026-12-01T00:00:00Z"),
    )
    verdict = verdict_of(state, H100_POD)
    assert verdict.code is Code.LICENSE_REVOKED
    assert verdict.license == "alpha"


def test_a_usable_license_wins_over_failing_ones(licensed_state: StateFactory) -> None:
    state = licensed_state(
        license_("a", "acme", revoked=True), license_("b", "acme", max_tpp=1), license_("c", "acme")
    )
    verdict = verdict_of(state, H100_POD)
    assert verdict.code is Code.LICENSED
    assert verdict.license == "c"


def test_among_usable_licenses_the_one_expiring_first_is_used(licensed_state: StateFactory) -> None:
    state = licensed_state(
        license_("a-late", "acme", valid_until="2026-12-01T00:00:00Z"),
        license_("z-soon", "acme", valid_until="2026-07-01T00:00:00Z"),
    )
    assert verdict_of(state, H100_POD).license == "z-soon"


def test_usable_licenses_expiring_together_are_chosen_by_name(licensed_state: StateFactory) -> None:
    state = licensed_state(license_("beta", "acme"), license_("alpha", "acme"))
    assert verdict_of(state, H100_POD).license == "alpha"


def test_a_license_without_headroom_is_passed_over_for_one_with_it(licensed_state: StateFactory) -> None:
    state = licensed_state(
        license_("soon-small", "acme", valid_until="2026-07-01T00:00:00Z", max_tpp=TPP["h100"]),
        license_("late-big", "acme", valid_until="2026-12-01T00:00:00Z"),
    )
    assert verdict_of(state, pod(gpus=1)).license == "soon-small"
    assert verdict_of(state, pod(gpus=2)).license == "late-big"


# ----- consumption (step 5) -----


def _cap_state(licensed_state: StateFactory, *pods: dict[str, Any]) -> Any:
    return licensed_state(license_("lic", "acme", max_tpp=4 * TPP["h100"], max_accelerators=4), *pods)


def test_annotated_running_pods_consume_the_license(licensed_state: StateFactory) -> None:
    state = _cap_state(licensed_state, running(pod("old", gpus=3), license_name="lic", node_name="h100-1"))
    assert verdict_of(state, pod(gpus=1)).code is Code.LICENSED
    verdict = verdict_of(state, pod(gpus=2))
    assert verdict.code is Code.LICENSE_CAP_EXCEEDED
    assert "15,832 TPP" in verdict.message  # the headroom left


@pytest.mark.parametrize("phase", ["Pending", "Running", "Unknown"])
def test_non_terminal_pods_consume(licensed_state: StateFactory, phase: str) -> None:
    state = _cap_state(licensed_state, running(pod("old", gpus=4), license_name="lic", phase=phase))
    assert verdict_of(state, pod(gpus=1)).code is Code.LICENSE_CAP_EXCEEDED


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pods_do_not_consume(licensed_state: StateFactory, phase: str) -> None:
    state = _cap_state(licensed_state, running(pod("old", gpus=4), license_name="lic", phase=phase))
    assert verdict_of(state, pod(gpus=4)).code is Code.LICENSED


def test_pods_without_the_annotation_do_not_consume(licensed_state: StateFactory) -> None:
    state = _cap_state(licensed_state, running(pod("old", gpus=4)))
    assert verdict_of(state, pod(gpus=4)).code is Code.LICENSED


def test_pods_of_another_license_do_not_consume_this_one(licensed_state: StateFactory) -> None:
    state = _cap_state(licensed_state, license_("other", "acme", valid_until="2027-06-01T00:00:00Z"))
    state.upsert(_obj(running(pod("old", gpus=4), license_name="other")))
    assert verdict_of(state, pod(gpus=4)).license == "lic"


def test_consumption_is_computed_from_each_pods_node(licensed_state: StateFactory) -> None:
    state = licensed_state(node("a100-1", A100), license_("lic", "acme", max_tpp=TPP["h100"] + TPP["a100"]))
    state.upsert(_obj(running(pod("old", gpus=1), license_name="lic", node_name="a100-1")))
    assert verdict_of(state, H100_POD).code is Code.LICENSED
    state.upsert(_obj(running(pod("old", gpus=2), license_name="lic", node_name="a100-1")))
    assert verdict_of(state, H100_POD).code is Code.LICENSE_CAP_EXCEEDED


def test_a_pod_that_finishes_or_is_removed_frees_its_consumption(licensed_state: StateFactory) -> None:
    state = _cap_state(licensed_state, running(pod("old", gpus=4), license_name="lic"))
    assert verdict_of(state, pod(gpus=1)).code is Code.LICENSE_CAP_EXCEEDED
    state.upsert(_obj(running(pod("old", gpus=4), license_name="lic", phase="Succeeded")))
    assert verdict_of(state, pod(gpus=4)).code is Code.LICENSED
    state.upsert(_obj(running(pod("old", gpus=4), license_name="lic")))
    state.remove("Pod", "old", "team")
    assert verdict_of(state, pod(gpus=4)).code is Code.LICENSED


def test_what_the_ledger_has_committed_consumes_the_license(licensed_state: StateFactory) -> None:
    state = _cap_state(licensed_state)
    state.ledgers["lic"] = Ledger(exact(3 * TPP["h100"]), exact(3))  # admitted by other replicas
    assert verdict_of(state, pod(gpus=1)).code is Code.LICENSED
    assert verdict_of(state, pod(gpus=2)).code is Code.LICENSE_CAP_EXCEEDED


def test_live_pods_the_ledger_has_not_counted_yet_consume_the_license_too(
    licensed_state: StateFactory,
) -> None:
    state = _cap_state(licensed_state, running(pod("old", gpus=3), license_name="lic"))
    state.ledgers["lic"] = Ledger()  # written before those pods were seen
    assert verdict_of(state, pod(gpus=2)).code is Code.LICENSE_CAP_EXCEEDED


def test_the_accelerator_cap_counts_consumption(licensed_state: StateFactory) -> None:
    state = licensed_state(license_("lic", "acme", max_accelerators=2))
    state.upsert(_obj(running(pod("old", gpus=2), license_name="lic")))
    verdict = verdict_of(state, pod(gpus=1))
    assert verdict.code is Code.LICENSE_CAP_EXCEEDED
    assert "0 accelerators" in verdict.message


# ----- Audit enforcement -----


def test_audit_admits_a_would_be_denial_with_its_code_and_a_warning(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100), tenant("acme", "CN", namespaces=["team"]), policy(enforcement="Audit")
    )
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.NO_LICENSE
    assert verdict.allowed
    assert verdict.audit
    assert verdict.would_deny
    assert any("Audit" in warning and "NoLicense" in warning for warning in verdict.warnings)


def test_audit_does_not_mark_an_admission(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100), tenant("acme", "US", namespaces=["team"]), policy(enforcement="Audit")
    )
    verdict = verdict_of(state, pod())
    assert verdict.allowed
    assert not verdict.audit
    assert verdict.warnings == ()


def test_audit_admits_an_unknown_tenant(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), policy(enforcement="Audit"))
    verdict = verdict_of(state, pod(namespace="nowhere"))
    assert (verdict.code, verdict.allowed, verdict.audit) == (Code.UNKNOWN_TENANT, True, True)


# ----- the policy: groups, rules and the built-in default -----


def test_with_no_policy_the_built_in_rules_apply(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("cn", "CN", namespaces=["a"]),
        tenant("ir", "IR", namespaces=["b"]),
        tenant("mo", "MO", namespaces=["c"]),
    )
    assert verdict_of(state, pod(namespace="a")).code is Code.NO_LICENSE
    assert verdict_of(state, pod(namespace="b")).code is Code.PROHIBITED
    assert verdict_of(state, pod(namespace="c")).code is Code.NO_LICENSE


def test_a_policy_group_replaces_the_built_in_group_of_that_name(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("cn", "CN", namespaces=["a"]),
        tenant("ve", "VE", namespaces=["b"]),
        tenant("ir", "IR", namespaces=["c"]),
        policy(countryGroups={"D:5": ["VE"]}),
    )
    assert verdict_of(state, pod(namespace="a")).code is Code.JURISDICTION_ALLOWED  # CN left D:5
    assert verdict_of(state, pod(namespace="b")).code is Code.NO_LICENSE
    assert verdict_of(state, pod(namespace="c")).code is Code.PROHIBITED  # E:1 remains built-in


def test_a_policy_may_add_a_group_used_by_its_rules(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("ae", "AE", namespaces=["a"]),
        policy(
            countryGroups={"watch": ["AE"]}, rules=[{"groups": ["watch", "D:5"], "action": "RequireLicense"}]
        ),
    )
    assert verdict_of(state, pod(namespace="a")).code is Code.NO_LICENSE


def test_policy_rules_present_are_exactly_the_rules(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("ir", "IR", namespaces=["a"]),
        tenant("sg", "SG", namespaces=["b"]),
        policy(rules=[{"jurisdictions": ["SG"], "action": "RequireLicense"}]),
    )
    assert verdict_of(state, pod(namespace="a")).code is Code.JURISDICTION_ALLOWED  # no rule matches IR now
    assert verdict_of(state, pod(namespace="b")).code is Code.NO_LICENSE


def test_an_empty_rule_list_allows_every_country(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("ir", "IR", namespaces=["team"]), policy(rules=[]))
    assert verdict_of(state, pod()).code is Code.JURISDICTION_ALLOWED


def test_a_policy_without_rules_keeps_the_built_in_rules(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100), tenant("ir", "IR", namespaces=["team"]), policy(enforcement="Enforce")
    )
    assert verdict_of(state, pod()).code is Code.PROHIBITED


def test_the_first_matching_rule_wins(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("cn", "CN", namespaces=["team"]),
        policy(
            rules=[{"jurisdictions": ["CN"], "action": "Allow"}, {"groups": ["D:5"], "action": "Prohibit"}]
        ),
    )
    assert verdict_of(state, pod()).code is Code.JURISDICTION_ALLOWED


def test_a_rule_matches_through_its_groups_or_its_own_list(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("sg", "SG", namespaces=["a"]),
        tenant("ve", "VE", namespaces=["b"]),
        policy(rules=[{"groups": ["D:5"], "jurisdictions": ["SG"], "action": "Prohibit"}]),
    )
    assert verdict_of(state, pod(namespace="a")).code is Code.PROHIBITED
    assert verdict_of(state, pod(namespace="b")).code is Code.PROHIBITED


def test_a_country_no_rule_matches_is_allowed(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("us", "US", namespaces=["team"]))
    verdict = verdict_of(state, pod())
    assert verdict.code is Code.JURISDICTION_ALLOWED
    assert "no CompliancePolicy rule matches" in verdict.message


def test_a_rule_naming_an_unknown_group_matches_nothing_through_it(make_state: StateFactory) -> None:
    state = make_state(
        node("h", H100),
        tenant("cn", "CN", namespaces=["team"]),
        policy(rules=[{"groups": ["nope"], "action": "Prohibit"}]),
    )
    assert verdict_of(state, pod()).code is Code.JURISDICTION_ALLOWED


def _builtin_catalog() -> Any:
    return builtin_catalog()


@pytest.mark.parametrize(
    ("country", "code"),
    [
        ("CN", Code.NO_LICENSE),  # D:1, D:4, D:5
        ("RU", Code.NO_LICENSE),
        ("MO", Code.NO_LICENSE),  # Macau
        ("VN", Code.NO_LICENSE),  # D:1
        ("SA", Code.NO_LICENSE),  # D:4
        ("IR", Code.PROHIBITED),  # E:1
        ("KP", Code.PROHIBITED),
        ("SY", Code.PROHIBITED),
        ("CU", Code.PROHIBITED),  # E:2
        ("US", Code.JURISDICTION_ALLOWED),
        ("DE", Code.JURISDICTION_ALLOWED),
        ("BR", Code.JURISDICTION_ALLOWED),
    ],
)
def test_the_shipped_default_policy(make_state: StateFactory, country: str, code: Code) -> None:
    catalog = _builtin_catalog()
    h100 = next(
        name for name, spec in catalog.profiles.items() if H100 in spec.product_labels.get(PRODUCT, [])
    )
    state = make_state(node("h", H100), tenant("t", country, namespaces=["team"]), catalog=catalog)
    verdict = verdict_of(state, pod())
    assert verdict.uses[0].profile == h100
    assert verdict.code is code


def test_the_shipped_default_exempts_kube_system_and_requires_kyc(make_state: StateFactory) -> None:
    catalog = _builtin_catalog()
    state = make_state(
        node("h", H100), tenant("t", "US", namespaces=["team"], kyc="Pending"), catalog=catalog
    )
    assert verdict_of(state, pod(namespace="kube-system")).code is Code.EXEMPT
    assert verdict_of(state, pod()).code is Code.KYC_INCOMPLETE
    assert verdict_of(state, pod(namespace="nowhere")).code is Code.UNKNOWN_TENANT


def test_pods_of_another_tenant_carrying_the_license_annotation_do_not_consume_it(
    licensed_state: StateFactory,
) -> None:
    state = _cap_state(licensed_state, tenant("mallory", "US", namespaces=["theirs"]))
    state.upsert(_obj(running(pod("forged", namespace="theirs", gpus=4), license_name="lic")))
    assert verdict_of(state, pod(gpus=4)).code is Code.LICENSED


def test_a_namespace_moved_to_the_tenant_brings_its_licensed_pods(licensed_state: StateFactory) -> None:
    state = _cap_state(licensed_state)
    state.upsert(_obj(running(pod("old", namespace="later", gpus=4), license_name="lic")))
    assert verdict_of(state, pod(gpus=4)).code is Code.LICENSED
    state.upsert(_obj(namespace("later", **{"computegate.io/tenant": "acme"})))
    assert verdict_of(state, pod(gpus=1)).code is Code.LICENSE_CAP_EXCEEDED


def test_a_namespace_in_conflict_still_counts_for_the_license(licensed_state: StateFactory) -> None:
    state = _cap_state(licensed_state, tenant("rival", "US", namespaces=["shared"]))
    state.upsert(_obj(namespace("shared", **{"computegate.io/tenant": "acme"})))
    state.upsert(_obj(running(pod("old", namespace="shared", gpus=4), license_name="lic")))
    assert verdict_of(state, pod(gpus=1)).code is Code.LICENSE_CAP_EXCEEDED


# ----- messages: what was found, which rule applied, what to do next -----


@pytest.mark.parametrize(
    ("bodies", "namespace_", "code", "phrases"),
    [
        ((), "nowhere", Code.UNKNOWN_TENANT, ["nowhere", "ask a cluster admin"]),
        (
            (tenant("acme", "US", namespaces=["team"], kyc="Pending"),),
            "team",
            Code.KYC_INCOMPLETE,
            ["Pending", "verification"],
        ),
        ((tenant("acme", "IR", namespaces=["team"]),), "team", Code.PROHIBITED, ["IR", "rule 1", "E:1"]),
        (
            (tenant("acme", "CN", namespaces=["team"]),),
            "team",
            Code.NO_LICENSE,
            ["CN", "D:5", "Request an export license"],
        ),
        (
            (
                tenant("acme", "CN", namespaces=["team"]),
                license_("lic", "acme", valid_until="2026-03-01T00:00:00Z"),
            ),
            "team",
            Code.LICENSE_EXPIRED,
            ["lic", "expired", "renewal"],
        ),
        (
            (tenant("acme", "CN", namespaces=["team"]), license_("lic", "acme", accelerators=["a100"])),
            "team",
            Code.LICENSE_SCOPE,
            ["covers a100", "not h100", "amendment"],
        ),
        (
            (tenant("acme", "CN", namespaces=["team"]), license_("lic", "acme", max_tpp=1000)),
            "team",
            Code.LICENSE_CAP_EXCEEDED,
            ["1,000 TPP", "15,832 TPP", "Reduce replicas"],
        ),
    ],
)
def test_a_denial_message_says_what_was_found_and_what_to_do(
    make_state: StateFactory,
    bodies: tuple[dict[str, Any], ...],
    namespace_: str,
    code: Code,
    phrases: list[str],
) -> None:
    state = make_state(node("h", H100), *bodies)
    verdict = verdict_of(state, pod(namespace=namespace_))
    assert verdict.code is code
    assert verdict.message.startswith(f"[{code.value}] Pod {namespace_}/p asks for 1 x NVIDIA H100")
    for phrase in phrases:
        assert phrase in verdict.message


def test_no_controlled_band_in_the_policy_means_nothing_is_controlled(make_state: StateFactory) -> None:
    state = make_state(node("h", H100), tenant("acme", "IR", namespaces=["team"]), policy(controlledBands=[]))
    assert verdict_of(state, pod()).code is Code.NOT_CONTROLLED
