"""Issue 12: every side door to an accelerator, tried through the real API server by tenants with
realistic rights: the built-in ``edit`` and ``admin`` roles (copied from their aggregated parts:
this control plane runs no controller-manager to aggregate them) and a wildcard namespace-admin
Role (``*`` on ``*``, common on self-service platforms)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.webhook.configuration import SUBRESOURCES, VALIDATING_CONFIGURATION
from tests.e2e.webhook_support import (
    ENFORCE,
    H100,
    Cluster,
    Operator,
    licensed_tenant,
    pod,
    tenant,
    unique,
    wait_until,
)

pytestmark = pytest.mark.e2e

_BUILT_IN = {
    "edit": ["system:aggregate-to-edit", "system:aggregate-to-view"],
    "admin": ["system:aggregate-to-admin", "system:aggregate-to-edit", "system:aggregate-to-view"],
}


def _copy_built_in_roles(cluster: Cluster) -> None:
    for role, parts in _BUILT_IN.items():
        rules = [rule for part in parts for rule in cluster.get("clusterrole", part).get("rules", [])]
        body = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"e2e-builtin-{role}"},
            "rules": rules,
        }
        cluster.apply(yaml.safe_dump(body))
    wildcard = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "e2e-namespace-wildcard"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    }
    creator = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "e2e-namespace-creator"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "get", "list"]}],
    }
    cluster.apply(yaml.safe_dump_all([wildcard, creator]))


def identity(cluster: Cluster, role: str, namespace: str) -> Path:
    """A client certificate bound in ``namespace`` by a RoleBinding to ``role``: ``edit``,
    ``admin`` (copies of the built-ins) or ``wildcard`` (``*`` on ``*``)."""
    cluster_role = "e2e-namespace-wildcard" if role == "wildcard" else f"e2e-builtin-{role}"
    user = f"{role}-{namespace}"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"e2e-{role}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    cluster.apply(yaml.safe_dump(binding))
    return cluster.user(user)


@pytest.fixture(scope="module", name="roles")
def roles_fixture(cluster: Cluster, operator: Operator) -> Cluster:
    _copy_built_in_roles(cluster)
    runtime_class = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"},
        "handler": "nvidia",
    }
    cluster.apply(yaml.safe_dump(runtime_class))
    return cluster


def unlicensed_tenant(cluster: Cluster) -> str:
    """A tenant in China (needs a license) with none; returns its namespace."""
    name = unique("initech")
    namespace = f"{name}-ml"
    cluster.apply(tenant(name, "CN", namespaces=[namespace]))
    cluster.eventually(pod("probe", namespace), "NoLicense")
    return namespace


def denied_code(stderr: str) -> str | None:
    for code in stderr.split("[")[1:]:
        return code.split("]")[0]
    return None


def pod_body(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "registry.example/app:1", **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **spec.pop("metadata", {})},
        "spec": {"containers": [container], **spec},
    }


# ----- 1. subresources -----


def test_every_writable_pod_and_namespace_subresource_is_covered(roles: Cluster) -> None:
    discovery = json.loads(roles.kubectl("get", "--raw", "/api/v1").stdout)
    writable = {
        resource["name"]
        for resource in discovery["resources"]
        if resource["name"].split("/")[0] in ("pods", "namespaces")
        and "/" in resource["name"]
        and {"create", "update", "patch"} & set(resource.get("verbs") or [])
    }
    assert writable, "discovery lists no subresource of pods or namespaces"
    uncovered = writable - set(SUBRESOURCES)
    assert not uncovered, f"writable subresources ComputeGate does not cover: {sorted(uncovered)}"
    registered = {
        resource
        for hook in roles.get("validatingwebhookconfiguration", VALIDATING_CONFIGURATION)["webhooks"]
        for rule in hook["rules"]
        for resource in rule["resources"]
    }
    guarded = {name for name, how in SUBRESOURCES.items() if how == "webhook"}
    assert guarded <= registered


@pytest.mark.parametrize("subresource", ["status", "finalize"])
def test_a_wildcard_namespace_admin_cannot_move_its_namespace_through_a_subresource(
    roles: Cluster, subresource: str
) -> None:
    namespace = unlicensed_tenant(roles)
    user = identity(roles, "wildcard", namespace)
    body = roles.get("namespace", namespace)
    body["metadata"].setdefault("labels", {})["computegate.io/tenant"] = "someone-licensed"
    result = roles.kubectl(
        "replace", "--raw", f"/api/v1/namespaces/{namespace}/{subresource}", "-f", "-",
        user=user, stdin=json.dumps(body),
    )  # fmt: skip
    assert result.returncode != 0 and denied_code(result.stderr) == "TenantLabelProtected", result.stderr
    assert "computegate.io/tenant" not in (roles.get("namespace", namespace)["metadata"].get("labels") or {})


def test_a_wildcard_namespace_admin_cannot_drop_a_license_stamp_through_pods_status(roles: Cluster) -> None:
    _, namespace, license_name = licensed_tenant(roles, max_tpp=100_000)
    roles.apply(pod("stamped", namespace))
    assert roles.get("pod", "stamped", "-n", namespace)["metadata"]["annotations"]["computegate.io/license"]
    user = identity(roles, "wildcard", namespace)
    remove = json.dumps([{"op": "remove", "path": "/metadata/annotations/computegate.io~1license"}])
    result = roles.kubectl(
        "patch",
        "pod",
        "stamped",
        "-n",
        namespace,
        "--subresource=status",
        "--type=json",
        "-p",
        remove,
        user=user,
    )
    assert result.returncode != 0 and denied_code(result.stderr) == "ProtectedAnnotations", result.stderr
    stamps = roles.get("pod", "stamped", "-n", namespace)["metadata"]["annotations"]
    assert stamps["computegate.io/license"] == license_name
    # An ordinary status write (what a kubelet does) is not sent to the webhook at all.
    status = json.dumps({"status": {"conditions": [{"type": "E2EChecked", "status": "True"}]}})
    result = roles.kubectl(
        "patch", "pod", "stamped", "-n", namespace, "--subresource=status", "--type=merge", "-p", status
    )
    assert result.returncode == 0, result.stderr


# ----- 2. pinned placement -----


def test_an_admitted_accelerator_pod_is_pinned_to_the_models_its_decision_considered(roles: Cluster) -> None:
    _, namespace, _ = licensed_tenant(roles, max_tpp=1_000_000)
    user = identity(roles, "edit", namespace)
    # Other suites add nodes without a recognised label (then nothing is pinned): name the model.
    body = pod_body(
        "unpinned", namespace,
        nodeSelector={"nvidia.com/gpu.product": H100},
        container={"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    )  # fmt: skip
    result = roles.create(yaml.safe_dump(body), user=user)
    assert result.ok and result.code == "Licensed", result.stderr
    affinity = result.obj["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    (term,) = affinity["nodeSelectorTerms"]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": [H100]} in term["matchExpressions"]
    # ANDed into every existing term.
    terms = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["e2e-gpu-h100"]}]},
    ]
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
    body = pod_body(
        "two-terms", namespace,
        container={"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        affinity={"nodeAffinity": required},
    )  # fmt: skip
    result = roles.create(yaml.safe_dump(body), user=user)
    assert result.ok, result.stderr
    pinned = result.obj["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    for term in pinned["nodeSelectorTerms"]:
        assert any(e["key"] == "nvidia.com/gpu.product" for e in term["matchExpressions"]), pinned


# ----- 3. device access without a request -----

_DOORS: dict[str, dict[str, Any]] = {
    "env": {"container": {"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}},
    "runtime-class": {"runtimeClassName": "nvidia"},
    "privileged-dev": {
        "container": {
            "securityContext": {"privileged": True},
            "volumeMounts": [{"name": "dev", "mountPath": "/dev/nvidia0"}],
        },
        "volumes": [{"name": "dev", "hostPath": {"path": "/dev/nvidia0"}}],
    },
    "cdi": {"metadata": {"annotations": {"cdi.k8s.io/gpu": "nvidia.com/gpu=all"}}},
}


@pytest.mark.parametrize("door", sorted(_DOORS))
def test_a_tenant_without_a_license_gets_no_accelerator_without_a_request(roles: Cluster, door: str) -> None:
    namespace = unlicensed_tenant(roles)
    user = identity(roles, "admin", namespace)
    body = pod_body(
        f"door-{door}", namespace, nodeName="e2e-gpu-h100", **json.loads(json.dumps(_DOORS[door]))
    )
    result = roles.create(yaml.safe_dump(body), user=user)
    assert not result.ok and result.code == "NoLicense", result.stderr
    assert "8 x" in result.stderr  # every accelerator of the node


def test_kubectl_debug_with_device_variables_is_judged(roles: Cluster) -> None:
    namespace = unlicensed_tenant(roles)
    user = identity(roles, "wildcard", namespace)  # edit and admin may not add ephemeral containers
    result = roles.create(yaml.safe_dump(pod_body("cpu-only", namespace, nodeName="e2e-gpu-h100")), user=user)
    assert result.ok, result.stderr
    debug = roles.kubectl(
        "debug", "cpu-only", "-n", namespace, "--image=busybox", "--env=NVIDIA_VISIBLE_DEVICES=all",
        "--container=debugger", user=user,
    )  # fmt: skip
    assert debug.returncode != 0 and denied_code(debug.stderr) == "NoLicense", debug.stderr
    plain = roles.kubectl(
        "debug", "cpu-only", "-n", namespace, "--image=busybox", "--container=plain", user=user
    )
    assert plain.returncode == 0, plain.stderr


def test_deny_refuses_device_access_and_exempt_namespaces_keep_theirs(roles: Cluster) -> None:
    namespace = unlicensed_tenant(roles)
    roles.apply(
        ENFORCE.replace(
            "spec: {enforcement: Enforce}", "spec: {enforcement: Enforce, deviceAccessWithoutRequest: Deny}"
        )
    )
    try:
        body = pod_body("privileged", namespace, container={"securityContext": {"privileged": True}})
        roles.eventually(yaml.safe_dump(body), "DeviceAccessWithoutRequest")
        system = pod_body("agent", "kube-system", container={"securityContext": {"privileged": True}})
        result = roles.create(yaml.safe_dump(system), dry_run=True)
        assert result.ok, result.stderr
    finally:
        roles.apply(
            ENFORCE.replace(
                "spec: {enforcement: Enforce}",
                "spec: {enforcement: Enforce, deviceAccessWithoutRequest: Judge}",
            )
        )


# ----- 4. DRA -----


def _claim(
    name: str, namespace: str, requests: list[dict[str, Any]], *, template: bool = False
) -> dict[str, Any]:
    spec = {"devices": {"requests": requests}}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate" if template else "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"spec": spec} if template else spec,
    }


def test_first_available_counts_its_most_capable_alternative(roles: Cluster) -> None:
    _, namespace, _ = licensed_tenant(roles, max_tpp=20_000)  # room for one H100
    user = identity(roles, "edit", namespace)
    alternatives = [
        {"name": "one", "deviceClassName": "gpu.nvidia.com", "count": 1},
        {"name": "eight", "deviceClassName": "gpu.nvidia.com", "count": 8},
    ]
    claim = _claim("pick", namespace, [{"name": "gpus", "firstAvailable": alternatives}])
    result = roles.create(yaml.safe_dump(claim), user=user)
    assert not result.ok and result.code == "LicenseCapExceeded", result.stderr


def test_claims_and_templates_made_after_their_pod_are_judged(roles: Cluster) -> None:
    # Room for the pod's two claims while unseen (each assumed the most capable chip), not for 16 H100s.
    _, namespace, _ = licensed_tenant(roles, max_tpp=130_000)
    user = identity(roles, "edit", namespace)
    many = [{"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 16}}]
    claims = [
        {"name": "a", "resourceClaimName": "late"},
        {"name": "b", "resourceClaimTemplateName": "late-tmpl"},
    ]
    body = pod_body("early", namespace, nodeName="e2e-gpu-h100", resourceClaims=claims)
    result = roles.create(yaml.safe_dump(body), user=user, dry_run=True)
    assert result.ok and result.code == "Licensed", result.stderr
    template = _claim("late-tmpl", namespace, many, template=True)
    result = roles.create(yaml.safe_dump(template), user=user)
    assert not result.ok and result.code == "LicenseCapExceeded", result.stderr
    owned = _claim("late", namespace, many)
    owned["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Pod", "name": "early", "uid": "00000000-0000-0000-0000-000000000001"}
    ]
    result = roles.create(yaml.safe_dump(owned), user=user)
    assert not result.ok and result.code == "LicenseCapExceeded", result.stderr


# ----- 5. profiles at run time and sharing resources -----


def test_a_profile_added_at_run_time_is_enforced_without_re_registering(roles: Cluster) -> None:
    namespace = unlicensed_tenant(roles)
    name = unique("vgpu")
    profile = {
        "apiVersion": "computegate.io/v1alpha1",
        "kind": "AcceleratorProfile",
        "metadata": {"name": name},
        "spec": {
            "vendor": "Example", "model": "vGPU", "resourceNames": [f"{name}.example.com/vgpu"],
            "tpp": 15832, "performanceDensity": 19.4,
        },
    }  # fmt: skip
    roles.apply(yaml.safe_dump(profile))
    body = pod_body("vgpu", namespace, container={"resources": {"limits": {f"{name}.example.com/vgpu": "1"}}})
    roles.eventually(yaml.safe_dump(body), "NoLicense")


@pytest.mark.parametrize(
    "limits",
    [{"nvidia.com/gpumem": "3000"}, {"volcano.sh/vgpu-number": "1"}, {"aliyun.com/gpu-mem": "4"}],
)
def test_gpu_sharing_resources_are_judged(roles: Cluster, limits: dict[str, str]) -> None:
    namespace = unlicensed_tenant(roles)
    body = pod_body(
        "shared",
        namespace,
        nodeSelector={"nvidia.com/gpu.product": H100},
        container={"resources": {"limits": limits}},
    )
    result = roles.create(yaml.safe_dump(body), user=identity(roles, "edit", namespace))
    assert not result.ok and result.code == "NoLicense", result.stderr


# ----- 6. namespace ownership -----


def test_a_non_admin_cannot_create_a_tenants_or_an_exempt_namespace(roles: Cluster) -> None:
    name = unique("hooli")
    listed, exempt, free = f"{name}-ml", f"{name}-system", f"{name}-scratch"
    roles.apply(yaml.safe_dump({
        "apiVersion": "computegate.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {"jurisdiction": "SA", "kyc": {"status": "Verified"}, "namespaces": [listed]},
    }))  # fmt: skip
    policy = {"enforcement": "Enforce", "exemptNamespaces": ["kube-system", exempt]}
    roles.apply(yaml.safe_dump({"apiVersion": "computegate.io/v1alpha1", "kind": "CompliancePolicy",
                                "metadata": {"name": "default"}, "spec": policy}))  # fmt: skip
    user = f"creator-{name}"
    roles.apply(yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"e2e-{user}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "e2e-namespace-creator"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))  # fmt: skip
    kubeconfig = roles.user(user)
    try:
        for reserved in (listed, exempt):
            deadline = time.monotonic() + 15
            while True:
                result = roles.kubectl("create", "namespace", reserved, user=kubeconfig)
                if result.returncode != 0 or time.monotonic() > deadline:
                    break
                roles.kubectl("delete", "namespace", reserved, "--wait=false")  # the watch was late
                time.sleep(0.5)
            assert result.returncode != 0 and denied_code(result.stderr) == "NamespaceReserved", result.stderr
        result = roles.kubectl("create", "namespace", free, user=kubeconfig)
        assert result.returncode == 0, result.stderr
        result = roles.kubectl("create", "namespace", listed)  # the admin may
        assert result.returncode == 0, result.stderr
    finally:
        roles.apply(ENFORCE)


# ----- 7. bounded resources -----


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _affinity_pod(namespace: str, values: list[str]) -> dict[str, Any]:
    requirement = {"key": "nvidia.com/gpu.product", "operator": "NotIn", "values": values}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [requirement]}]}}}  # fmt: skip
    return pod_body(
        "huge", namespace, affinity=affinity, container={"resources": {"limits": {"nvidia.com/gpu": "1"}}}
    )


def test_many_dry_runs_with_huge_affinities_keep_the_operator_bounded(
    roles: Cluster, operator: Operator, kube_admin: Any
) -> None:
    from kubernetes import client

    namespace = unlicensed_tenant(roles)
    api = client.CoreV1Api(kube_admin)
    too_complex = _affinity_pod(namespace, [f"v{i:05d}" for i in range(20_000)])
    with pytest.raises(client.ApiException) as refused:
        api.create_namespaced_pod(namespace, too_complex, dry_run="All")
    assert "[TooComplex]" in str(refused.value.body)
    assert operator.process is not None
    before = _rss_kib(operator.process.pid)
    for index in range(150):
        body = _affinity_pod(namespace, [f"r{index}-{i:04d}" for i in range(1_900)])
        with pytest.raises(client.ApiException) as denied:
            api.create_namespaced_pod(namespace, body, dry_run="All")
        assert "[NoLicense]" in str(denied.value.body)
    grown = _rss_kib(operator.process.pid) - before
    assert grown < 80 * 1024, f"the operator grew by {grown // 1024} MiB over 150 distinct selectors"
    wait_until(lambda: operator.health("/readyz")[0] == 200, what="the operator to stay ready")
