"""The operator does its whole job with the chart's permissions, and nothing it calls is refused.

The session's webhook operator runs as the chart's ServiceAccount, bound by the chart's own
roles (``webhook_support.chart_rbac``), with a TokenRequest token; the API server's audit log
records every request that identity makes. The tests here first make the operator use each of
its code paths that call the API server, then read the log: each call must have been allowed,
and allowed by a rule of the chart, so a permission the chart lacks fails here, not in a
production cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.webhook_support import (
    H100_TPP,
    OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT,
    Cluster,
    Operator,
    bind_tenant_user,
    chart_rbac,
    deployment,
    licensed_tenant,
    pod,
    wait_until,
)
from tests.identities import rule_allows

pytestmark = pytest.mark.e2e

OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}"


def _operator_calls(audit_log: Path) -> list[dict[str, Any]]:
    """Every request of the operator's identity, once each (a watch is logged when its response
    starts, and again when it ends)."""
    calls: dict[str, dict[str, Any]] = {}
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        if entry["user"]["username"] == OPERATOR_USER and entry.get("responseStatus"):
            calls.setdefault(entry["auditID"], entry)
    return list(calls.values())


def _resource(entry: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    ref = entry.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource = f"{resource}/{ref['subresource']}"
    return ref.get("apiGroup", ""), resource, ref.get("name"), ref.get("namespace")


def test_kubectl_scale_over_the_cap_is_refused_by_the_operator_running_as_the_chart(
    cluster: Cluster, operator: Operator
) -> None:
    assert operator.kubeconfig.read_text().count("token:") == 1  # not the admin's certificate
    name, namespace, _ = licensed_tenant(cluster, max_tpp=2 * H100_TPP)
    user = bind_tenant_user(cluster, f"{name}-user", namespace)
    created = cluster.kubectl("apply", "-f", "-", user=user, stdin=deployment("serve", namespace, 2))
    assert created.returncode == 0, created.stderr
    for index in range(2):  # what the ReplicaSet controller would make: the license is full
        assert cluster.create(pod(f"serve-{index}", namespace), user=user).code == "Licensed"

    scaled = cluster.kubectl("scale", "deployment/serve", "--replicas=3", "-n", namespace, user=user)

    assert scaled.returncode != 0
    assert "[LicenseCapExceeded]" in scaled.stderr, scaled.stderr
    assert cluster.get("deployment", "serve", "-n", namespace)["spec"]["replicas"] == 2


def test_every_api_call_of_the_operator_is_allowed_by_the_charts_roles(
    cluster: Cluster, operator: Operator, audit_log: Path
) -> None:
    # What the operator must have done by now (Events and status writes follow the answers by a
    # moment; the lease renews every 5 s), or this test proved nothing.
    expected = {
        ("get", "apps", "deployments"),  # the scale above
        ("create", "", "events"),  # its denial
        ("update", "computegate.io", "exportlicenses/status"),  # the ledger, by compare-and-swap
        ("update", "coordination.k8s.io", "leases"),  # the reconciler's election
        ("watch", "", "pods"),
        ("watch", "computegate.io", "exportlicenses"),
        # The usage record (docs/compliance.md): the denial tally of this replica, the writer's
        # checkpoint of the open day, the records, and retention by day label.
        ("update", "", "configmaps"),
        ("create", "", "configmaps"),
        ("get", "", "configmaps"),
        ("list", "", "configmaps"),
        ("list", "computegate.io", "usagerecords"),
        ("create", "computegate.io", "usagerecords"),
        ("deletecollection", "computegate.io", "usagerecords"),
    }

    def used() -> set[tuple[str, str, str]]:
        return {(c["verb"], *_resource(c)[:2]) for c in _operator_calls(audit_log)}

    wait_until(
        lambda: expected <= used(), timeout=60, what=f"the operator's calls {sorted(expected - used())}"
    )
    calls = _operator_calls(audit_log)
    rbac = chart_rbac(cluster.plane)
    cluster_rules = [r for d in rbac if d["kind"] == "ClusterRole" for r in d["rules"]]
    namespaced_rules = [r for d in rbac if d["kind"] == "Role" for r in d["rules"]]

    refused = [
        f"{c['verb']} {c['requestURI']}: {c['responseStatus']['code']}"
        for c in calls
        if c["responseStatus"]["code"] in (401, 403)
    ]
    outside_the_chart = []
    for call in calls:
        group, resource, name, namespace = _resource(call)
        if not resource:  # discovery (/api, /apis, /version): every authenticated user may
            continue
        rules = cluster_rules + (namespaced_rules if namespace == OPERATOR_NAMESPACE else [])
        if not rule_allows(rules, verb=call["verb"], group=group, resource=resource, name=name):
            outside_the_chart.append(f"{call['verb']} {group}/{resource} {name or ''}")

    assert not refused, refused
    assert not outside_the_chart, outside_the_chart
