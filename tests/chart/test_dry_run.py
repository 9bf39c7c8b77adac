"""Every object the chart renders, with several value sets, passes the API server's validation.

Server-side dry-run (``kubectl apply --server-side --dry-run=server``) against the control plane,
with ComputeGate's CRDs really installed (by the Helm release), so the CompliancePolicy is
checked against its CRD schema too. The only objects not sent are cert-manager's (Issuer,
Certificate): cert-manager's CRDs are not installed there. Each test counts them and says so.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.chart.conftest import Release, Tools, render
from tests.chart.test_render import ADMIN_VALUES, VALUE_SETS

pytestmark = pytest.mark.e2e

CERT_MANAGER_GROUP = "cert-manager.io/"


def _stand_in_crd(kind: str, plural: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A CRD of the Prometheus Operator's API (not installed here) typing the fields the chart
    sets as upstream types them (strings, arrays, required keys); the rest is left open."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec},
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


_STRING = {"type": "string"}
_OPEN_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
PROMETHEUS_OPERATOR_STAND_INS = [
    _stand_in_crd(
        "ServiceMonitor",
        "servicemonitors",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _OPEN_OBJECT,
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": _STRING}},
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            k: _STRING for k in ("port", "path", "scheme", "interval", "scrapeTimeout")
                        },
                    },
                },
            },
        },
    ),
    _stand_in_crd(
        "PrometheusRule",
        "prometheusrules",
        {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": _STRING,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "properties": {
                                        "alert": _STRING,
                                        "expr": {"x-kubernetes-int-or-string": True},
                                        "for": _STRING,
                                        "labels": {"type": "object", "additionalProperties": _STRING},
                                        "annotations": {"type": "object", "additionalProperties": _STRING},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
]


def serve_prometheus_operator_api(tools: Tools) -> None:
    """Install the stand-in Prometheus Operator CRDs and wait until the API server serves them."""
    tools.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(PROMETHEUS_OPERATOR_STAND_INS))
    tools.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )


@pytest.fixture(scope="module")
def prometheus_operator_api(tools: Tools, release: Release) -> None:
    serve_prometheus_operator_api(tools)


def _namespace(admin: Any, name: str) -> None:
    try:
        client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as error:
        if error.status != 409:
            raise


def _dry_run(tools: Tools, documents: list[dict[str, Any]]) -> list[str]:
    result = tools.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=chart-dry-run",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


def _validate(tools: Tools, admin: Any, value_set: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """Dry-run every object of one rendering; return (objects validated, cert-manager objects left out)."""
    namespace = f"dry-{value_set}"
    _namespace(admin, namespace)
    documents = render(tools, *args, release=f"dry-{value_set}", namespace=namespace)
    cert_manager = [doc for doc in documents if doc["apiVersion"].startswith(CERT_MANAGER_GROUP)]
    checked = [doc for doc in documents if not doc["apiVersion"].startswith(CERT_MANAGER_GROUP)]
    lines = _dry_run(tools, checked)
    assert len(lines) == len(checked), "\n".join(lines)
    assert all(line.endswith("(server dry run)") for line in lines), "\n".join(lines)
    return len(checked), cert_manager


@pytest.mark.parametrize("value_set", sorted(name for name in VALUE_SETS if name != "cert-manager"))
def test_every_rendered_object_passes_server_side_dry_run(
    tools: Tools, release: Release, admin: Any, value_set: str, prometheus_operator_api: None
) -> None:
    validated, cert_manager = _validate(tools, admin, value_set, *VALUE_SETS[value_set])
    assert cert_manager == []
    # CRDs, RBAC, Deployment, Service, both webhook configurations, the policy and the hook.
    assert validated >= 17


def test_every_object_of_the_cert_manager_install_passes_server_side_dry_run(
    tools: Tools, release: Release, admin: Any
) -> None:
    """The documented `helm-install-cert-manager` values. Its Issuer and Certificate cannot be
    validated here (no cert-manager CRDs); they are counted, and their shape is checked in
    test_render.py. Everything else, including the annotated webhook configurations, is sent."""
    from tests.chart import docs

    command = docs.block("helm-install-cert-manager")
    assert command.endswith("--set certManager.enabled=true")
    validated, cert_manager = _validate(tools, admin, "cert-manager", "--set", "certManager.enabled=true")
    assert sorted(doc["kind"] for doc in cert_manager) == ["Certificate", "Issuer"], (
        "only cert-manager's own objects may be left unvalidated"
    )
    assert validated >= 16


def test_server_side_dry_run_rejects_a_policy_that_the_crd_schema_forbids(
    tools: Tools, release: Release, admin: Any
) -> None:
    """The check above can fail: a policy edited past the values schema is refused by the CRD."""
    policy = next(doc for doc in render(tools) if doc["kind"] == "CompliancePolicy")
    policy["spec"]["enforcement"] = "Off"
    result = tools.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "-f",
        "-",
        stdin=yaml.safe_dump(policy),
        check=False,
    )
    assert result.returncode != 0
    assert "spec.enforcement" in result.stderr and "Unsupported value" in result.stderr


def test_admin_values_objects_pass_server_side_dry_run_including_the_monitoring_ones(
    tools: Tools, release: Release, admin: Any, prometheus_operator_api: None
) -> None:
    """The admin value set renders the optional objects; each one is sent, none left out."""
    assert ADMIN_VALUES.is_file()
    documents = render(tools, *VALUE_SETS["admin-values"], release="dry-admin", namespace="dry-admin")
    kinds = {doc["kind"] for doc in documents}
    assert {"NetworkPolicy", "ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    assert "ServiceAccount" not in kinds
    _namespace(admin, "dry-admin")
    lines = _dry_run(tools, documents)
    assert len(lines) == len(documents), "\n".join(lines)
    for kind in ("networkpolicy.", "servicemonitor.", "prometheusrule.", "configmap/"):
        assert any(line.startswith(kind) for line in lines), (kind, lines)
