"""The chart as rendered by the pinned helm: lint, schema, and the shape of what it installs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.webhook.configuration import (
    MUTATING_CONFIGURATION,
    VALIDATING_CONFIGURATION,
    mutating_configuration,
    validating_configuration,
)
from tests.chart.conftest import CHART, KUBE_VERSION, NAMESPACE, RELEASE, Tools, by_kind, one, render

ADMIN_VALUES = Path(__file__).parent / "data" / "admin-values.yaml"
# The Prometheus Operator's API, as a cluster that serves it reports it to `helm install`.
PROMETHEUS_OPERATOR = ("--api-versions", "monitoring.coreos.com/v1")

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "admin-values": ["-f", str(ADMIN_VALUES), *PROMETHEUS_OPERATOR],
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
    args = VALUE_SETS[value_set]
    if args[-2:] == list(PROMETHEUS_OPERATOR):  # lint has no --api-versions: it renders without them
        args = args[:-2]
    result = offline_tools.helm("lint", "--strict", str(CHART), *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("policy.enforcement=Off", "/policy/enforcement"),
        ("replicaCount=0", "/replicaCount"),
        ("webhook.exemptNamespaces={Not_A_Namespace}", "/webhook/exemptNamespaces/0"),
        ("unknownKey=1", "unknownKey"),
        ("logFormat=xml", "/logFormat"),
        ("logLevel=trace", "/logLevel"),
        ("webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"),
        ("serviceAccount.create=false", "/serviceAccount"),
        ("image.digest=latest", "/image/digest"),
        ("extraArgs={reconcile-interval}", "/extraArgs/0"),
        ("updateStrategy.type=OnDelete", "/updateStrategy/type"),
        ("prometheusRule.licenseExpiryDays=0", "/prometheusRule/licenseExpiryDays"),
    ],
)
def test_values_schema_rejects_bad_values_with_the_key_named(
    offline_tools: Tools, setting: str, complaint: str
) -> None:
    result = offline_tools.helm("template", RELEASE, str(CHART), *KUBE_VERSION, "--set", setting, check=False)
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
            if hook["name"] == "namespace-creations.validate.computegate.io":
                assert hook["namespaceSelector"] == {}  # a non-admin may not take an exempt name
                continue
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
    assert [role["metadata"]["name"] for role in by_kind(documents, "Role")] == [
        f"{RELEASE}-leader-election",
        f"{RELEASE}-usage",
    ]


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


def test_the_only_hook_is_the_default_policy_and_nothing_needs_a_pod_to_install_or_uninstall(
    offline_tools: Tools,
) -> None:
    documents = render(offline_tools)
    hooked = [doc for doc in documents if "helm.sh/hook" in (doc["metadata"].get("annotations") or {})]
    assert [(doc["kind"], doc["metadata"]["name"]) for doc in hooked] == [("CompliancePolicy", "default")]
    assert by_kind(documents, "Job") == []
    # A values file written for an earlier chart (with the old hook's switch) still installs.
    assert by_kind(render(offline_tools, "--set", "cleanupHook.enabled=true"), "Job") == []
    # The webhook configurations are release objects: `helm uninstall` deletes them itself.
    assert {doc["kind"] for doc in documents} >= {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }


def test_default_policy_is_a_post_install_hook_that_no_webhook_intercepts(offline_tools: Tools) -> None:
    documents = render(offline_tools)
    policy = one(documents, "CompliancePolicy", "default")
    # Created at install only (never on upgrade), and never deleted before a new hook: an
    # admin's policy is never replaced. No delete policy: Helm's default is before-hook-creation,
    # which only applies when the hook renders, i.e. when `lookup` found no policy.
    assert policy["metadata"]["annotations"] == {"helm.sh/hook": "post-install", "helm.sh/hook-weight": "0"}
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
    # The usage record's tallies and checkpoint: ConfigMaps of the release namespace only, never
    # watched, and no `get` but of the checkpoint (docs/compliance.md).
    usage = one(documents, "Role", f"{RELEASE}-usage")
    assert usage["metadata"]["namespace"] == NAMESPACE
    assert {
        (r["resources"][0], tuple(r.get("resourceNames", ())), tuple(r["verbs"])) for r in usage["rules"]
    } == {
        ("configmaps", (), ("create", "update", "list", "delete")),
        ("configmaps", ("computegate-usage-checkpoint",), ("get",)),
    }
    records = [r for r in cluster_role["rules"] if "usagerecords" in r["resources"]]
    assert [tuple(r["verbs"]) for r in records] == [("list", "create", "deletecollection")]
    assert all("configmaps" not in rule["resources"] for rule in cluster_role["rules"])


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


def test_chart_requires_kubernetes_1_30_for_match_conditions(offline_tools: Tools) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.30.0-0"
    old = offline_tools.helm("template", RELEASE, str(CHART), "--kube-version", "1.29.9", check=False)
    assert old.returncode != 0 and "incompatible with Kubernetes v1.29.9" in old.stderr
    # Vendor builds carry a pre-release suffix; the -0 admits them.
    assert render(offline_tools, "--kube-version", "1.30.2-eks-1234")


def _webhook_parser() -> argparse.ArgumentParser:
    from computegate.webhook import options

    parser = argparse.ArgumentParser(prog="computegate webhook", exit_on_error=False)
    options.add_arguments(parser)
    return parser


def test_admin_values_land_under_the_keys_admins_know(offline_tools: Tools) -> None:
    documents = render(offline_tools, *VALUE_SETS["admin-values"])
    values = yaml.safe_load(ADMIN_VALUES.read_text())
    deployment = one(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert {"--log-level=debug", "--log-format=text", "--reconcile-interval=30"} <= set(args)
    # Every rendered flag is one `computegate webhook` accepts (env references aside).
    parsed = _webhook_parser().parse_args([arg.replace("$(POD_NAMESPACE)", "ns") for arg in args[1:]])
    assert (parsed.log_level, parsed.log_format, parsed.reconcile_interval) == ("debug", "text", 30.0)
    assert pod["securityContext"] == values["podSecurityContext"]
    assert container["securityContext"] == values["securityContext"]
    assert container["env"][-2:] == values["env"]
    assert [e["name"] for e in container["env"][:2]] == ["POD_NAMESPACE", "POD_NAME"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["strategy"] == values["updateStrategy"]
    assert container["image"] == f"{values['image']['repository']}@{values['image']['digest']}"
    # An existing ServiceAccount: none is made, the Deployment and every binding name it.
    assert by_kind(documents, "ServiceAccount") == []
    assert pod["serviceAccountName"] == "corp-computegate"
    for binding in by_kind(documents, "ClusterRoleBinding") + by_kind(documents, "RoleBinding"):
        assert [s["name"] for s in binding["subjects"]] == ["corp-computegate"], binding["metadata"]["name"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert {hook["timeoutSeconds"] for hook in one(documents, kind)["webhooks"]} == {10}


def test_default_webhook_timeout_is_the_generators(offline_tools: Tools) -> None:
    from computegate.webhook.configuration import TIMEOUT_SECONDS

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["webhook"]["timeoutSeconds"] == TIMEOUT_SECONDS
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        hooks = one(render(offline_tools), kind)["webhooks"]
        assert {hook["timeoutSeconds"] for hook in hooks} == {TIMEOUT_SECONDS}


def test_network_policy_admits_the_webhook_port_from_anywhere(offline_tools: Tools) -> None:
    assert by_kind(render(offline_tools), "NetworkPolicy") == []
    policy = one(render(offline_tools, "--set", "networkPolicy.enabled=true"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    webhook = next(rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == 9443)
    assert "from" not in webhook, "managed control planes call the webhook from outside the pod network"
    health = next(rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == 8080)
    assert "from" not in health
    restricted = one(
        render(
            offline_tools,
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
        ),
        "NetworkPolicy",
    )
    by_port = {rule["ports"][0]["port"]: rule for rule in restricted["spec"]["ingress"]}
    assert "from" not in by_port[9443] and by_port[8080]["from"][0]["namespaceSelector"]


def test_prometheus_operator_objects_render_only_when_the_cluster_serves_their_api(
    offline_tools: Tools,
) -> None:
    enabled = ("--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true")
    assert {doc["kind"] for doc in render(offline_tools, *enabled)}.isdisjoint(
        {"ServiceMonitor", "PrometheusRule"}
    )
    documents = render(offline_tools, *enabled, *PROMETHEUS_OPERATOR)
    monitor = one(documents, "ServiceMonitor")
    service = one(documents, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    rules = one(documents, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == [
        "ComputeGateLicenseExhausted",
        "ComputeGateLicenseExpiringSoon",
        "ComputeGateWebhookUnavailable",
        "ComputeGateDecisionLatencyHigh",
    ]
    assert "apiserver_admission_webhook_rejection_count" in rules[2]["expr"]
    assert "< 2592000" in rules[1]["expr"]  # 30 days


def test_grafana_dashboard_is_a_configmap_of_valid_dashboard_json(offline_tools: Tools) -> None:
    assert by_kind(render(offline_tools), "ConfigMap") == []
    dashboard = one(render(offline_tools, "--set", "grafanaDashboard.enabled=true"), "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["computegate.json"])
    assert board["uid"] == "computegate" and len(board["panels"]) >= 6


def test_alerts_and_dashboard_query_only_metrics_the_operator_exports(offline_tools: Tools) -> None:
    import re

    from computegate.webhook.observe import Metrics

    exported: set[str] = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        exported |= {family.name + suffix for suffix in suffixes}
    documents = render(
        offline_tools,
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "grafanaDashboard.enabled=true",
        *PROMETHEUS_OPERATOR,
    )
    queries = (
        json.dumps(one(documents, "PrometheusRule")["spec"])
        + one(documents, "ConfigMap")["data"]["computegate.json"]
    )
    used = set(re.findall(r"\b(computegate_[a-z_]+)", queries))
    assert used and used <= exported, used - exported
    assert {"computegate_license_max_tpp", "computegate_license_valid_until_seconds"} <= used


def test_helm_template_output_pipes_into_the_offline_evaluator(offline_tools: Tools) -> None:
    """The README's CI pipe: every rendered object is read from stdin; the one workload (the
    operator's CPU-only Deployment) is judged, every other object is named as skipped."""
    done = offline_tools.sh(
        "helm template computegate charts/computegate --kube-version 1.30.0"
        " | computegate evaluate --state examples/cluster -"
    )
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (record["kind"], record["name"], record["code"], record["audit"]) == (
        "Deployment",
        RELEASE,
        "NoAccelerator",
        False,
    )
    skipped = done.stderr.splitlines()
    assert skipped and all(line.startswith("computegate evaluate: skipped <stdin>: ") for line in skipped)
    assert any("(ValidatingWebhookConfiguration computegate-validating)" in line for line in skipped)
    assert any("(CustomResourceDefinition tenants.computegate.io)" in line for line in skipped)


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_the_outage_policy_of_namespace_creations_is_a_value(offline_tools: Tools, policy: str) -> None:
    documents = render(offline_tools, "--set", f"webhook.namespaceCreationFailurePolicy={policy}")
    hooks = {hook["name"]: hook for hook in one(documents, "ValidatingWebhookConfiguration")["webhooks"]}
    assert hooks["namespace-creations.validate.computegate.io"]["failurePolicy"] == policy
    assert hooks["workloads.validate.computegate.io"]["failurePolicy"] == "Fail"


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
    # A new leader lists the Reports once, so it writes only those whose result changed.
    assert any(
        rule["apiGroups"] == ["openreports.io"] and {"create", "list"} <= set(rule["verbs"]) for rule in rules
    )
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
