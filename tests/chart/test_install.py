"""docs/install.md's commands, run verbatim against a real control plane (no kubelet: no pod runs).

Order matters inside this file (pytest keeps file order): install, upgrade, emergency, uninstall
(which reinstalls at its end, so later files still find the release).
"""

from __future__ import annotations

import base64
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
from tests.identities import token_kubeconfig

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


def test_documented_helm_upgrade_updates_the_crds_switches_the_policy_and_keeps_the_injected_ca(
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
    tools.helm("upgrade", RELEASE, str(older), "--namespace", NAMESPACE, "--reuse-values")
    extensions = client.ApiextensionsV1Api(admin)
    assert extensions.read_custom_resource_definition("tenants.computegate.io").spec.names.short_names == [
        "cgtenant-old"
    ]
    tools.sh(docs.block("helm-upgrade"))
    assert _policy(admin)["spec"]["enforcement"] == "Audit"
    tenants = extensions.read_custom_resource_definition("tenants.computegate.io")
    assert tenants.spec.names.short_names == ["cgtenant"]
    assert tenants.metadata.labels["helm.sh/chart"] == "computegate-0.1.0"
    # The caBundle is never rendered, so the upgrade's three-way merge leaves the injected one.
    assert _ca_bundles(admin) == {injected}


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


def _pre_delete_hooks(tools: Tools) -> list[dict[str, Any]]:
    manifest = tools.helm("get", "hooks", RELEASE, "--namespace", NAMESPACE).stdout
    return [
        doc
        for doc in yaml.safe_load_all(manifest)
        if doc and "pre-delete" in doc["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    ]


def test_uninstall_after_the_cleanup_hook_command_leaves_no_webhook_configuration(
    tools: Tools, release: Release, admin: Any, chart_plane: ControlPlane, tmp_path: Path
) -> None:
    hooks = _pre_delete_hooks(tools)
    (job,) = [doc for doc in hooks if doc["kind"] == "Job"]
    access = [doc for doc in hooks if doc["kind"] != "Job"]
    assert sorted(doc["kind"] for doc in access) == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]
    # What Helm creates before the Job: the hook's ServiceAccount and RBAC, exactly as released.
    tools.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(access))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    kubeconfig = token_kubeconfig(
        chart_plane,
        admin,
        namespace=NAMESPACE,
        service_account=pod["serviceAccountName"],
        path=tmp_path / "hook",
    )
    hook_tools = Tools(binaries=tools.binaries, env={**tools.env, "KUBECONFIG": str(kubeconfig)})
    # The Job's own command (image entrypoint `computegate`, the Job's args), as its ServiceAccount.
    ran = hook_tools.run(["computegate", *container["args"]])
    assert ran.stdout.count(" deleted") == 2
    try:
        remaining = set(_configurations(admin))
        assert VALIDATING_CONFIGURATION not in remaining and MUTATING_CONFIGURATION not in remaining
        # Helm runs no hook Job here (no kubelet); everything else is the documented command.
        tools.sh(docs.block("helm-uninstall") + " --no-hooks")
        assert _configurations(admin) == {}
        with pytest.raises(ApiException) as gone:
            client.AppsV1Api(admin).read_namespaced_deployment(RELEASE, NAMESPACE)
        assert gone.value.status == 404
        kept = client.ApiextensionsV1Api(admin).list_custom_resource_definition(
            label_selector="app.kubernetes.io/part-of=computegate"
        )
        assert len(kept.items) == 5, "the CRDs (and so tenants and licenses) survive an uninstall"
        assert tools.helm("list", "--namespace", NAMESPACE, "--short").stdout.strip() == ""
    finally:
        tools.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=yaml.safe_dump_all(access))
        # Reinstall: the kept CRDs are adopted, and later tests find the release again.
        tools.sh(docs.block("helm-install"))
    assert VALIDATING_CONFIGURATION in _configurations(admin)


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
