"""docs/install.md's commands, run verbatim against a real control plane (no kubelet: no pod runs).

Order matters inside this file (pytest keeps file order): install, upgrade, emergency, uninstall
(which reinstalls at its end, so later files still find the release).
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from computegate.devcluster import Binaries, ControlPlane
from computegate.webhook import selftls
from computegate.webhook.configuration import MUTATING_CONFIGURATION, VALIDATING_CONFIGURATION
from tests.chart import docs
from tests.chart.conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    Release,
    Tools,
    _start_plane,
    _tools,
)

pytestmark = pytest.mark.e2e

GROUP, VERSION = "computegate.io", "v1alpha1"


def _policy(admin: Any) -> dict[str, Any]:
    policy: dict[str, Any] = client.CustomObjectsApi(admin).get_cluster_custom_object(
        GROUP, VERSION, "compliancepolicies", "default"
    )
    return policy


def _configurations(admin: Any) -> dict[str, Any]:
    api = client.AdmissionregistrationV1Api(admin)
    found = {item.metadata.name: item for item in api.list_validating_webhook_configuration().items}
    found.update({item.metadata.name: item for item in api.list_mutating_webhook_configuration().items})
    return found


def _ca_bundles(admin: Any) -> set[str]:
    return {
        hook.client_config.ca_bundle or ""
        for name, configuration in _configurations(admin).items()
        if name in (VALIDATING_CONFIGURATION, MUTATING_CONFIGURATION)
        for hook in configuration.webhooks
    }


def test_documented_helm_install_creates_the_release_objects_and_prints_next_steps(
    tools: Tools, release: Release, admin: Any
) -> None:
    verify = tools.sh(docs.block("helm-verify"))
    for shown in (
        "deployment.apps/computegate",
        "service/computegate",
        "poddisruptionbudget.policy/computegate",
    ):
        assert shown in verify.stdout
    assert VALIDATING_CONFIGURATION in verify.stdout and MUTATING_CONFIGURATION in verify.stdout
    assert "STATUS: deployed" in verify.stdout
    # NOTES: how to label tenants, add a license, and the emergency procedure.
    notes = verify.stdout.split("NOTES:", 1)[1]
    assert "kubectl label namespace" in notes and "kind: ExportLicense" in notes
    assert '{"spec":{"enforcement":"Audit"}}' in notes
    # The default policy came from values through the post-install hook, with the exemptions.
    policy = _policy(admin)
    assert policy["spec"]["enforcement"] == "Enforce"
    assert policy["spec"]["exemptNamespaces"] == [NAMESPACE, "gpu-operator", "kube-system"]
    deployment = client.AppsV1Api(admin).read_namespaced_deployment(RELEASE, NAMESPACE)
    assert deployment.spec.replicas == 3
    crds = client.ApiextensionsV1Api(admin).list_custom_resource_definition(
        label_selector="app.kubernetes.io/part-of=computegate"
    )
    assert len(crds.items) == 5
    assert all(crd.metadata.annotations["helm.sh/resource-policy"] == "keep" for crd in crds.items)


def test_documented_helm_upgrade_updates_the_crds_and_keeps_the_admins_policy_and_the_injected_ca(
    tools: Tools, release: Release, admin: Any, tmp_path: Path
) -> None:
    # What the operator does once it runs: inject its CA (here the real code, as the admin).
    material = selftls.sync_once(
        admin,
        namespace=NAMESPACE,
        secret_name="computegate-tls",
        service_name=RELEASE,
        cert_dir=tmp_path / "certs",
        webhook_configurations=[VALIDATING_CONFIGURATION, MUTATING_CONFIGURATION],
    )
    injected = base64.b64encode(material.bundle()).decode("ascii")
    assert _ca_bundles(admin) == {injected}
    # An older chart whose Tenant CRD differs: after the documented upgrade the CRD is current.
    older = tmp_path / "older-chart"
    shutil.copytree(CHART, older)
    chart_yaml = older / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", "version: 0.0.9"))
    crds = older / "templates" / "generated" / "crds.yaml"
    crds.write_text(crds.read_text().replace("    - cgtenant\n", "    - cgtenant-old\n"))
    # ... and that has no `logLevel` yet: the documented upgrade must take the new chart's default
    # for it (Helm's plain --reuse-values would keep the old defaults and render it empty).
    values = older / "values.yaml"
    values.write_text(values.read_text().replace("logLevel: info\n", ""))
    schema = older / "values.schema.json"
    loaded = json.loads(schema.read_text())
    del loaded["properties"]["logLevel"]
    schema.write_text(json.dumps(loaded))
    deployment = older / "templates" / "deployment.yaml"
    deployment.write_text(
        deployment.read_text().replace("            - --log-level={{ .Values.logLevel }}\n", "")
    )
    tools.helm("upgrade", RELEASE, str(older), "--namespace", NAMESPACE, "--reset-values")
    extensions = client.ApiextensionsV1Api(admin)
    assert extensions.read_custom_resource_definition("tenants.computegate.io").spec.names.short_names == [
        "cgtenant-old"
    ]
    # An admin's edits (here the emergency switch to Audit and a country group of its own) are
    # the policy from now on: the documented upgrade neither reverts nor replaces them.
    client.CustomObjectsApi(admin).patch_cluster_custom_object(
        GROUP,
        VERSION,
        "compliancepolicies",
        "default",
        {"spec": {"enforcement": "Audit", "countryGroups": {"watch": ["AE"]}}},
    )
    uid = _policy(admin)["metadata"]["uid"]

    def args() -> list[str]:
        deployment = client.AppsV1Api(admin).read_namespaced_deployment(RELEASE, NAMESPACE)
        return list(deployment.spec.template.spec.containers[0].args)

    assert not any(arg.startswith("--log-level") for arg in args())
    tools.sh(docs.block("helm-upgrade"))
    assert "--log-level=info" in args()
    kept = _policy(admin)
    assert kept["spec"]["enforcement"] == "Audit" and kept["spec"]["countryGroups"] == {"watch": ["AE"]}
    assert kept["metadata"]["uid"] == uid, "the upgrade must not delete and recreate the policy"
    tenants = extensions.read_custom_resource_definition("tenants.computegate.io")
    assert tenants.spec.names.short_names == ["cgtenant"]
    assert tenants.metadata.labels["helm.sh/chart"] == "computegate-0.1.0"
    # The caBundle is never rendered, so the upgrade's three-way merge leaves the injected one.
    assert _ca_bundles(admin) == {injected}


def test_documented_monitoring_upgrade_creates_the_service_monitor_alerts_and_dashboard(
    tools: Tools, release: Release, admin: Any
) -> None:
    from tests.chart.test_dry_run import serve_prometheus_operator_api

    # Without the Prometheus Operator's API the objects are skipped, and helm status says so.
    skipped = tools.helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        "1.30.0",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
    )
    assert "kind: PrometheusRule" not in skipped.stdout
    serve_prometheus_operator_api(tools)
    shown = tools.sh(docs.block("helm-monitoring")).stdout
    assert f"servicemonitor.monitoring.coreos.com/{RELEASE}" in shown
    assert f"prometheusrule.monitoring.coreos.com/{RELEASE}" in shown
    assert f"configmap/{RELEASE}-dashboard" in shown
    assert "WARNING" not in tools.helm("status", RELEASE, "--namespace", NAMESPACE).stdout


def test_documented_emergency_procedure_switches_to_audit_removes_and_restores_webhooks(
    tools: Tools, release: Release, admin: Any
) -> None:
    tools.sh(docs.block("emergency-restore"))  # start from Enforce
    assert _policy(admin)["spec"]["enforcement"] == "Enforce"
    tools.sh(docs.block("emergency-audit"))
    assert _policy(admin)["spec"]["enforcement"] == "Audit"
    tools.sh(docs.block("emergency-delete"))
    remaining = set(_configurations(admin))
    assert VALIDATING_CONFIGURATION not in remaining and MUTATING_CONFIGURATION not in remaining
    # The documented alternative is idempotent.
    again = tools.sh("computegate uninstall-webhooks")
    assert again.stdout.count("already absent") == 2
    tools.sh(docs.block("emergency-restore"))
    restored = _configurations(admin)
    assert VALIDATING_CONFIGURATION in restored and MUTATING_CONFIGURATION in restored
    assert _policy(admin)["spec"]["enforcement"] == "Enforce"


def test_documented_uninstall_removes_the_webhook_configurations_without_any_hook_and_keeps_the_data(
    tools: Tools, release: Release, admin: Any
) -> None:
    """This control plane has no kubelet: a hook Job would never run (helm would wait for it,
    then fail, and leave both fail-closed configurations behind). The chart has no uninstall
    hook; the configurations are release objects, and the documented block checks they are gone."""
    # The first install's only hook made the policy; the upgrades since rendered none.
    hooks = tools.helm("get", "hooks", RELEASE, "--namespace", NAMESPACE, "--revision", "1").stdout
    assert [doc["kind"] for doc in yaml.safe_load_all(hooks) if doc] == ["CompliancePolicy"]
    assert "helm.sh/hook: post-install" in hooks
    assert VALIDATING_CONFIGURATION in _configurations(admin)
    try:
        uninstalled = tools.sh(docs.block("helm-uninstall"))
        assert "uninstalled" in uninstalled.stdout
        assert _configurations(admin) == {}
        with pytest.raises(ApiException) as gone:
            client.AppsV1Api(admin).read_namespaced_deployment(RELEASE, NAMESPACE)
        assert gone.value.status == 404
        kept = client.ApiextensionsV1Api(admin).list_custom_resource_definition(
            label_selector="app.kubernetes.io/part-of=computegate"
        )
        assert len(kept.items) == 5, "the CRDs (and so tenants and licenses) survive an uninstall"
        assert tools.helm("list", "--namespace", NAMESPACE, "--short").stdout.strip() == ""
        policy = _policy(admin)
        assert policy["spec"]["countryGroups"] == {"watch": ["AE"]}, "the admin's policy stays"
    finally:
        # Install over an existing policy (the one left behind): the kept CRDs are adopted,
        # the policy is neither replaced nor changed, and later tests find the release again.
        tools.sh(docs.block("helm-install"))
    again = _policy(admin)
    assert again["metadata"]["uid"] == policy["metadata"]["uid"]
    assert again["spec"] == policy["spec"]
    assert tools.helm("get", "hooks", RELEASE, "--namespace", NAMESPACE).stdout.strip() == ""
    assert VALIDATING_CONFIGURATION in _configurations(admin)


def test_the_uninstall_check_fails_loudly_while_a_webhook_configuration_remains(tools: Tools) -> None:
    """The documented check after `helm uninstall` exits non-zero, naming what is left."""
    check = docs.block("helm-uninstall").splitlines()[-1]
    assert check.startswith("kubectl wait --for=delete") and "--timeout=60s" in check
    left = tools.sh(check.replace("--timeout=60s", "--timeout=2s"), check=False)
    assert left.returncode != 0
    assert VALIDATING_CONFIGURATION in left.stderr or MUTATING_CONFIGURATION in left.stderr


@pytest.fixture(scope="module")
def fresh_plane(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second control plane: kubectl-applied objects would collide with the Helm release."""
    plane = _start_plane(binaries, tmp_path_factory.mktemp("manifests-plane"))
    yield plane
    plane.stop()


def test_documented_plain_manifests_apply_and_delete_on_a_fresh_cluster(
    fresh_plane: ControlPlane, binaries: Binaries, helm_home: dict[str, str]
) -> None:
    tools = _tools(binaries, helm_home, fresh_plane.kubeconfig_path)
    api = fresh_plane.api_client()
    try:
        applied = tools.sh(docs.block("manifests-apply"))
        assert "condition met" in applied.stdout
        assert "compliancepolicy.computegate.io/default created" in applied.stdout
        # Applied again (an upgrade from plain manifests), it leaves an admin's policy alone.
        client.CustomObjectsApi(api).patch_cluster_custom_object(
            GROUP, VERSION, "compliancepolicies", "default", {"spec": {"enforcement": "Audit"}}
        )
        tools.sh(docs.block("manifests-apply"))
        assert _policy(api)["spec"]["enforcement"] == "Audit"
        client.CustomObjectsApi(api).patch_cluster_custom_object(
            GROUP, VERSION, "compliancepolicies", "default", {"spec": {"enforcement": "Enforce"}}
        )
        assert set(_configurations(api)) == {VALIDATING_CONFIGURATION, MUTATING_CONFIGURATION}
        assert client.AppsV1Api(api).read_namespaced_deployment(RELEASE, NAMESPACE).spec.replicas == 3
        assert _policy(api)["spec"]["enforcement"] == "Enforce"
        deleted = tools.sh(docs.block("manifests-delete"))
        assert deleted.stdout.count(" deleted") >= 2
        assert _configurations(api) == {}
        with pytest.raises(ApiException) as gone:
            client.AppsV1Api(api).read_namespaced_deployment(RELEASE, NAMESPACE)
        assert gone.value.status == 404
    finally:
        api.close()


def test_documented_adoption_puts_objects_applied_from_manifests_under_a_helm_release(
    fresh_plane: ControlPlane, binaries: Binaries, helm_home: dict[str, str]
) -> None:
    tools = _tools(binaries, helm_home, fresh_plane.kubeconfig_path)
    api = fresh_plane.api_client()
    try:
        tools.sh(docs.block("manifests-apply"))
        client.CustomObjectsApi(api).patch_cluster_custom_object(
            GROUP, VERSION, "compliancepolicies", "default", {"spec": {"enforcement": "Audit"}}
        )
        # Helm refuses objects it does not own: the plain install fails on the first of them.
        refused = tools.sh(docs.block("helm-install"), check=False)
        assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr
        adopted = tools.sh(docs.block("helm-adopt"))
        assert "STATUS: deployed" in adopted.stdout
        for name, configuration in _configurations(api).items():
            assert configuration.metadata.annotations["meta.helm.sh/release-name"] == RELEASE, name
            assert configuration.metadata.labels["app.kubernetes.io/managed-by"] == "Helm", name
        crds = client.ApiextensionsV1Api(api).list_custom_resource_definition(
            label_selector="app.kubernetes.io/part-of=computegate"
        )
        assert {crd.metadata.annotations["meta.helm.sh/release-namespace"] for crd in crds.items} == {
            NAMESPACE
        }
        assert _policy(api)["spec"]["enforcement"] == "Audit", "the existing policy is kept, not replaced"
        # From now on Helm manages them: an upgrade works, an uninstall removes the configurations.
        tools.sh(docs.block("helm-upgrade"))
        tools.sh(docs.block("helm-uninstall"))
        assert _configurations(api) == {}
    finally:
        api.close()
