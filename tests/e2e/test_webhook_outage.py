"""With the webhook process stopped, the cluster fails closed for accelerators and only for them.

The configurations stay registered (as after a crash); the API server cannot reach the
webhook, so ``failurePolicy: Fail`` refuses what the matchConditions send, while CPU-only
objects (for which every condition evaluates to false without error) and exempt namespaces
never reach it.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.e2e.webhook_support import (
    Cluster,
    Operator,
    pod,
    tenant,
    unique,
)

pytestmark = pytest.mark.e2e

CPU = {"containers": [{"name": "main", "image": "busybox", "resources": {"limits": {"cpu": "1"}}}]}


ODD_CPU_SPECS: dict[str, dict[str, object]] = {
    "no-resources": {"containers": [{"name": "c", "image": "x"}]},
    "empty-resources": {"containers": [{"name": "c", "image": "x", "resources": {}}]},
    "requests-only": {
        "containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": "1Gi"}}}]
    },
    "init-containers": {
        "initContainers": [{"name": "i", "image": "x"}],
        "containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1"}}}],
    },
    "empty-resource-claims": {"resourceClaims": [], "containers": [{"name": "c", "image": "x"}]},
}


def cpu_only(kind: str, name: str, namespace: str) -> str:
    template = {"metadata": {"labels": {"app": name}}, "spec": {**CPU, "restartPolicy": "Never"}}
    bodies = {
        "Pod": ("v1", {**CPU}),
        "Deployment": (
            "apps/v1",
            {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {**template, "spec": CPU},
            },
        ),
        "Job": ("batch/v1", {"template": template}),
        "CronJob": ("batch/v1", {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}),
    }
    api_version, spec = bodies[kind]
    return yaml.safe_dump(
        {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def test_with_the_webhook_stopped_accelerator_pods_are_refused_and_cpu_only_workloads_are_created(
    cluster: Cluster, operator: Operator
) -> None:
    name = unique("outage")
    cluster.apply(tenant(name, "US", namespaces=[name]))
    cluster.eventually(pod("probe", name), "JurisdictionAllowed")
    operator.stop()
    try:
        refused = cluster.create(pod("gpu", name))
        assert not refused.ok
        assert 'failed calling webhook "workloads.mutate.computegate.io"' in refused.stderr or (
            'failed calling webhook "workloads.validate.computegate.io"' in refused.stderr
        ), refused.stderr
        for kind in ("Pod", "Deployment", "Job", "CronJob"):
            created = cluster.create(cpu_only(kind, f"cpu-{kind.lower()}", name))
            assert created.ok, f"{kind}: {created.stderr}"
        for shape, spec in ODD_CPU_SPECS.items():  # every CEL path guarded: none of these may error
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": shape, "namespace": name},
                "spec": spec,
            }
            created = cluster.create(json.dumps(body))
            assert created.ok, f"{shape}: {created.stderr}"
        exempt = cluster.create(pod(unique("system-gpu"), "kube-system"))
        assert exempt.ok, exempt.stderr  # the namespaceSelector keeps kube-system away
        namespace = cluster.kubectl("create", "namespace", unique("new"))
        assert namespace.returncode == 0, namespace.stderr  # no tenant label: not sent
        metadata = {"name": unique("labelled"), "labels": {"computegate.io/tenant": name}}
        labelled = cluster.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}),
        )
        assert labelled.returncode != 0  # a tenant label change is sent, and fails closed
    finally:
        operator.start()
    assert cluster.create(pod("gpu", name)).code == "JurisdictionAllowed"
