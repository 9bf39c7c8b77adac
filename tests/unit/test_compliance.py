"""Running pods judged again after admission (DESIGN.md "After admission"), engine only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from computegate.engine import Code
from computegate.engine.compliance import next_change, rejudge, running_pods
from computegate.models.resources import duration_seconds
from tests.unit.conftest import NOW, StateFactory, license_, node, obj, pod, tenant
from tests.unit.memory_kube import MemoryKube

H100 = "NVIDIA-H100-80GB-HBM3"
H100_TPP = 15832


def running(name: str, minute: int, *, license_name: str | None = "lic", gpus: int = 1) -> dict[str, Any]:
    body = pod(name, "team", gpus=gpus, nodeName="h100-node")
    annotations = {"computegate.io/code": "Licensed" if license_name else "JurisdictionAllowed"}
    if license_name:
        annotations["computegate.io/license"] = license_name
    body["metadata"].update(
        annotations=annotations,
        uid=f"uid-{name}",
        creationTimestamp=f"2026-05-01T00:{minute:02d}:00Z",
    )
    body["status"] = {"phase": "Running"}
    return body


def restricted(**kwargs: Any) -> dict[str, Any]:
    return tenant("acme", "CN", namespaces=["team"], **kwargs)


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "computegate.io/v1alpha1",
        "kind": "CompliancePolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def test_pods_under_a_valid_license_within_its_cap_are_not_violations(make_state: StateFactory) -> None:
    state = make_state(
        node("h100-node", H100),
        restricted(),
        license_("lic", "acme", max_tpp=2 * H100_TPP),
        running("a", 1),
        running("b", 2),
    )
    assert rejudge(state, at=NOW) == []


def test_a_revoked_license_makes_every_pod_under_it_a_violation(make_state: StateFactory) -> None:
    state = make_state(
        node("h100-node", H100),
        restricted(),
        license_("lic", "acme", revoked=True),
        running("a", 1),
        running("b", 2),
    )
    findings = rejudge(state, at=NOW)
    assert [(f.name, f.code, f.enforced, f.evictable) for f in findings] == [
        ("a", Code.LICENSE_REVOKED, True, True),
        ("b", Code.LICENSE_REVOKED, True, True),
    ]
    assert findings[0].license == "lic" and findings[0].tenant == "acme"


def test_a_pod_that_ran_without_a_decision_is_judged_as_if_created_now(make_state: StateFactory) -> None:
    """Created before ComputeGate was installed (no stamp): a restricted tenant's H100 pod with
    no license is a violation; one whose tenant holds room on a license is not, and it is the
    stamped pods' use, not its own, that a license counts."""
    unstamped = running("before-install", 0, license_name=None)
    del unstamped["metadata"]["annotations"]
    state = make_state(node("h100-node", H100), restricted(), unstamped)
    (finding,) = rejudge(state, at=NOW)
    assert (finding.name, finding.code, finding.license, finding.enforced) == (
        "before-install",
        Code.NO_LICENSE,
        None,
        True,
    )
    state.upsert(obj(license_("lic", "acme", max_tpp=2 * H100_TPP)))
    assert rejudge(state, at=NOW) == []


def test_an_unstamped_pod_without_a_license_is_evictable_a_stamped_one_is_not(
    make_state: StateFactory,
) -> None:
    unstamped = running("before-install", 0, license_name=None)
    del unstamped["metadata"]["annotations"]
    stamped = running("admitted", 1, license_name=None)  # JurisdictionAllowed, then the rules changed
    state = make_state(node("h100-node", H100), restricted(), unstamped, stamped)
    by_name = {f.name: f for f in rejudge(state, at=NOW)}
    assert {name: (f.code, f.admitted, f.evictable) for name, f in by_name.items()} == {
        "before-install": (Code.NO_LICENSE, False, True),
        "admitted": (Code.NO_LICENSE, True, False),
    }


def test_an_unstamped_licensed_pod_takes_no_place_under_the_cap(make_state: StateFactory) -> None:
    """Admission counts only stamped pods against a license; so does the re-judging, or a pod
    admitted into the room would be evicted again (and re-created, and evicted)."""
    unstamped = running("before-install", 0, license_name=None)
    del unstamped["metadata"]["annotations"]
    state = make_state(
        node("h100-node", H100),
        restricted(),
        license_("lic", "acme", max_tpp=H100_TPP),
        unstamped,
        running("admitted", 1),
    )
    assert rejudge(state, at=NOW) == []


def test_unstamped_pods_that_use_no_accelerator_are_not_judged(make_state: StateFactory) -> None:
    sandboxed = pod("sandboxed", "team", gpus=0, runtimeClassName="gvisor")
    sandboxed["spec"]["containers"][0]["resources"] = {"limits": {"example.com/sriov-nic": 1}}
    sandboxed["metadata"]["uid"] = "uid-sandboxed"
    sandboxed["status"] = {"phase": "Running"}
    unstamped = running("before-install", 0, license_name=None)
    del unstamped["metadata"]["annotations"]
    state = make_state(node("h100-node", H100), restricted(), sandboxed, unstamped)
    assert [p.metadata.name for p in running_pods(state)] == ["before-install"]


def test_a_lowered_cap_makes_the_newest_pods_beyond_it_the_violations(make_state: StateFactory) -> None:
    state = make_state(
        node("h100-node", H100),
        restricted(),
        license_("lic", "acme", max_tpp=2 * H100_TPP),
        running("newest", 9),
        running("oldest", 1),
        running("middle", 5),
    )
    findings = rejudge(state, at=NOW)
    assert [(f.name, f.code) for f in findings] == [("newest", Code.LICENSE_CAP_EXCEEDED)]
    assert "beyond the cap" in findings[0].message


def test_a_pod_is_not_counted_twice_against_its_own_license(make_state: StateFactory) -> None:
    # Exactly at the cap: one pod using all of it is within the cap, though the license's
    # consumption already includes that pod.
    state = make_state(
        node("h100-node", H100), restricted(), license_("lic", "acme", max_tpp=H100_TPP), running("a", 1)
    )
    assert rejudge(state, at=NOW) == []


def test_an_expired_license_is_reported_from_its_valid_until(make_state: StateFactory) -> None:
    until = "2026-05-31T12:00:00Z"
    state = make_state(
        node("h100-node", H100), restricted(), license_("lic", "acme", valid_until=until), running("a", 1)
    )
    (finding,) = rejudge(state, at=NOW)
    assert finding.code is Code.LICENSE_EXPIRED
    assert finding.since is not None and finding.since.isoformat().startswith("2026-05-31T12:00")


def test_the_timer_fires_at_the_next_valid_until(make_state: StateFactory) -> None:
    state = make_state(license_("lic", "acme", valid_until="2026-06-01T00:05:00Z"))
    assert next_change(state, after=NOW) == NOW + timedelta(minutes=5)
    assert next_change(state, after=NOW + timedelta(minutes=5)) is None


def test_a_tenant_whose_kyc_fails_has_its_running_pods_reported_but_never_for_missing_state(
    make_state: StateFactory,
) -> None:
    state = make_state(
        node("h100-node", H100), restricted(kyc="Failed"), license_("lic", "acme"), running("a", 1)
    )
    (finding,) = rejudge(state, at=NOW)
    assert finding.code is Code.KYC_INCOMPLETE and finding.evictable
    state.remove("Tenant", "acme")
    (finding,) = rejudge(state, at=NOW)
    assert finding.code is Code.UNKNOWN_TENANT and not finding.evictable


def test_a_parent_in_a_prohibited_country_makes_an_allowed_pod_a_violation(make_state: StateFactory) -> None:
    state = make_state(
        node("h100-node", H100),
        tenant("acme", "FR", namespaces=["team"], parent="IR"),
        running("a", 1, license_name=None),
    )
    (finding,) = rejudge(state, at=NOW)
    assert finding.code is Code.PROHIBITED and finding.license is None


def test_a_running_pod_stays_under_the_license_it_is_counted_under(make_state: StateFactory) -> None:
    state = make_state(
        node("h100-node", H100),
        restricted(),
        license_("lic", "acme", revoked=True),
        license_("other", "acme"),
        running("a", 1),
    )
    (finding,) = rejudge(state, at=NOW)
    assert finding.code is Code.LICENSE_REVOKED and finding.license == "lic"


def test_an_audit_override_makes_a_tenants_findings_would_be_violations_and_enforce_makes_them_violations(
    make_state: StateFactory,
) -> None:
    state = make_state(
        node("h100-node", H100),
        restricted(),
        license_("lic", "acme", revoked=True),
        running("a", 1),
        policy(overrides=[{"tenants": ["acme"], "enforcement": "Audit"}]),
    )
    (finding,) = rejudge(state, at=NOW)
    assert not finding.enforced and not finding.evictable

    state.upsert(
        obj(policy(enforcement="Audit", overrides=[{"tenants": ["acme"], "enforcement": "Enforce"}]))
    )
    (finding,) = rejudge(state, at=NOW)
    assert finding.enforced and finding.evictable


def test_finished_pods_are_not_judged(make_state: StateFactory) -> None:
    done = running("a", 1)
    done["status"] = {"phase": "Succeeded"}
    state = make_state(node("h100-node", H100), restricted(), license_("lic", "acme", revoked=True), done)
    assert rejudge(state, at=NOW) == []


def test_grace_periods_read_as_go_durations() -> None:
    assert duration_seconds("1h30m") == 5400 and duration_seconds("45s") == 45


# ----- how a finding shows (the pure parts of webhook/compliance.py and webhook/licenses.py) -----
def test_the_license_status_carries_a_violations_condition_dated_at_valid_until(
    make_state: StateFactory,
) -> None:
    from computegate.engine.ledger import Ledger
    from computegate.webhook.licenses import license_status

    until = "2026-05-31T12:00:00Z"
    state = make_state(
        node("h100-node", H100), restricted(), license_("lic", "acme", valid_until=until), running("a", 1)
    )
    status = license_status(state.licenses["lic"], Ledger(), NOW, rejudge(state, at=NOW))
    violations = next(c for c in status["conditions"] if c["type"] == "Violations")
    assert status["violations"] == 1 and violations["status"] == "True"
    assert violations["reason"] == "LicenseExpired" and violations["lastTransitionTime"] == until
    assert "team/a" in violations["message"]


def test_the_tenant_status_resolves_namespaces_and_names_conflicts(make_state: StateFactory) -> None:
    from computegate.webhook.compliance import tenant_status

    labelled = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shared", "labels": {"computegate.io/tenant": "other"}},
    }
    state = make_state(
        node("h100-node", H100),
        tenant("acme", "CN", namespaces=["team", "shared"]),
        tenant("other", "FR", namespaces=[]),
        labelled,
        license_("lic", "acme", revoked=True),
        running("a", 1),
    )
    status = tenant_status(
        state, "acme", set(), rejudge(state, at=NOW), since={("uid-a", "LicenseRevoked"): NOW}
    )
    assert status["namespaces"] == ["team"]
    assert status["conflicts"] == [{"namespace": "shared", "tenants": ["acme", "other"]}]
    assert status["licenses"] == ["lic"] and status["consumedTPP"] == H100_TPP
    assert status["violations"] == 1 and status["violationsByCode"] == {"LicenseRevoked": 1}
    assert status["violatingPods"] == [
        {
            "namespace": "team",
            "name": "a",
            "uid": "uid-a",
            "code": "LicenseRevoked",
            "since": "2026-06-01T00:00:00Z",
        }
    ]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (
        conditions["Compliant"]["status"] == "False" and conditions["NamespaceConflict"]["status"] == "True"
    )


def test_a_report_is_owned_by_its_pod_and_has_kyvernos_shape(make_state: StateFactory) -> None:
    from computegate.webhook.reports import report, report_results

    state = make_state(
        node("h100-node", H100), restricted(), license_("lic", "acme", revoked=True), running("a", 1)
    )
    (finding,) = rejudge(state, at=NOW)
    body = report("team", "a", "uid-a", report_results(finding, NOW))
    assert body["apiVersion"] == "openreports.io/v1alpha1" and body["kind"] == "Report"
    assert body["metadata"]["name"] == "uid-a"
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": "uid-a"}
    ]
    assert body["scope"]["kind"] == "Pod" and body["summary"]["fail"] == 1
    (result,) = body["results"]
    assert result["policy"] == "computegate-export-controls" and result["rule"] == "LicenseRevoked"
    assert result["result"] == "fail" and result["properties"]["license"] == "lic"


# ----- the grace period survives a change of leader (webhook/compliance.py, against a fake API) -----
EVICT = policy(enforcement="Enforce", onViolation="Evict", evictionGracePeriod="5m")
TENANTS = "/apis/computegate.io/v1alpha1/tenants"


def evictions(kube: MemoryKube) -> list[str]:
    return [path for verb, path, _ in kube.requests if verb == "create" and path.endswith("/eviction")]


async def test_a_new_leader_continues_the_grace_period_the_last_one_started(make_state: StateFactory) -> None:
    from computegate.webhook.compliance import Compliance
    from computegate.webhook.observe import Metrics

    state = make_state(
        node("h100-node", H100), restricted(), license_("lic", "acme", revoked=True), running("a", 1), EVICT
    )
    kube = MemoryKube()
    await kube.post(TENANTS, restricted())
    clock = [NOW]

    def leader() -> Compliance:
        return Compliance(kube, state, Metrics(), clock=lambda: clock[0])  # type: ignore[arg-type]

    first = leader()
    first.judge()
    await first.publish()
    (entry,) = kube.objects[f"{TENANTS}/acme"]["status"]["violatingPods"]
    assert entry == {
        "namespace": "team",
        "name": "a",
        "uid": "uid-a",
        "code": "LicenseRevoked",
        "since": "2026-06-01T00:00:00Z",
    }

    # The first leader is gone; another replica takes over four minutes later, with no memory.
    clock[0] = NOW + timedelta(minutes=4)
    second = leader()
    second.judge()
    await second.publish()
    assert evictions(kube) == []  # one minute of the five left
    clock[0] = NOW + timedelta(minutes=5, seconds=1)
    second.judge()
    await second.publish()
    assert evictions(kube) == ["/api/v1/namespaces/team/pods/a/eviction"]  # not at minute 9


async def test_no_eviction_before_the_tenants_status_says_when_the_violation_began(
    make_state: StateFactory,
) -> None:
    from computegate.webhook.compliance import Compliance
    from computegate.webhook.observe import Metrics

    state = make_state(
        node("h100-node", H100), restricted(), license_("lic", "acme", revoked=True), running("a", 1), EVICT
    )
    kube = MemoryKube()  # the Tenant cannot be read (here: not there)
    compliance = Compliance(kube, state, Metrics(), clock=lambda: NOW + timedelta(days=1))  # type: ignore[arg-type]
    compliance.judge()
    await compliance.publish()
    assert evictions(kube) == []
    # A replica that stops leading forgets its term: the next one reads the Tenant again.
    await kube.post(
        TENANTS,
        {
            **restricted(),
            "status": {
                "violatingPods": [
                    {
                        "namespace": "team",
                        "name": "a",
                        "uid": "uid-a",
                        "code": "LicenseRevoked",
                        "since": "2026-05-31T00:00:00Z",
                    }
                ]
            },
        },
    )
    compliance.resign()
    await compliance.publish()
    assert evictions(kube) == ["/api/v1/namespaces/team/pods/a/eviction"]


# ----- openreports.io Reports: every judged pod, written on change, bounded (webhook/reports.py) -----
REPORTS = "/apis/openreports.io/v1alpha1"


def served_reports() -> MemoryKube:
    kube = MemoryKube()
    kube.objects[REPORTS] = {"resources": [{"name": "reports"}]}  # discovery: the CRD is served
    return kube


def written(kube: MemoryKube) -> dict[str, str]:
    """Pod name → what its Report says (``pass``, or ``result:rule``)."""
    out = {}
    for report in kube.under(f"{REPORTS}/namespaces/team/reports").values():
        (result,) = report["results"]
        says = "pass" if result["result"] == "pass" else f"{result['result']}:{result['rule']}"
        out[report["scope"]["name"]] = says
    return out


def report_writes(kube: MemoryKube) -> int:
    return kube.version  # objects stored (created or replaced); Reports are all these tests store


async def test_a_compliant_pod_gets_a_passing_report_and_each_report_is_written_only_when_it_changes(
    make_state: StateFactory,
) -> None:
    from computegate.engine.compliance import running_pods
    from computegate.webhook.reports import Reports

    state = make_state(
        node("h100-node", H100),
        restricted(),
        license_("lic", "acme", max_tpp=H100_TPP),
        running("a", 1),
        running("b", 2),  # beyond the cap: the newest pod is the violation
    )
    kube = served_reports()
    reports = Reports(kube, lambda: NOW)  # type: ignore[arg-type]
    await reports.write(rejudge(state, at=NOW), running_pods(state))
    assert written(kube) == {"a": "pass", "b": "fail:LicenseCapExceeded"}
    passing = kube.objects[f"{REPORTS}/namespaces/team/reports/uid-a"]
    assert passing["summary"]["pass"] == 1 and passing["metadata"]["ownerReferences"][0]["uid"] == "uid-a"
    assert passing["results"][0]["properties"] == {"code": "Licensed", "license": "lic"}
    writes = report_writes(kube)
    await reports.write(rejudge(state, at=NOW), running_pods(state))
    assert report_writes(kube) == writes  # nothing changed: nothing written

    state.upsert(obj(license_("lic", "acme", max_tpp=2 * H100_TPP)))  # the cap raised: b complies
    await reports.write(rejudge(state, at=NOW), running_pods(state))
    assert written(kube) == {"a": "pass", "b": "pass"}
    assert report_writes(kube) == writes + 1

    # A new leader reads what the Reports say, and writes none of them again.
    successor = Reports(kube, lambda: NOW)  # type: ignore[arg-type]
    await successor.write(rejudge(state, at=NOW), running_pods(state))
    assert report_writes(kube) == writes + 1
    assert ("list", f"{REPORTS}/reports", "app.kubernetes.io/managed-by=computegate") in kube.requests


async def test_report_writes_are_rate_limited_and_findings_go_first(make_state: StateFactory) -> None:
    from computegate.engine.compliance import running_pods
    from computegate.webhook.reports import Reports

    pods = [running(name, minute) for minute, name in enumerate("abcde", start=1)]
    state = make_state(
        node("h100-node", H100), restricted(), license_("lic", "acme", max_tpp=H100_TPP), *pods
    )
    kube = served_reports()
    clock = [NOW]
    reports = Reports(kube, lambda: clock[0], writes_per_second=2)  # type: ignore[arg-type]
    await reports.write(rejudge(state, at=NOW), running_pods(state))
    assert written(kube) == {"b": "fail:LicenseCapExceeded", "c": "fail:LicenseCapExceeded"}
    clock[0] += timedelta(seconds=1)
    await reports.write(rejudge(state, at=NOW), running_pods(state))
    assert len(written(kube)) == 4
    clock[0] += timedelta(seconds=1)
    await reports.write(rejudge(state, at=NOW), running_pods(state))
    assert written(kube) == {
        "a": "pass",
        "b": "fail:LicenseCapExceeded",
        "c": "fail:LicenseCapExceeded",
        "d": "fail:LicenseCapExceeded",
        "e": "fail:LicenseCapExceeded",
    }


async def test_a_pod_a_disruption_budget_keeps_does_not_take_the_whole_eviction_budget(
    make_state: StateFactory,
) -> None:
    from kubernetes.client.exceptions import ApiException

    from computegate.webhook.compliance import Compliance
    from computegate.webhook.observe import Metrics

    state = make_state(
        node("h100-node", H100),
        restricted(),
        license_("lic", "acme", revoked=True),
        running("a", 1),  # the oldest, protected by a PodDisruptionBudget
        running("b", 2),
        EVICT,
    )
    kube = MemoryKube()
    await kube.post(TENANTS, restricted())
    tried: list[str] = []
    store = kube.post

    async def post(path: str, body: Any, *, urgent: bool = True) -> dict[str, Any]:
        if path.endswith("/eviction"):
            tried.append(path.split("/")[-2])
            if path.endswith("/pods/a/eviction"):
                raise ApiException(status=429, reason="Too Many Requests")
        return await store(path, body, urgent=urgent)

    kube.post = post  # type: ignore[method-assign]
    clock = [NOW]
    compliance = Compliance(
        kube,  # type: ignore[arg-type]
        state,
        Metrics(),
        clock=lambda: clock[0],
        evictions_per_minute=1,
    )
    for at in (NOW, NOW + timedelta(minutes=5, seconds=1), NOW + timedelta(minutes=6, seconds=2)):
        clock[0] = at
        compliance.judge()
        await compliance.publish()
    assert tried == ["a", "b"]  # one a minute; the kept pod is tried again after the other
