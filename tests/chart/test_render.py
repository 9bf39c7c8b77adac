"""The chart as rendered by the pinned helm: lint, schema, and the shape of what it installs."""

from __future__ import annotations

from typing import Any

import pytest

from computegate.webhook.configuration import (
    MUTATING_CONFIGURATION,
    VALIDATING_CONFIGURATION,
    mutating_configuration,
    validating_configuration,
)
from tests.chart.conftest import CHART, NAMESPACE, RELEASE, Tools, by_kind, one, render

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "cert-manager": ["--set", "certManager.enabled=true"],
    "custom-exempt-namespaces": [
        "--set",
        "webhook.exemptNamespaces={kube-system,nvidia-gpu-operator,monitoring}",
    ],
    "one-replica": ["--set", "replicaCount=1"],
    "audit-with-rules": [
        "--set",
        "policy.enforcement=Audit",
        "--set",
        "policy.countryGroups.watch={AE,SA}",
        "--set",
        "policy.rules[0].groups={watch}",
        "--set",
        "policy.rules[0].action=RequireLicense",
    ],
}


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_passes_strict_with_each_value_set(offline_tools: Tools, value_set: str) -> None:
    result = offline_tools.helm("lint", "--strict", str(CHART), *VALUE_SETS[value_set])
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("policy.enforcement=Off", "/policy/enforcement"),
        ("replicaCount=0", "/replicaCount"),
        ("webhook.exemptNamespaces={Not_A_Namespace}", "/webhook/exemptNamespaces/0"),
        ("unknownKey=1", "unknownKey"),
    ],
)
def test_values_schema_rejects_bad_values_with_the_key_named(
    offline_tools: Tools, setting: str, complaint: str
) -> None:
    result = offline_tools.helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_default_deployment_runs_three_spread_replicas_with_a_restricted_security_context(
    offline_tools: Tools,
) -> None:
    documents = render(offline_tools)
    deployment = one(documents, "Deployment", RELEASE)
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # Spreading is a preference only, so 3 replicas schedule on two workers.
    assert {c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]} == {"ScheduleAnyway"}
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["podAntiAffinity"]
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"webhook": 9443, "health": 8080}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["args"][0] == "webhook"
    assert "--tls-self-managed" in container["args"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tls"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert f"--cert-dir={mounts['tls']}" in container["args"]
    pdb = one(documents, "PodDisruptionBudget", RELEASE)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    service = one(documents, "Service", RELEASE)
    https = next(p for p in service["spec"]["ports"] if p["port"] == 443)
    assert https["targetPort"] == "webhook"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_one_replica_renders_no_pod_disruption_budget(offline_tools: Tools) -> None:
    documents = render(offline_tools, "--set", "replicaCount=1")
    assert one(documents, "Deployment")["spec"]["replicas"] == 1
    assert by_kind(documents, "PodDisruptionBudget") == []


def _service_config() -> dict[str, Any]:
    return {"service": {"name": RELEASE, "namespace": NAMESPACE, "port": 443}}


def _without_metadata(configuration: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in configuration.items() if key != "metadata"}


def test_rendered_webhook_configurations_equal_the_generator_with_the_service_client_config(
    offline_tools: Tools,
) -> None:
    documents = render(offline_tools)
    exempt = ["computegate-system", "gpu-operator", "kube-system"]
    expected_validating = validating_configuration(client_config=_service_config(), exempt_namespaces=exempt)
    expected_mutating = mutating_configuration(client_config=_service_config(), exempt_namespaces=exempt)
    validating = one(documents, "ValidatingWebhookConfiguration", VALIDATING_CONFIGURATION)
    mutating = one(documents, "MutatingWebhookConfiguration", MUTATING_CONFIGURATION)
    assert _without_metadata(validating) == _without_metadata(expected_validating)
    assert _without_metadata(mutating) == _without_metadata(expected_mutating)
    # The CA is injected at run time, never rendered, so `helm upgrade` leaves it alone.
    for configuration in (validating, mutating):
        assert "annotations" not in configuration["metadata"]
        assert all("caBundle" not in hook["clientConfig"] for hook in configuration["webhooks"])


def test_custom_exempt_namespaces_reach_the_webhooks_the_policy_and_the_operator(
    offline_tools: Tools,
) -> None:
    documents = render(offline_tools, *VALUE_SETS["custom-exempt-namespaces"])
    wanted = ["computegate-system", "kube-system", "monitoring", "nvidia-gpu-operator"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for hook in one(documents, kind)["webhooks"]:
            (expression,) = hook["namespaceSelector"]["matchExpressions"]
            assert expression == {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": wanted}
    policy = one(documents, "CompliancePolicy", "default")
    assert policy["spec"]["exemptNamespaces"] == wanted
    args = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a.split("=", 1)[1] for a in args if a.startswith("--exempt-namespace=")] == wanted


def test_cert_manager_mode_annotates_both_configurations_and_mounts_the_certificate_secret(
    offline_tools: Tools,
) -> None:
    documents = render(offline_tools, "--set", "certManager.enabled=true")
    certificate = one(documents, "Certificate")
    assert certificate["spec"]["dnsNames"] == [
        RELEASE,
        f"{RELEASE}.{NAMESPACE}",
        f"{RELEASE}.{NAMESPACE}.svc",
        f"{RELEASE}.{NAMESPACE}.svc.cluster.local",
    ]
    assert certificate["spec"]["issuerRef"]["name"] == one(documents, "Issuer")["metadata"]["name"]
    inject = f"{NAMESPACE}/{certificate['metadata']['name']}"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert one(documents, kind)["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": inject}
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    tls = next(volume for volume in pod["volumes"] if volume["name"] == "tls")
    assert tls["secret"]["secretName"] == certificate["spec"]["secretName"]
    assert "--tls-self-managed" not in pod["containers"][0]["args"]
    # The operator needs no Secret access when cert-manager issues the certificate.
    assert [role["metadata"]["name"] for role in by_kind(documents, "Role")] == [f"{RELEASE}-leader-election"]


def test_cert_manager_mode_with_an_own_issuer_makes_no_issuer(offline_tools: Tools) -> None:
    documents = render(
        offline_tools,
        "--set",
        "certManager.enabled=true",
        "--set",
        "certManager.issuerRef.name=corp-ca",
        "--set",
        "certManager.issuerRef.kind=ClusterIssuer",
    )
    assert by_kind(documents, "Issuer") == []
    assert one(documents, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def test_crds_are_templates_kept_on_uninstall_with_the_models_schema(offline_tools: Tools) -> None:
    from computegate.models.crds import crd_manifests

    crds = by_kind(render(offline_tools), "CustomResourceDefinition")
    expected = {crd["metadata"]["name"]: crd for crd in crd_manifests()}
    assert sorted(crd["metadata"]["name"] for crd in crds) == sorted(expected)
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["spec"] == expected[crd["metadata"]["name"]]["spec"]
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "computegate"
    no_keep = by_kind(render(offline_tools, "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert all("annotations" not in crd["metadata"] for crd in no_keep)
    assert by_kind(render(offline_tools, "--set", "crds.install=false"), "CustomResourceDefinition") == []


def test_cleanup_hook_runs_the_uninstall_command_from_the_operator_image_before_delete(
    offline_tools: Tools,
) -> None:
    documents = render(offline_tools)
    job = one(documents, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    container = job["spec"]["template"]["spec"]["containers"][0]
    operator = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == operator["image"]
    assert container["args"] == ["uninstall-webhooks"]
    role = one(documents, "ClusterRole", f"{RELEASE}-cleanup")
    assert {tuple(rule["resourceNames"]) for rule in role["rules"]} == {
        (VALIDATING_CONFIGURATION,),
        (MUTATING_CONFIGURATION,),
    }
    assert by_kind(render(offline_tools, "--set", "cleanupHook.enabled=false"), "Job") == []


def test_default_policy_is_a_post_install_hook_that_no_webhook_intercepts(offline_tools: Tools) -> None:
    documents = render(offline_tools)
    policy = one(documents, "CompliancePolicy", "default")
    assert policy["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert policy["spec"]["enforcement"] == "Enforce"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for hook in one(documents, kind)["webhooks"]:
            for rule in hook["rules"]:
                assert "computegate.io" not in rule["apiGroups"] and "*" not in rule["apiGroups"]
    assert by_kind(render(offline_tools, "--set", "policy.create=false"), "CompliancePolicy") == []


def test_operator_rbac_names_only_its_two_webhook_configurations_and_its_own_secret(
    offline_tools: Tools,
) -> None:
    documents = render(offline_tools)
    cluster_role = one(documents, "ClusterRole", RELEASE)
    webhook_rules = [r for r in cluster_role["rules"] if r["apiGroups"] == ["admissionregistration.k8s.io"]]
    assert {(r["resources"][0], tuple(r["resourceNames"]), tuple(r["verbs"])) for r in webhook_rules} == {
        ("validatingwebhookconfigurations", (VALIDATING_CONFIGURATION,), ("get", "patch")),
        ("mutatingwebhookconfigurations", (MUTATING_CONFIGURATION,), ("get", "patch")),
    }
    assert all("secrets" not in rule["resources"] for rule in cluster_role["rules"])
    tls = one(documents, "Role", f"{RELEASE}-tls")
    assert tls["metadata"]["namespace"] == NAMESPACE
    assert all(rule["resources"] == ["secrets"] for rule in tls["rules"])
    election = one(documents, "Role", f"{RELEASE}-leader-election")
    assert election["metadata"]["namespace"] == NAMESPACE
    assert {
        (r["resources"][0], tuple(r.get("resourceNames", ())), tuple(r["verbs"])) for r in election["rules"]
    } == {
        ("leases", (), ("create",)),
        ("leases", ("computegate-ledger",), ("get", "update")),
    }
    for role in (tls, election):
        assert all("list" not in rule["verbs"] and "watch" not in rule["verbs"] for rule in role["rules"])


def test_people_roles_are_not_aggregated_into_the_builtin_roles_by_default(offline_tools: Tools) -> None:
    def aggregated(documents: list[dict[str, Any]]) -> set[str]:
        return {
            key
            for role in by_kind(documents, "ClusterRole")
            for key in role["metadata"]["labels"]
            if key.startswith("rbac.authorization.k8s.io/aggregate-to-")
        }

    assert aggregated(render(offline_tools)) == set()
    assert aggregated(render(offline_tools, "--set", "rbac.aggregateViewerToView=true")) == {
        "rbac.authorization.k8s.io/aggregate-to-view"
    }


def _operator_rules(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one(documents, "ClusterRole", RELEASE)["rules"]
    return rules


def test_the_eviction_right_is_granted_only_when_evictions_are_enabled(offline_tools: Tools) -> None:
    def evicts(documents: list[dict[str, Any]]) -> bool:
        return any("pods/eviction" in rule["resources"] for rule in _operator_rules(documents))

    assert not evicts(render(offline_tools))
    assert evicts(render(offline_tools, "--set", "compliance.evictions=true"))


def test_the_report_crd_is_installed_only_when_asked_and_the_operator_may_write_reports(
    offline_tools: Tools,
) -> None:
    assert not [
        d for d in render(offline_tools) if d.get("metadata", {}).get("name") == "reports.openreports.io"
    ]
    documents = render(offline_tools, "--set", "compliance.installReportCRD=true")
    crd = one(documents, "CustomResourceDefinition", "reports.openreports.io")
    assert crd["spec"]["group"] == "openreports.io" and crd["spec"]["versions"][0]["name"] == "v1alpha1"
    rules = _operator_rules(documents)
    assert any(rule["apiGroups"] == ["openreports.io"] and "create" in rule["verbs"] for rule in rules)
    assert any(
        rule["resources"] == ["tenants/status"] and rule["verbs"] == ["get", "update"] for rule in rules
    )


def test_the_policy_carries_on_violation_grace_and_overrides_from_values(offline_tools: Tools) -> None:
    documents = render(
        offline_tools,
        "--set",
        "policy.onViolation=Evict",
        "--set",
        "policy.evictionGracePeriod=10m",
        "--set",
        "policy.overrides[0].tenants[0]=globex",
        "--set",
        "policy.overrides[0].enforcement=Audit",
    )
    spec = one(documents, "CompliancePolicy", "default")["spec"]
    assert spec["onViolation"] == "Evict" and spec["evictionGracePeriod"] == "10m"
    assert spec["overrides"] == [{"tenants": ["globex"], "enforcement": "Audit"}]
