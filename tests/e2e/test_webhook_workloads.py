"""The webhook through the real API server: what tenants and admins see on CREATE and UPDATE."""

from __future__ import annotations

import json

import pytest

from tests.e2e.webhook_support import (
    H100_TPP,
    Cluster,
    Operator,
    bind_tenant_user,
    deployment,
    license,
    licensed_tenant,
    pod,
    tenant,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def test_a_deployment_over_the_license_cap_is_rejected_at_kubectl_apply_time(cluster: Cluster) -> None:
    _, namespace, lic = licensed_tenant(cluster, max_tpp=2 * H100_TPP)
    alice = bind_tenant_user(cluster, unique("alice"), namespace)
    result = cluster.kubectl("apply", "-f", "-", user=alice, stdin=deployment("serve", namespace, replicas=3))
    assert result.returncode != 0
    assert (
        'admission webhook "workloads.validate.computegate.io" denied the request: [LicenseCapExceeded]'
        in (result.stderr)
    )
    assert lic in result.stderr and "47,496 controlled TPP" in result.stderr
    assert cluster.kubectl("get", "deployment", "serve", "-n", namespace).returncode != 0


def test_an_image_bump_and_a_scale_down_under_a_full_license_are_admitted_and_growth_is_not(
    cluster: Cluster,
) -> None:
    _, namespace, lic = licensed_tenant(cluster, max_tpp=2 * H100_TPP)
    created = cluster.create(deployment("serve", namespace, replicas=2))
    assert created.ok and created.code == "Licensed"
    for index in range(2):  # the pods the ReplicaSet controller would make fill the license
        assert cluster.create(pod(f"serve-{index}", namespace)).code == "Licensed"
    cluster.eventually(pod("one-more", namespace), "LicenseCapExceeded")

    bump = cluster.kubectl(
        "set", "image", "deployment/serve", "main=registry.example/serve:2", "-n", namespace
    )
    assert bump.returncode == 0, bump.stderr
    down = cluster.kubectl("scale", "deployment/serve", "--replicas=1", "-n", namespace)
    assert down.returncode == 0, down.stderr
    up = cluster.kubectl("scale", "deployment/serve", "--replicas=3", "-n", namespace)
    assert up.returncode != 0 and "[LicenseCapExceeded]" in up.stderr
    patched = cluster.kubectl(
        "patch", "deployment/serve", "-n", namespace, "--type=merge", "-p", '{"spec": {"replicas": 4}}'
    )
    assert patched.returncode != 0 and "[LicenseCapExceeded]" in patched.stderr
    assert cluster.get("deployment", "serve", "-n", namespace)["spec"]["replicas"] == 1
    assert lic


def test_pods_of_a_job_can_be_finalized_and_relabelled_under_a_full_or_revoked_license(
    cluster: Cluster,
) -> None:
    name, namespace, lic = licensed_tenant(cluster, max_tpp=H100_TPP)
    assert cluster.create(pod("job-pod", namespace)).code == "Licensed"
    cluster.eventually(pod("probe", namespace), "LicenseCapExceeded")
    finalizer = '{"metadata": {"finalizers": ["batch.kubernetes.io/job-tracking"]}}'
    for change in (
        ("label", "pod", "job-pod", "batch.kubernetes.io/controller-uid=abc", "-n", namespace),
        ("patch", "pod", "job-pod", "-n", namespace, "--type=merge", "-p", finalizer),
    ):
        result = cluster.kubectl(*change)
        assert result.returncode == 0, result.stderr
    cluster.apply(license(lic, name, max_tpp=H100_TPP, revoked=True))
    cluster.eventually(pod("probe", namespace), "LicenseRevoked")
    removed = cluster.kubectl(
        "patch",
        "pod",
        "job-pod",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/metadata/finalizers"}]',
    )
    assert removed.returncode == 0, removed.stderr
    assert (
        cluster.get("pod", "job-pod", "-n", namespace)["metadata"]["annotations"]["computegate.io/license"]
        == lic
    )


def test_a_server_side_dry_run_gets_the_same_verdict_without_an_event_or_consumption(
    cluster: Cluster, operator: Operator
) -> None:
    _, namespace, lic = licensed_tenant(cluster, max_tpp=H100_TPP)
    dry = cluster.create(pod("too-big", namespace, gpus=2), dry_run=True)
    real = cluster.create(pod("too-big", namespace, gpus=2))
    assert dry.code == real.code == "LicenseCapExceeded"
    assert dry.stderr.split("denied the request: ")[1] == real.stderr.split("denied the request: ")[1]
    for _ in range(3):
        admitted = cluster.create(pod("fits", namespace), dry_run=True)
        assert admitted.ok and admitted.code == "Licensed"  # dry runs reserve nothing
    wait_until(lambda: bool(_events(cluster, namespace)), what="the Event of the real denial")
    events = _events(cluster, namespace)
    assert [(e["involvedObject"]["name"], e["reason"]) for e in events] == [("too-big", "LicenseCapExceeded")]
    dry_logged = [d for d in operator.decisions() if d["namespace"] == namespace and d["dryRun"]]
    assert {d["code"] for d in dry_logged} == {"LicenseCapExceeded", "Licensed"}
    assert cluster.get("exportlicense", lic).get("status", {}).get("consumedTPP", 0) == 0


def _events(cluster: Cluster, namespace: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = cluster.get("events", "-n", namespace)["items"]
    return items


def test_forged_annotations_are_replaced_on_create_and_kept_on_update(cluster: Cluster) -> None:
    name = unique("northwind")
    cluster.apply(tenant(name, "US", namespaces=[name]))
    forged = {
        "computegate.io/license": "someone-elses",
        "computegate.io/code": "Licensed",
        "computegate.io/decision-id": "forged",
    }
    cluster.eventually(pod("probe", name), "JurisdictionAllowed")
    created = cluster.create(pod("forger", name, annotations=forged))
    assert created.ok
    stamps = {k: v for k, v in created.annotations.items() if k.startswith("computegate.io/")}
    assert stamps["computegate.io/code"] == "JurisdictionAllowed"
    assert stamps["computegate.io/decision"] == "Admitted"
    assert stamps["computegate.io/tpp"] == str(H100_TPP)
    assert "computegate.io/license" not in stamps and stamps["computegate.io/decision-id"] != "forged"

    overwrite = cluster.kubectl(
        "annotate",
        "pod",
        "forger",
        "-n",
        name,
        "--overwrite",
        "computegate.io/license=someone-elses",
        "computegate.io/code=Licensed",
    )
    assert overwrite.returncode == 0, overwrite.stderr
    after = cluster.get("pod", "forger", "-n", name)["metadata"]["annotations"]
    assert {k: v for k, v in after.items() if k.startswith("computegate.io/")} == stamps

    templated = cluster.create(deployment("serve", name, replicas=1, template_annotations=forged))
    template = templated.obj["spec"]["template"]["metadata"] if templated.obj else {}
    assert templated.code == "JurisdictionAllowed"
    assert not any(key.startswith("computegate.io/") for key in template.get("annotations", {}))


def test_a_tenant_identity_cannot_relabel_its_namespace_but_an_admin_group_can(cluster: Cluster) -> None:
    name = unique("initech")
    cluster.apply(tenant(name, "CN", namespaces=[]))
    namespace = unique("initech-ns")
    cluster.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {"computegate.io/tenant": name}},
            }
        )
    )
    bob = bind_tenant_user(cluster, unique("bob"), namespace)
    cluster.apply(
        json.dumps(
            {  # bob may update his own namespace object (RBAC), but not its tenant label
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{namespace}-ns"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "e2e-tenant",
                },
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": bob.stem}],
            }
        )
    )
    friendly = unique("friendly")
    cluster.apply(tenant(friendly, "US", namespaces=[]))
    for change in (f"computegate.io/tenant={friendly}", "computegate.io/tenant-"):
        args = ("label", "namespace", namespace, change) + (("--overwrite",) if "=" in change else ())
        refused = cluster.kubectl(*args, user=bob)
        assert refused.returncode != 0
        assert "[TenantLabelProtected]" in refused.stderr, refused.stderr
    other = cluster.kubectl("label", "namespace", namespace, "team=ml", user=bob)
    assert other.returncode == 0, other.stderr  # other labels are not ComputeGate's business
    admin = cluster.user(unique("carol"), ("computegate-admins",))
    cluster.apply(
        json.dumps(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{namespace}-admin"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "e2e-tenant",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "computegate-admins"}
                ],
            }
        )
    )
    allowed = cluster.kubectl(
        "label", "namespace", namespace, f"computegate.io/tenant={friendly}", "--overwrite", user=admin
    )
    assert allowed.returncode == 0, allowed.stderr


def test_policy_and_license_changes_take_effect_without_a_restart(
    cluster: Cluster, operator: Operator
) -> None:
    name = unique("umbrella")
    cluster.apply(tenant(name, "SA", namespaces=[name]))
    workload = pod("train", name)
    cluster.eventually(workload, "NoLicense")
    cluster.apply(license(f"{name}-lic", name, max_tpp=H100_TPP))
    cluster.eventually(workload, "Licensed")
    cluster.apply(license(f"{name}-lic", name, max_tpp=H100_TPP, accelerators=["nvidia-a100-sxm4-80gb"]))
    cluster.eventually(workload, "LicenseScope")
    cluster.apply(license(f"{name}-lic", name, max_tpp=H100_TPP, valid_until="2026-02-01T00:00:00Z"))
    cluster.eventually(workload, "LicenseExpired")
    try:
        audit = '{"spec": {"enforcement": "Audit"}}'
        assert (
            cluster.kubectl("patch", "compliancepolicy", "default", "--type=merge", "-p", audit).returncode
            == 0
        )
        wait_until(lambda: cluster.create(workload, dry_run=True).ok, what="the Audit policy")
        admitted = cluster.kubectl("create", "-f", "-", "-o", "json", stdin=workload)
        assert admitted.returncode == 0
        assert "Warning: Audit mode, would deny: [LicenseExpired]" in admitted.stderr
        stamps = json.loads(admitted.stdout)["metadata"]["annotations"]
        assert stamps["computegate.io/decision"] == "Audit"
        assert stamps["computegate.io/code"] == "LicenseExpired"
        assert "computegate.io/license" not in stamps  # a would-be denial consumes no license
        wait_until(
            lambda: any(e["reason"] == "LicenseExpired" for e in _events(cluster, name)),
            what="the Event of the would-be denial",
        )
    finally:
        cluster.apply(
            "apiVersion: computegate.io/v1alpha1\nkind: CompliancePolicy\n"
            "metadata: {name: default}\nspec: {enforcement: Enforce}\n"
        )
    cluster.eventually(pod("train-2", name), "LicenseExpired")
    status, metrics = operator.health("/metrics")
    assert status == 200
    assert (
        'computegate_admission_decisions_total{code="LicenseExpired",result="audit",webhook="validate-workloads"}'
        in metrics
    )


def test_license_status_shows_what_the_pods_that_exist_consume(cluster: Cluster, operator: Operator) -> None:
    _, namespace, lic = licensed_tenant(cluster, max_tpp=3 * H100_TPP)
    assert cluster.create(pod("a", namespace)).code == "Licensed"
    assert cluster.create(pod("b", namespace)).code == "Licensed"

    def consumed() -> object:
        return cluster.get("exportlicense", lic).get("status", {}).get("consumedTPP")

    wait_until(lambda: consumed() == 2 * H100_TPP, what="status.consumedTPP")
    status = cluster.get("exportlicense", lic)["status"]
    assert status["headroomTPP"] == H100_TPP
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Valid": "True",
        "Exhausted": "False",
        "Violations": "False",  # no running pod under it would be refused now (docs/compliance.md)
    }
    columns = cluster.kubectl("get", "exportlicense", lic).stdout
    assert "USED TPP" in columns and str(2 * H100_TPP) in columns
    assert cluster.kubectl("delete", "pod", "a", "-n", namespace, "--wait=false").returncode == 0
    wait_until(lambda: consumed() == H100_TPP, what="the deleted pod's TPP to be freed")
    _, metrics = operator.health("/metrics")
    assert f'computegate_license_consumed_tpp{{license="{lic}"' in metrics
    assert f'computegate_license_headroom_tpp{{license="{lic}"' in metrics


def test_readyz_healthz_and_one_json_log_line_per_decision(cluster: Cluster, operator: Operator) -> None:
    assert operator.health("/healthz")[0] == 200
    assert operator.health("/readyz") == (200, "ok\n")
    name = unique("logged")
    cluster.apply(tenant(name, "IR", namespaces=[name]))
    result = cluster.eventually(pod("p", name), "Prohibited")
    assert result.code == "Prohibited"
    logged = [d for d in operator.decisions() if d["namespace"] == name]
    assert logged and all(
        d["decisionId"] and d["code"] == "Prohibited" and d["tenant"] == name for d in logged
    )


DEVICE_CLASS = """
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: gpu.nvidia.com}
spec:
  selectors: [{cel: {expression: "device.driver == 'gpu.nvidia.com'"}}]
"""


def test_a_resource_claim_and_a_pod_using_a_claim_template_are_judged_as_gpu_requests(
    cluster: Cluster,
) -> None:
    cluster.apply(DEVICE_CLASS)
    name = unique("hooli")
    cluster.apply(tenant(name, "SG", parent="CN", namespaces=[name]))
    claim = f"""
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {{name: two-gpus, namespace: {name}}}
spec:
  devices:
    requests: [{{name: gpu, exactly: {{deviceClassName: gpu.nvidia.com, count: 2}}}}]
"""
    refused = cluster.eventually(claim, "NoLicense")
    assert "ResourceClaim" in refused.stderr and "31,664 controlled TPP" in refused.stderr
    template = f"""
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {{name: gpu, namespace: {name}}}
spec:
  spec:
    devices:
      requests: [{{name: gpu, exactly: {{deviceClassName: gpu.nvidia.com}}}}]
"""
    # A template is judged too, as a pod that uses it would be (issue 12).
    assert cluster.create(template).code == "NoLicense"
    dra_pod = f"""
apiVersion: v1
kind: Pod
metadata: {{name: dra, namespace: {name}}}
spec:
  resourceClaims: [{{name: gpu, resourceClaimTemplateName: gpu}}]
  containers: [{{name: c, image: x, resources: {{claims: [{{name: gpu}}]}}}}]
"""
    assert cluster.eventually(dra_pod, "NoLicense").code == "NoLicense"
    cluster.apply(license(f"{name}-lic", name, max_tpp=2 * H100_TPP))
    wait_until(lambda: cluster.create(template).ok, what="the template admitted under the new license")
    assert cluster.eventually(dra_pod, "Licensed").ok
    assert cluster.create(claim).ok  # claims are judged, not stamped: the pods that use them are
